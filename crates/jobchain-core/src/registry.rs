//! The registry of live workers, and which pending jobs no live worker can run.
//!
//! Each running worker records itself in the store ([`WorkerRegistration`]) when it
//! starts, refreshes the record with its heartbeat and removes it at shutdown; a record
//! that is not refreshed within its time to live (a killed process) no longer counts
//! as live and is deleted by the maintenance pass. From the live records and the
//! pending jobs grouped by queue and kind, [`unhandled`] finds the jobs that would wait
//! for ever: a kind that no live worker has a handler for on that queue (a typo in a
//! string kind, a handler registered on another queue, a service that is not deployed).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a worker records about itself when it starts and at every refresh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRegistration {
    /// The worker's id (also recorded on the jobs it claims).
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Queues it claims from.
    pub queues: Vec<String>,
    /// Kinds it has handlers for.
    pub kinds: Vec<String>,
    /// How long the record counts as live without a refresh.
    pub ttl: Duration,
}

/// A live worker, as the store has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// The worker's id.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Queues it claims from.
    pub queues: Vec<String>,
    /// Kinds it has handlers for.
    pub kinds: Vec<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last refresh.
    pub last_seen: DateTime<Utc>,
    /// When the record stops counting as live unless refreshed.
    pub expires_at: DateTime<Utc>,
}

/// Pending jobs of one kind on one queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingKind {
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// How many are pending.
    pub count: u64,
    /// When the oldest of them was created.
    pub oldest: DateTime<Utc>,
}

/// Pending jobs that no live worker handles: they wait until a worker with a handler for
/// their kind on their queue starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnhandledKind {
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// How many are pending.
    pub count: u64,
    /// How long the oldest has waited.
    pub oldest_age: Duration,
    /// Queues on which a live worker does handle this kind (a job sent to the wrong
    /// queue), empty when none does.
    pub handled_on: Vec<String>,
}

/// The pending groups that no live worker handles, in the order given. A worker handles
/// a group when it has the kind among its kinds and the queue among its queues.
pub fn unhandled(
    pending: &[PendingKind],
    workers: &[WorkerRecord],
    now: DateTime<Utc>,
) -> Vec<UnhandledKind> {
    let mut handled: HashSet<(&str, &str)> = HashSet::new();
    for worker in workers {
        for queue in &worker.queues {
            for kind in &worker.kinds {
                handled.insert((queue, kind));
            }
        }
    }
    pending
        .iter()
        .filter(|p| !handled.contains(&(p.queue.as_str(), p.kind.as_str())))
        .map(|p| {
            let mut handled_on: Vec<String> = handled
                .iter()
                .filter(|(_, kind)| *kind == p.kind)
                .map(|(queue, _)| queue.to_string())
                .collect();
            handled_on.sort();
            UnhandledKind {
                queue: p.queue.clone(),
                kind: p.kind.clone(),
                count: p.count,
                oldest_age: (now - p.oldest).to_std().unwrap_or_default(),
                handled_on,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(queues: &[&str], kinds: &[&str]) -> WorkerRecord {
        let now = Utc::now();
        WorkerRecord {
            id: "w".into(),
            host: "h".into(),
            pid: 1,
            queues: queues.iter().map(|q| q.to_string()).collect(),
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            started_at: now,
            last_seen: now,
            expires_at: now,
        }
    }

    fn pending(queue: &str, kind: &str, count: u64, age_s: i64, now: DateTime<Utc>) -> PendingKind {
        PendingKind {
            queue: queue.into(),
            kind: kind.into(),
            count,
            oldest: now - chrono::Duration::seconds(age_s),
        }
    }

    #[test]
    fn kinds_without_a_live_handler_on_their_queue_are_reported() {
        let now = Utc::now();
        let workers = [
            worker(&["default"], &["process_order"]),
            worker(&["emails"], &["send_confirmation"]),
        ];
        let groups = [
            pending("default", "process_order", 3, 1, now),
            pending("default", "send_confirmaton", 2, 60, now),
            pending("default", "send_confirmation", 4, 5, now),
        ];
        let found = unhandled(&groups, &workers, now);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].kind, "send_confirmaton");
        assert_eq!(found[0].count, 2);
        assert_eq!(found[0].oldest_age, Duration::from_secs(60));
        assert!(found[0].handled_on.is_empty());
        assert_eq!(found[1].kind, "send_confirmation");
        assert_eq!(found[1].handled_on, vec!["emails".to_string()]);
        assert!(unhandled(&groups, &[], now).len() == 3);
    }
}
