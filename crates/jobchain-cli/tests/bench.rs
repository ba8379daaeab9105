//! Every benchmark workload runs once at a tiny size, on SQLite and on PostgreSQL, so
//! none of them rots. They must complete correctly (every job done, every join once);
//! how fast is never asserted here.

use std::process::Command;

use serde_json::Value;

/// Runs `jobchain bench ARGS`, which must succeed; its JSON rows.
fn bench(args: &[&str]) -> Vec<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_jobchain"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run jobchain bench");
    assert!(
        output.status.success(),
        "jobchain bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn run_bench(extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "--workload",
        "LIMIT,W1,W2,W3,W4,W5,W6,W7,W8,W9,W10",
        "--jobs",
        "300",
        "--backlog",
        "1000",
        "--workflows",
        "20",
        "--rate",
        "200",
        "--duration",
        "0.3",
        "--json",
    ];
    args.extend_from_slice(extra);
    bench(&args)
}

fn check(rows: &[Value], store: &str) {
    let mut workloads: Vec<&str> = rows.iter().filter_map(|r| r["workload"].as_str()).collect();
    workloads.dedup();
    assert_eq!(
        workloads,
        ["LIMIT", "W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10", "FLOOR"]
    );
    // The storage limit: one row on SQLite, one per connection count (1, 8) on PostgreSQL.
    let limits: Vec<&Value> = rows.iter().filter(|r| r["workload"] == "LIMIT").collect();
    assert_eq!(limits.len(), if store == "postgres" { 2 } else { 1 });
    for limit in &limits {
        for figure in [
            "single_lifecycle_jobs_per_s",
            "batched_lifecycle_jobs_per_s",
            "batched_drain_jobs_per_s",
            "chain5_batched_steps_per_s",
        ] {
            assert!(limit[figure].as_f64().expect(figure) > 0.0, "{figure}");
        }
    }
    // W8: a row per style, each with the figures the issue names.
    let flows: Vec<&Value> = rows.iter().filter(|r| r["workload"] == "W8").collect();
    let styles: Vec<&Value> = flows.iter().map(|r| &r["settings"]["style"]).collect();
    assert_eq!(styles, ["dynamic", "declared"]);
    for flow in &flows {
        for figure in [
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "flows_per_s",
            "step_to_step_ms",
        ] {
            assert!(flow[figure].as_f64().expect(figure) > 0.0, "{figure}");
        }
    }
    // A floor relative to the limit is checked against this run's limit.
    let floor = rows
        .iter()
        .find(|r| {
            r["workload"] == "FLOOR"
                && r["check"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("W1 drain_jobs_per_s"))
        })
        .expect("the W1 drain floor");
    let limit_drain = limits
        .iter()
        .filter_map(|r| r["batched_drain_jobs_per_s"].as_f64())
        .fold(0.0, f64::max);
    assert_eq!(floor["baseline"].as_f64(), Some(limit_drain.round()));
    assert!(floor["met"].is_boolean());
    for row in rows {
        assert_eq!(row["store"], store);
        if row["workload"] == "FLOOR" {
            continue;
        }
        assert!(row["versions"]["jobchain"].is_string());
    }
    let by = |w: &str| rows.iter().find(|r| r["workload"] == w).expect("row");
    for figure in [
        "enqueue_jobs_per_s",
        "drain_jobs_per_s",
        "end_to_end_jobs_per_s",
    ] {
        assert!(by("W1")[figure].as_f64().expect(figure) > 0.0);
    }
    for figure in ["p50_ms", "p95_ms", "p99_ms"] {
        assert!(by("W2")[figure].as_f64().is_some(), "{figure}");
    }
    assert!(by("W3")["workflows_per_s"].as_f64().expect("W3") > 0.0);
    assert_eq!(by("W4")["joins_exactly_once"], 20);
    assert!(by("W5")["backlog_ratio"].as_f64().expect("ratio") > 0.0);
    assert!(by("W6")["peak_rss_bytes"].as_u64().expect("rss") > 0);
    assert!(by("W7")["enqueue_jobs_per_s"].as_f64().expect("W7") > 0.0);
    for figure in ["keyed_drain_jobs_per_s", "rate_limited_drain_jobs_per_s"] {
        assert!(by("W9")[figure].as_f64().expect("W9") > 0.0, "{figure}");
    }
    assert!(by("W10")["map_jobs_per_s"].as_f64().expect("W10") > 0.0);
    assert!(by("W10")["signal_p99_ms"].as_f64().is_some());
}

#[test]
fn every_workload_completes_on_sqlite() {
    check(&run_bench(&[]), "sqlite");
}

#[test]
fn every_workload_completes_on_postgres() {
    let url = std::env::var("JOBCHAIN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    // host:port of postgres://[user[:password]@]host[:port]/database
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(&url)
        .split('/')
        .next()
        .unwrap_or("")
        .rsplit('@')
        .next()
        .unwrap_or("")
        .to_string();
    let address = if authority.contains(':') {
        authority
    } else {
        format!("{authority}:5432")
    };
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&address)
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).is_ok()
        });
    if !reachable {
        if std::env::var("JOBCHAIN_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
            panic!(
                "PostgreSQL is required (JOBCHAIN_REQUIRE_POSTGRES=1) but {url} does not answer"
            );
        }
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: PostgreSQL does not answer at {url}; set JOBCHAIN_REQUIRE_POSTGRES=1 to make this a failure"
        );
        return;
    }
    check(&run_bench(&["--database", &url]), "postgres");
}

#[test]
fn rounds_report_the_median_and_its_spread() {
    let rows = bench(&[
        "--workload",
        "LIMIT",
        "--jobs",
        "500",
        "--runs",
        "3",
        "--json",
    ]);
    assert_eq!(rows.len(), 1, "three rounds of one workload make one row");
    let row = &rows[0];
    assert_eq!(row["runs"], 3);
    for figure in ["batched_drain_jobs_per_s", "single_lifecycle_jobs_per_s"] {
        let median = row[figure].as_f64().expect(figure);
        let spread = row["spread"][figure].as_array().expect("spread");
        let (min, max) = (spread[0].as_f64().unwrap(), spread[1].as_f64().unwrap());
        assert!(
            min <= median && median <= max,
            "{figure}: {min} ≤ {median} ≤ {max}"
        );
    }
}

#[test]
fn orders_run_in_worker_processes() {
    let rows = bench(&[
        "--workload",
        "W3",
        "--workflows",
        "40",
        "--workers",
        "2",
        "--json",
    ]);
    let row = rows.first().expect("a row");
    // The bench itself fails unless every order completed with its four jobs.
    assert_eq!(row["workload"], "W3");
    assert_eq!(row["settings"]["worker_processes"], 2);
    assert!(row["jobs_per_s"].as_f64().expect("jobs/s") > 0.0);
}
