//! A short seeded chaos run on each store (`jobchain chaos`): worker processes are killed,
//! stopped past their lease, cut off (PostgreSQL) or locked out (SQLite) while a mixed load
//! runs; afterwards nothing may be lost, duplicated, completed twice or stuck. The long
//! runs and their figures are in docs/reliability.md.

use std::process::Command;

/// How long the faults run: `JOBCHAIN_CHAOS_SECONDS`, 60 by default.
fn seconds() -> String {
    std::env::var("JOBCHAIN_CHAOS_SECONDS").unwrap_or_else(|_| "60".into())
}

fn chaos(extra: &[&str]) {
    let duration = format!("{}s", seconds());
    let output = Command::new(env!("CARGO_BIN_EXE_jobchain"))
        .args(["chaos", "--duration", &duration, "--seed", "42"])
        .args(extra)
        .output()
        .expect("run jobchain chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "the chaos run failed:\n{stdout}\n{stderr}"
    );
    let figures = stdout.lines().next().unwrap_or_default();
    for clean in [
        "lost=0",
        "duplicated=0",
        "double_completed=0",
        "stuck=0",
        "miscounted=0",
    ] {
        assert!(figures.contains(clean), "{figures}");
    }
    assert!(
        !figures.contains(" jobs=0 "),
        "the run did some work: {figures}"
    );
    assert!(
        !figures.contains("kills=0 stops=0"),
        "faults were injected: {figures}"
    );
}

#[test]
fn chaos_on_sqlite_loses_nothing() {
    chaos(&[]);
}

#[test]
fn chaos_on_postgres_loses_nothing() {
    let url = std::env::var("JOBCHAIN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let reachable = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            jobchain::postgres::sqlx::PgPool::connect(&url)
                .await
                .map(drop)
        });
    if let Err(e) = reachable {
        if std::env::var("JOBCHAIN_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
            panic!("PostgreSQL is required (JOBCHAIN_REQUIRE_POSTGRES=1) but {url} failed: {e}");
        }
        eprintln!("skipped: PostgreSQL is not reachable at {url} ({e}); set JOBCHAIN_REQUIRE_POSTGRES=1 to make this a failure");
        return;
    }
    // A local Debian cluster can be restarted too (CI's is).
    let mut args = vec!["--database", url.as_str()];
    if std::path::Path::new("/etc/postgresql").is_dir() && url.contains("127.0.0.1") {
        args.push("--restart-postgres");
    }
    chaos(&args);
}
