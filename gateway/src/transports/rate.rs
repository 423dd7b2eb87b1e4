//! A provider's `rate`: at most so many messages per second, minute or
//! hour (`"2/s"`, `"30/m"`, `"500/h"`, optionally `burst N`), for a server
//! or an account that refuses more. The queue honours it by sending a
//! message only when the provider's GCRA bucket has room; a message that
//! must wait is put back with its time of the next attempt moved, never
//! counted as an attempt, never dropped. The bucket lives in each gateway
//! process (several gateways on one store each keep the rate).

use super::TransportError;
use crate::ratelimit::parse_limit;
use governor::clock::DefaultClock;
use mft_filters::ratelimit::{KeyLimiter, Verdict};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Checks a `rate` setting.
pub fn check(rate: Option<&str>) -> Result<(), TransportError> {
    match rate {
        None => Ok(()),
        Some(text) => parse_limit(text)
            .map(drop)
            .map_err(|e| TransportError::Invalid(format!("rate: {e}"))),
    }
}

/// The `rate` setting of stored settings, if any.
pub fn of(settings: &serde_json::Value) -> Option<&str> {
    settings.get("rate").and_then(|r| r.as_str())
}

/// A provider's bucket with the rate text it was made for: a provider
/// removed and added again with another rate gets a new bucket.
type Bucket = (String, Arc<KeyLimiter<DefaultClock>>);

/// The buckets of every provider with a rate, by provider name.
#[derive(Default)]
pub struct Rates {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Rates {
    /// Takes one message from provider `name`'s bucket: `None` when it may
    /// be sent now, else how long until it may. No rate, or one that no
    /// longer parses (the provider is then not ready anyway): `None`.
    pub fn wait(&self, name: &str, rate: Option<&str>) -> Option<Duration> {
        let text = rate?;
        let limiter = {
            let Ok(mut buckets) = self.buckets.lock() else {
                return None;
            };
            match buckets.get(name) {
                Some((t, l)) if t == text => l.clone(),
                _ => {
                    let limit = parse_limit(text).ok()?;
                    let l = Arc::new(KeyLimiter::new(limit, DefaultClock::default()));
                    buckets.insert(name.to_string(), (text.to_string(), l.clone()));
                    l
                }
            }
        };
        match limiter.check() {
            Verdict::Allowed(_) => None,
            Verdict::Limited(d) => Some(d.retry_after),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_checked() {
        for ok in [None, Some("2/s"), Some("30/m"), Some("500/h burst 10")] {
            assert!(check(ok).is_ok(), "{ok:?}");
        }
        for bad in ["fast", "2/d", "0/s", "2/s burst"] {
            let e = check(Some(bad)).expect_err(bad).to_string();
            assert!(e.starts_with("rate: "), "{e}");
        }
    }

    #[test]
    fn a_bucket_lets_its_burst_through_then_names_the_wait() {
        let rates = Rates::default();
        assert_eq!(rates.wait("mail", None), None, "no rate: never waits");
        assert_eq!(rates.wait("mail", Some("1/h burst 2")), None);
        assert_eq!(rates.wait("mail", Some("1/h burst 2")), None);
        let wait = rates
            .wait("mail", Some("1/h burst 2"))
            .expect("the third within the hour waits");
        assert!(
            wait > Duration::from_secs(3000) && wait <= Duration::from_secs(3600),
            "{wait:?}"
        );
        // Another provider has its own bucket; a changed rate a new one.
        assert_eq!(rates.wait("other", Some("1/h burst 2")), None);
        assert_eq!(rates.wait("mail", Some("1/h burst 3")), None);
    }
}
