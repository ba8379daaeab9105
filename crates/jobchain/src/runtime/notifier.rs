//! Wake-ups: idle producers wake the moment a job may be available.
//!
//! In-process, every enqueue, settlement and retry through a [`Client`](crate::Client)
//! bumps a version counter that idle producers watch, so a job enqueued in the same
//! process starts without any polling delay. Delayed jobs and retry back-offs register a
//! timer that the scheduler fires when due. Commits by other processes arrive through
//! the store: pushed (`LISTEN/NOTIFY`) where the store supports it, else by polling the
//! store's cheap change marker (SQLite's `PRAGMA data_version`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use jobchain_core::job::RunAt;
use jobchain_core::Store;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The in-process wake-up hub shared by a client and its workers.
pub(crate) struct Notifier {
    version: watch::Sender<u64>,
    timers: Mutex<BinaryHeap<Reverse<Instant>>>,
    timers_version: watch::Sender<u64>,
}

impl Notifier {
    pub(crate) fn new() -> Self {
        Notifier {
            version: watch::Sender::new(0),
            timers: Mutex::new(BinaryHeap::new()),
            timers_version: watch::Sender::new(0),
        }
    }

    /// Jobs may have become available: wake every idle producer.
    pub(crate) fn notify(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Subscribes to wake-ups.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Subscribes to changes of the timer set.
    pub(crate) fn subscribe_timers(&self) -> watch::Receiver<u64> {
        self.timers_version.subscribe()
    }

    /// Registers a timer for a job that becomes due at `run_at`.
    pub(crate) fn schedule(&self, run_at: RunAt) {
        match run_at {
            RunAt::Now => {}
            RunAt::After(delay) => self.schedule_in(delay),
            RunAt::At(at) => {
                if let Ok(delay) = (at - Utc::now()).to_std() {
                    self.schedule_in(delay);
                }
            }
        }
    }

    /// Registers a timer `delay` from now.
    pub(crate) fn schedule_in(&self, delay: Duration) {
        if delay.is_zero() {
            return;
        }
        if let Ok(mut timers) = self.timers.lock() {
            timers.push(Reverse(Instant::now() + delay));
        }
        self.timers_version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The earliest registered timer.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        self.timers
            .lock()
            .ok()
            .and_then(|t| t.peek().map(|Reverse(at)| *at))
    }

    /// Removes every timer due by `now`; returns whether there was one.
    pub(crate) fn pop_due(&self, now: Instant) -> bool {
        let Ok(mut timers) = self.timers.lock() else {
            return false;
        };
        let mut any = false;
        while timers.peek().is_some_and(|Reverse(at)| *at <= now) {
            timers.pop();
            any = true;
        }
        any
    }
}

/// Turns commits by other processes into wake-ups, until `stop`.
pub(crate) async fn watch_store(
    store: Arc<dyn Store>,
    notifier: Arc<Notifier>,
    interval: Duration,
    stop: CancellationToken,
) {
    if store.capabilities().push_notifications {
        while !stop.is_cancelled() {
            tokio::select! {
                changed = store.wait_for_change(interval.max(Duration::from_secs(1))) => match changed {
                    Ok(true) => notifier.notify(),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "waiting for store notifications failed; retrying");
                        sleep_or_stop(interval, &stop).await;
                    }
                },
                _ = stop.cancelled() => return,
            }
        }
        return;
    }
    let mut last = store.change_marker().await.ok();
    loop {
        if !sleep_or_stop(interval, &stop).await {
            return;
        }
        match store.change_marker().await {
            Ok(marker) => {
                if last != Some(marker) {
                    last = Some(marker);
                    notifier.notify();
                }
            }
            Err(e) => tracing::debug!(error = %e, "change marker unavailable"),
        }
    }
}

/// Sleeps for `duration`; returns false if `stop` fired first.
pub(crate) async fn sleep_or_stop(duration: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => true,
        _ = stop.cancelled() => false,
    }
}
