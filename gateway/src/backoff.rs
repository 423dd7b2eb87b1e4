//! The one retry/backoff policy of the gateway, for every loop that tries
//! again after a failure: backend calls, relays, receipts, webhooks,
//! transports, the SMTP spool workers, the mailbox pollers, the DMZ
//! connector's reconnects and ACME orders.
//!
//! **Policy: exponential backoff with full jitter, floored.** The n-th
//! delay (n counts failures from 1) is drawn uniformly from
//! `[0, cap(n)]` with `cap(n) = min(base · 2^(n-1), max)` ("Exponential
//! Backoff And Jitter", AWS architecture blog: spreading retries over the
//! whole window keeps a crowd of gateways from retrying in lockstep after an
//! outage), then raised to a floor and never beyond `max`. The floor is
//! what the caller must wait at least: a `Retry-After` the backend asked
//! for, or a minimum that keeps a failing loop from spinning on near-zero
//! delays.

use std::time::Duration;

/// How a call or a loop is retried; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts, the first included (`u32::MAX`: as long as it takes).
    pub attempts: u32,
    /// Cap of the first delay; doubled per attempt.
    pub base: Duration,
    /// Largest cap.
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (`attempt` counts from 1),
    /// given a uniform random `r` in [0, 1): `r · cap(attempt)`.
    pub fn delay(&self, attempt: u32, r: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let cap = self
            .base
            .saturating_mul(1u32 << exp)
            .min(self.max)
            .as_secs_f64();
        Duration::from_secs_f64(cap * r.clamp(0.0, 1.0))
    }

    /// [`RetryPolicy::delay`] with fresh randomness, at least `floor`, never
    /// beyond `max`.
    pub fn next_delay(&self, attempt: u32, floor: Option<Duration>) -> Duration {
        self.floored(self.delay(attempt, random_unit()), floor)
    }

    fn floored(&self, d: Duration, floor: Option<Duration>) -> Duration {
        match floor {
            Some(f) => d.max(f.min(self.max)),
            None => d,
        }
    }
}

/// The policy as the state of one retry loop: counts failures, and starts
/// over after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    floor: Duration,
    failures: u32,
}

impl Backoff {
    /// Delays from `base` doubling to `max`, never under `floor`.
    pub fn new(base: Duration, max: Duration, floor: Duration) -> Backoff {
        Backoff {
            policy: RetryPolicy {
                attempts: u32::MAX,
                base,
                max,
            },
            floor,
            failures: 0,
        }
    }

    /// The delay to wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.next_delay(self.failures, Some(self.floor))
    }

    /// Back to the first delay (the loop got through).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A uniform random number in [0, 1); 0.5 if the system source fails
/// (a fixed delay is still a delay).
fn random_unit() -> f64 {
    match getrandom::u64() {
        Ok(n) => (n >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_cap_doubles_up_to_max() {
        let p = policy();
        assert_eq!(p.delay(1, 0.999_999), Duration::from_secs_f64(0.0999999));
        assert_eq!(p.delay(2, 0.5), Duration::from_millis(100));
        assert_eq!(p.delay(3, 0.5), Duration::from_millis(200));
        assert_eq!(p.delay(9, 0.5), Duration::from_millis(500));
        assert_eq!(p.delay(60, 1.0), Duration::from_secs(1));
        assert_eq!(p.delay(u32::MAX, 1.0), Duration::from_secs(1));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_cap() {
        let p = policy();
        assert_eq!(p.delay(3, 0.0), Duration::ZERO);
        assert_eq!(p.delay(3, 1.0), Duration::from_millis(400));
        // Out-of-range randomness is clamped into the window.
        assert_eq!(p.delay(3, -1.0), Duration::ZERO);
        assert_eq!(p.delay(3, 7.0), Duration::from_millis(400));
    }

    #[test]
    fn the_floor_raises_but_never_beyond_max() {
        let p = RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(1),
            max: Duration::from_secs(5),
        };
        assert_eq!(
            p.floored(Duration::ZERO, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.floored(Duration::ZERO, Some(Duration::from_secs(60))),
            Duration::from_secs(5)
        );
        assert_eq!(
            p.floored(Duration::from_secs(3), Some(Duration::from_secs(2))),
            Duration::from_secs(3)
        );
        for attempt in 1..40 {
            let d = p.next_delay(attempt, Some(Duration::from_secs(2)));
            assert!(
                d >= Duration::from_secs(2) && d <= Duration::from_secs(5),
                "{d:?}"
            );
        }
    }

    #[test]
    fn a_loop_stays_within_its_bounds_and_starts_over() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        let floor = Duration::from_millis(10);
        let mut b = Backoff::new(base, max, floor);
        let first = b.next_delay();
        assert!(first >= floor && first <= base, "{first:?}");
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(d >= floor && d <= max, "{d:?}");
        }
        assert_eq!(b.failures, 101);
        b.reset();
        let again = b.next_delay();
        assert!(again >= floor && again <= base, "{again:?}");
    }
}
