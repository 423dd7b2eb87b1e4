//! The audit trail: append-only JSON lines under `data_dir`, rotated by size.
//!
//! Records are handed to one writer thread through a bounded channel, so the
//! proxy never waits on the disk. Records carry no field that could hold a
//! credential: the principal is an id (`key:<id>`), paths are logged without
//! their query string.

use mft_config::model::Audit;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Records that can wait in memory for the writer before new ones are dropped
/// (and counted) rather than stalling request handling.
const QUEUE: usize = 64 * 1024;

/// How often the writer drains the queue: the most a record waits in memory.
const TICK: Duration = Duration::from_millis(20);

/// One audit record.
#[derive(Debug, Serialize)]
pub struct AuditRecord {
    /// When it happened; written as RFC 3339 with milliseconds (formatted
    /// by the writer thread, off the request path).
    #[serde(serialize_with = "rfc3339_millis")]
    pub time: SystemTime,
    /// `auth`, `request`, `ban`, `unban`, `key`.
    pub event: &'static str,
    /// Request id, when the event belongs to a request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// `key:<id>`, `jwt:<sub>`, `admin`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The credential behind the principal where it is another identity:
    /// `key:<id>` of an API key used to log in as a bridge user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Client address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    /// HTTP method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path without query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Response status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Request body bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    /// Response body bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// `allow` or `deny`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    /// Why: `unknown_key`, `revoked`, `missing_scope`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AuditRecord {
    /// A record of `event`, stamped now.
    pub fn new(event: &'static str) -> Self {
        AuditRecord {
            time: SystemTime::now(),
            event,
            request_id: None,
            principal: None,
            credential: None,
            client_ip: None,
            method: None,
            path: None,
            status: None,
            bytes_in: None,
            bytes_out: None,
            decision: None,
            reason: None,
        }
    }
}

impl AuditRecord {
    /// The record as one JSON object, members in field order and absent
    /// ones left out: what its `Serialize` writes (see the tests), with
    /// a fraction of the instructions on a path taken per request.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let mut o = mft_filters::json::Object::new(out);
        o.raw("time", |out| {
            // Writing to a Vec cannot fail.
            let _ = write!(out, "\"{}\"", humantime::format_rfc3339_millis(self.time));
        })
        .str("event", self.event)
        .opt_str("request_id", self.request_id.as_deref())
        .opt_str("principal", self.principal.as_deref())
        .opt_str("credential", self.credential.as_deref());
        match self.client_ip {
            Some(IpAddr::V4(ip)) => {
                o.raw("client_ip", |out| {
                    let mut n = itoa::Buffer::new();
                    out.push(b'"');
                    for (i, octet) in ip.octets().iter().enumerate() {
                        if i > 0 {
                            out.push(b'.');
                        }
                        out.extend_from_slice(n.format(*octet).as_bytes());
                    }
                    out.push(b'"');
                });
            }
            Some(ip @ IpAddr::V6(_)) => {
                o.raw("client_ip", |out| {
                    let _ = write!(out, "\"{ip}\"");
                });
            }
            None => {}
        }
        o.opt_str("method", self.method.as_deref())
            .opt_str("path", self.path.as_deref())
            .opt_uint("status", self.status.map(u64::from))
            .opt_uint("bytes_in", self.bytes_in)
            .opt_uint("bytes_out", self.bytes_out)
            .opt_str("decision", self.decision)
            .opt_str("reason", self.reason.as_deref())
            .end();
    }
}

fn rfc3339_millis<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

enum Message {
    /// Boxed: the bounded channel preallocates every slot, so slots stay small.
    Record(Box<AuditRecord>),
    /// Write out everything queued before this, then acknowledge.
    Flush(mpsc::Sender<()>),
}

/// Handle to the audit trail; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl AuditLog {
    /// Opens (appends to) the audit file and starts its writer thread.
    pub fn open(config: &Audit) -> io::Result<AuditLog> {
        if let Some(dir) = config.file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(&config.file)?;
        let size = file.metadata()?.len();
        let (tx, rx) = mpsc::sync_channel::<Message>(QUEUE);
        let mut writer = Writer {
            path: config.file.clone(),
            out: BufWriter::new(file),
            line: Vec::with_capacity(512),
            size,
            max_bytes: config.max_bytes,
            keep: config.keep,
        };
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || loop {
                // Poll on a tick instead of blocking on the channel: a blocked
                // receiver turns every send on the request path into a futex
                // wake and a context switch; a tick costs one wake-up per tick.
                std::thread::sleep(TICK);
                let mut wrote = false;
                loop {
                    match rx.try_recv() {
                        Ok(message) => {
                            writer.handle(message);
                            wrote = true;
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            writer.flush();
                            return;
                        }
                    }
                }
                // One flush per tick keeps the file current without a syscall per record.
                if wrote {
                    writer.flush();
                }
            })?;
        Ok(AuditLog {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues a record; never blocks.
    pub fn record(&self, record: AuditRecord) {
        match self.tx.try_send(Message::Record(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::error!(
                        dropped = n,
                        "audit queue full or writer gone: records dropped"
                    );
                }
            }
        }
    }

    /// Blocks until every record queued so far is written and flushed, or
    /// `limit` passes; for the last moment before the process exits.
    pub fn flush_blocking(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let (ack_tx, ack_rx) = mpsc::channel();
        let mut message = Message::Flush(ack_tx);
        loop {
            match self.tx.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if std::time::Instant::now() < deadline => {
                    message = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        ack_rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
    }

    /// Records dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    /// One record's line, reused: no allocation per record.
    line: Vec<u8>,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl Writer {
    fn handle(&mut self, message: Message) {
        match message {
            Message::Record(record) => self.write(&record),
            Message::Flush(ack) => {
                self.flush();
                let _ = ack.send(());
            }
        }
    }

    fn write(&mut self, record: &AuditRecord) {
        let line = &mut self.line;
        line.clear();
        record.write_json(line);
        line.push(b'\n');
        if let Err(e) = self.out.write_all(line) {
            tracing::error!(error = %e, path = %self.path.display(), "cannot write audit record");
            return;
        }
        self.size += line.len() as u64;
        if self.size >= self.max_bytes {
            if let Err(e) = self.rotate() {
                tracing::error!(error = %e, path = %self.path.display(), "cannot rotate audit file");
            }
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::error!(error = %e, path = %self.path.display(), "cannot flush audit file");
        }
    }

    /// `audit.jsonl` → `audit.jsonl.1` → ... → `audit.jsonl.<keep>` (oldest removed).
    fn rotate(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        let name = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(name(self.keep));
            for n in (1..self.keep).rev() {
                let from = name(n);
                if from.exists() {
                    std::fs::rename(&from, name(n + 1))?;
                }
            }
            std::fs::rename(&self.path, name(1))?;
        }
        self.out = BufWriter::new(open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_json_writes_what_serde_would() {
        let mut full = AuditRecord::new("request");
        full.request_id = Some("r-1".into());
        full.principal = Some("key:abc".into());
        full.credential = Some("key:abc".into());
        full.client_ip = "203.0.113.9".parse().ok();
        full.method = Some("GET".into());
        full.path = Some("/api/v1/files/\"odd\"\n".into());
        full.status = Some(200);
        full.bytes_in = Some(0);
        full.bytes_out = Some(1 << 40);
        full.decision = Some("allow");
        full.reason = Some("why".into());
        let mut v6 = AuditRecord::new("auth");
        v6.client_ip = "2001:db8::1".parse().ok();
        for r in [full, v6, AuditRecord::new("ban")] {
            let mut ours = Vec::new();
            r.write_json(&mut ours);
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&serde_json::to_vec(&r).unwrap())
            );
        }
    }

    fn wait_for(path: &Path, pred: impl Fn(&str) -> bool) -> String {
        for _ in 0..1000 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if pred(&text) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("audit file {} never matched", path.display());
    }

    #[test]
    fn writes_one_json_object_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&Audit {
            file: file.clone(),
            max_bytes: 1 << 20,
            keep: 2,
        })
        .unwrap();
        let mut r = AuditRecord::new("auth");
        r.decision = Some("deny");
        r.reason = Some("unknown_key".into());
        r.client_ip = "192.0.2.1".parse().ok();
        log.record(r);
        log.record(AuditRecord::new("request"));
        let text = wait_for(&file, |t| t.lines().count() == 2);
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["event"], "auth");
        assert_eq!(first["decision"], "deny");
        assert_eq!(first["client_ip"], "192.0.2.1");
        assert!(first.get("principal").is_none());
    }

    #[test]
    fn flush_blocking_returns_after_everything_queued_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&Audit {
            file: file.clone(),
            max_bytes: 1 << 20,
            keep: 1,
        })
        .unwrap();
        for _ in 0..1000 {
            log.record(AuditRecord::new("request"));
        }
        assert!(log.flush_blocking(Duration::from_secs(5)));
        assert_eq!(
            std::fs::read_to_string(&file).unwrap().lines().count(),
            1000
        );
    }

    #[test]
    fn rotates_by_size_and_keeps_the_configured_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&Audit {
            file: file.clone(),
            max_bytes: 4096,
            keep: 2,
        })
        .unwrap();
        for i in 0..400 {
            let mut r = AuditRecord::new("request");
            r.path = Some(format!("/api/v1/files/{i:08}"));
            log.record(r);
        }
        // The writer drains on a tick; wait for it rather than polling, since
        // the last record may have been rotated out of the current file.
        assert!(log.flush_blocking(Duration::from_secs(10)));
        let current = std::fs::read_to_string(&file).unwrap_or_default();
        let previous = std::fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap();
        assert!(
            current.contains("/api/v1/files/00000399")
                || previous.contains("/api/v1/files/00000399"),
            "the last record is on disk"
        );
        assert!(dir.path().join("audit.jsonl.1").exists());
        assert!(dir.path().join("audit.jsonl.2").exists());
        assert!(
            !dir.path().join("audit.jsonl.3").exists(),
            "keep = 2 must bound the files"
        );
        let rotated = std::fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap();
        assert!(rotated.len() as u64 >= 4096);
        for line in rotated.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("whole JSON lines only");
        }
    }
}
