//! Identity and time stamps of stored records.

use time::format_description::well_known::Rfc3339;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// RFC 3339 in UTC with exactly three fractional digits, so that the stored
/// text sorts in time order (a variable number of digits would not).
const TIMESTAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// A new record id: a UUID v7, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The current time as stored in `created_at` / `updated_at` columns.
pub fn now() -> String {
    // Formatting a UTC date with a fixed description only fails for years
    // outside 0..=9999, which `now_utc` cannot produce on a sane clock.
    OffsetDateTime::now_utc()
        .format(TIMESTAMP)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_string())
}

/// `s` as an RFC 3339 time, converted to UTC in the stored form, or `None`
/// if it is not RFC 3339 or falls outside the years 0..=9999 once in UTC.
///
/// Times from callers are stored like our own so that every time column
/// sorts as text and reads the same way.
pub fn normalize_timestamp(s: &str) -> Option<String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()?
        .checked_to_offset(UtcOffset::UTC)?
        .format(TIMESTAMP)
        .ok()
}

/// Whether `s` has the shape of an id this backend issued.
///
/// Checked before a lookup so that a malformed id is a plain 404 and never
/// reaches a file-system path.
pub fn is_valid_id(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok() && s.len() == 36
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuids_and_sort_by_time() {
        let a = new_id();
        let b = new_id();
        assert!(is_valid_id(&a));
        assert!(a < b);
        assert!(!is_valid_id("../etc/passwd"));
        assert!(!is_valid_id("0190b6a2c1d27c3e8f0a1b2c3d4e5f60"));
    }

    #[test]
    fn timestamps_have_fixed_width() {
        let t = now();
        assert_eq!(t.len(), "2026-01-01T00:00:00.000Z".len());
        assert!(time::OffsetDateTime::parse(&t, &Rfc3339).is_ok());
    }

    #[test]
    fn caller_timestamps_are_stored_in_utc_with_milliseconds() {
        assert_eq!(
            normalize_timestamp("2026-03-01T10:15:30.123456+02:00").as_deref(),
            Some("2026-03-01T08:15:30.123Z")
        );
        // RFC 3339 section 5.6 lets a space stand for the "T".
        for same in ["2026-03-01T08:15:30Z", "2026-03-01 08:15:30-00:00"] {
            assert_eq!(
                normalize_timestamp(same).as_deref(),
                Some("2026-03-01T08:15:30.000Z"),
                "{same:?}"
            );
        }
        for bad in [
            "",
            "2026-03-01",
            "2026-03-01T08:15:30",
            "yesterday",
            "9999-12-31T23:59:59-23:59",
        ] {
            assert_eq!(normalize_timestamp(bad), None, "{bad:?}");
        }
    }
}
