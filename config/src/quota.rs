//! Rate-limit quotas written as `"50/s burst 100"`.

use std::num::NonZeroU32;
use std::time::Duration;

/// A GCRA quota: `rate` requests per `per`, with bursts up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests replenished per period.
    pub rate: NonZeroU32,
    /// The period.
    pub per: Duration,
    /// Largest burst allowed at once.
    pub burst: NonZeroU32,
}

/// Parses `N/s`, `N/m`, `N/h` with an optional `burst M` (default: burst = N).
pub fn parse(text: &str) -> Result<Quota, String> {
    let bad =
        || format!("expected \"<N>/<s|m|h> [burst <M>]\", e.g. \"50/s burst 100\", got {text:?}");
    let mut words = text.split_whitespace();
    let rate_part = words.next().ok_or_else(bad)?;
    let (n, unit) = rate_part.split_once('/').ok_or_else(bad)?;
    let rate: NonZeroU32 = n.parse().map_err(|_| bad())?;
    let per = match unit {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    let burst = match (words.next(), words.next(), words.next()) {
        (None, _, _) => rate,
        (Some("burst"), Some(m), None) => m.parse().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    Ok(Quota { rate, per, burst })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rate_and_burst() {
        let q = parse("50/s burst 100").unwrap();
        assert_eq!(
            (q.rate.get(), q.per, q.burst.get()),
            (50, Duration::from_secs(1), 100)
        );
        let q = parse("600/m").unwrap();
        assert_eq!(
            (q.rate.get(), q.per, q.burst.get()),
            (600, Duration::from_secs(60), 600)
        );
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "50",
            "0/s",
            "50/d",
            "50/s burst",
            "50/s burst 0",
            "50/s burst 1 x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
