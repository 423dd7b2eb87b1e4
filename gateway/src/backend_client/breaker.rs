//! A circuit breaker: after `threshold` consecutive failures the backend is
//! left alone for `cooldown`, then one probe decides whether to close again.
//! While it is open, bridges keep their work (spool, mailbox) and retry later
//! instead of hammering a backend that is down.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; everyone else waits for its outcome.
    HalfOpen {
        probe_started: Instant,
    },
}

/// Shared by every call of one [`super::BackendClient`].
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        CircuitBreaker {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state invalid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Ok` if a call may go out now, else how long until the next probe.
    pub fn admit(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now >= until => {
                *state = State::HalfOpen { probe_started: now };
                Ok(())
            }
            State::Open { until } => Err(until - now),
            // A probe that never reported back (its task was dropped) must
            // not keep the breaker shut forever.
            State::HalfOpen { probe_started } if now >= probe_started + self.cooldown => {
                *state = State::HalfOpen { probe_started: now };
                Ok(())
            }
            State::HalfOpen { probe_started } => Err(probe_started + self.cooldown - now),
        }
    }

    /// The backend answered (any status below 500).
    pub fn record_success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    /// The backend failed (transport error, timeout, 5xx).
    pub fn record_failure(&self, now: Instant) {
        let mut state = self.lock();
        let failures = match *state {
            State::Closed { failures } => failures + 1,
            State::HalfOpen { .. } | State::Open { .. } => self.threshold,
        };
        *state = if failures >= self.threshold {
            State::Open {
                until: now + self.cooldown,
            }
        } else {
            State::Closed { failures }
        };
    }

    /// Whether calls are currently refused.
    pub fn is_open(&self, now: Instant) -> bool {
        match *self.lock() {
            State::Closed { .. } => false,
            State::Open { until } => now < until,
            State::HalfOpen { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_cooldown() {
        let b = CircuitBreaker::new(3, Duration::from_secs(5));
        let t0 = Instant::now();
        for _ in 0..2 {
            b.record_failure(t0);
            assert!(b.admit(t0).is_ok());
        }
        b.record_failure(t0);
        let wait = b.admit(t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(5));
        // After the cooldown exactly one probe goes through.
        let t1 = t0 + Duration::from_secs(5);
        assert!(b.admit(t1).is_ok());
        assert!(b.admit(t1).is_err());
        // The probe fails: open again for a full cooldown.
        b.record_failure(t1);
        assert!(b.admit(t1 + Duration::from_secs(4)).is_err());
        // Next probe succeeds: closed.
        let t2 = t1 + Duration::from_secs(5);
        assert!(b.admit(t2).is_ok());
        b.record_success();
        assert!(b.admit(t2).is_ok());
        assert!(b.admit(t2).is_ok());
        assert!(!b.is_open(t2));
    }

    #[test]
    fn success_resets_the_count() {
        let b = CircuitBreaker::new(2, Duration::from_secs(1));
        let t = Instant::now();
        b.record_failure(t);
        b.record_success();
        b.record_failure(t);
        assert!(b.admit(t).is_ok());
    }

    #[test]
    fn a_lost_probe_does_not_block_forever() {
        let b = CircuitBreaker::new(1, Duration::from_secs(2));
        let t = Instant::now();
        b.record_failure(t);
        let t1 = t + Duration::from_secs(2);
        assert!(b.admit(t1).is_ok());
        assert!(b.admit(t1 + Duration::from_secs(1)).is_err());
        assert!(b.admit(t1 + Duration::from_secs(2)).is_ok());
    }
}
