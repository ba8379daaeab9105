//! Retry back-off: exponential, capped, with jitter.
//!
//! The jitter is derived from a seed (the runtime passes the job id) rather than from a
//! random number generator, so the function is pure and testable, and jobs that failed
//! together still spread out over time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a kind of job is retried.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, including the first (at least 1).
    pub max_attempts: u32,
    /// Delay after the first failed attempt.
    pub base: Duration,
    /// Upper bound of any delay.
    pub cap: Duration,
    /// Fraction of the delay that is randomised, in `0.0..=1.0`: 0.25 gives ±25 %.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 5 attempts, 1 s doubling to at most 1 h, ±25 % jitter.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: crate::job::DEFAULT_MAX_ATTEMPTS,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
            jitter: 0.25,
        }
    }
}

impl RetryPolicy {
    /// The delay before the attempt after failed attempt number `attempt` (1-based):
    /// `base * 2^(attempt-1)`, capped, then spread by the jitter (never above the cap).
    pub fn backoff(&self, attempt: u32, seed: u64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(62);
        let raw = self
            .base
            .checked_mul(1u32.checked_shl(exponent.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.cap);
        let capped = raw.min(self.cap);
        let jitter = self.jitter.clamp(0.0, 1.0);
        // A fraction in [-1, 1) from the seed and the attempt, spread by splitmix64.
        let unit = (splitmix64(seed ^ u64::from(attempt).rotate_left(32)) >> 11) as f64
            / (1u64 << 53) as f64;
        let factor = 1.0 + jitter * (unit * 2.0 - 1.0);
        capped.mul_f64(factor).min(self.cap)
    }

    /// Whether a job that just failed attempt `attempt` may run again.
    pub fn should_retry(&self, attempt: u32, max_attempts: u32) -> bool {
        attempt < max_attempts
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn delays_grow_until_the_cap() {
        let policy = RetryPolicy {
            jitter: 0.0,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        let delays: Vec<_> = (1..=6).map(|a| policy.backoff(a, 7)).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(delays[2], Duration::from_millis(400));
        assert_eq!(delays[3], Duration::from_millis(800));
        assert_eq!(delays[4], Duration::from_secs(1));
        assert_eq!(delays[5], Duration::from_secs(1));
    }

    proptest! {
        #[test]
        fn jitter_stays_within_bounds(attempt in 1u32..100, seed: u64, jitter in 0.0f64..=1.0) {
            let policy = RetryPolicy { jitter, base: Duration::from_millis(50), cap: Duration::from_secs(60), ..RetryPolicy::default() };
            let unjittered = RetryPolicy { jitter: 0.0, ..policy }.backoff(attempt, seed);
            let delay = policy.backoff(attempt, seed);
            prop_assert!(delay <= policy.cap);
            prop_assert!(delay >= unjittered.mul_f64(1.0 - jitter) - Duration::from_micros(1));
            prop_assert!(delay <= unjittered.mul_f64(1.0 + jitter) + Duration::from_micros(1));
        }
    }
}
