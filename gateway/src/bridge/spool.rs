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
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Notify;

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

    /// Writes an entry durably (file and directory fsynced) and wakes the
    /// worker. Only an `Ok` here may be answered with 250.
    pub async fn store(&self, meta: &SpoolMeta, raw: Bytes) -> Result<(), SpoolError> {
        let mut line = serde_json::to_vec(meta).map_err(|e| SpoolError::Corrupt {
            path: self.inner.dir.clone(),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        let inner = self.inner.clone();
        let id = meta.id.clone();
        tokio::task::spawn_blocking(move || write_entry(&inner, &id, &line, &raw))
            .await
            .map_err(|e| SpoolError::Task(e.to_string()))??;
        self.inner.depth.inc();
        self.inner.notify.notify_one();
        Ok(())
    }

    /// Ids waiting, oldest first.
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

    /// Reads an entry.
    pub async fn load(&self, id: &str) -> Result<(SpoolMeta, Vec<u8>), SpoolError> {
        let path = self.entry_path(id);
        let data = tokio::fs::read(&path)
            .await
            .map_err(io_err("read", &path))?;
        let Some(nl) = data.iter().position(|b| *b == b'\n') else {
            return Err(SpoolError::Corrupt {
                path,
                reason: "no metadata line".into(),
            });
        };
        let meta: SpoolMeta =
            serde_json::from_slice(&data[..nl]).map_err(|e| SpoolError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let mut raw = data;
        raw.drain(..=nl);
        Ok((meta, raw))
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

fn write_entry(inner: &Inner, id: &str, meta: &[u8], raw: &[u8]) -> Result<(), SpoolError> {
    let tmp = inner.tmp.join(format!("{id}.tmp"));
    let fin = inner.dir.join(format!("{id}{SUFFIX}"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(meta).map_err(io_err("write", &tmp))?;
        f.write_all(raw).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &fin).map_err(io_err("rename", &tmp))?;
        sync_dir(&inner.dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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
}
