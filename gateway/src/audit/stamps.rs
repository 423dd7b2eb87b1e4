//! The `time` of audit lines: RFC 3339 with milliseconds, the date and time
//! of day formatted once per second.
//!
//! Records come many per second under load, and formatting each one's
//! calendar date through `fmt` was about a tenth of the writer thread's
//! instructions per record (callgrind); within one second only the
//! milliseconds change.

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DDTHH:MM:SS` of the last second written.
#[derive(Debug, Default)]
pub struct Stamps {
    second: Option<(u64, [u8; 19])>,
}

impl Stamps {
    /// Appends `t` as a JSON string, exactly as
    /// `humantime::format_rfc3339_millis` writes it (a time before 1970
    /// counts as 1970, where humantime would panic).
    pub fn write_quoted(&mut self, t: SystemTime, out: &mut Vec<u8>) {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let prefix = match self.second {
            Some((s, prefix)) if s == secs => prefix,
            _ => match seconds_prefix(secs) {
                Some(prefix) => {
                    self.second = Some((secs, prefix));
                    prefix
                }
                None => {
                    // Beyond year 9999: humantime's own answer (an error).
                    let t = UNIX_EPOCH + since;
                    let _ = write!(out, "\"{}\"", humantime::format_rfc3339_millis(t));
                    return;
                }
            },
        };
        let ms = since.subsec_millis();
        out.push(b'"');
        out.extend_from_slice(&prefix);
        // Each digit is below 10.
        out.extend_from_slice(&[
            b'.',
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
            b'"',
        ]);
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of `secs` after the epoch, `None` past year 9999.
fn seconds_prefix(secs: u64) -> Option<[u8; 19]> {
    let mut text = Vec::with_capacity(20);
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    write!(text, "{}", humantime::format_rfc3339_seconds(t)).ok()?;
    // "YYYY-MM-DDTHH:MM:SSZ"
    let head = text.get(..19).filter(|_| text.len() == 20)?;
    let mut prefix = [0u8; 19];
    prefix.copy_from_slice(head);
    Some(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn humantime_quoted(t: SystemTime) -> String {
        format!("\"{}\"", humantime::format_rfc3339_millis(t))
    }

    #[test]
    fn writes_what_humantime_writes_across_seconds_and_days() {
        let mut stamps = Stamps::default();
        // A day's last second; steps of 0.37 s from there into the next day.
        let start = UNIX_EPOCH + Duration::from_secs(1_796_083_199);
        let mut times: Vec<SystemTime> = (0..40)
            .map(|i| start + Duration::from_millis(370 * i) + Duration::from_nanos(999_999))
            .collect();
        times.push(start);
        times.push(UNIX_EPOCH);
        times.push(UNIX_EPOCH + Duration::from_secs(951_782_400)); // 2000-02-29
        for t in times {
            let mut out = Vec::new();
            stamps.write_quoted(t, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), humantime_quoted(t));
        }
    }

    #[test]
    fn a_time_before_1970_is_written_as_the_epoch_not_a_panic() {
        let mut out = Vec::new();
        Stamps::default().write_quoted(UNIX_EPOCH - Duration::from_secs(5), &mut out);
        assert_eq!(out, b"\"1970-01-01T00:00:00.000Z\"");
    }
}
