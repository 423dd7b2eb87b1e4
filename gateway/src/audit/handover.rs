//! Two processes appending to one trail. During a binary upgrade the old
//! process drains, and audits its last requests, while the new one already
//! serves (upgrade.rs); a 1 GiB upload can keep both writing for minutes.
//! Each writer therefore appends only while it holds an exclusive lock on
//! `<audit file>.lock`, and first takes the last line on disk as the head
//! its lines continue from (rewriting their `seq` and `prev` if the other
//! process wrote since), so the file stays one chain that `audit verify`
//! accepts. The lock is held for one write, not for the process's life: a
//! draining process must keep writing while its successor writes.

use super::{sha256, Head};
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

/// `<audit file>.lock`: a separate file, since rotation renames the trail's.
pub fn lock_path(audit_file: &Path) -> PathBuf {
    let mut name = audit_file.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The exclusive lock writers take around each append.
pub(super) struct TrailLock {
    file: File,
}

impl TrailLock {
    pub(super) fn open(audit_file: &Path) -> io::Result<TrailLock> {
        let path = lock_path(audit_file);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(TrailLock { file })
    }

    /// Takes the lock, waiting up to `limit` for the other writer (which
    /// holds it only while it appends); false if it is still held then.
    pub(super) fn acquire(&self, limit: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + limit;
        loop {
            match self.file.try_lock() {
                Ok(()) => return Ok(true),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            // Polled rather than blocking: a writer stuck behind a hung
            // process must still answer flushes and the exit.
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub(super) fn release(&self) {
        // Closing or exiting releases it too; an error here leaves nothing to do.
        let _ = self.file.unlock();
    }
}

/// A pending line that is not one the writer serialized.
#[derive(Debug, Error)]
#[error("audit line {index} waiting to be written does not start with seq and prev")]
pub(super) struct NotChained {
    index: usize,
}

/// Writes `pending` (whole chained lines) into `out` continuing from
/// `head`: each line's `"seq"` and `"prev"` are replaced, the rest of the
/// line is kept byte for byte. Returns the head after the last line.
pub(super) fn rechain(pending: &[u8], head: Head, out: &mut Vec<u8>) -> Result<Head, NotChained> {
    let mut last = head;
    for (index, line) in pending.split_inclusive(|b| *b == b'\n').enumerate() {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let rest = after_chain_fields(body).ok_or(NotChained { index })?;
        let start = out.len();
        let seq = last.0 + 1;
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(seq.to_string().as_bytes());
        out.extend_from_slice(b",\"prev\":\"");
        let mut hex = [0u8; 64];
        // 64 bytes for 32: cannot fail.
        let _ = hex::encode_to_slice(last.1, &mut hex);
        out.extend_from_slice(&hex);
        out.push(b'"');
        out.extend_from_slice(rest);
        last = (seq, sha256(&out[start..]));
        out.push(b'\n');
    }
    Ok(last)
}

/// What follows `{"seq":N,"prev":"<64 hex>"` in a line the writer made.
fn after_chain_fields(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let rest = rest[digits..].strip_prefix(b",\"prev\":\"")?;
    if rest.len() < 65 || !rest[..64].iter().all(u8::is_ascii_hexdigit) || rest[64] != b'"' {
        return None;
    }
    Some(&rest[65..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditRecord, GENESIS};

    fn records(n: usize) -> Vec<AuditRecord> {
        (0..n)
            .map(|i| {
                let mut r = AuditRecord::new("request");
                r.path = Some(format!("/p/{i}"));
                r
            })
            .collect()
    }

    /// `records` chained after `from`.
    fn chained(from: Head, records: &[AuditRecord]) -> (Vec<u8>, Head) {
        let mut out = Vec::new();
        let mut head = from;
        for r in records {
            let start = out.len();
            r.write_json_chained(Some((head.0 + 1, &head.1)), &mut out);
            head = (head.0 + 1, sha256(&out[start..]));
            out.push(b'\n');
        }
        (out, head)
    }

    #[test]
    fn rechained_lines_equal_lines_chained_from_that_head_in_the_first_place() {
        // The same records (their times included) both ways.
        let records = records(3);
        let (pending, _) = chained((0, GENESIS), &records);
        let other = (41, [7u8; 32]);
        let mut out = Vec::new();
        let head = rechain(&pending, other, &mut out).unwrap();
        let (expected, expected_head) = chained(other, &records);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expected)
        );
        assert_eq!(head, expected_head);
        assert_eq!(head.0, 44);
    }

    #[test]
    fn a_line_without_the_chain_fields_is_refused() {
        for line in [
            &b"{\"time\":\"x\"}\n"[..],
            b"{\"seq\":,\"prev\":\"00\"}\n",
            b"{\"seq\":1,\"prev\":\"zz\"}\n",
        ] {
            let mut out = Vec::new();
            assert!(rechain(line, (0, GENESIS), &mut out).is_err(), "{line:?}");
        }
    }

    #[test]
    fn the_lock_is_exclusive_between_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let trail = dir.path().join("audit.jsonl");
        let (a, b) = (
            TrailLock::open(&trail).unwrap(),
            TrailLock::open(&trail).unwrap(),
        );
        assert!(a.acquire(Duration::ZERO).unwrap());
        assert!(!b.acquire(Duration::from_millis(20)).unwrap());
        a.release();
        assert!(b.acquire(Duration::ZERO).unwrap());
    }
}
