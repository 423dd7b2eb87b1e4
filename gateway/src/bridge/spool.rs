//! The durable SMTP spool under `data_dir/spool/`.
//!
//! A `250` after DATA means we own the message (RFC 1123 5.3.3), so an entry
//! is on disk before that reply: written under `tmp/`, fsynced, renamed into
//! place and the directory fsynced. One file per entry (a JSON metadata line,
//! then the raw message) makes the rename the single commit point: after a
//! crash an entry is either complete or absent, and a half-written temp file
//! is removed on the next start.
//!
//! Entries leave the spool only after the backend confirmed the delivery
//! ([`Spool::remove`]) or, on a permanent refusal, move to `failed/` with a
//! `.reason` file next to them ([`Spool::fail`]).

use bytes::Bytes;
use prometheus::IntGauge;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Bytes a [`SpoolWriter`] collects before it writes them to the file.
const WRITE_CHUNK: usize = 256 << 10;
/// Longest metadata line read back.
const MAX_META_LINE: u64 = 1 << 20;

/// What the spool keeps next to the raw message. Never a password.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SpoolMeta {
    /// Entry id; the idempotency key is `smtp:<id>`.
    pub id: String,
    /// RFC 3339 receive time.
    pub received: String,
    /// Envelope MAIL FROM.
    pub sender: String,
    /// Envelope RCPT TO, in order.
    pub recipients: Vec<String>,
    /// Authenticated principal (`key:<id>`, `smtp:<user>`, `smtp:anonymous`).
    pub principal: String,
    /// Its scopes, space separated.
    pub scopes: String,
    /// Client address.
    pub client_ip: Option<String>,
}

/// A spool operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Disk trouble.
    #[error("spool {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Which file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An entry whose metadata line cannot be read.
    #[error("spool entry {path} is corrupt: {reason}")]
    Corrupt {
        /// The entry.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The blocking task died (runtime shutting down).
    #[error("spool task failed: {0}")]
    Task(String),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

const SUFFIX: &str = ".msg";

/// The spool directory; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    tmp: PathBuf,
    failed: PathBuf,
    notify: Notify,
    depth: IntGauge,
    /// Entries a worker is delivering (see [`Spool::claim`]).
    claimed: Mutex<HashSet<String>>,
}

impl Spool {
    /// Opens (creating) `dir` with `tmp/` and `failed/`, removes temp files
    /// of writes a crash interrupted (never answered with 250), and sets
    /// `depth` to the number of entries waiting.
    pub fn open(dir: &Path, depth: IntGauge) -> Result<Spool, SpoolError> {
        let tmp = dir.join("tmp");
        let failed = dir.join("failed");
        for d in [dir, &tmp, &failed] {
            fs::create_dir_all(d).map_err(io_err("create", d))?;
        }
        for e in fs::read_dir(&tmp).map_err(io_err("list", &tmp))? {
            let e = e.map_err(io_err("list", &tmp))?;
            let _ = fs::remove_file(e.path());
        }
        let spool = Spool {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                tmp,
                failed,
                notify: Notify::new(),
                depth,
                claimed: Mutex::new(HashSet::new()),
            }),
        };
        let n = spool.list()?.len();
        spool.inner.depth.set(n as i64);
        Ok(spool)
    }

    /// A fresh entry id: time-ordered, so the worker drains oldest first.
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().simple().to_string()
    }

    /// Starts an entry: its metadata line is written to a temp file, the
    /// message follows through [`SpoolWriter::write`], and only
    /// [`SpoolWriter::commit`] makes it an entry.
    pub async fn create(&self, meta: &SpoolMeta) -> Result<SpoolWriter, SpoolError> {
        let mut line = serde_json::to_vec(meta).map_err(|e| SpoolError::Corrupt {
            path: self.inner.dir.clone(),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        let tmp = self.inner.tmp.join(format!("{}.tmp", meta.id));
        let path = tmp.clone();
        let file = tokio::task::spawn_blocking(move || {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io_err("create", &path))?;
            if let Err(e) = f.write_all(&line).map_err(io_err("write", &path)) {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
            Ok((f, line.len() as u64))
        })
        .await
        .map_err(|e| SpoolError::Task(e.to_string()))??;
        Ok(SpoolWriter {
            spool: self.clone(),
            id: meta.id.clone(),
            tmp,
            file: Some(file.0),
            buf: Vec::new(),
            body_offset: file.1,
            body_len: 0,
            synced: false,
        })
    }

    /// Writes an entry durably (file and directory fsynced) and wakes a
    /// worker. Only an `Ok` here may be answered with 250.
    pub async fn store(&self, meta: &SpoolMeta, raw: Bytes) -> Result<(), SpoolError> {
        let mut w = self.create(meta).await?;
        w.write(&raw).await?;
        w.finish().await?;
        w.commit().await
    }

    /// Ids waiting, oldest first, listed off the runtime: what a worker
    /// calls each pass (a large spool directory takes a while to read).
    pub async fn pending(&self) -> Result<Vec<String>, SpoolError> {
        let spool = self.clone();
        tokio::task::spawn_blocking(move || spool.list())
            .await
            .map_err(|e| SpoolError::Task(e.to_string()))?
    }

    /// Ids waiting, oldest first (blocking: start-up, tests).
    pub fn list(&self) -> Result<Vec<String>, SpoolError> {
        let dir = &self.inner.dir;
        let mut ids = Vec::new();
        for e in fs::read_dir(dir).map_err(io_err("list", dir))? {
            let e = e.map_err(io_err("list", dir))?;
            if let Some(id) = e.file_name().to_str().and_then(|n| n.strip_suffix(SUFFIX)) {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Reads an entry's metadata line; the message is the file from
    /// `body_offset` on ([`SpoolEntry`]).
    pub async fn entry(&self, id: &str) -> Result<SpoolEntry, SpoolError> {
        let path = self.entry_path(id);
        tokio::task::spawn_blocking(move || {
            let file = File::open(&path).map_err(io_err("read", &path))?;
            let mut line = Vec::new();
            io::BufReader::new(io::Read::take(file, MAX_META_LINE))
                .read_until(b'\n', &mut line)
                .map_err(io_err("read", &path))?;
            if line.pop() != Some(b'\n') {
                return Err(SpoolError::Corrupt {
                    path,
                    reason: "no metadata line".into(),
                });
            }
            let meta: SpoolMeta =
                serde_json::from_slice(&line).map_err(|e| SpoolError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            Ok(SpoolEntry {
                meta,
                body_offset: line.len() as u64 + 1,
                path,
            })
        })
        .await
        .map_err(|e| SpoolError::Task(e.to_string()))?
    }

    /// Reads an entry whole (metadata and message); for tests and tools,
    /// never the delivery path.
    pub async fn load(&self, id: &str) -> Result<(SpoolMeta, Vec<u8>), SpoolError> {
        let entry = self.entry(id).await?;
        let data = tokio::fs::read(&entry.path)
            .await
            .map_err(io_err("read", &entry.path))?;
        let body = data
            .get(usize::try_from(entry.body_offset).unwrap_or(usize::MAX)..)
            .unwrap_or_default()
            .to_vec();
        Ok((entry.meta, body))
    }

    /// Claims entry `id` for one worker until the [`Claim`] is dropped;
    /// `None` while another worker holds it. Claims live in this process
    /// only: a gateway owns its data_dir alone, and after a crash nothing is
    /// claimed, so an entry cut between claim and delivery is delivered
    /// again after the restart under the same idempotency key.
    pub fn claim(&self, id: &str) -> Option<Claim> {
        let mut claimed = self
            .inner
            .claimed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        claimed.insert(id.to_string()).then(|| Claim {
            spool: self.clone(),
            id: id.to_string(),
        })
    }

    /// Removes a delivered entry (fsyncing the directory, so a crash cannot
    /// bring it back and deliver it again; the idempotency key would make
    /// that harmless, but it would cost a backend round trip).
    pub async fn remove(&self, id: &str) -> Result<(), SpoolError> {
        let inner = self.inner.clone();
        let path = self.entry_path(id);
        tokio::task::spawn_blocking(move || {
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            sync_dir(&inner.dir)
        })
        .await
        .map_err(|e| SpoolError::Task(e.to_string()))??;
        self.inner.depth.dec();
        Ok(())
    }

    /// Moves an entry to `failed/` with `reason` written next to it.
    pub async fn fail(&self, id: &str, reason: &str) -> Result<(), SpoolError> {
        let inner = self.inner.clone();
        let from = self.entry_path(id);
        let to = inner.failed.join(format!("{id}{SUFFIX}"));
        let why = inner.failed.join(format!("{id}.reason"));
        let reason = format!("{reason}\n");
        tokio::task::spawn_blocking(move || {
            let mut f = File::create(&why).map_err(io_err("create", &why))?;
            f.write_all(reason.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io_err("write", &why))?;
            fs::rename(&from, &to).map_err(io_err("move", &from))?;
            sync_dir(&inner.failed)?;
            sync_dir(&inner.dir)
        })
        .await
        .map_err(|e| SpoolError::Task(e.to_string()))??;
        self.inner.depth.dec();
        Ok(())
    }

    /// Waits until a new entry was stored (or `limit` passed).
    pub async fn wait_new(&self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, self.inner.notify.notified()).await;
    }

    fn entry_path(&self, id: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}{SUFFIX}"))
    }
}

/// A spool entry: the message is `path` from `body_offset` to the end.
#[derive(Debug, Clone)]
pub struct SpoolEntry {
    /// Its metadata.
    pub meta: SpoolMeta,
    /// The entry file.
    pub path: PathBuf,
    /// Where the raw message starts in it.
    pub body_offset: u64,
}

/// A worker's hold on an entry ([`Spool::claim`]); released when dropped.
pub struct Claim {
    spool: Spool,
    id: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.spool
            .inner
            .claimed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// An entry being written ([`Spool::create`]): the message goes to a temp
/// file in pieces of [`WRITE_CHUNK`], never whole in memory. Dropped
/// without [`commit`](SpoolWriter::commit), the temp file is removed.
pub struct SpoolWriter {
    spool: Spool,
    id: String,
    tmp: PathBuf,
    file: Option<File>,
    buf: Vec<u8>,
    body_offset: u64,
    body_len: u64,
    /// Everything written is fsynced.
    synced: bool,
}

impl SpoolWriter {
    /// The entry id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Message bytes taken so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// The temp file (the message from [`body_offset`](Self::body_offset)),
    /// complete after [`finish`](Self::finish).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Where the message starts in the file.
    pub fn body_offset(&self) -> u64 {
        self.body_offset
    }

    /// Appends message bytes (written out in chunks).
    pub async fn write(&mut self, data: &[u8]) -> Result<(), SpoolError> {
        self.body_len += data.len() as u64;
        self.synced = false;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_CHUNK {
            self.flush(false).await?;
        }
        Ok(())
    }

    /// Writes what is buffered and fsyncs the file: it is now complete on
    /// disk (and can be parsed), but not an entry yet.
    pub async fn finish(&mut self) -> Result<(), SpoolError> {
        self.flush(true).await
    }

    async fn flush(&mut self, sync: bool) -> Result<(), SpoolError> {
        let Some(mut file) = self.file.take() else {
            return Err(SpoolError::Task("spool write after a failure".into()));
        };
        let mut buf = std::mem::take(&mut self.buf);
        let path = self.tmp.clone();
        let (file, buf) = tokio::task::spawn_blocking(move || {
            file.write_all(&buf).map_err(io_err("write", &path))?;
            if sync {
                file.sync_all().map_err(io_err("fsync", &path))?;
            }
            buf.clear();
            Ok::<_, SpoolError>((file, buf))
        })
        .await
        .map_err(|e| SpoolError::Task(e.to_string()))??;
        self.file = Some(file);
        self.buf = buf;
        self.synced = sync;
        Ok(())
    }

    /// Makes the entry: renames the finished file into place, fsyncs the
    /// directory and wakes a worker. Only an `Ok` here may be answered 250.
    pub async fn commit(mut self) -> Result<(), SpoolError> {
        if !self.synced {
            self.finish().await?;
        }
        let file = self.file.take();
        let tmp = self.tmp.clone();
        let fin = self.spool.entry_path(&self.id);
        let inner = self.spool.inner.clone();
        tokio::task::spawn_blocking(move || {
            drop(file);
            fs::rename(&tmp, &fin).map_err(io_err("rename", &tmp))?;
            sync_dir(&inner.dir)
        })
        .await
        .map_err(|e| SpoolError::Task(e.to_string()))??;
        // Renamed: nothing left for `drop` to remove.
        self.tmp = PathBuf::new();
        self.spool.inner.depth.inc();
        self.spool.inner.notify.notify_one();
        Ok(())
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        if self.tmp.as_os_str().is_empty() {
            return;
        }
        let tmp = std::mem::take(&mut self.tmp);
        drop(self.file.take());
        // An unlink, off the async workers when there are any.
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(move || fs::remove_file(tmp));
            }
            Err(_) => {
                let _ = fs::remove_file(tmp);
            }
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str) -> SpoolMeta {
        SpoolMeta {
            id: id.to_string(),
            received: "2026-01-01T00:00:00Z".into(),
            sender: "a@partner.example".into(),
            recipients: vec!["b@ourcorp.example".into()],
            principal: "key:abc".into(),
            scopes: "deliveries:write".into(),
            client_ip: Some("127.0.0.1".into()),
        }
    }

    #[tokio::test]
    async fn store_load_remove_and_fail() {
        let dir = tempfile::tempdir().unwrap();
        let depth = IntGauge::new("d", "d").unwrap();
        let spool = Spool::open(&dir.path().join("spool"), depth.clone()).unwrap();
        let (a, b) = (Spool::new_id(), Spool::new_id());
        assert!(a < b, "ids are time ordered");
        spool
            .store(&meta(&a), Bytes::from_static(b"Subject: x\r\n\r\nbody\n"))
            .await
            .unwrap();
        spool
            .store(&meta(&b), Bytes::from_static(b""))
            .await
            .unwrap();
        assert_eq!(depth.get(), 2);
        assert_eq!(spool.list().unwrap(), [a.clone(), b.clone()]);
        let (m, raw) = spool.load(&a).await.unwrap();
        assert_eq!(m, meta(&a));
        assert_eq!(raw, b"Subject: x\r\n\r\nbody\n");
        spool.remove(&a).await.unwrap();
        spool.fail(&b, "refused").await.unwrap();
        assert!(spool.list().unwrap().is_empty());
        assert_eq!(depth.get(), 0);
        let reason =
            fs::read_to_string(dir.path().join(format!("spool/failed/{b}.reason"))).unwrap();
        assert_eq!(reason, "refused\n");
        // A reopen counts what is waiting and clears interrupted writes.
        fs::write(dir.path().join("spool/tmp/x.tmp"), b"half").unwrap();
        let again = Spool::open(&dir.path().join("spool"), depth.clone()).unwrap();
        assert!(again.list().unwrap().is_empty());
        assert!(fs::read_dir(dir.path().join("spool/tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[tokio::test]
    async fn a_streamed_entry_commits_once_and_an_abandoned_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let depth = IntGauge::new("d", "d").unwrap();
        let spool = Spool::open(&dir.path().join("spool"), depth.clone()).unwrap();
        let id = Spool::new_id();
        let mut w = spool.create(&meta(&id)).await.unwrap();
        let piece = vec![b'x'; WRITE_CHUNK / 3 + 7];
        for _ in 0..5 {
            w.write(&piece).await.unwrap();
        }
        assert_eq!(w.body_len(), 5 * piece.len() as u64);
        assert!(
            spool.list().unwrap().is_empty(),
            "not an entry before commit"
        );
        w.finish().await.unwrap();
        let on_disk = fs::read(w.path()).unwrap();
        assert_eq!(on_disk.len() as u64, w.body_offset() + w.body_len());
        w.commit().await.unwrap();
        assert_eq!(spool.list().unwrap(), std::slice::from_ref(&id));
        assert_eq!(depth.get(), 1);
        let e = spool.entry(&id).await.unwrap();
        assert_eq!(e.meta, meta(&id));
        let raw = fs::read(&e.path).unwrap();
        assert_eq!(&raw[e.body_offset as usize..], &piece.repeat(5)[..]);

        // One claim at a time; released on drop.
        let c = spool.claim(&id).unwrap();
        assert!(spool.claim(&id).is_none());
        drop(c);
        assert!(spool.claim(&id).is_some());

        // A writer dropped without commit removes its temp file.
        let other = Spool::new_id();
        let mut w = spool.create(&meta(&other)).await.unwrap();
        w.write(b"partial").await.unwrap();
        drop(w);
        for _ in 0..50 {
            if fs::read_dir(dir.path().join("spool/tmp"))
                .unwrap()
                .next()
                .is_none()
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(fs::read_dir(dir.path().join("spool/tmp"))
            .unwrap()
            .next()
            .is_none());
        assert_eq!(spool.list().unwrap(), [id]);
    }
}
