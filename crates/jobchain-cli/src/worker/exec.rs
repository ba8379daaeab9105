//! The exec handler: one process per attempt, in any language.
//!
//! The payload goes to the program's stdin; `JOBCHAIN_JOB_ID`, `JOBCHAIN_KIND`,
//! `JOBCHAIN_ATTEMPT`, `JOBCHAIN_MAX_ATTEMPTS`, `JOBCHAIN_WORKFLOW_ID` and, for a step
//! with dependencies, `JOBCHAIN_DEPENDENCIES` (a JSON file of their states and outputs)
//! go to its environment, with `PATH` and the handler's configured variables and nothing
//! else. Exit 0 is success, and stdout may then hold one JSON object
//! `{"output": ..., "enqueue": [...]}`; exit 65 is a permanent failure; exit 75 snoozes
//! ("not now": the job runs again after 30 s, or after stdout's `{"snooze": "10s"}`,
//! without spending an attempt); anything else
//! (another status, a signal, a timeout, stdout that is not such an object) is a failed
//! attempt. The last 4 KiB of stderr become the attempt's error; stderr's lines go to the
//! worker's log. On timeout or cancel the process group gets SIGTERM, then SIGKILL after
//! the grace period. See docs/cli.md.

use std::collections::VecDeque;
use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use jobchain::{JobContext, JobError, JobOptions, JobSpec};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use super::config::HandlerConfig;

/// The exit status that means "do not retry".
pub const PERMANENT_EXIT: i32 = 65;

/// The exit status that means "not now, again later" (EX_TEMPFAIL): a snooze.
pub const SNOOZE_EXIT: i32 = 75;

/// How long a snooze waits when stdout does not say.
pub const DEFAULT_SNOOZE: Duration = Duration::from_secs(30);

/// How much of stderr becomes the attempt's error.
const STDERR_TAIL: usize = 4096;

/// The most stdout a handler may print (its result object).
const STDOUT_LIMIT: usize = 16 << 20;

/// What a successful program may print on stdout.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Result {
    #[serde(default)]
    output: Option<Value>,
    #[serde(default)]
    enqueue: Vec<FollowUp>,
}

/// A follow-up staged by a program, written with the completion or not at all.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowUp {
    kind: String,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    options: JobOptions,
}

/// A handler that runs a program per attempt.
pub struct ExecHandler {
    config: HandlerConfig,
    dir: std::path::PathBuf,
    grace: Duration,
}

impl ExecHandler {
    /// A handler for `config`, whose programs run in `dir`; a timed-out or cancelled
    /// program gets `grace` between SIGTERM and SIGKILL.
    pub fn new(config: HandlerConfig, dir: std::path::PathBuf, grace: Duration) -> Arc<Self> {
        Arc::new(ExecHandler { config, dir, grace })
    }

    /// Runs one attempt.
    pub async fn run(
        self: Arc<Self>,
        ctx: JobContext,
        payload: Value,
    ) -> std::result::Result<Option<Value>, JobError> {
        let program = &self.config.command[0];
        let dependencies = self.dependencies_file(&ctx).await?;
        let mut command = Command::new(program);
        command
            .args(&self.config.command[1..])
            .current_dir(&self.dir)
            .env_clear()
            .envs(std::env::var_os("PATH").map(|p| ("PATH", p)))
            .envs(&self.config.env)
            .env("JOBCHAIN_JOB_ID", ctx.job_id().to_string())
            .env("JOBCHAIN_KIND", ctx.kind())
            .env("JOBCHAIN_ATTEMPT", ctx.attempt().to_string())
            .env("JOBCHAIN_MAX_ATTEMPTS", ctx.max_attempts().to_string())
            .env(
                "JOBCHAIN_WORKFLOW_ID",
                ctx.workflow_id().map(|w| w.to_string()).unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(file) = &dependencies {
            command.env("JOBCHAIN_DEPENDENCIES", file.path());
        }
        let mut child = command.spawn().map_err(|e| {
            JobError::retryable(format!(
                "cannot start `{program}` (from {}): {e}; check the handler's command in the config",
                self.dir.display()
            ))
        })?;
        // Killed with its whole process group if this attempt is dropped (shutdown's
        // deadline, a lost lease).
        let group = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()));

        let stdin = child.stdin.take();
        let input = serde_json::to_vec(&payload)
            .map_err(|e| JobError::permanent(format!("the payload cannot be written: {e}")))?;
        let feed = tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                // A program that does not read its stdin closes the pipe: not an error.
                let _ = stdin.write_all(&input).await;
            }
        });
        let stdout = child.stdout.take();
        let read_out = tokio::spawn(async move {
            let mut bytes = Vec::new();
            if let Some(stdout) = stdout {
                let mut limited = stdout.take(STDOUT_LIMIT as u64 + 1);
                let _ = limited.read_to_end(&mut bytes).await;
                // Past the limit the result is refused anyway; keep draining so that the
                // program is not blocked on a full pipe.
                let _ = tokio::io::copy(&mut limited.into_inner(), &mut tokio::io::sink()).await;
            }
            bytes
        });
        let stderr = child.stderr.take();
        let kind = self.config.kind.clone();
        let job_id = ctx.job_id();
        let read_err = tokio::spawn(async move {
            let mut tail: VecDeque<u8> = VecDeque::with_capacity(STDERR_TAIL);
            if let Some(stderr) = stderr {
                let mut lines = BufReader::new(stderr).split(b'\n');
                while let Ok(Some(line)) = lines.next_segment().await {
                    let text = String::from_utf8_lossy(&line);
                    tracing::info!(job.kind = %kind, job.id = %job_id, "handler: {}", text.trim_end());
                    for b in line.iter().chain(std::iter::once(&b'\n')) {
                        if tail.len() == STDERR_TAIL {
                            tail.pop_front();
                        }
                        tail.push_back(*b);
                    }
                }
            }
            String::from_utf8_lossy(&tail.into_iter().collect::<Vec<u8>>())
                .trim()
                .to_string()
        });

        let timeout = self.config.timeout;
        let status = tokio::select! {
            status = child.wait() => status.map_err(|e| JobError::retryable(format!("waiting for `{program}` failed: {e}")))?,
            _ = sleep_or_forever(timeout) => {
                self.terminate(&mut child, &group).await;
                let tail = read_err.await.unwrap_or_default();
                return Err(JobError::retryable(with_stderr(
                    format!("`{program}` timed out after {:?}", timeout.unwrap_or_default()),
                    &tail,
                )));
            }
            _ = ctx.cancelled() => {
                self.terminate(&mut child, &group).await;
                return Err(JobError::retryable(format!("`{program}` was stopped: the job was cancelled or its lease lost")));
            }
        };
        group.disarm();
        let _ = feed.await;
        let stdout = read_out.await.unwrap_or_default();
        let tail = read_err.await.unwrap_or_default();
        drop(dependencies);

        match status.code() {
            Some(0) => {}
            Some(PERMANENT_EXIT) => {
                return Err(JobError::permanent(with_stderr(
                    format!("`{program}` failed permanently (exit {PERMANENT_EXIT})"),
                    &tail,
                )))
            }
            Some(SNOOZE_EXIT) => {
                let delay = snooze_delay(&stdout).map_err(|e| {
                    JobError::retryable(format!(
                        "`{program}` snoozed (exit {SNOOZE_EXIT}) but {e}: print nothing, or {{\"snooze\": \"10s\"}}"
                    ))
                })?;
                return Err(JobError::snooze(delay));
            }
            Some(code) => {
                return Err(JobError::retryable(with_stderr(
                    format!("`{program}` exited with status {code}"),
                    &tail,
                )))
            }
            None => {
                use std::os::unix::process::ExitStatusExt;
                return Err(JobError::retryable(with_stderr(
                    format!(
                        "`{program}` was killed by signal {}",
                        status.signal().unwrap_or_default()
                    ),
                    &tail,
                )));
            }
        }
        let result = parse_stdout(&stdout).map_err(|e| {
            JobError::retryable(format!(
                "`{program}` exited 0 but {e}: print nothing, or one JSON object {{\"output\": ..., \"enqueue\": [...]}}"
            ))
        })?;
        for follow_up in result.enqueue {
            let kind = follow_up.kind;
            let options = follow_up.options.into_options().map_err(|e| {
                JobError::retryable(format!(
                    "`{program}` staged a `{kind}` job with bad options: {e}"
                ))
            })?;
            ctx.enqueue_with(JobSpec::new(&kind, follow_up.payload), options)?;
        }
        Ok(result.output)
    }

    /// For a step with dependencies: a file of their states and outputs.
    async fn dependencies_file(
        &self,
        ctx: &JobContext,
    ) -> std::result::Result<Option<tempfile::NamedTempFile>, JobError> {
        if ctx.workflow_id().is_none() {
            return Ok(None);
        }
        let dependencies = ctx.dependencies().await?;
        if dependencies.is_empty() {
            return Ok(None);
        }
        let mut file = tempfile::Builder::new()
            .prefix("jobchain-dependencies-")
            .suffix(".json")
            .tempfile()
            .map_err(|e| JobError::retryable(format!("cannot write the dependencies file: {e}")))?;
        serde_json::to_writer(&mut file, &dependencies)
            .map_err(|e| JobError::retryable(format!("cannot write the dependencies file: {e}")))?;
        file.flush()
            .map_err(|e| JobError::retryable(format!("cannot write the dependencies file: {e}")))?;
        Ok(Some(file))
    }

    /// SIGTERM to the process group, SIGKILL after the grace period.
    async fn terminate(&self, child: &mut tokio::process::Child, group: &GroupGuard) {
        group.signal(Signal::SIGTERM);
        if tokio::time::timeout(self.grace, child.wait())
            .await
            .is_err()
        {
            group.signal(Signal::SIGKILL);
            let _ = child.wait().await;
        }
    }
}

async fn sleep_or_forever(timeout: Option<Duration>) {
    match timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

fn with_stderr(message: String, tail: &str) -> String {
    if tail.is_empty() {
        message
    } else {
        format!("{message}: {tail}")
    }
}

/// Reads a program's stdout: nothing, or one result object.
fn parse_stdout(bytes: &[u8]) -> std::result::Result<Result, String> {
    if bytes.len() > STDOUT_LIMIT {
        return Err(format!(
            "printed more than {} MiB on stdout",
            STDOUT_LIMIT >> 20
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| format!("its stdout is not UTF-8 ({e})"))?;
    if text.trim().is_empty() {
        return Ok(Result {
            output: None,
            enqueue: Vec::new(),
        });
    }
    serde_json::from_str(text).map_err(|e| format!("its stdout is not a result object ({e})"))
}

/// The process group of a running program: killed when dropped unless disarmed.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.0 {
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }

    /// The program has exited: its group needs no more signals.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

/// The delay of a snooze: stdout's `{"snooze": "10s"}`, or [`DEFAULT_SNOOZE`] when
/// stdout is empty.
fn snooze_delay(stdout: &[u8]) -> std::result::Result<Duration, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Snooze {
        snooze: String,
    }
    let text = String::from_utf8_lossy(stdout);
    if text.trim().is_empty() {
        return Ok(DEFAULT_SNOOZE);
    }
    let snooze: Snooze = serde_json::from_str(text.trim())
        .map_err(|e| format!("its stdout is not a snooze ({e})"))?;
    jobchain::document::parse_duration(&snooze.snooze)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a program prints, reading it never panics: it is a result or an error
        /// that says what stdout should have been.
        #[test]
        fn any_stdout_is_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Err(e) = parse_stdout(&bytes) {
                prop_assert!(!e.is_empty());
            }
        }

        /// Result objects with arbitrary follow-up options parse or are refused cleanly.
        #[test]
        fn follow_up_options_parse_or_say_why(
            delay in "\\PC{0,12}",
            priority in prop_oneof![Just(json_str("high")), Just(json_str("urgent")), (-40000i64..40000).prop_map(|n| n.to_string())],
            run_at in "\\PC{0,30}",
        ) {
            let text = format!(
                r#"{{"enqueue": [{{"kind": "k", "options": {{"delay": {}, "priority": {priority}, "run_at": {}}}}}]}}"#,
                json_str(&delay),
                json_str(&run_at),
            );
            if let Ok(result) = parse_stdout(text.as_bytes()) {
                for f in result.enqueue {
                    if let Err(e) = f.options.into_options() {
                        prop_assert!(!e.is_empty());
                    }
                }
            }
        }
    }

    fn json_str(s: &str) -> String {
        serde_json::to_string(s).expect("a string")
    }

    #[test]
    fn stdout_is_nothing_or_one_result_object() {
        assert!(parse_stdout(b"").unwrap().output.is_none());
        assert!(parse_stdout(b"  \n").unwrap().enqueue.is_empty());
        let r = parse_stdout(br#"{"output": {"n": 1}, "enqueue": [{"kind": "b", "payload": 2, "options": {"delay": "10s", "priority": "high"}}]}"#).unwrap();
        assert_eq!(r.output, Some(serde_json::json!({"n": 1})));
        assert_eq!(r.enqueue[0].kind, "b");
        let options = r
            .enqueue
            .into_iter()
            .next()
            .unwrap()
            .options
            .into_options()
            .unwrap();
        assert_eq!(options.priority, Some(jobchain::Priority::HIGH));
        for (bad, says) in [
            (&b"hello"[..], "not a result object"),
            (&b"{\"outptu\": 1}"[..], "unknown field"),
            (&b"\xff\xfe"[..], "not UTF-8"),
        ] {
            let err = parse_stdout(bad).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}
