//! Periodic jobs: a cron schedule in a time zone, declared on the worker.
//!
//! Every worker that declares a periodic job watches its schedule; at each tick they race
//! to take it in the store ([`Store::take_tick`](jobchain_core::Store::take_tick)), which
//! records the tick and writes the job in one transaction, so each tick has exactly one
//! job however many workers run. Ticks missed while no worker ran follow [`CatchUp`].
//!
//! ```
//! use jobchain::periodic::{CatchUp, Periodic, Schedule};
//! use jobchain::JobSpec;
//!
//! let nightly = Periodic::new(
//!     "nightly-report",
//!     Schedule::new("0 30 2 * * *", "Europe/Berlin")?,      // 02:30:00 Berlin time
//!     JobSpec::new("build_report", serde_json::json!({"scope": "all"})),
//! )
//! .catch_up(CatchUp::Latest);
//! # Ok::<(), jobchain::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::args::JobSpec;
use crate::error::{Error, Result};

/// At most this many missed ticks are enqueued by [`CatchUp::All`] (the newest ones).
pub const MAX_CATCH_UP: usize = 1000;

/// What to do with ticks that passed while no worker ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Skip them: only a tick that is due now (within a short grace) runs.
    #[default]
    None,
    /// Run the most recent missed tick once.
    Latest,
    /// Run every missed tick (at most [`MAX_CATCH_UP`], the newest), oldest first.
    All,
}

impl FromStr for CatchUp {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(CatchUp::None),
            "latest" => Ok(CatchUp::Latest),
            "all" => Ok(CatchUp::All),
            other => Err(format!(
                "catch_up `{other}` is not one of none, latest, all"
            )),
        }
    }
}

/// A cron schedule (5 fields, or 6 with seconds first) in a time zone.
#[derive(Clone)]
pub struct Schedule {
    cron: Cron,
    zone: chrono_tz::Tz,
    text: String,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?} in {})", self.text, self.zone)
    }
}

impl Schedule {
    /// Parses `expression` (`"*/5 * * * *"`, `"0 */5 * * * *"` with seconds, `@hourly`)
    /// in the IANA time zone `zone` (`"UTC"`, `"Europe/Berlin"`).
    pub fn new(expression: &str, zone: &str) -> Result<Self> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|e| {
                Error::Config(format!(
                    "schedule `{expression}` is not a cron expression ({e}): write 5 fields (minute hour day month weekday) or 6 with seconds first, e.g. \"0 */5 * * * *\""
                ))
            })?;
        let zone: chrono_tz::Tz = zone.parse().map_err(|_| {
            Error::Config(format!(
                "time zone `{zone}` is unknown: give an IANA name such as UTC or Europe/Berlin"
            ))
        })?;
        Ok(Schedule {
            cron,
            zone,
            text: expression.to_string(),
        })
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.text
    }

    /// The time zone's name.
    pub fn zone(&self) -> &str {
        self.zone.name()
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.zone), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last tick at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.zone), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// Ticks in `(after, until]`, oldest first, at most `max` of them (the newest).
    pub fn ticks_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        max: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut ticks = Vec::new();
        let mut at = until;
        while ticks.len() < max {
            match self
                .cron
                .find_previous_occurrence(&at.with_timezone(&self.zone), ticks.is_empty())
            {
                Ok(t) if t.with_timezone(&Utc) > after => {
                    at = t.with_timezone(&Utc);
                    ticks.push(at);
                }
                _ => break,
            }
        }
        ticks.reverse();
        ticks
    }
}

/// A job enqueued at every tick of a schedule.
#[derive(Clone, Debug)]
pub struct Periodic {
    pub(crate) name: String,
    pub(crate) schedule: Schedule,
    pub(crate) job: JobSpec,
    pub(crate) catch_up: CatchUp,
}

impl Periodic {
    /// `job` at every tick of `schedule`; `name` identifies it in the store (keep it
    /// stable: a new name starts a new history).
    pub fn new(name: impl Into<String>, schedule: Schedule, job: JobSpec) -> Self {
        Periodic {
            name: name.into(),
            schedule,
            job,
            catch_up: CatchUp::None,
        }
    }

    /// Sets what happens to missed ticks.
    pub fn catch_up(mut self, catch_up: CatchUp) -> Self {
        self.catch_up = catch_up;
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Which ticks to take now, given the last one taken (by any worker), and the tick to
    /// record without a job (skipped ones) when there is one.
    pub(crate) fn due(
        &self,
        last: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        grace: Duration,
    ) -> (Vec<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let grace = chrono::Duration::from_std(grace).unwrap_or_default();
        let Some(last) = last else {
            // Never ran: a tick due just now runs; otherwise the latest past tick is
            // recorded as where the history starts.
            return match self.schedule.last_at_or_before(now) {
                Some(t) if now - t <= grace => (vec![t], None),
                Some(t) => (Vec::new(), Some(t)),
                None => (Vec::new(), None),
            };
        };
        let ticks = self.schedule.ticks_between(last, now, MAX_CATCH_UP);
        let Some(&newest) = ticks.last() else {
            return (Vec::new(), None);
        };
        match self.catch_up {
            CatchUp::All => (ticks, None),
            CatchUp::Latest => (vec![newest], None),
            CatchUp::None if now - newest <= grace => (vec![newest], None),
            CatchUp::None => (Vec::new(), Some(newest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn schedules_parse_with_or_without_seconds_in_a_zone() {
        let s = Schedule::new("0 */5 * * * *", "UTC").unwrap();
        assert_eq!(
            s.next_after(at("2026-11-27T10:02:00Z")),
            Some(at("2026-11-27T10:05:00Z"))
        );
        let berlin = Schedule::new("30 2 * * *", "Europe/Berlin").unwrap();
        // 02:30 in Berlin is 01:30 UTC in winter.
        assert_eq!(
            berlin.next_after(at("2026-11-27T00:00:00Z")),
            Some(at("2026-11-27T01:30:00Z"))
        );
        let err = Schedule::new("every day", "UTC").unwrap_err().to_string();
        assert!(err.contains("not a cron expression"), "{err}");
        let err = Schedule::new("* * * * *", "Mars/Olympus")
            .unwrap_err()
            .to_string();
        assert!(err.contains("time zone"), "{err}");
    }

    #[test]
    fn missed_ticks_follow_catch_up() {
        let every_minute = Schedule::new("* * * * *", "UTC").unwrap();
        let job = JobSpec::new("k", serde_json::json!({}));
        let p = |c| Periodic::new("p", every_minute.clone(), job.clone()).catch_up(c);
        let last = Some(at("2026-11-27T10:00:00Z"));
        let now = at("2026-11-27T10:05:20Z");
        let grace = Duration::from_secs(30);
        let (all, _) = p(CatchUp::All).due(last, now, grace);
        assert_eq!(all.len(), 5);
        assert_eq!(all[0], at("2026-11-27T10:01:00Z"));
        let (latest, _) = p(CatchUp::Latest).due(last, now, grace);
        assert_eq!(latest, vec![at("2026-11-27T10:05:00Z")]);
        let (none, _) = p(CatchUp::None).due(last, now, grace);
        assert_eq!(
            none,
            vec![at("2026-11-27T10:05:00Z")],
            "due within the grace"
        );
        let late = at("2026-11-27T10:05:50Z");
        let (none, skip) = p(CatchUp::None).due(last, late, grace);
        assert!(none.is_empty());
        assert_eq!(skip, Some(at("2026-11-27T10:05:00Z")));
        let (nothing, _) = p(CatchUp::All).due(Some(at("2026-11-27T10:05:00Z")), now, grace);
        assert!(nothing.is_empty(), "the last tick is not taken twice");
        let (first, _) = p(CatchUp::All).due(None, at("2026-11-27T10:05:01Z"), grace);
        assert_eq!(first, vec![at("2026-11-27T10:05:00Z")]);
        let bounded = p(CatchUp::All)
            .due(Some(at("2020-01-01T00:00:00Z")), now, grace)
            .0;
        assert_eq!(bounded.len(), MAX_CATCH_UP);
        assert_eq!(*bounded.last().unwrap(), at("2026-11-27T10:05:00Z"));
        assert!("sometimes".parse::<CatchUp>().is_err());
    }
}
