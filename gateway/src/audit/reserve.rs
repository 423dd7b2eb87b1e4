//! The shutdown reserve, `<audit file>.pending`: a file of zeros allocated
//! at start, as large as every line the writer may hold in memory.
//!
//! While the disk is full, chained lines wait in memory and are retried
//! (see the parent module). At exit there is no later: if the last write
//! still fails, the lines are written over the reserve's first bytes, and
//! overwriting blocks a file already owns needs no free space (true for
//! ext4, xfs and tmpfs; not for copy-on-write file systems such as btrfs or
//! zfs). The next start appends them to the trail before any new record.
//!
//! The reserve's content is the whole lines before its first NUL byte: a
//! JSON line never holds one (JSON escapes control characters), so one
//! NUL at offset 0 empties it without touching the blocks.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Room beyond the in-memory cap: the cap is checked before a record is
/// added, so the lines may exceed it by one record.
const MARGIN: u64 = 1024 * 1024;

/// The reserve's size: every line the writer may hold, plus the end mark.
pub(super) fn size(pending_max: usize) -> u64 {
    pending_max as u64 + MARGIN
}

/// `<audit file>.pending`.
pub fn path_of(audit_file: &Path) -> PathBuf {
    let mut name = audit_file.as_os_str().to_owned();
    name.push(".pending");
    PathBuf::from(name)
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// The whole lines a stopped process left in the reserve (empty when there
/// is none). Reads at most `limit` bytes: the reserve is never larger.
pub(super) fn read(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut content = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut reader = file.take(limit);
    loop {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        match chunk[..n].iter().position(|b| *b == 0) {
            Some(end) => {
                content.extend_from_slice(&chunk[..end]);
                break;
            }
            None => content.extend_from_slice(&chunk[..n]),
        }
    }
    // A stop in the middle of `store` leaves part of a line: not a record.
    let whole = content
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    content.truncate(whole);
    Ok(content)
}

/// Makes the reserve empty and `size` bytes of allocated blocks. Allocates
/// only when the blocks are not all there yet (first start, or a sparse or
/// short file); otherwise writes one NUL at offset 0.
pub(super) fn prepare(path: &Path, size: u64) -> io::Result<()> {
    let file = open(path)?;
    let meta = file.metadata()?;
    if meta.len() >= size && meta.blocks() * 512 >= size {
        file.write_all_at(&[0], 0)?;
        return file.sync_data();
    }
    if let Err(e) = allocate(&file, size) {
        // A partial reserve would only take the last free space from the
        // trail itself.
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    file.sync_all()
}

/// `fallocate` (no data written: ext4 and xfs keep blocks back so that
/// writing into allocated space succeeds on a full disk), or zeros written
/// where the file system has no `fallocate`.
fn allocate(file: &File, size: u64) -> io::Result<()> {
    use nix::fcntl::{fallocate, FallocateFlags};
    let len = i64::try_from(size).map_err(io::Error::other)?;
    match fallocate(file, FallocateFlags::empty(), 0, len) {
        Ok(()) => return file.write_all_at(&[0], 0),
        Err(nix::errno::Errno::EOPNOTSUPP) => {}
        Err(e) => return Err(io::Error::from(e)),
    }
    let zeros = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    while at < size {
        let n = zeros.len().min((size - at) as usize);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Writes `lines` (whole lines) over the reserve's start, ends them with a
/// NUL and syncs: from here they survive the process.
pub(super) fn store(path: &Path, lines: &[u8]) -> io::Result<()> {
    let file = open(path)?;
    file.write_all_at(lines, 0)?;
    file.write_all_at(&[0], lines.len() as u64)?;
    file.sync_data()
}

/// Moves a reserve whose lines do not continue the trail out of the way,
/// kept for the operator: `<audit file>.pending.unchained-<unix seconds>`.
pub(super) fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".unchained-{secs}"));
    let to = PathBuf::from(name);
    std::fs::rename(path, &to)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_whole_lines_before_the_first_nul() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_of(&dir.path().join("audit.jsonl"));
        assert!(read(&path, 1 << 20).unwrap().is_empty(), "no reserve yet");
        prepare(&path, 256 * 1024).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 256 * 1024);
        assert!(meta.blocks() * 512 >= 256 * 1024, "allocated, not sparse");
        assert!(read(&path, 1 << 20).unwrap().is_empty());

        store(&path, b"{\"seq\":1}\n{\"seq\":2}\n").unwrap();
        assert_eq!(read(&path, 1 << 20).unwrap(), b"{\"seq\":1}\n{\"seq\":2}\n");
        // A shorter set later ends at its own NUL, not at the older one's.
        store(&path, b"{\"seq\":3}\n").unwrap();
        assert_eq!(read(&path, 1 << 20).unwrap(), b"{\"seq\":3}\n");
        // A cut line is not returned.
        store(&path, b"{\"seq\":4}\n{\"se").unwrap();
        assert_eq!(read(&path, 1 << 20).unwrap(), b"{\"seq\":4}\n");

        // Emptied in place: same size, same blocks.
        prepare(&path, 256 * 1024).unwrap();
        assert!(read(&path, 1 << 20).unwrap().is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 256 * 1024);
    }

    #[test]
    fn a_sparse_reserve_is_filled() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_of(&dir.path().join("audit.jsonl"));
        File::create(&path).unwrap().set_len(256 * 1024).unwrap();
        prepare(&path, 256 * 1024).unwrap();
        assert!(std::fs::metadata(&path).unwrap().blocks() * 512 >= 256 * 1024);
    }
}
