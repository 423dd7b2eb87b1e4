//! Where a partner's uploads land and how much it may upload per day.
//!
//! A partner does not choose where its files go: every upload on
//! `/federation/v1/files` is stored in the connection's inbox folder
//! (`partners/<name>` unless the admin set another). A partner may name
//! that folder or one below it in `X-Folder`; anything else is refused, so
//! a partner can never write into our users' folders.

use crate::decision::Rejection;
use crate::problem_types as pt;
use crate::validation::folder::{validate_folder, FolderError};

/// Seconds in a (UTC) day, the quota's period.
pub const DAY_SECS: u64 = 86_400;

/// The inbox of a connection called `partner` when the admin set none.
pub fn default_inbox(partner: &str) -> String {
    format!("partners/{partner}")
}

/// The connection's inbox folder in canonical form: the configured one,
/// or [`default_inbox`].
pub fn inbox(partner: &str, configured: Option<&str>) -> Result<String, FolderError> {
    match configured {
        Some(folder) => validate_folder(folder),
        None => validate_folder(&default_inbox(partner)),
    }
}

/// The folder an upload goes to: `inbox` itself when the partner named
/// none, or the canonical folder it named if that is the inbox or below it.
pub fn upload_folder(inbox: &str, requested: Option<&str>) -> Result<String, Rejection> {
    let Some(requested) = requested else {
        return Ok(inbox.to_string());
    };
    let inside = requested == inbox
        || inbox.is_empty()
        || requested
            .strip_prefix(inbox)
            .is_some_and(|rest| rest.starts_with('/'));
    if inside {
        Ok(requested.to_string())
    } else {
        Err(Rejection::new(
            403,
            pt::FOLDER_NOT_ALLOWED,
            format!(
                "a partner's files go to its inbox folder \"{inbox}\" (or below it); \
                 leave X-Folder out or name a folder inside it"
            ),
            "folder_outside_inbox",
        ))
    }
}

/// 429 for an upload of `bytes` at `now` (Unix seconds) that `used` bytes
/// already counted today would take past `limit`; retry at the next day.
pub fn quota_exceeded(now: u64, bytes: u64, limit: u64, used: u64) -> Rejection {
    let retry = (now / DAY_SECS + 1) * DAY_SECS - now;
    Rejection::new(
        429,
        pt::QUOTA_EXCEEDED,
        format!(
            "this upload ({bytes} bytes) would exceed the connection's quota of \
             {limit} bytes per day ({used} used today)"
        ),
        "partner_quota_exceeded",
    )
    .with_header(http::header::RETRY_AFTER, retry.max(1).to_string())
}

/// Bytes one partner uploaded on one UTC day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DailyUse {
    /// Day number (Unix seconds / 86,400) the count belongs to.
    pub day: u64,
    /// Bytes reserved that day.
    pub bytes: u64,
}

impl DailyUse {
    /// Reserves `bytes` on the day of `now` (Unix seconds) if that keeps the
    /// day within `limit`; otherwise the 429 answer, retry at the next day.
    pub fn reserve(&mut self, now: u64, bytes: u64, limit: u64) -> Result<u64, Rejection> {
        let today = now / DAY_SECS;
        if self.day != today {
            *self = DailyUse {
                day: today,
                bytes: 0,
            };
        }
        let total = self.bytes.saturating_add(bytes);
        if total > limit {
            return Err(quota_exceeded(now, bytes, limit, self.bytes));
        }
        self.bytes = total;
        Ok(today)
    }

    /// Gives back a reservation of `day` that did not become a file.
    pub fn refund(&mut self, day: u64, bytes: u64) {
        if self.day == day {
            self.bytes = self.bytes.saturating_sub(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_stay_inside_the_inbox() {
        let inbox = inbox("acme", None).unwrap();
        assert_eq!(inbox, "partners/acme");
        assert_eq!(upload_folder(&inbox, None).unwrap(), "partners/acme");
        assert_eq!(
            upload_folder(&inbox, Some("partners/acme/2026")).unwrap(),
            "partners/acme/2026"
        );
        for outside in [
            "",
            "partners",
            "partners/acme2",
            "finance",
            "partners/beta/x",
        ] {
            let r = upload_folder(&inbox, Some(outside)).unwrap_err();
            assert_eq!(r.status, 403, "{outside}");
            assert_eq!(r.problem_type, pt::FOLDER_NOT_ALLOWED);
        }
        assert_eq!(inbox_of("in/acme"), "in/acme");
        assert!(super::inbox("..", None).is_err());
    }

    fn inbox_of(configured: &str) -> String {
        inbox("acme", Some(configured)).unwrap()
    }

    #[test]
    fn the_daily_quota_reserves_refunds_and_rolls_over() {
        let mut u = DailyUse::default();
        let now = 20_000 * DAY_SECS + 100;
        let day = u.reserve(now, 600, 1000).unwrap();
        let r = u.reserve(now, 500, 1000).unwrap_err();
        assert_eq!(r.status, 429);
        assert_eq!(r.problem_type, pt::QUOTA_EXCEEDED);
        assert_eq!(r.headers[0].1, (DAY_SECS - 100).to_string());
        u.refund(day, 600);
        u.reserve(now, 1000, 1000).unwrap();
        // A new day starts empty; a refund of yesterday changes nothing.
        let tomorrow = now + DAY_SECS;
        u.reserve(tomorrow, 1000, 1000).unwrap();
        u.refund(day, 1000);
        assert!(u.reserve(tomorrow, 1, 1000).is_err());
    }
}
