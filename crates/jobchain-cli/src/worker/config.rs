//! `jobchain.toml`: the handlers a `jobchain worker` runs, each an argv.
//!
//! ```toml
//! [handlers.process_order]
//! command = ["python3", "handlers/process_order.py"]   # an argv: never through a shell
//! timeout = "30s"
//! max_attempts = 5
//! queue = "default"
//! env = { SMTP_HOST = "127.0.0.1" }
//! rate_limit = "100/s"            # starts per window, across every worker of the store
//! max_running = 10                # running at once, across every worker
//! max_running_per_key = 1         # per concurrency key, fair across keys
//!
//! [queues.emails]                 # limits on a whole queue
//! rate_limit = "10/min"
//! max_running = 5
//!
//! [periodic.nightly_report]
//! schedule = "0 30 2 * * *"       # cron, seconds optional
//! timezone = "Europe/Berlin"      # default UTC
//! kind = "build_report"
//! payload = { scope = "all" }     # default {}
//! queue = "reports"               # optional
//! catch_up = "latest"             # none (default), latest or all
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use jobchain::periodic::{CatchUp, Periodic, Schedule};
use jobchain::{QueueLimits, RateLimit};

use crate::common::parse_duration;
use crate::CliError;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    handlers: BTreeMap<String, HandlerEntry>,
    #[serde(default)]
    queues: BTreeMap<String, QueueEntry>,
    #[serde(default)]
    periodic: BTreeMap<String, PeriodicEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueEntry {
    rate_limit: Option<String>,
    max_running: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeriodicEntry {
    schedule: String,
    timezone: Option<String>,
    kind: String,
    payload: Option<serde_json::Value>,
    queue: Option<String>,
    catch_up: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HandlerEntry {
    command: Vec<String>,
    timeout: Option<String>,
    max_attempts: Option<u32>,
    queue: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    rate_limit: Option<String>,
    max_running: Option<u32>,
    max_running_per_key: Option<u32>,
}

/// One handler: a program run once per attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct HandlerConfig {
    /// The job kind it handles.
    pub kind: String,
    /// The program and its arguments (never through a shell).
    pub command: Vec<String>,
    /// How long one attempt may run.
    pub timeout: Option<Duration>,
    /// Attempts before the dead-letter queue.
    pub max_attempts: Option<u32>,
    /// Queue it claims from.
    pub queue: String,
    /// Environment given to the program, besides `PATH` and the `JOBCHAIN_` variables.
    pub env: BTreeMap<String, String>,
    /// Starts per window across every worker.
    pub rate_limit: Option<RateLimit>,
    /// Running at once across every worker.
    pub max_running: Option<u32>,
    /// Running at once per concurrency key across every worker.
    pub max_running_per_key: Option<u32>,
}

/// A `[periodic.NAME]` table.
#[derive(Clone, Debug)]
pub struct PeriodicConfig {
    /// Its name.
    pub name: String,
    /// When.
    pub schedule: Schedule,
    /// The job's kind.
    pub kind: String,
    /// The job's payload.
    pub payload: serde_json::Value,
    /// The job's queue.
    pub queue: Option<String>,
    /// Missed ticks.
    pub catch_up: CatchUp,
}

impl PeriodicConfig {
    /// The periodic job it declares.
    pub fn periodic(&self) -> Periodic {
        let mut options = jobchain::EnqueueOptions::new();
        options.queue = self.queue.clone();
        Periodic::new(
            &self.name,
            self.schedule.clone(),
            jobchain::JobSpec::new(&self.kind, self.payload.clone()).options(options),
        )
        .catch_up(self.catch_up)
    }
}

/// A parsed `jobchain.toml`.
#[derive(Clone, Debug)]
pub struct Config {
    /// The handlers, by kind.
    pub handlers: Vec<HandlerConfig>,
    /// Limits on whole queues.
    pub queues: BTreeMap<String, QueueLimits>,
    /// Periodic jobs, by name.
    pub periodic: Vec<PeriodicConfig>,
    /// The file's folder: programs run there, and relative paths are resolved from it.
    pub dir: PathBuf,
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, CliError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::usage(format!(
                "cannot read the config file {}: {e}; give --config PATH of a jobchain.toml (see docs/cli.md)",
                path.display()
            ))
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(&text, dir).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))
    }

    /// Parses a config's text; `dir` is where its programs run.
    pub fn parse(text: &str, dir: PathBuf) -> Result<Config, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.handlers.is_empty() {
            return Err(
                "no handlers: add a [handlers.KIND] table with command = [\"program\", \"arg\"]"
                    .into(),
            );
        }
        let mut handlers = Vec::with_capacity(file.handlers.len());
        for (kind, entry) in file.handlers {
            if entry.command.first().is_none_or(|p| p.trim().is_empty()) {
                return Err(format!(
                    "handler `{kind}`: command must name a program, e.g. command = [\"python3\", \"handler.py\"]"
                ));
            }
            let timeout = entry
                .timeout
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|e| format!("handler `{kind}`: timeout: {e}"))?;
            if timeout == Some(Duration::ZERO) {
                return Err(format!("handler `{kind}`: timeout must be above zero"));
            }
            if entry.max_attempts == Some(0) {
                return Err(format!("handler `{kind}`: max_attempts must be at least 1"));
            }
            if let Some(bad) = entry.env.keys().find(|k| k.starts_with("JOBCHAIN_")) {
                return Err(format!(
                    "handler `{kind}`: env may not set `{bad}`: the JOBCHAIN_ variables are the worker's"
                ));
            }
            let rate_limit = entry
                .rate_limit
                .as_deref()
                .map(str::parse::<RateLimit>)
                .transpose()
                .map_err(|e| format!("handler `{kind}`: rate_limit: {e}"))?;
            for (what, value) in [
                ("max_running", entry.max_running),
                ("max_running_per_key", entry.max_running_per_key),
            ] {
                if value == Some(0) {
                    return Err(format!("handler `{kind}`: {what} must be at least 1"));
                }
            }
            handlers.push(HandlerConfig {
                kind,
                command: entry.command,
                timeout,
                max_attempts: entry.max_attempts,
                queue: entry.queue.unwrap_or_else(|| "default".into()),
                env: entry.env,
                rate_limit,
                max_running: entry.max_running,
                max_running_per_key: entry.max_running_per_key,
            });
        }
        let mut queues = BTreeMap::new();
        for (name, entry) in file.queues {
            let rate_limit = entry
                .rate_limit
                .as_deref()
                .map(str::parse::<RateLimit>)
                .transpose()
                .map_err(|e| format!("queue `{name}`: rate_limit: {e}"))?;
            if entry.max_running == Some(0) {
                return Err(format!("queue `{name}`: max_running must be at least 1"));
            }
            queues.insert(
                name,
                QueueLimits {
                    rate_limit,
                    max_running: entry.max_running,
                },
            );
        }
        let mut periodic = Vec::new();
        for (name, entry) in file.periodic {
            let zone = entry.timezone.as_deref().unwrap_or("UTC");
            let schedule = Schedule::new(&entry.schedule, zone)
                .map_err(|e| format!("periodic `{name}`: {}", config_message(e)))?;
            let catch_up = entry
                .catch_up
                .as_deref()
                .map(str::parse::<CatchUp>)
                .transpose()
                .map_err(|e| format!("periodic `{name}`: {e}"))?
                .unwrap_or_default();
            if entry.kind.trim().is_empty() {
                return Err(format!("periodic `{name}`: kind must name a handler"));
            }
            periodic.push(PeriodicConfig {
                name,
                schedule,
                kind: entry.kind,
                payload: entry
                    .payload
                    .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
                queue: entry.queue,
                catch_up,
            });
        }
        Ok(Config {
            handlers,
            queues,
            periodic,
            dir,
        })
    }
}

/// The message of a configuration error, without the "invalid worker configuration"
/// prefix that belongs to the worker, not the file.
fn config_message(e: jobchain::Error) -> String {
    match e {
        jobchain::Error::Config(m) => m,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text is a config or a message saying what is wrong with it.
        #[test]
        fn any_config_text_parses_or_says_why(text in "\\PC{0,300}") {
            if let Err(e) = Config::parse(&text, PathBuf::from(".")) {
                prop_assert!(!e.is_empty());
            }
        }
    }

    #[test]
    fn a_config_parses_and_bad_ones_say_what_is_wrong() {
        let config = Config::parse(
            r#"
            [handlers.send]
            command = ["python3", "send.py"]
            timeout = "30s"
            max_attempts = 3
            queue = "emails"
            env = { SMTP_HOST = "127.0.0.1" }
            [handlers.plain]
            command = ["./plain.sh"]
            "#,
            PathBuf::from("."),
        )
        .unwrap();
        assert_eq!(config.handlers.len(), 2);
        let send = config.handlers.iter().find(|h| h.kind == "send").unwrap();
        assert_eq!(send.timeout, Some(Duration::from_secs(30)));
        assert_eq!(send.queue, "emails");
        assert_eq!(send.env["SMTP_HOST"], "127.0.0.1");
        let limited = Config::parse(
            r#"
            [handlers.mail]
            command = ["./mail.sh"]
            rate_limit = "10/min"
            max_running = 3
            max_running_per_key = 1
            [queues.bulk]
            rate_limit = "5/2s"
            max_running = 7
            [periodic.report]
            schedule = "0 */5 * * * *"
            timezone = "Europe/Berlin"
            kind = "mail"
            payload = { scope = "all" }
            catch_up = "all"
            "#,
            PathBuf::from("."),
        )
        .unwrap();
        let mail = &limited.handlers[0];
        assert_eq!(
            mail.rate_limit,
            Some(RateLimit {
                count: 10,
                period: Duration::from_secs(60)
            })
        );
        assert_eq!(
            (mail.max_running, mail.max_running_per_key),
            (Some(3), Some(1))
        );
        assert_eq!(limited.queues["bulk"].max_running, Some(7));
        assert_eq!(
            limited.queues["bulk"].rate_limit.map(|r| r.period),
            Some(Duration::from_secs(2))
        );
        let report = &limited.periodic[0];
        assert_eq!(report.schedule.zone(), "Europe/Berlin");
        assert_eq!(report.catch_up, CatchUp::All);
        assert_eq!(report.payload, serde_json::json!({"scope": "all"}));
        for (bad, says) in [
            ("", "no handlers"),
            ("[handlers.a]\ncommand = []", "must name a program"),
            (
                "[handlers.a]\ncommand = [\"x\"]\ntimeout = \"soon\"",
                "timeout",
            ),
            (
                "[handlers.a]\ncommand = [\"x\"]\nmax_attempts = 0",
                "at least 1",
            ),
            (
                "[handlers.a]\ncommand = [\"x\"]\nshell = true",
                "unknown field",
            ),
            (
                "[handlers.a]\ncommand = [\"x\"]\nenv = { JOBCHAIN_KIND = \"b\" }",
                "JOBCHAIN_",
            ),
            ("[handlers.a\n", "expected"),
            (
                "[handlers.a]\ncommand = [\"x\"]\nrate_limit = \"fast\"",
                "not a rate",
            ),
            (
                "[handlers.a]\ncommand = [\"x\"]\nmax_running_per_key = 0",
                "at least 1",
            ),
            (
                "[handlers.a]\ncommand = [\"x\"]\n[queues.q]\nrate_limit = \"0/s\"",
                "above zero",
            ),
            (
                "[handlers.a]\ncommand = [\"x\"]\n[periodic.p]\nschedule = \"often\"\nkind = \"a\"",
                "not a cron expression",
            ),
            (
                "[handlers.a]\ncommand = [\"x\"]\n[periodic.p]\nschedule = \"* * * * *\"\ntimezone = \"Moon\"\nkind = \"a\"",
                "time zone",
            ),
            (
                "[handlers.a]\ncommand = [\"x\"]\n[periodic.p]\nschedule = \"* * * * *\"\nkind = \"a\"\ncatch_up = \"some\"",
                "catch_up",
            ),
        ] {
            let err = Config::parse(bad, PathBuf::from(".")).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }
}
