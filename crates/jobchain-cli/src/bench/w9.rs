//! W9, flow control's price: W1's drain with every job carrying one of 1,000 concurrency
//! keys under `max_running_per_key = 1` (a), and with a rate limit on the kind set above
//! the drain rate (b), each beside plain W1 in the same run, three rounds interleaved,
//! medians and their ratios to plain.

use jobchain::{EnqueueOptions, JobSpec, KindOptions, RateLimit};
use serde_json::json;

use super::w1::{check_all_completed, drain_here_with, enqueue_backlog_of};
use super::{figures, rate, BenchResult, Target};
use crate::CliError;

const KEYS: u64 = 1000;
const ROUNDS: usize = 3;

#[derive(Clone, Copy)]
enum Variant {
    Plain,
    Keyed,
    Rated(u32),
}

async fn measure(database: Option<&str>, jobs: u64, variant: Variant) -> Result<f64, CliError> {
    let target = Target::create(database, "w9").await?;
    let measured = async {
        let client = target.client().await?;
        let job = |i: u64| {
            let spec = JobSpec::new("noop", json!({ "i": i }));
            match variant {
                Variant::Keyed => spec.options(
                    EnqueueOptions::new().concurrency_key(format!("customer-{}", i % KEYS)),
                ),
                _ => spec,
            }
        };
        enqueue_backlog_of(&client, jobs, job).await?;
        let options = match variant {
            Variant::Plain => KindOptions::new(),
            Variant::Keyed => KindOptions::new().max_running_per_key(1),
            Variant::Rated(per_second) => KindOptions::new().rate_limit(RateLimit {
                count: per_second,
                period: std::time::Duration::from_secs(1),
            }),
        };
        let seconds = drain_here_with(&client, jobs, options).await?;
        check_all_completed(&client, jobs, "W9").await?;
        client.close().await;
        Ok::<_, CliError>(rate(jobs, seconds))
    }
    .await;
    target.destroy().await;
    measured
}

/// W9 on a fresh store per measurement.
pub(crate) async fn run(database: Option<&str>, jobs: u64) -> Result<BenchResult, CliError> {
    let (mut plain, mut keyed, mut rated) = (Vec::new(), Vec::new(), Vec::new());
    let mut limit = 0u32;
    for _ in 0..ROUNDS {
        let p = measure(database, jobs, Variant::Plain).await?;
        plain.push(p);
        // Above the drain rate: twice the plain rate just measured.
        limit = limit.max((p * 2.0) as u32).max(1000);
        keyed.push(measure(database, jobs, Variant::Keyed).await?);
        rated.push(measure(database, jobs, Variant::Rated(limit)).await?);
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        super::median(&values)
    };
    let (p, k, r) = (median(plain), median(keyed), median(rated));
    let ratio = |x: f64| (x / p * 1000.0).round() / 1000.0;
    Ok(BenchResult {
        workload: "W9",
        settings: json!({
            "jobs": jobs,
            "rounds": ROUNDS,
            "keys": KEYS,
            "max_running_per_key": 1,
        }),
        figures: figures(&[
            ("plain_drain_jobs_per_s", p.into()),
            ("keyed_drain_jobs_per_s", k.into()),
            ("rate_limited_drain_jobs_per_s", r.into()),
            ("keyed_ratio", ratio(k).into()),
            ("rate_limited_ratio", ratio(r).into()),
            // Set from this run's plain rate, so a figure, not a setting: rounds of
            // `--runs` group by their settings.
            ("rate_limit_per_s", limit.into()),
        ]),
    })
}
