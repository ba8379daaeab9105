//! The `jobchain` binary as an operator and a polyglot user run it, on SQLite and
//! PostgreSQL: the order workflow with Python and shell handlers (dynamic and declared),
//! the dead-letter queue, exec failures, SIGTERM, `--json` read back, and bad input.
//! PostgreSQL cases skip, saying why, when it is unreachable — unless
//! `JOBCHAIN_REQUIRE_POSTGRES=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A store for one case: a SQLite file in a temp folder, or a PostgreSQL schema of its
/// own (dropped afterwards).
struct Db {
    location: String,
    schema: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Db {
    fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        Db {
            location: dir.path().join("jobs.db").display().to_string(),
            schema: None,
            _dir: dir,
        }
    }

    fn postgres() -> Option<Db> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let url = std::env::var("JOBCHAIN_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let reachable = runtime().block_on(async {
            jobchain::postgres::sqlx::PgPool::connect(&url)
                .await
                .map(drop)
        });
        if let Err(e) = reachable {
            if std::env::var("JOBCHAIN_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!(
                    "PostgreSQL is required (JOBCHAIN_REQUIRE_POSTGRES=1) but {url} failed: {e}"
                );
            }
            eprintln!("skipped: PostgreSQL is not reachable at {url} ({e}); set JOBCHAIN_REQUIRE_POSTGRES=1 to make this a failure");
            return None;
        }
        let schema = format!(
            "jc_cli_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let separator = if url.contains('?') { '&' } else { '?' };
        Some(Db {
            location: format!("{url}{separator}jobchain_schema={schema}"),
            schema: Some((url, schema)),
            _dir: tempfile::tempdir().expect("temp dir"),
        })
    }

    /// Runs `jobchain ARGS --database LOCATION` in `cwd`.
    fn run(&self, args: &[&str]) -> Output {
        jobchain(args, Some(&self.location), None)
    }

    /// Runs it and parses stdout as JSON; panics, showing stderr, if it failed.
    fn json(&self, args: &[&str]) -> Value {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            text(&output.stderr)
        );
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", text(&output.stdout)))
    }

    /// The one line a command printed.
    fn line(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            text(&output.stderr)
        );
        text(&output.stdout).trim().to_string()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some((url, schema)) = self.schema.take() {
            runtime().block_on(async move {
                if let Ok(pool) = jobchain::postgres::sqlx::PgPool::connect(&url).await {
                    let _ = jobchain::postgres::drop_schema(&pool, &schema).await;
                    pool.close().await;
                }
            });
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the binary; `--database` goes after the subcommand's words.
fn jobchain(args: &[&str], database: Option<&str>, cwd: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobchain"));
    command.args(args).env_remove("JOBCHAIN_DATABASE");
    if let Some(db) = database {
        command.args(["--database", db]);
    }
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    command.output().expect("run jobchain")
}

/// The polyglot example, copied so a case may change it.
fn example() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/polyglot");
    copy_dir(&src, dir.path());
    let config = dir.path().join("jobchain.toml");
    (dir, config)
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read example") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn work_until_idle(db: &Db, config: &Path) {
    let output = db.run(&[
        "worker",
        "--config",
        config.to_str().expect("path"),
        "--until-idle",
    ]);
    assert!(
        output.status.success(),
        "worker failed: {}",
        text(&output.stderr)
    );
}

/// Runs a case on SQLite and on PostgreSQL.
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $case() { super::$case(&super::Db::sqlite()); })*
        }
        mod postgres {
            $(#[test] fn $case() {
                if let Some(db) = super::Db::postgres() { super::$case(&db); }
            })*
        }
    };
}

on_both_stores!(
    the_order_workflow_runs_with_python_and_shell_handlers,
    a_permanent_failure_is_retried_from_the_dlq_after_a_fix,
    exec_failures_are_failed_attempts_that_say_why,
    sigterm_hands_a_running_job_back,
    operator_commands_print_json_that_reads_back,
    declared_steps_read_their_dependencies_and_environment,
    serve_answers_the_api_and_the_worker_serves_metrics,
    queues_pause_and_resume_from_the_command,
    exit_75_snoozes_without_spending_an_attempt,
    periodic_jobs_and_limits_from_the_config,
    signals_and_results_from_the_command,
);

/// A workflow document that waits for a signal: `workflow result` refuses while it
/// runs, `workflow signal` completes the waiting step (a second signal changes nothing),
/// and `workflow wait --result` prints the last step's output.
fn signals_and_results_from_the_command(db: &Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("jobchain.toml"),
        "[handlers.finish]\ncommand = [\"sh\", \"-c\", \"cat >/dev/null; echo '{\\\"output\\\": {\\\"done\\\": true}}'\"]\n",
    )
    .expect("config");
    std::fs::write(
        dir.path().join("flow.json"),
        r#"{"name": "ship", "steps": [
            {"name": "shipped", "wait_for_signal": {"timeout": "1h"}},
            {"name": "finish", "kind": "finish", "after": ["shipped"]}
        ]}"#,
    )
    .expect("flow");
    let workflow = db.line(&[
        "workflow",
        "start",
        "--file",
        dir.path().join("flow.json").to_str().expect("path"),
    ]);
    let early = db.run(&["workflow", "result", &workflow]);
    assert_eq!(early.status.code(), Some(1));
    assert!(
        text(&early.stderr).contains("still running"),
        "{}",
        text(&early.stderr)
    );
    let said = db.line(&[
        "workflow",
        "signal",
        &workflow,
        "shipped",
        r#"{"tracking": "ZX-1"}"#,
    ]);
    assert!(said.contains("completed 1 waiting step"), "{said}");
    let again = db.json(&["workflow", "signal", &workflow, "shipped", "2", "--json"]);
    assert_eq!(again["accepted"], false);
    assert_eq!(again["repeats"], 1);
    work_until_idle(db, &dir.path().join("jobchain.toml"));
    let result = db.json(&[
        "workflow",
        "wait",
        &workflow,
        "--result",
        "--timeout",
        "30s",
    ]);
    assert_eq!(result, serde_json::json!({"done": true}));
    let shown = db.json(&["workflow", "show", &workflow, "--json"]);
    assert_eq!(
        shown["jobs"][0]["job"]["output"],
        serde_json::json!({"tracking": "ZX-1"})
    );
    let bad = db.run(&["workflow", "signal", &workflow, "shipped", "{not json"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
}

fn the_order_workflow_runs_with_python_and_shell_handlers(db: &Db) {
    let (dir, config) = example();
    let dynamic = db.line(&[
        "workflow",
        "start",
        "process_order",
        r#"{"order_id": 1, "amount_cents": 1250, "chain": true}"#,
    ]);
    let declared = db.line(&[
        "workflow",
        "start",
        "--file",
        dir.path().join("order.toml").to_str().expect("path"),
        "--input",
        r#"{"order_id": 2, "amount_cents": 990}"#,
    ]);
    work_until_idle(db, &config);
    for id in [&dynamic, &declared] {
        let shown = db.json(&["workflow", "show", id, "--json"]);
        assert_eq!(shown["state"], "completed", "{shown:#}");
        assert_eq!(shown["counts"]["completed"], 4, "{shown:#}");
    }
    let jobs = db.run(&["jobs", "list", "--workflow", &dynamic, "--json"]);
    let jobs: Vec<Value> = text(&jobs.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let kinds: Vec<&str> = jobs.iter().map(|j| j["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "process_order",
            "send_order_confirmation",
            "generate_invoice",
            "sync_inventory"
        ]
    );
    assert_eq!(jobs[2]["output"]["invoice"], "INV-1");
    assert_eq!(jobs[1]["parent_id"], jobs[0]["id"]);
    let tree = db.line(&["workflow", "show", &declared]);
    assert!(
        tree.contains("invoice") && tree.contains("after charge, confirm"),
        "{tree}"
    );
}

fn a_permanent_failure_is_retried_from_the_dlq_after_a_fix(db: &Db) {
    let (dir, config) = example();
    let workflow = db.line(&[
        "workflow",
        "start",
        "process_order",
        r#"{"order_id": 3, "amount_cents": 0, "chain": true}"#,
    ]);
    work_until_idle(db, &config);
    let dead = db.run(&["dlq", "list", "--json"]);
    let dead: Value = serde_json::from_str(text(&dead.stdout).trim()).expect("one dead job");
    assert_eq!(dead["kind"], "process_order");
    assert_eq!(dead["attempts"], 1, "exit 65 is permanent: no retry");
    let error = dead["errors"][0]["message"].as_str().unwrap();
    assert!(
        error.contains("exit 65") && error.contains("cannot charge 0 cents"),
        "{error}"
    );
    let failed = db.run(&["workflow", "wait", &workflow, "--timeout", "1s"]);
    assert_eq!(failed.status.code(), Some(1), "a failed workflow exits 1");
    // Fix the handler: free orders are fine after all.
    let handler = dir.path().join("handlers/process_order.py");
    let code = std::fs::read_to_string(&handler).expect("read");
    std::fs::write(&handler, code.replace("<= 0", "< 0")).expect("fix");
    let id = dead["id"].to_string();
    let retried = db.line(&["dlq", "retry", &id]);
    assert!(retried.contains("retried 1 dead job"), "{retried}");
    work_until_idle(db, &config);
    let done = db.run(&["workflow", "wait", &workflow, "--timeout", "30s"]);
    assert!(done.status.success(), "{}", text(&done.stderr));
}

fn exec_failures_are_failed_attempts_that_say_why(db: &Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("echo.py"),
        "import sys, json\nprint(json.dumps({'output': json.load(sys.stdin)}))\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("jobchain.toml"),
        r#"
        [handlers.chatty]
        command = ["sh", "-c", "echo hello; echo 'some detail' >&2"]
        max_attempts = 1
        [handlers.slow]
        command = ["sleep", "30"]
        timeout = "1s"
        max_attempts = 1
        [handlers.missing]
        command = ["./no-such-program"]
        max_attempts = 1
        [handlers.echo]
        command = ["python3", "echo.py"]
        max_attempts = 1
        [handlers.binary]
        command = ["printf", "\\377\\376"]
        max_attempts = 1
        "#,
    )
    .expect("config");
    let hostile = r#"{"text": "$(touch pwned); `touch pwned2`; ;|& rm -rf / \" ' %s"}"#;
    let mut ids = Vec::new();
    for (kind, payload) in [
        ("chatty", "{}"),
        ("slow", "{}"),
        ("missing", "{}"),
        ("echo", hostile),
        ("binary", "{}"),
    ] {
        ids.push(db.line(&["enqueue", kind, payload, "--max-attempts", "1"]));
    }
    let started = Instant::now();
    work_until_idle(db, &dir.path().join("jobchain.toml"));
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the 1 s timeout was not kept"
    );
    let job = |id: &str| db.json(&["jobs", "show", id, "--json"]);
    let error = |id: &str| {
        job(id)["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let chatty = error(&ids[0]);
    assert!(
        chatty.contains("not a result object")
            && chatty.contains("print nothing, or one JSON object"),
        "{chatty}"
    );
    let slow = error(&ids[1]);
    assert!(slow.contains("timed out after 1s"), "{slow}");
    let missing = error(&ids[2]);
    assert!(
        missing.contains("cannot start `./no-such-program`"),
        "{missing}"
    );
    let binary = error(&ids[4]);
    assert!(binary.contains("not UTF-8"), "{binary}");
    for id in ids[..3].iter().chain(&ids[4..]) {
        assert_eq!(job(id)["state"], "dead");
    }
    let echoed = job(&ids[3]);
    assert_eq!(echoed["state"], "completed", "{echoed:#}");
    let hostile: Value = serde_json::from_str(hostile).expect("json");
    assert_eq!(
        echoed["output"], hostile,
        "the payload reached the program as data"
    );
    for file in ["pwned", "pwned2"] {
        assert!(
            !dir.path().join(file).exists(),
            "the payload ran as a command"
        );
    }
}

fn declared_steps_read_their_dependencies_and_environment(db: &Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("first.py"),
        "import json, sys\nsys.stdin.read()\nprint(json.dumps({'output': {'x': 1}}))\n",
    )
    .expect("first");
    std::fs::write(
        dir.path().join("second.py"),
        "import json, os, sys\nsys.stdin.read()\n\
         deps = json.load(open(os.environ['JOBCHAIN_DEPENDENCIES']))\n\
         env = dict(os.environ)\n\
         print(json.dumps({'output': {'deps': deps, 'env': env}}))\n",
    )
    .expect("second");
    std::fs::write(
        dir.path().join("jobchain.toml"),
        "[handlers.first]\ncommand = [\"python3\", \"first.py\"]\n\
         [handlers.second]\ncommand = [\"python3\", \"second.py\"]\nenv = { GREETING = \"hi\" }\n",
    )
    .expect("config");
    std::fs::write(
        dir.path().join("flow.json"),
        r#"{"name": "pair", "steps": [{"name": "a", "kind": "first"}, {"name": "b", "kind": "second", "after": ["a"]}]}"#,
    )
    .expect("flow");
    let workflow = db.line(&[
        "workflow",
        "start",
        "--file",
        dir.path().join("flow.json").to_str().expect("path"),
    ]);
    // The worker's own environment holds a secret; the program must not see it.
    let worker = Command::new(env!("CARGO_BIN_EXE_jobchain"))
        .args(["worker", "--until-idle", "--config"])
        .arg(dir.path().join("jobchain.toml"))
        .args(["--database", &db.location])
        .env("SECRET_TOKEN", "hunter2")
        .output()
        .expect("run worker");
    assert!(worker.status.success(), "{}", text(&worker.stderr));
    let shown = db.json(&["workflow", "show", &workflow, "--json"]);
    assert_eq!(shown["state"], "completed", "{shown:#}");
    let b = &shown["jobs"][0]["children"][0]["job"];
    let deps = &b["output"]["deps"];
    assert_eq!(deps[0]["name"], "a", "{b:#}");
    assert_eq!(deps[0]["state"], "completed");
    assert_eq!(deps[0]["output"], serde_json::json!({"x": 1}));
    let env = &b["output"]["env"];
    assert_eq!(env["GREETING"], "hi");
    assert_eq!(env["JOBCHAIN_KIND"], "second");
    assert_eq!(env["JOBCHAIN_ATTEMPT"], "1");
    assert_eq!(env["JOBCHAIN_WORKFLOW_ID"], workflow.as_str());
    assert_eq!(env["JOBCHAIN_JOB_ID"], b["id"].to_string());
    assert!(
        env.get("SECRET_TOKEN").is_none(),
        "the worker's environment leaked into the program: {env:#}"
    );
}

fn sigterm_hands_a_running_job_back(db: &Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("jobchain.toml"),
        "[handlers.long]\ncommand = [\"sleep\", \"60\"]\n",
    )
    .expect("config");
    let id = db.line(&["enqueue", "long", "{}"]);
    let mut worker = Command::new(env!("CARGO_BIN_EXE_jobchain"))
        .args(["worker", "--config"])
        .arg(dir.path().join("jobchain.toml"))
        .args(["--grace", "1s", "--database", &db.location])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker");
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.json(&["jobs", "show", &id, "--json"])["state"] != "running" {
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(worker.id() as i32);
    let signalled = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = loop {
        if let Some(status) = worker.try_wait().expect("wait") {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(20),
            "the worker ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit {status}");
    let job = db.json(&["jobs", "show", &id, "--json"]);
    assert_eq!(
        job["state"], "pending",
        "handed back for another worker: {job:#}"
    );
    assert!(
        job["errors"].as_array().is_some_and(|e| e.is_empty()),
        "{job:#}"
    );
}

fn operator_commands_print_json_that_reads_back(db: &Db) {
    let enqueued = db.json(&[
        "enqueue",
        "report",
        r#"{"day": 1}"#,
        "--queue",
        "reports",
        "--priority",
        "high",
        "--delay",
        "1h",
        "--unique-key",
        "day-1",
        "--json",
    ]);
    assert_eq!(enqueued["duplicate"], false);
    assert_eq!(enqueued["queue"], "reports");
    assert_eq!(enqueued["priority"], 10);
    assert_eq!(enqueued["state"], "pending");
    let again = db.json(&[
        "enqueue",
        "report",
        r#"{"day": 1}"#,
        "--unique-key",
        "day-1",
        "--json",
    ]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], enqueued["id"]);
    let stats = db.json(&["stats", "--json"]);
    let reports = stats
        .as_array()
        .and_then(|s| s.iter().find(|q| q["queue"] == "reports"))
        .expect("the reports queue");
    assert_eq!(reports["counts"]["pending"], 1);
    assert_eq!(
        reports["unhandled"][0]["kind"], "report",
        "no live worker: {reports:#}"
    );
    let id = enqueued["id"].to_string();
    let cancelled = db.json(&["jobs", "cancel", &id, "--json"]);
    assert_eq!(cancelled["state"], "cancelled");
    let refused = db.run(&["jobs", "retry", &id]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("only dead jobs can be retried"));
    let workers = db.run(&["workers", "--json"]);
    assert!(
        workers.status.success() && workers.stdout.is_empty(),
        "no live workers"
    );
    let wf = db.json(&["workflow", "start", "report", "{}", "--json"]);
    let listed = db.run(&["workflow", "list", "--json"]);
    let first: Value =
        serde_json::from_str(text(&listed.stdout).lines().next().expect("a line")).expect("json");
    assert_eq!(first["id"], wf["id"]);
    let cancelled = db.json(&["workflow", "cancel", wf["id"].as_str().unwrap(), "--json"]);
    assert_eq!(cancelled["state"], "cancelled");
    let purged = db.json(&["dlq", "purge", "--older-than", "7d", "--json"]);
    assert_eq!(purged["deleted"], 0);
}

#[test]
fn bad_input_gets_a_clear_message_and_exit_status_2() {
    let db = Db::sqlite();
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for (args, says) in [
        (
            vec!["stats", "--database", ":memory:"],
            "in-memory database",
        ),
        (vec!["stats", "--database", ""], "names no file"),
        (
            vec!["stats", "--database", "postgres:/host/db"],
            "looks like a PostgreSQL URL",
        ),
        (
            vec!["stats", "--database", "sqlite:x.db?fast=yes"],
            "unknown option `fast=yes`",
        ),
        (
            vec!["enqueue", "k", "{not json", "--database", &db.location],
            "not valid JSON",
        ),
        (
            vec![
                "enqueue",
                "k",
                "{}",
                "--delay",
                "soon",
                "--database",
                &db.location,
            ],
            "is not a duration",
        ),
        (vec!["jobs", "show", "abc"], "is not a job id"),
        (vec!["workflow", "show", "42"], "is not a workflow id"),
        (vec!["bench", "--jobs", "0"], "0 is not in 1.."),
        (vec!["bench", "--workflows", "0"], "0 is not in 1.."),
        (vec!["bench", "--duration", "NaN"], "above 0"),
        (vec!["bench", "--workers", "100000"], "from 0 to 64"),
        (vec!["bench", "--workload", "W11"], "unknown workload"),
        (vec!["bench", "--runs", "0"], "0 is not in 1..=99"),
        (
            vec![
                "worker",
                "--config",
                "/no/such/jobchain.toml",
                "--database",
                &db.location,
            ],
            "cannot read the config file",
        ),
        (
            vec!["enqueue", "k", &deep, "--database", &db.location],
            "recursion limit exceeded",
        ),
        (
            vec![
                "enqueue",
                "k",
                r#"{"a": "x\u0000y"}"#,
                "--database",
                &db.location,
            ],
            "NUL character in a string",
        ),
    ] {
        let output = jobchain(&args, None, None);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let missing = jobchain(&["jobs", "show", "999"], Some(&db.location), None);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("job 999 was not found"));
}

#[test]
fn a_closed_pipe_ends_the_demo_quietly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_jobchain"))
        .args(["demo", "--orders", "3", "--database"])
        .arg(dir.path().join("demo.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn demo");
    {
        use std::io::BufRead;
        let stdout = demo.stdout.take().expect("stdout");
        let mut first = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut first)
            .expect("first line");
        assert!(first.contains("jobchain demo"), "{first}");
    } // `| head -1`: the pipe closes here.
    let output = demo.wait_with_output().expect("wait");
    assert!(
        !text(&output.stderr).contains("panicked"),
        "{}",
        text(&output.stderr)
    );
    assert!(output.status.success(), "{}", output.status);
}

#[test]
fn postgres_passwords_and_missing_databases_are_handled() {
    let Some(db) = Db::postgres() else {
        return;
    };
    let (url, schema) = db.schema.clone().expect("postgres");
    let with_password = url.replacen("postgres@", "postgres:hunter2@", 1);
    if with_password == url {
        eprintln!("skipped: the test URL has no `postgres@` user part to add a password to");
        return;
    }
    let location = format!("{with_password}?jobchain_schema={schema}");
    for args in [
        vec!["migrate", "--database", location.as_str()],
        vec!["demo", "--orders", "1", "--database", location.as_str()],
    ] {
        let output = jobchain(&args, None, None);
        let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(output.status.success(), "{args:?}: {all}");
        assert!(
            !all.contains("hunter2"),
            "{args:?} printed the password: {all}"
        );
        assert!(all.contains("***"), "{args:?}: {all}");
    }
    let base = url.rsplit_once('/').expect("a database in the URL").0;
    let missing = jobchain(
        &[
            "stats",
            "--database",
            &format!("{base}/jobchain_no_such_db"),
        ],
        None,
        None,
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("createdb jobchain_no_such_db"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn logs_can_be_json_lines() {
    let db = Db::sqlite();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("jobchain.toml"),
        "[handlers.fails]\ncommand = [\"sh\", \"-c\", \"echo broken >&2; exit 3\"]\nmax_attempts = 1\n",
    )
    .expect("config");
    db.line(&["enqueue", "fails", "{}"]);
    let output = jobchain(
        &[
            "worker",
            "--config",
            dir.path().join("jobchain.toml").to_str().expect("path"),
            "--until-idle",
            "--log-format",
            "json",
        ],
        Some(&db.location),
        None,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let lines: Vec<Value> = text(&output.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let failure = lines
        .iter()
        .find(|l| l["level"] == "WARN")
        .expect("a warning for the failed job");
    let line = failure.to_string();
    assert!(
        line.contains("\"job.kind\":\"fails\"") && line.contains("exited with status 3"),
        "{line}"
    );
}

/// Starts `jobchain ARGS` and returns it with the URL it printed on its first line.
fn spawn_server(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobchain"))
        .args(args)
        .env_remove("JOBCHAIN_DATABASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("a first line");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .trim_end_matches(',')
        .to_string();
    (child, url)
}

/// One HTTP/1.1 request over a plain socket; returns the status and the body.
fn http(url: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host");
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer[9..12].parse().expect("a status");
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn stop(mut child: std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "exit {status}");
            return;
        }
        assert!(Instant::now() < deadline, "ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn serve_answers_the_api_and_the_worker_serves_metrics(db: &Db) {
    let (server, url) =
        spawn_server(&["serve", "--addr", "127.0.0.1:0", "--database", &db.location]);
    let (status, body) = http(
        &url,
        "POST",
        "/api/v1/jobs",
        Some(r#"{"kind": "echo", "payload": {"n": 1}}"#),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = http(&url, "GET", "/api/v1/stats", None);
    assert_eq!(status, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(stats["totals"]["pending"], 1);
    let (status, page) = http(&url, "GET", "/", None);
    assert_eq!(status, 200);
    assert!(page.contains("/assets/app.js"));

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("jobchain.toml");
    std::fs::write(&config, "[handlers.echo]\ncommand = [\"true\"]\n").expect("config");
    let (worker, metrics) = spawn_server(&[
        "worker",
        "--config",
        config.to_str().expect("path"),
        "--metrics-addr",
        "127.0.0.1:0",
        "--database",
        &db.location,
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http(&url, "GET", "/api/v1/jobs?state=completed", None);
        let page: Value = serde_json::from_str(&body).expect("json");
        if page["jobs"].as_array().is_some_and(|j| j.len() == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "the job never completed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The counter is written when the attempt ends, the registry entry when the worker
    // starts: both are there by now, but poll rather than assume.
    let text = loop {
        let (status, text) = http(&metrics, "GET", "/metrics", None);
        assert_eq!(status, 200);
        if text.contains("jobchain_jobs_completed_total{kind=\"echo\"} 1")
            && text.contains("jobchain_workers 1")
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the metrics never showed the run: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        text.contains("jobchain_handler_duration_seconds_count{kind=\"echo\"} 1"),
        "{text}"
    );
    let (status, _) = http(&metrics, "GET", "/api/v1/stats", None);
    assert_eq!(status, 404, "the metrics port serves only /metrics");
    stop(worker);
    stop(server);
}

#[test]
fn serve_refuses_unsafe_settings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("jobs.db");
    let db = db.to_str().expect("path");
    let short = dir.path().join("short-token");
    std::fs::write(&short, "abc\n").expect("token");
    for (args, says) in [
        (vec!["serve", "--addr", "0.0.0.0:0"], "--token-file"),
        (
            vec!["serve", "--token-file", "/nonexistent/token"],
            "cannot read the token file",
        ),
        (
            vec!["serve", "--token-file", short.to_str().expect("path")],
            "at least 16 characters",
        ),
        (vec!["serve", "--addr", "localhost"], "invalid value"),
        (vec!["worker", "--metrics-addr", "nowhere"], "invalid value"),
    ] {
        let output = jobchain(&args, Some(db), None);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stderr)
        );
        let stderr = text(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

fn queues_pause_and_resume_from_the_command(db: &Db) {
    db.line(&["enqueue", "k", "{}"]);
    let paused = db.json(&["queue", "pause", "default", "--json"]);
    assert_eq!(paused["paused"], true);
    let listed = db.line(&["queue", "list"]);
    assert!(
        listed.contains("default") && listed.contains("paused"),
        "{listed}"
    );
    let line: Value = serde_json::from_str(&db.line(&["queue", "list", "--json"])).expect("json");
    assert_eq!(line["paused"], true);
    assert_eq!(line["pending"], 1);
    assert_eq!(
        db.line(&["queue", "resume", "default"]),
        "queue `default` is running"
    );
    let output = db.run(&["queue", "pause", ""]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("queue name is empty"));
}

fn exit_75_snoozes_without_spending_an_attempt(db: &Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("jobchain.toml");
    std::fs::write(
        &config,
        "[handlers.busy]\nmax_attempts = 1\ncommand = [\"sh\", \"-c\", \"if [ ! -f marker ]; then touch marker; echo '{\\\"snooze\\\": \\\"10ms\\\"}'; exit 75; fi\"]\n",
    )
    .expect("config");
    let id = db.line(&["enqueue", "busy", "{}", "--max-attempts", "1"]);
    work_until_idle(db, &config);
    let job = db.json(&["jobs", "show", &id, "--json"]);
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["attempts"], 1, "{job:#}");
    assert_eq!(job["errors"], serde_json::json!([]));
    assert!(dir.path().join("marker").exists(), "it snoozed once");
}

fn periodic_jobs_and_limits_from_the_config(db: &Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("jobchain.toml");
    std::fs::write(
        &config,
        "[handlers.tick]\ncommand = [\"true\"]\nmax_running = 1\nrate_limit = \"100/s\"\n\
         [handlers.keyed]\ncommand = [\"true\"]\nmax_running_per_key = 1\n\
         [queues.default]\nmax_running = 4\n\
         [periodic.every_second]\nschedule = \"* * * * * *\"\nkind = \"tick\"\npayload = { n = 1 }\n",
    )
    .expect("config");
    for i in 0..3 {
        db.line(&[
            "enqueue",
            "keyed",
            &format!("{{\"i\": {i}}}"),
            "--concurrency-key",
            "c1",
        ]);
    }
    let (worker, _) = spawn_server(&[
        "worker",
        "--config",
        config.to_str().expect("path"),
        "--metrics-addr",
        "127.0.0.1:0",
        "--database",
        &db.location,
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ticks = db.run(&[
            "jobs",
            "list",
            "--kind",
            "tick",
            "--state",
            "completed",
            "--json",
        ]);
        let keyed = db.run(&[
            "jobs",
            "list",
            "--kind",
            "keyed",
            "--state",
            "completed",
            "--json",
        ]);
        if text(&ticks.stdout).lines().count() >= 2 && text(&keyed.stdout).lines().count() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the periodic and keyed jobs did not run"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(worker);
    let listed: Value = serde_json::from_str(
        db.line(&[
            "periodic",
            "list",
            "--config",
            config.to_str().expect("path"),
            "--json",
        ])
        .lines()
        .next()
        .expect("a line"),
    )
    .expect("json");
    assert_eq!(listed["name"], "every_second");
    assert_eq!(listed["kind"], "tick");
    assert!(
        listed["last"].is_string() && listed["next"].is_string(),
        "{listed}"
    );
    let job: Value = serde_json::from_str(
        db.line(&["jobs", "list", "--kind", "keyed", "--json"])
            .lines()
            .next()
            .expect("a job"),
    )
    .expect("json");
    assert_eq!(job["concurrency_key"], "c1");
}
