//! The periodic service: at each tick of each periodic job, takes the tick in the store
//! (one job per tick across every worker), and catches up on missed ticks as the job says.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::periodic::Periodic;
use crate::runtime::notifier::sleep_or_stop;

/// How late a tick may still run under `CatchUp::None`.
const GRACE: Duration = Duration::from_secs(30);

/// Until `finished`: wakes at the next tick of any of `periodics` (at the latest after
/// `poll`, to notice ticks taken elsewhere and the clock), and takes what is due.
pub(crate) async fn run(
    client: Client,
    periodics: Vec<Periodic>,
    poll: Duration,
    finished: CancellationToken,
) {
    loop {
        let now = Utc::now();
        let mut wake = poll;
        for p in &periodics {
            if let Err(e) = take_due(&client, p).await {
                tracing::warn!(periodic = %p.name, error = %e, "enqueueing a periodic job failed; trying again at the next pass");
                continue;
            }
            if let Some(next) = p.schedule.next_after(Utc::now()) {
                let until = (next - now).to_std().unwrap_or_default();
                wake = wake.min(until);
            }
        }
        // A few milliseconds past the tick, so the clock has surely reached it.
        if !sleep_or_stop(wake + Duration::from_millis(5), &finished).await {
            return;
        }
    }
}

async fn take_due(client: &Client, p: &Periodic) -> crate::Result<()> {
    let store = client.store();
    let last = store.periodic_last(&p.name).await?;
    let (ticks, skip) = p.due(last, Utc::now(), GRACE);
    if let Some(skipped) = skip {
        store.take_tick(&p.name, skipped, None).await?;
    }
    for tick in ticks {
        let mut job = client.resolve_job(p.job.clone())?;
        job.unique_key = Some(format!(
            "periodic:{}:{}",
            p.name,
            tick.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ));
        if let Some(enqueued) = store.take_tick(&p.name, tick, Some(job)).await? {
            tracing::debug!(periodic = %p.name, %tick, job.id = %enqueued.id, "periodic job enqueued");
            client.notifier().notify();
        }
    }
    Ok(())
}
