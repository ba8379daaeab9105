//! The producer of one queue: claims as many jobs as the queue has free slots, in one
//! store call, and hands each to an executor.
//!
//! When a claim returns fewer jobs than asked for, the queue is drained: the producer
//! waits for a wake-up from the notifier (a job was enqueued or released in-process, a
//! timer fired, another process committed) or, at the latest, the poll interval.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobchain_core::store::{is_builtin_kind, ClaimRequest, LimitScope, ScopeLimit};
use jobchain_core::StoreError;
use tokio::sync::OwnedSemaphorePermit;

use super::executor;
use super::notifier::sleep_or_stop;
use super::shared::Shared;

/// The claims one round of a producer makes: the kinds without limits together, jobchain's
/// own kinds together (the stores find those through an index of their own, without
/// stepping over the queue's backlog), and each kind with limits on its own (the store
/// enforces those per claim); the queue's own limits go with every one of them.
fn plans(shared: &Shared, queue: &str) -> Vec<ClaimRequest> {
    let config = &shared.config;
    let queue_limit = config.queue_limits.get(queue).map(|l| ScopeLimit {
        scope: LimitScope::Queue(queue.to_string()),
        max_running: l.max_running,
        rate: l.rate_limit,
    });
    let request = |kinds: Vec<String>| {
        let mut r = ClaimRequest::new(queue, kinds, 0, &config.id, config.lease);
        r.limits.extend(queue_limit.clone());
        r
    };
    let (limited, free): (Vec<&String>, Vec<&String>) = shared
        .kinds
        .iter()
        .partition(|k| shared.handlers[*k].options.is_limited());
    let (builtin, free): (Vec<String>, Vec<String>) =
        free.into_iter().cloned().partition(|k| is_builtin_kind(k));
    let mut plans = Vec::new();
    for kinds in [free, builtin] {
        if !kinds.is_empty() {
            plans.push(request(kinds));
        }
    }
    for kind in limited {
        let options = &shared.handlers[kind].options;
        let mut r = request(vec![kind.clone()]);
        if options.rate_limit.is_some() || options.max_running.is_some() {
            r.limits.push(ScopeLimit {
                scope: LimitScope::Kind(kind.clone()),
                max_running: options.max_running,
                rate: options.rate_limit,
            });
        }
        r.per_key = options.max_running_per_key;
        plans.push(r);
    }
    plans
}

/// How long a plan that came back short is left out of a round's first pass.
const DRY_PAUSE: Duration = Duration::from_millis(50);

/// One claim plan and whether it came back short recently.
struct Plan {
    request: ClaimRequest,
    /// Until then the plan is tried only when the others leave slots free: a claim that
    /// finds no job of its kinds may step over every waiting job of the queue's other
    /// kinds (the claim index is by queue), so it is not repeated while those keep the
    /// slots busy.
    dry_until: Option<Instant>,
    /// When its claim last took a job.
    found_at: Option<Instant>,
}

/// Claims up to one job per permit through the plans, starting at `first` (rotated each
/// round so that no plan always comes last): a first pass over the plans that found jobs
/// lately, then, if slots are still free, a pass over the rest, the plan that took a job
/// most recently first (an idle worker woken for new jobs finds them on its first claim,
/// not after an empty claim of other kinds). Each job starts (taking
/// one of `permits`) as soon as its plan's claim returns, not after the round's other
/// claims. Returns how many jobs were claimed.
async fn claim(
    shared: &Arc<Shared>,
    plans: &mut [Plan],
    first: usize,
    permits: &mut Vec<OwnedSemaphorePermit>,
) -> Result<usize, StoreError> {
    let mut got = 0;
    let n = plans.len();
    let now = Instant::now();
    let mut order: Vec<usize> = (0..n).map(|i| (first + i) % n).collect();
    for dry_pass in [false, true] {
        if dry_pass {
            order.sort_by_key(|&i| std::cmp::Reverse(plans[i].found_at));
        }
        for &i in &order {
            let left = permits.len();
            if left == 0 {
                return Ok(got);
            }
            let plan = &mut plans[i];
            let dry = plan.dry_until.is_some_and(|until| until > now);
            if dry != dry_pass {
                continue;
            }
            plan.request.limit = left;
            let claimed = shared.client.store().claim(plan.request.clone()).await?;
            plan.dry_until = (claimed.len() < left).then(|| Instant::now() + DRY_PAUSE);
            if !claimed.is_empty() {
                plan.found_at = Some(Instant::now());
            }
            got += claimed.len();
            for job in claimed {
                let Some(permit) = permits.pop() else {
                    break;
                };
                shared
                    .executors
                    .spawn(executor::run(shared.clone(), job, permit));
            }
        }
    }
    Ok(got)
}

pub(crate) async fn run(shared: Arc<Shared>, queue: String, slots: usize) {
    let mut plans: Vec<Plan> = plans(&shared, &queue)
        .into_iter()
        .map(|request| Plan {
            request,
            dry_until: None,
            found_at: None,
        })
        .collect();
    let mut round = 0usize;
    let Some(own) = shared.queues.get(&queue) else {
        return;
    };
    let semaphore = own.slots.clone();
    let mut wakeups = shared.client.notifier().subscribe();
    let stop = shared.stop_claiming.clone();
    let mut backoff = Duration::from_millis(50);
    loop {
        let first = tokio::select! {
            permit = semaphore.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.cancelled() => return,
        };
        let mut permits = vec![first];
        // Slots free one by one as executors hand their outcomes over: let the ones that
        // are about to free do so, so that one claim takes them all.
        loop {
            while let Ok(p) = semaphore.clone().try_acquire_owned() {
                permits.push(p);
            }
            if permits.len() >= slots {
                break;
            }
            tokio::task::yield_now().await;
            if semaphore.available_permits() == 0 {
                break;
            }
        }
        // Mark wake-ups seen before claiming, so one that arrives during the claim is
        // not lost.
        wakeups.borrow_and_update();
        let requested = permits.len();
        round = round.wrapping_add(1);
        let first = round % plans.len().max(1);
        let got = match claim(&shared, &mut plans, first, &mut permits).await {
            Ok(got) => {
                backoff = Duration::from_millis(50);
                got
            }
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, retry_in = ?backoff, "claiming jobs failed");
                drop(permits);
                if !sleep_or_stop(backoff, &stop).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        own.caught_up.store(got < requested, Ordering::Relaxed);
        if got < requested {
            drop(permits);
            tokio::select! {
                _ = wakeups.changed() => {}
                _ = tokio::time::sleep(shared.config.poll_interval) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
