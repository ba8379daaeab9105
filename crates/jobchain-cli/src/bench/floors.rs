//! The floors of docs/benchmarks.md, checked against the figures of one run: a ratio to
//! the storage limit (LIMIT) measured in the same run on the same store, or an absolute
//! bound (latencies, memory, ratios a workload measures itself).

use serde_json::{json, Value};

/// How a figure is judged.
enum Bound {
    /// `figure / (limit figure / divisor) ≥ floor`.
    OfLimit { figure: &'static str, divisor: f64 },
    /// `figure ≥ floor`.
    AtLeast,
    /// `figure ≤ floor`.
    AtMost,
}

struct Floor {
    workload: &'static str,
    figure: &'static str,
    bound: Bound,
    sqlite: f64,
    postgres: f64,
}

const fn of_limit(figure: &'static str) -> Bound {
    Bound::OfLimit {
        figure,
        divisor: 1.0,
    }
}

const MIB_64: f64 = 64.0 * 1024.0 * 1024.0;

const FLOORS: &[Floor] = &[
    Floor {
        workload: "W1",
        figure: "drain_jobs_per_s",
        bound: of_limit("batched_drain_jobs_per_s"),
        sqlite: 0.9,
        postgres: 0.8,
    },
    Floor {
        workload: "W1",
        figure: "end_to_end_jobs_per_s",
        bound: of_limit("batched_lifecycle_jobs_per_s"),
        sqlite: 0.8,
        postgres: 0.7,
    },
    Floor {
        workload: "W2",
        figure: "p50_ms",
        bound: Bound::AtMost,
        sqlite: 1.0,
        postgres: 3.0,
    },
    Floor {
        workload: "W2",
        figure: "p99_ms",
        bound: Bound::AtMost,
        sqlite: 5.0,
        postgres: 8.0,
    },
    Floor {
        workload: "W3",
        figure: "jobs_per_s",
        bound: of_limit("chain5_batched_steps_per_s"),
        sqlite: 0.6,
        postgres: 0.5,
    },
    Floor {
        workload: "W4",
        figure: "jobs_per_s",
        bound: of_limit("batched_lifecycle_jobs_per_s"),
        sqlite: 0.5,
        postgres: 0.4,
    },
    Floor {
        workload: "W5",
        figure: "backlog_ratio",
        bound: Bound::AtLeast,
        sqlite: 0.9,
        postgres: 0.8,
    },
    Floor {
        workload: "W6",
        figure: "peak_rss_bytes",
        bound: Bound::AtMost,
        sqlite: MIB_64,
        postgres: MIB_64,
    },
    Floor {
        workload: "W7",
        figure: "enqueue_jobs_per_s",
        bound: of_limit("single_lifecycle_jobs_per_s"),
        sqlite: 3.0,
        postgres: 3.0,
    },
    Floor {
        workload: "W8",
        figure: "p50_ms",
        bound: Bound::AtMost,
        sqlite: 1.0,
        postgres: 2.5,
    },
    Floor {
        workload: "W8",
        figure: "p95_ms",
        bound: Bound::AtMost,
        sqlite: 2.0,
        postgres: 4.0,
    },
    Floor {
        workload: "W8",
        figure: "flows_per_s",
        bound: Bound::OfLimit {
            figure: "chain5_batched_steps_per_s",
            divisor: 3.0,
        },
        sqlite: 0.5,
        postgres: 0.5,
    },
    Floor {
        workload: "W9",
        figure: "keyed_ratio",
        bound: Bound::AtLeast,
        sqlite: 0.8,
        postgres: 0.8,
    },
    Floor {
        workload: "W9",
        figure: "rate_limited_ratio",
        bound: Bound::AtLeast,
        sqlite: 0.8,
        postgres: 0.8,
    },
    Floor {
        workload: "W10",
        figure: "map_jobs_per_s",
        bound: of_limit("batched_lifecycle_jobs_per_s"),
        sqlite: 0.4,
        postgres: 0.4,
    },
];

/// The best figure of the LIMIT rows of `store` (on PostgreSQL: of 1 and 8 connections).
fn limit(rows: &[Value], store: &str, figure: &str) -> Option<f64> {
    rows.iter()
        .filter(|r| r["workload"] == "LIMIT" && r["store"] == store)
        .filter_map(|r| r[figure].as_f64())
        .reduce(f64::max)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One row per floor that the run measured: `{"workload": "FLOOR", "check": ..., "value",
/// "ratio" (for floors relative to the limit), "floor", "met"}`.
pub(crate) fn check(rows: &[Value]) -> Vec<Value> {
    let mut checks = Vec::new();
    for row in rows {
        let (Some(store), Some(workload)) = (row["store"].as_str(), row["workload"].as_str())
        else {
            continue;
        };
        let variant = row["settings"]["style"]
            .as_str()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        for floor in FLOORS.iter().filter(|f| f.workload == workload) {
            let Some(value) = row[floor.figure].as_f64() else {
                continue;
            };
            let bound = if store == "postgres" {
                floor.postgres
            } else {
                floor.sqlite
            };
            let what = format!("{workload}{variant} {}", floor.figure);
            let check = match floor.bound {
                Bound::OfLimit { figure, divisor } => {
                    let Some(baseline) = limit(rows, store, figure) else {
                        continue;
                    };
                    let baseline = baseline / divisor;
                    let ratio = round3(value / baseline);
                    let of = if divisor == 1.0 {
                        format!("LIMIT {figure}")
                    } else {
                        format!("LIMIT {figure} / {divisor}")
                    };
                    json!({
                        "check": format!("{what} ≥ {bound} × {of}"),
                        "value": value, "baseline": baseline.round(), "ratio": ratio,
                        "floor": bound, "met": ratio >= bound,
                    })
                }
                Bound::AtLeast => json!({
                    "check": format!("{what} ≥ {bound}"),
                    "value": value, "floor": bound, "met": value >= bound,
                }),
                Bound::AtMost => json!({
                    "check": format!("{what} ≤ {bound}"),
                    "value": value, "floor": bound, "met": value <= bound,
                }),
            };
            let mut check = check;
            check["workload"] = "FLOOR".into();
            check["store"] = store.into();
            checks.push(check);
        }
    }
    checks
}

/// The checks as a table on standard output.
pub(crate) fn print(checks: &[Value]) {
    if checks.is_empty() {
        return;
    }
    crate::common::out(format!(
        "\n{:<9} {:<6} {:<10} check",
        "store", "met", "ratio"
    ));
    for check in checks {
        let shown = check
            .get("ratio")
            .or_else(|| check.get("value"))
            .map(Value::to_string)
            .unwrap_or_default();
        crate::common::out(format!(
            "{:<9} {:<6} {:<10} {}",
            check["store"].as_str().unwrap_or(""),
            if check["met"] == true { "yes" } else { "NO" },
            shown,
            check["check"].as_str().unwrap_or(""),
        ));
    }
}
