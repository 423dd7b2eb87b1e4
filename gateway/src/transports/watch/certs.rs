//! `certificate_expiring`: a certificate the gateway serves (TLS, also
//! one ordered with ACME that fails to renew) or signs with (an smtp
//! provider's S/MIME certificate) ending within a threshold, or ended.

use std::time::{Duration, SystemTime};

/// One certificate: what it is (`TLS certificate NAME`, `S/MIME
/// certificate of transport NAME`) and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// What it is, for the message.
    pub what: String,
    /// Its notAfter.
    pub not_after: SystemTime,
}

/// The certificates of `certs` ending within `within` of `now` (or ended),
/// soonest first.
pub fn expiring(certs: &[Cert], now: SystemTime, within: Duration) -> Vec<Cert> {
    let limit = now.checked_add(within).unwrap_or(now);
    let mut out: Vec<Cert> = certs
        .iter()
        .filter(|c| c.not_after <= limit)
        .cloned()
        .collect();
    out.sort_by_key(|c| c.not_after);
    out
}

/// "expired on ..." or "expires on ... (in N days)".
pub fn describe(c: &Cert, now: SystemTime) -> String {
    let at = humantime::format_rfc3339_seconds(c.not_after);
    match c.not_after.duration_since(now) {
        Ok(left) => format!(
            "{} expires on {at} (in {})",
            c.what,
            humantime::format_duration(Duration::from_secs(left.as_secs() / 60 * 60))
        ),
        Err(_) => format!("{} expired on {at}", c.what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soonest_first_and_expired_ones_too() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let day = Duration::from_secs(86_400);
        let cert = |what: &str, at: SystemTime| Cert {
            what: what.into(),
            not_after: at,
        };
        let certs = vec![
            cert("far", now + 90 * day),
            cert("soon", now + 3 * day),
            cert("gone", now - day),
        ];
        let found = expiring(&certs, now, 14 * day);
        let names: Vec<&str> = found.iter().map(|c| c.what.as_str()).collect();
        assert_eq!(names, ["gone", "soon"]);
        assert!(describe(&found[0], now).starts_with("gone expired on "));
        assert!(
            describe(&found[1], now).ends_with("(in 3days)"),
            "{}",
            describe(&found[1], now)
        );
        assert!(expiring(&certs, now, day / 2).len() == 1);
    }
}
