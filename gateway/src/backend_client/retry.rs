//! Exponential backoff with full jitter ("Exponential Backoff And Jitter",
//! AWS architecture blog): spreading retries uniformly over [0, cap] keeps a
//! crowd of bridges from retrying in lockstep after an outage.

use std::time::Duration;

/// How a call is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts, the first included.
    pub attempts: u32,
    /// Cap of the first delay; doubled per attempt.
    pub base: Duration,
    /// Largest cap.
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (`attempt` counts from 1),
    /// given a uniform random `r` in [0, 1).
    pub fn delay(&self, attempt: u32, r: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let cap = self
            .base
            .saturating_mul(1u32 << exp)
            .min(self.max)
            .as_secs_f64();
        Duration::from_secs_f64(cap * r.clamp(0.0, 1.0))
    }

    /// [`RetryPolicy::delay`] with fresh randomness, at least `floor` (a
    /// `Retry-After` the backend asked for), never beyond `max`.
    pub fn next_delay(&self, attempt: u32, floor: Option<Duration>) -> Duration {
        let d = self.delay(attempt, random_unit());
        match floor {
            Some(f) => d.max(f.min(self.max)),
            None => d,
        }
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

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(p.delay(1, 0.999_999), Duration::from_secs_f64(0.0999999));
        assert_eq!(p.delay(2, 0.5), Duration::from_millis(100));
        assert_eq!(p.delay(3, 0.5), Duration::from_millis(200));
        assert_eq!(p.delay(9, 0.5), Duration::from_millis(500));
        assert_eq!(p.delay(60, 1.0), Duration::from_secs(1));
        assert_eq!(p.delay(3, 0.0), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(1),
            max: Duration::from_secs(5),
        };
        assert!(p.next_delay(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        assert!(p.next_delay(1, Some(Duration::from_secs(60))) <= Duration::from_secs(5));
    }
}
