//! `mailbox_stale`: an IMAP or POP3 mailbox without a successful poll for
//! a while (its server down, a password changed, a certificate replaced).
//! The pollers publish the time of their last success; a mailbox that has
//! not succeeded since the watcher started counts from that start.

use std::time::{Duration, SystemTime};

/// One stale mailbox: its name (`imap:NAME`, `pop3:NAME`), the last
/// success if any, and for how long none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    /// `imap:NAME` or `pop3:NAME`.
    pub mailbox: String,
    /// The last successful poll, `None`: none since the start.
    pub last_success: Option<SystemTime>,
    /// Time without one.
    pub for_: Duration,
}

/// The mailboxes of `last_success` (name, Unix seconds; 0: never) without
/// a success for `after` at `now`; `started` stands in for "never".
pub fn stale(
    last_success: &[(String, i64)],
    started: SystemTime,
    now: SystemTime,
    after: Duration,
) -> Vec<Stale> {
    last_success
        .iter()
        .filter_map(|(mailbox, secs)| {
            let last = u64::try_from(*secs)
                .ok()
                .filter(|s| *s > 0)
                .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
            let since = last.unwrap_or(started);
            let for_ = now.duration_since(since).unwrap_or_default();
            (for_ >= after).then(|| Stale {
                mailbox: mailbox.clone(),
                last_success: last,
                for_,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailbox_is_stale_after_its_time_without_success() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |s: u64| start + Duration::from_secs(s);
        let secs = |t: SystemTime| {
            i64::try_from(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()).unwrap()
        };
        let boxes = vec![
            ("imap:fresh".to_string(), secs(at(100))),
            ("imap:old".to_string(), secs(at(10))),
            ("pop3:never".to_string(), 0),
        ];
        let after = Duration::from_secs(60);
        assert!(stale(&boxes, start, at(50), after).is_empty());
        let found = stale(&boxes, start, at(100), after);
        let names: Vec<&str> = found.iter().map(|s| s.mailbox.as_str()).collect();
        assert_eq!(names, ["imap:old", "pop3:never"]);
        assert_eq!(found[0].for_, Duration::from_secs(90));
        assert_eq!(found[1].last_success, None);
        assert_eq!(
            found[1].for_,
            Duration::from_secs(100),
            "counted from the start"
        );
    }
}
