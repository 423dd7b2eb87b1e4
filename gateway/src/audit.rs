//! The audit trail: append-only JSON lines under `data_dir`, rotated by size.
//!
//! Records are handed to one writer thread through a bounded channel, so the
//! proxy never waits on the disk. Records carry no field that could hold a
//! credential: the principal is an id (`key:<id>`), paths are logged without
//! their query string.
//!
//! The trail is a hash chain (docs/security.md#tamper-evident-audit-trail):
//! every line starts with `"seq"` (1, 2, ... across rotated files and
//! restarts) and `"prev"`, the hex SHA-256 of the previous line's bytes
//! (without its newline; 64 zeros before the first). The head is recovered
//! from the last line at start, exported as a metric, and [`verify`] checks
//! a sequence of files.
//!
//! When a write fails (disk full), the lines stay in memory (bounded) and
//! the file is cut back to its last whole line; the writer retries on every
//! tick, and [`AuditLog::refusal`] tells the request paths to answer 503
//! meanwhile if `audit.on_failure = "deny"`. At exit, lines that still
//! cannot be written go to the shutdown reserve ([`reserve`]), and the next
//! start appends them first.
//!
//! Two processes may append to one trail (the old one draining during a
//! binary upgrade): every write happens under a lock and continues the
//! chain from the last line on disk ([`handover`]).

pub mod handover;
pub mod reserve;
pub mod stamps;

use mft_config::model::{Audit, AuditFailure};
use mft_filters::decision::Rejection;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Records that can wait in memory for the writer before new ones are dropped
/// (and counted) rather than stalling request handling.
const QUEUE: usize = 64 * 1024;

/// How often the writer drains the queue: the most a record waits in memory.
const TICK: Duration = Duration::from_millis(20);

/// Pause between write attempts while the exit flush retries.
const EXIT_RETRY: Duration = Duration::from_millis(100);

/// Serialized lines kept in memory while the file cannot be written; beyond
/// this, new records are dropped (and counted) rather than chained.
const PENDING_MAX: usize = 8 * 1024 * 1024;

/// Sequence number and SHA-256 of a chain's last line.
type Head = (u64, [u8; 32]);

/// How long a write waits for the other process appending to the trail.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// How long a start waits for it.
const OPEN_LOCK_WAIT: Duration = Duration::from_secs(10);

/// `prev` of the first record ever written.
pub const GENESIS: [u8; 32] = [0; 32];

/// A request's method as a record holds it: the standard methods borrowed
/// (every refused request writes one), others copied.
pub fn method_text(method: &str) -> Cow<'static, str> {
    match method {
        "GET" => Cow::Borrowed("GET"),
        "PUT" => Cow::Borrowed("PUT"),
        "POST" => Cow::Borrowed("POST"),
        "HEAD" => Cow::Borrowed("HEAD"),
        "PATCH" => Cow::Borrowed("PATCH"),
        "DELETE" => Cow::Borrowed("DELETE"),
        "OPTIONS" => Cow::Borrowed("OPTIONS"),
        other => Cow::Owned(other.to_string()),
    }
}

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
    pub method: Option<Cow<'static, str>>,
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
    /// Borrowed for the fixed reasons of refusals, so the request path
    /// does not copy them.
    pub reason: Option<Cow<'static, str>>,
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
        self.write_json_chained(None, out)
    }

    /// [`AuditRecord::write_json`] with `"seq"` and `"prev"` (hex) first.
    pub fn write_json_chained(&self, chain: Option<(u64, &[u8; 32])>, out: &mut Vec<u8>) {
        self.write_json_stamped(chain, &mut stamps::Stamps::default(), out)
    }

    /// [`AuditRecord::write_json_chained`], the time written through
    /// `stamps`, which a writer keeps from one record to the next.
    pub fn write_json_stamped(
        &self,
        chain: Option<(u64, &[u8; 32])>,
        stamps: &mut stamps::Stamps,
        out: &mut Vec<u8>,
    ) {
        use std::io::Write as _;
        let mut o = mft_filters::json::Object::new(out);
        if let Some((seq, prev)) = chain {
            o.uint("seq", seq).raw("prev", |out| {
                let mut hex = [0u8; 64];
                // 64 bytes for 32: cannot fail.
                let _ = hex::encode_to_slice(prev, &mut hex);
                out.push(b'"');
                out.extend_from_slice(&hex);
                out.push(b'"');
            });
        }
        o.raw("time", |out| stamps.write_quoted(self.time, out))
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
    /// Write out everything queued before this, then answer whether all of
    /// it is on disk.
    Flush(mpsc::Sender<bool>),
    /// The exit flush: retry until the instant, then use the reserve.
    Exit(mpsc::Sender<ExitFlush>, Instant),
    /// Tests: every later write fails as on a full disk.
    #[cfg(test)]
    FailWrites,
}

/// What became of the records still in memory at exit.
#[derive(Debug, PartialEq)]
pub enum ExitFlush {
    /// All on disk in the trail.
    Written,
    /// The trail could not be written: `records` lines are in the shutdown
    /// reserve at `path`, appended by the next start.
    Reserved {
        /// Lines kept.
        records: usize,
        /// The reserve file.
        path: PathBuf,
    },
    /// Neither the trail nor the reserve could be written: lost.
    Lost {
        /// Lines lost.
        records: usize,
        /// Why the reserve failed.
        error: String,
    },
    /// The writer did not answer in time.
    NoAnswer,
}

/// State the writer thread shares with the handles and the metrics.
struct Shared {
    dropped: AtomicU64,
    /// The last write failed; lines wait in memory.
    failing: AtomicBool,
    on_failure: AuditFailure,
    /// Sequence number and SHA-256 of the last line on disk.
    head: Mutex<(u64, [u8; 32])>,
}

/// Handle to the audit trail; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: SyncSender<Message>,
    shared: Arc<Shared>,
}

impl AuditLog {
    /// Opens (appends to) the audit file, recovers the chain's head from its
    /// last line (or the last rotated file's), and starts its writer thread.
    pub fn open(config: &Audit) -> io::Result<AuditLog> {
        if let Some(dir) = config.file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let lock = handover::TrailLock::open(&config.file)?;
        if !lock.acquire(OPEN_LOCK_WAIT)? {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{}: another process has held the audit trail's lock for {OPEN_LOCK_WAIT:?}",
                    handover::lock_path(&config.file).display()
                ),
            ));
        }
        // Under the lock: another writer's line being appended is not a torn one.
        let mut file = open_append(&config.file)?;
        let recovered = recover_head(&mut file, &config.file);
        lock.release();
        let (size, head) = recovered?;
        let reserve = reserve::path_of(&config.file);
        let (pending, pending_head) = take_reserved(&reserve, head)?;
        let reserve_dirty = !pending.is_empty();
        if !reserve_dirty {
            if let Err(e) = reserve::prepare(&reserve, reserve::size(PENDING_MAX)) {
                tracing::error!(error = %e, path = %reserve.display(), "cannot allocate the audit shutdown reserve: records still unwritable at a stop (disk full) would be lost");
            }
        }
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            on_failure: config.on_failure,
            head: Mutex::new(head),
        });
        let (tx, rx) = mpsc::sync_channel::<Message>(QUEUE);
        let mut writer = Writer {
            path: config.file.clone(),
            file,
            pending,
            size,
            max_bytes: config.max_bytes,
            keep: config.keep,
            seq: pending_head.0,
            prev: pending_head.1,
            pending_head,
            stamps: stamps::Stamps::default(),
            shared: shared.clone(),
            torn: false,
            reserve,
            reserve_dirty,
            lock,
            #[cfg(test)]
            fail_writes: false,
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
                            writer.exit(Instant::now()).log();
                            return;
                        }
                    }
                }
                // One write per tick keeps the file current without a
                // syscall per record; lines a failed write left pending are
                // retried on every tick.
                if wrote || !writer.pending.is_empty() {
                    writer.flush();
                }
            })?;
        Ok(AuditLog { tx, shared })
    }

    /// Queues a record; never blocks.
    pub fn record(&self, record: AuditRecord) {
        match self.tx.try_send(Message::Record(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::error!(
                        dropped = n,
                        "audit queue full or writer gone: records dropped"
                    );
                }
            }
        }
    }

    /// Blocks until every record queued so far is written, or `limit`
    /// passes; true if they are all on disk.
    pub fn flush_blocking(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let (ack_tx, ack_rx) = mpsc::channel();
        self.send_by(Message::Flush(ack_tx), deadline)
            && ack_rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or(false)
    }

    /// The last flush before the process exits: writes every record queued
    /// so far, retrying for `retry` while the disk is full, then puts what
    /// still waits into the shutdown reserve. Returns within `limit`.
    pub fn flush_at_exit(&self, retry: Duration, limit: Duration) -> ExitFlush {
        let now = Instant::now();
        let deadline = now + limit;
        let (ack_tx, ack_rx) = mpsc::channel();
        if !self.send_by(Message::Exit(ack_tx, now + retry.min(limit)), deadline) {
            return ExitFlush::NoAnswer;
        }
        ack_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or(ExitFlush::NoAnswer)
    }

    /// Queues a control message, waiting for room until `deadline`.
    fn send_by(&self, mut message: Message, deadline: Instant) -> bool {
        loop {
            match self.tx.try_send(message) {
                Ok(()) => return true,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    message = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
    }

    /// Records dropped because the writer could not keep up or could not
    /// write them for too long.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// True while records cannot be written (they wait in memory).
    pub fn failing(&self) -> bool {
        self.shared.failing.load(Ordering::Relaxed)
    }

    /// True while records cannot be written and `audit.on_failure =
    /// "deny"`: nothing may be served or taken in (the bridges refuse, the
    /// pollers leave messages in the mailbox); one relaxed load otherwise.
    pub fn denying(&self) -> bool {
        self.failing() && self.shared.on_failure == AuditFailure::Deny
    }

    /// The 503 to answer instead of serving a request while
    /// [`AuditLog::denying`].
    pub fn refusal(&self) -> Option<Rejection> {
        if !self.denying() {
            return None;
        }
        Some(Rejection::new(503, "about:blank", "the gateway cannot write its audit trail right now, so it serves no requests; retry later"
                .to_string(), "audit_unavailable").with_header(http::header::RETRY_AFTER, "30"))
    }

    /// Sequence number and hex SHA-256 of the last record on disk.
    pub fn head(&self) -> (u64, String) {
        let (seq, hash) = match self.shared.head.lock() {
            Ok(h) => *h,
            Err(poisoned) => *poisoned.into_inner(),
        };
        (seq, hex::encode(hash))
    }

    /// The chain's metrics, to register with the Prometheus registry:
    /// `mft_audit_chain_records_total`, `mft_audit_chain_head_info{seq,hash}`,
    /// `mft_audit_write_failing`, `mft_audit_dropped_records_total`.
    pub fn collector(&self) -> prometheus::Result<AuditCollector> {
        let desc = crate::metrics::scrape_desc;
        Ok(AuditCollector {
            log: self.clone(),
            descs: vec![
                desc(RECORDS, &[])?,
                desc(HEAD, &["seq", "hash"])?,
                desc(FAILING, &[])?,
                desc(DROPPED, &[])?,
            ],
        })
    }
}

/// Reads the audit chain's state at scrape time.
pub struct AuditCollector {
    log: AuditLog,
    descs: Vec<prometheus::core::Desc>,
}

const RECORDS: (&str, &str) = (
    "mft_audit_chain_records_total",
    "Sequence number of the last audit record on disk (records in the hash chain).",
);
const HEAD: (&str, &str) = (
    "mft_audit_chain_head_info",
    "The audit chain's head: seq and hex SHA-256 of the last record on disk (anchor it with `audit verify --anchor SEQ:HASH`).",
);
const FAILING: (&str, &str) = (
    "mft_audit_write_failing",
    "1 while audit records cannot be written (they wait in memory; audit.on_failure applies).",
);
const DROPPED: (&str, &str) = (
    "mft_audit_dropped_records_total",
    "Audit records dropped: queue full, or the file unwritable for longer than memory allows.",
);

impl prometheus::core::Collector for AuditCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let (seq, hash) = self.log.head();
        let mut out = Vec::with_capacity(4);
        let mut push = |(name, help): (&str, &str), labels: &[(&str, &str)], value: i64| {
            let opts = labels
                .iter()
                .fold(prometheus::Opts::new(name, help), |o, (k, v)| {
                    o.const_label(*k, *v)
                });
            if name.ends_with("_total") {
                if let Ok(c) = prometheus::IntCounter::with_opts(opts) {
                    c.inc_by(u64::try_from(value).unwrap_or(0));
                    out.extend(c.collect());
                }
            } else if let Ok(g) = prometheus::IntGauge::with_opts(opts) {
                g.set(value);
                out.extend(g.collect());
            }
        };
        let seq_i = i64::try_from(seq).unwrap_or(i64::MAX);
        push(RECORDS, &[], seq_i);
        push(HEAD, &[("seq", &seq.to_string()), ("hash", &hash)], 1);
        push(FAILING, &[], i64::from(self.log.failing()));
        let dropped = i64::try_from(self.log.dropped()).unwrap_or(i64::MAX);
        push(DROPPED, &[], dropped);
        out
    }
}

/// A chain that checks out.
#[derive(Debug, PartialEq)]
pub struct Verified {
    /// Chained records read.
    pub records: u64,
    /// Lines before the chain's first record without `seq`/`prev` (written
    /// before the chain existed).
    pub unchained: u64,
    /// Sequence number of the first chained record (1 unless older files
    /// were rotated out).
    pub first_seq: Option<u64>,
    /// Sequence number and SHA-256 of the last record.
    pub head: Option<(u64, [u8; 32])>,
}

/// The first record that breaks the chain.
#[derive(Debug, PartialEq)]
pub struct Broken {
    /// File of the record.
    pub file: PathBuf,
    /// 1-based line in it (0: the file itself).
    pub line: u64,
    /// What is wrong.
    pub why: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.why)
    }
}

/// Checks the hash chain through `files` (oldest first) and that every
/// anchored record (`seq`, SHA-256 taken from the head metric earlier) is
/// there with that hash. Reads line by line: memory is one line.
pub fn verify(files: &[PathBuf], anchors: &[(u64, [u8; 32])]) -> Result<Verified, Broken> {
    use std::io::BufRead as _;
    #[derive(serde::Deserialize)]
    struct Chain {
        seq: Option<u64>,
        prev: Option<String>,
    }
    let mut v = Verified {
        records: 0,
        unchained: 0,
        first_seq: None,
        head: None,
    };
    // The previous chained record: seq, hash, where.
    let mut last: Option<(u64, [u8; 32], &Path, u64)> = None;
    let mut unchained_hash: Option<[u8; 32]> = None;
    let mut buf = Vec::with_capacity(1024);
    let mut end = (Path::new(""), 0u64);
    for file in files {
        let broken = |line: u64, why: String| Broken {
            file: file.clone(),
            line,
            why,
        };
        let f = File::open(file).map_err(|e| broken(0, format!("cannot read: {e}")))?;
        let mut reader = io::BufReader::new(f);
        let mut n = 0u64;
        loop {
            buf.clear();
            let read = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| broken(n + 1, format!("cannot read: {e}")))?;
            if read == 0 {
                break;
            }
            n += 1;
            let Some(line) = buf.strip_suffix(b"\n") else {
                return Err(broken(
                    n,
                    "incomplete last line (a torn write or a cut file)".into(),
                ));
            };
            let chain: Chain = serde_json::from_slice(line)
                .map_err(|_| broken(n, "not a JSON audit record".into()))?;
            let (seq, prev) = match (chain.seq, chain.prev) {
                (Some(seq), Some(prev)) => (seq, prev),
                (None, None) if last.is_none() => {
                    v.unchained += 1;
                    unchained_hash = Some(sha256(line));
                    continue;
                }
                _ => {
                    return Err(broken(
                        n,
                        "record without seq and prev inside the chain".into(),
                    ))
                }
            };
            let mut prev_hash = [0u8; 32];
            hex::decode_to_slice(&prev, &mut prev_hash)
                .map_err(|_| broken(n, "prev is not a hex SHA-256".into()))?;
            match last {
                None => {
                    // The chain's start follows the older unchained lines, if any.
                    if seq == 1 && prev_hash != unchained_hash.unwrap_or(GENESIS) {
                        return Err(broken(
                            n,
                            "seq 1's prev is neither all zeros nor the SHA-256 of the line before it".into(),
                        ));
                    }
                    v.first_seq = Some(seq);
                }
                Some((last_seq, last_hash, last_file, last_line)) => {
                    if seq > last_seq + 1 {
                        let missing = if seq == last_seq + 2 {
                            format!("record seq {} is missing", last_seq + 1)
                        } else {
                            format!("records seq {}..{} are missing", last_seq + 1, seq - 1)
                        };
                        return Err(broken(
                            n,
                            format!("{missing} before seq {seq} (deleted, or lines moved)"),
                        ));
                    }
                    if seq <= last_seq {
                        return Err(broken(
                            n,
                            format!("seq {seq} after seq {last_seq}: lines moved or repeated"),
                        ));
                    }
                    if prev_hash != last_hash {
                        return Err(Broken {
                            file: last_file.to_path_buf(),
                            line: last_line,
                            why: format!(
                                "record seq {last_seq} was altered: its SHA-256 is not the prev of the next record ({}:{n}), or that prev was",
                                file.display()
                            ),
                        });
                    }
                }
            }
            let hash = sha256(line);
            if let Some((_, anchored)) = anchors.iter().find(|(s, _)| *s == seq) {
                if *anchored != hash {
                    return Err(broken(
                        n,
                        format!("record seq {seq} does not match its anchored SHA-256"),
                    ));
                }
            }
            v.records += 1;
            last = Some((seq, hash, file.as_path(), n));
            v.head = Some((seq, hash));
        }
        end = (file.as_path(), n);
    }
    let first = v.first_seq.unwrap_or(1);
    let head = v.head.map_or(0, |(s, _)| s);
    for (seq, _) in anchors {
        if *seq > head || *seq < first {
            return Err(Broken {
                file: end.0.to_path_buf(),
                line: end.1,
                why: if *seq > head {
                    format!("anchored record seq {seq} is missing: the trail ends at seq {head} (records cut from its end)")
                } else {
                    format!("anchored record seq {seq} is not in these files (they start at seq {first})")
                },
            });
        }
    }
    Ok(v)
}

fn sha256(line: &[u8]) -> [u8; 32] {
    Sha256::digest(line).into()
}

/// `"seq"` of a chained line.
fn seq_of(line: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: Option<u64>,
    }
    serde_json::from_slice::<Seq>(line).ok()?.seq
}

/// Lines a stop on a full disk left in the shutdown reserve, which the
/// next start appends to the trail (some may be in it already).
pub fn reserved_records(config: &Audit) -> usize {
    reserve::read(&reserve::path_of(&config.file), reserve::size(PENDING_MAX))
        .map_or(0, |lines| lines.iter().filter(|b| **b == b'\n').count())
}

/// `audit.jsonl.<n>`.
pub fn rotated_name(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The configured trail, oldest file first: `audit.jsonl.<keep>` ...
/// `audit.jsonl.1`, `audit.jsonl` (those that exist).
pub fn trail_files(config: &Audit) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=config.keep)
        .rev()
        .map(|n| rotated_name(&config.file, n))
        .filter(|p| p.exists())
        .collect();
    if config.file.exists() {
        files.push(config.file.clone());
    }
    files
}

/// The size of the trail's current file (cut back to its last whole line)
/// and the head of the chain: its last line, or the last rotated file's
/// when it is empty (rotated just before a stop, or by the other writer).
fn recover_head(file: &mut File, path: &Path) -> io::Result<(u64, Head)> {
    let (size, last) = recover_tail(file, path)?;
    let last = match last {
        Some(line) => Some(line),
        None => last_line_of(&rotated_name(path, 1))?,
    };
    let head = match &last {
        Some(line) => (seq_of(line).unwrap_or(0), sha256(line)),
        None => (0, GENESIS),
    };
    Ok((size, head))
}

/// How much of a file's end is read to find its last line.
const TAIL: u64 = 256 * 1024;

/// The file's size after cutting a torn last line (a crash mid-write), and
/// its last whole line.
fn recover_tail(file: &mut File, path: &Path) -> io::Result<(u64, Option<Vec<u8>>)> {
    let size = file.metadata()?.len();
    let tail = read_tail(file, size)?;
    if tail.is_empty() || tail.ends_with(b"\n") {
        return Ok((size, last_line(&tail)));
    }
    let whole = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let cut = size - (tail.len() - whole) as u64;
    tracing::warn!(
        path = %path.display(),
        bytes = size - cut,
        "audit file ends with a torn record (a crash mid-write): cut back to its last whole line"
    );
    file.set_len(cut)?;
    Ok((cut, last_line(&tail[..whole])))
}

fn read_tail(file: &mut File, size: u64) -> io::Result<Vec<u8>> {
    let start = size.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity((size - start) as usize);
    file.take(TAIL).read_to_end(&mut tail)?;
    Ok(tail)
}

fn last_line_of(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match File::open(path) {
        Ok(mut f) => {
            let size = f.metadata()?.len();
            let tail = read_tail(&mut f, size)?;
            let whole = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            Ok(last_line(&tail[..whole]))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The last line of whole lines (`\n`-terminated), without its newline.
fn last_line(whole: &[u8]) -> Option<Vec<u8>> {
    let body = whole.strip_suffix(b"\n")?;
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    Some(body[start..].to_vec())
}

/// The lines a stopped process left in the shutdown reserve that continue
/// the trail from `head`, and the head after them. Lines already in the
/// trail (a stop between appending them and emptying the reserve) are
/// skipped; a reserve that does not continue the trail is set aside,
/// kept for the operator, rather than chained after the wrong record.
fn take_reserved(path: &Path, head: Head) -> io::Result<(Vec<u8>, Head)> {
    #[derive(serde::Deserialize)]
    struct Chain {
        seq: Option<u64>,
        prev: Option<String>,
    }
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let content = reserve::read(path, reserve::size(PENDING_MAX)).map_err(context)?;
    let mut lines = Vec::with_capacity(content.len());
    let mut last = head;
    let mut skipped = 0usize;
    let mut chained = true;
    for line in content.split_inclusive(|b| *b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let Ok(Chain {
            seq: Some(seq),
            prev: Some(prev),
        }) = serde_json::from_slice::<Chain>(body)
        else {
            chained = false;
            break;
        };
        if lines.is_empty() && seq <= head.0 {
            skipped += 1;
            continue;
        }
        if seq != last.0 + 1 || prev != hex::encode(last.1) {
            chained = false;
            break;
        }
        lines.extend_from_slice(line);
        last = (seq, sha256(body));
    }
    if !chained {
        let kept = reserve::set_aside(path).map_err(context)?;
        tracing::error!(
            path = %kept.display(),
            head = head.0,
            "the audit shutdown reserve does not continue the trail (edited, or left by another process): kept aside, not appended"
        );
        return Ok((Vec::new(), head));
    }
    if !lines.is_empty() {
        tracing::warn!(
            records = last.0 - head.0,
            already_in_trail = skipped,
            path = %path.display(),
            "audit records a stop could not write (disk full) are appended from the shutdown reserve"
        );
    }
    Ok((lines, last))
}

fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

struct Writer {
    path: PathBuf,
    file: File,
    /// Whole lines not yet on disk: this tick's, or those a failed write
    /// left. Reused: no allocation per record.
    pending: Vec<u8>,
    /// Bytes of whole lines in the current file.
    size: u64,
    max_bytes: u64,
    keep: u32,
    /// Sequence number and hash of the last line serialized (pending or not).
    seq: u64,
    prev: [u8; 32],
    /// Sequence number and hash of the last line in `pending`.
    pending_head: (u64, [u8; 32]),
    /// The last second written, formatted.
    stamps: stamps::Stamps,
    shared: Arc<Shared>,
    /// A failed write may have left part of a line that could not be cut.
    torn: bool,
    /// The shutdown reserve.
    reserve: PathBuf,
    /// The reserve holds lines: emptied once they are in the trail.
    reserve_dirty: bool,
    /// Taken around each append ([`handover`]).
    lock: handover::TrailLock,
    /// Tests: writes go to /dev/full and the file is not reopened.
    #[cfg(test)]
    fail_writes: bool,
}

impl ExitFlush {
    /// Says what happened, at the level it deserves.
    pub fn log(&self) {
        match self {
            ExitFlush::Written => {}
            ExitFlush::Reserved { records, path } => tracing::warn!(
                records,
                path = %path.display(),
                "audit file unwritable at exit: the records waiting in memory are in the shutdown reserve; the next start appends them"
            ),
            ExitFlush::Lost { records, error } => tracing::error!(
                records,
                error = %error,
                "audit file and shutdown reserve unwritable at exit: records lost"
            ),
            ExitFlush::NoAnswer => {
                tracing::error!("audit trail could not be flushed before exit")
            }
        }
    }
}

impl Writer {
    fn handle(&mut self, message: Message) {
        match message {
            Message::Record(record) => self.write(&record),
            Message::Flush(ack) => {
                let _ = ack.send(self.flush());
            }
            Message::Exit(ack, retry_until) => {
                let _ = ack.send(self.exit(retry_until));
            }
            #[cfg(test)]
            Message::FailWrites => {
                if let Ok(full) = OpenOptions::new().append(true).open("/dev/full") {
                    self.file = full;
                    self.fail_writes = true;
                }
            }
        }
    }

    /// Writes the pending lines, retrying until `retry_until` while the
    /// disk is full, then stores them in the shutdown reserve.
    fn exit(&mut self, retry_until: Instant) -> ExitFlush {
        loop {
            if self.flush() {
                return ExitFlush::Written;
            }
            if Instant::now() >= retry_until {
                break;
            }
            std::thread::sleep(EXIT_RETRY);
        }
        let records = self.pending.iter().filter(|b| **b == b'\n').count();
        match reserve::store(&self.reserve, &self.pending) {
            Ok(()) => {
                self.reserve_dirty = true;
                ExitFlush::Reserved {
                    records,
                    path: self.reserve.clone(),
                }
            }
            Err(e) => ExitFlush::Lost {
                records,
                error: e.to_string(),
            },
        }
    }

    fn write(&mut self, record: &AuditRecord) {
        if self.pending.len() >= PENDING_MAX {
            // Not chained: the chain holds only lines that reach the disk.
            let n = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::error!(dropped = n, path = %self.path.display(), "audit file unwritable for too long: records dropped");
            }
            return;
        }
        let start = self.pending.len();
        let seq = self.seq + 1;
        record.write_json_stamped(Some((seq, &self.prev)), &mut self.stamps, &mut self.pending);
        self.prev = sha256(&self.pending[start..]);
        self.seq = seq;
        self.pending.push(b'\n');
        self.pending_head = (seq, self.prev);
        if self.size + self.pending.len() as u64 >= self.max_bytes {
            // Rotates once they are on disk.
            self.flush();
        }
    }

    /// Writes the pending lines, under the trail's lock, continuing the
    /// chain from the last line on disk, and rotates the file when it is
    /// full; true if they are all on disk.
    fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        #[cfg(test)]
        if self.fail_writes {
            return self.write_pending();
        }
        match self.lock.acquire(LOCK_WAIT) {
            Ok(true) => {}
            Ok(false) => {
                self.failed(&format!(
                    "{} held by another process for {LOCK_WAIT:?}",
                    handover::lock_path(&self.path).display()
                ));
                return false;
            }
            Err(e) => {
                self.failed(&e);
                return false;
            }
        }
        let written = self.flush_locked();
        // A write that failed and could not be cut back keeps the lock, so
        // the other writer appends after whole lines only.
        if !self.torn {
            self.lock.release();
        }
        written
    }

    fn flush_locked(&mut self) -> bool {
        if self.torn {
            if self.file.set_len(self.size).is_err() {
                return false;
            }
            self.torn = false;
        }
        if let Err(e) = self.follow_other_writer() {
            self.failed(&e);
            return false;
        }
        if !self.write_pending() {
            return false;
        }
        if self.size >= self.max_bytes {
            if let Err(e) = self.rotate() {
                tracing::error!(error = %e, path = %self.path.display(), "cannot rotate audit file");
            }
        }
        true
    }

    /// If another process appended to the trail or rotated it since this
    /// writer's last append, reopens the current file and chains the
    /// pending lines after the last line on disk.
    fn follow_other_writer(&mut self) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let ours = self.file.metadata()?;
        let rotated = match std::fs::metadata(&self.path) {
            Ok(named) => (named.dev(), named.ino()) != (ours.dev(), ours.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(e),
        };
        if rotated {
            self.file = open_append(&self.path)?;
        } else if ours.len() == self.size {
            return Ok(());
        }
        let (size, head) = recover_head(&mut self.file, &self.path)?;
        self.size = size;
        let mut rechained = Vec::with_capacity(self.pending.len() + 64);
        match handover::rechain(&self.pending, head, &mut rechained) {
            Ok(last) => {
                self.pending = rechained;
                (self.seq, self.prev) = last;
                self.pending_head = last;
            }
            // Cannot happen (the writer made every pending line); written
            // as they are, `audit verify` shows where.
            Err(e) => tracing::error!(error = %e, "audit lines not rechained"),
        }
        Ok(())
    }

    /// Marks the trail failing (logged once until it recovers).
    fn failed(&self, why: &dyn std::fmt::Display) {
        if !self.shared.failing.swap(true, Ordering::Relaxed) {
            tracing::error!(error = %why, path = %self.path.display(), on_failure = ?self.shared.on_failure, "cannot write audit records: they wait in memory and are retried");
        }
    }

    /// Appends the pending lines; true if they are all on disk.
    fn write_pending(&mut self) -> bool {
        match self.file.write_all(&self.pending) {
            Ok(()) => {
                self.size += self.pending.len() as u64;
                self.pending.clear();
                match self.shared.head.lock() {
                    Ok(mut h) => *h = self.pending_head,
                    Err(poisoned) => *poisoned.into_inner() = self.pending_head,
                }
                if self.shared.failing.swap(false, Ordering::Relaxed) {
                    tracing::warn!(path = %self.path.display(), "audit file writable again: pending records written");
                }
                if self.reserve_dirty {
                    self.empty_reserve();
                }
                true
            }
            Err(e) => {
                // Part of the lines may be on disk: cut back to the last
                // whole line, so the retry writes them once.
                if self.file.set_len(self.size).is_err() {
                    self.torn = true;
                }
                self.failed(&e);
                false
            }
        }
    }

    /// The reserve's lines are in the trail now: once they are on the disk
    /// for good, the reserve is emptied (and allocated again if it was
    /// not). Should this fail, the next start skips them by their `seq`.
    fn empty_reserve(&mut self) {
        let done = self
            .file
            .sync_data()
            .and_then(|()| reserve::prepare(&self.reserve, reserve::size(PENDING_MAX)));
        match done {
            Ok(()) => self.reserve_dirty = false,
            Err(e) => {
                tracing::warn!(error = %e, path = %self.reserve.display(), "cannot empty the audit shutdown reserve yet")
            }
        }
    }

    /// `audit.jsonl` → `audit.jsonl.1` → ... → `audit.jsonl.<keep>` (oldest removed).
    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        let name = |n: u32| rotated_name(&self.path, n);
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
        self.file = open_append(&self.path)?;
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
        full.path = Some(format!("{}/\"odd\"\n", crate::backend_client::paths::FILES));
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
            on_failure: AuditFailure::Deny,
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
            on_failure: AuditFailure::Deny,
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
            on_failure: AuditFailure::Deny,
        })
        .unwrap();
        for i in 0..400 {
            let mut r = AuditRecord::new("request");
            r.path = Some(crate::backend_client::paths::file(&format!("{i:08}")));
            log.record(r);
        }
        // The writer drains on a tick; wait for it rather than polling, since
        // the last record may have been rotated out of the current file.
        assert!(log.flush_blocking(Duration::from_secs(10)));
        let current = std::fs::read_to_string(&file).unwrap_or_default();
        let previous = std::fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap();
        assert!(
            current.contains(&crate::backend_client::paths::file("00000399"))
                || previous.contains(&crate::backend_client::paths::file("00000399")),
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

    fn chained_log(dir: &Path, max_bytes: u64) -> (PathBuf, AuditLog) {
        let file = dir.join("audit.jsonl");
        let log = AuditLog::open(&Audit {
            file: file.clone(),
            max_bytes,
            keep: 5,
            on_failure: AuditFailure::Deny,
        })
        .unwrap();
        (file, log)
    }

    fn write_n(log: &AuditLog, from: usize, n: usize) {
        for i in from..from + n {
            let mut r = AuditRecord::new("request");
            r.path = Some(crate::backend_client::paths::file(&format!("{i:08}")));
            r.status = Some(200);
            log.record(r);
        }
        assert!(log.flush_blocking(Duration::from_secs(10)));
    }

    #[test]
    fn records_form_a_chain_across_rotation_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (file, log) = chained_log(dir.path(), 4096);
        write_n(&log, 0, 60);
        drop(log);
        // A restart continues from the last line.
        let (_, log) = chained_log(dir.path(), 4096);
        assert_eq!(log.head().0, 60);
        write_n(&log, 60, 10);
        let config = Audit {
            file: file.clone(),
            max_bytes: 4096,
            keep: 5,
            on_failure: AuditFailure::Deny,
        };
        let files = trail_files(&config);
        assert!(files.len() >= 2, "rotated: {files:?}");
        let v = verify(&files, &[]).unwrap();
        assert_eq!(v.records, 70);
        assert_eq!(v.first_seq, Some(1));
        let (seq, hash) = log.head();
        assert_eq!(
            v.head.map(|(s, h)| (s, hex::encode(h))),
            Some((seq, hash.clone()))
        );
        let first = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            first.starts_with(&format!(
                "{{\"seq\":1,\"prev\":\"{}\",\"time\":",
                "0".repeat(64)
            )),
            "{first}"
        );
        // The head metric carries what an external system anchors.
        let text = {
            let registry = prometheus::Registry::new();
            registry
                .register(Box::new(log.collector().unwrap()))
                .unwrap();
            let mut out = String::new();
            prometheus::TextEncoder::new()
                .encode_utf8(&registry.gather(), &mut out)
                .unwrap();
            out
        };
        assert!(text.contains("mft_audit_chain_records_total 70"), "{text}");
        assert!(text.contains(&format!("hash=\"{hash}\"")), "{text}");
        assert!(text.contains("mft_audit_write_failing 0"), "{text}");
        // The anchor holds; a wrong one or one beyond the end does not.
        let mut h = [0u8; 32];
        hex::decode_to_slice(&hash, &mut h).unwrap();
        assert!(verify(&files, &[(70, h)]).is_ok());
        assert!(verify(&files, &[(69, h)])
            .unwrap_err()
            .why
            .contains("anchored"));
        assert!(verify(&files, &[(71, h)])
            .unwrap_err()
            .why
            .contains("cut from its end"));
    }

    fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
        let mut lines: Vec<String> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        edit(&mut lines);
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn verify_names_the_first_altered_missing_or_moved_record() {
        let dir = tempfile::tempdir().unwrap();
        let (file, log) = chained_log(dir.path(), 1 << 20);
        write_n(&log, 0, 10);
        drop(log);
        let files = vec![file.clone()];
        let pristine = std::fs::read(&file).unwrap();
        assert_eq!(verify(&files, &[]).unwrap().records, 10);

        rewrite(&file, |l| {
            l[3] = l[3].replace("\"status\":200", "\"status\":404")
        });
        let b = verify(&files, &[]).unwrap_err();
        assert_eq!((b.line, b.file.clone()), (4, file.clone()), "{b}");
        assert!(b.why.contains("seq 4 was altered"), "{b}");

        std::fs::write(&file, &pristine).unwrap();
        rewrite(&file, |l| {
            l.remove(6);
        });
        let b = verify(&files, &[]).unwrap_err();
        assert_eq!(b.line, 7, "{b}");
        assert!(b.why.contains("record seq 7 is missing"), "{b}");

        std::fs::write(&file, &pristine).unwrap();
        rewrite(&file, |l| l.swap(1, 2));
        let b = verify(&files, &[]).unwrap_err();
        assert_eq!(b.line, 2, "{b}");
        assert!(b.why.contains("missing"), "{b}");

        std::fs::write(&file, &pristine).unwrap();
        rewrite(&file, |l| l[0] = "not json".into());
        assert!(verify(&files, &[]).unwrap_err().why.contains("not a JSON"));

        // A torn last line is cut at the next start, and the chain goes on.
        std::fs::write(&file, [&pristine[..], b"{\"seq\":11,\"pr"].concat()).unwrap();
        assert!(verify(&files, &[]).unwrap_err().why.contains("incomplete"));
        let (_, log) = chained_log(dir.path(), 1 << 20);
        write_n(&log, 10, 1);
        assert_eq!(verify(&files, &[]).unwrap().records, 11);
    }

    #[test]
    fn older_unchained_lines_are_counted_not_failed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        std::fs::write(&file, "{\"time\":\"x\",\"event\":\"auth\"}\n").unwrap();
        let (_, log) = chained_log(dir.path(), 1 << 20);
        write_n(&log, 0, 3);
        let v = verify(std::slice::from_ref(&file), &[]).unwrap();
        assert_eq!((v.unchained, v.records, v.first_seq), (1, 3, Some(1)));
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_stop_on_a_full_disk_keeps_the_records_for_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let (file, first) = chained_log(dir.path(), 1 << 20);
        let reserve = reserve::path_of(&file);
        let meta = std::fs::metadata(&reserve).unwrap();
        assert!(meta.len() >= PENDING_MAX as u64, "allocated at start");
        write_n(&first, 0, 5);
        first.tx.send(Message::FailWrites).unwrap();
        for i in 5..12 {
            let mut r = AuditRecord::new("request");
            r.path = Some(format!("/after/{i}"));
            r.status = Some(200);
            first.record(r);
        }
        assert!(!first.flush_blocking(Duration::from_secs(5)));
        assert!(first.failing());
        let started = Instant::now();
        let out = first.flush_at_exit(Duration::from_millis(300), Duration::from_secs(5));
        assert!(started.elapsed() >= Duration::from_millis(300), "retried");
        assert_eq!(
            out,
            ExitFlush::Reserved {
                records: 7,
                path: reserve.clone()
            }
        );
        assert_eq!(lines(&file).len(), 5);
        let kept = reserve::read(&reserve, reserve::size(PENDING_MAX)).unwrap();
        assert_eq!(kept.iter().filter(|b| **b == b'\n').count(), 7);
        // The first process's writer is left running (its drop would store
        // the reserve again, concurrently with the next start's read).

        // The next start appends them before its own records.
        let (_, second) = chained_log(dir.path(), 1 << 20);
        write_n(&second, 12, 3);
        let all = lines(&file);
        assert_eq!(all.len(), 15);
        assert!(all[5].contains("/after/5") && all[11].contains("/after/11"));
        let v = verify(std::slice::from_ref(&file), &[]).unwrap();
        assert_eq!((v.records, v.head.map(|h| h.0)), (15, Some(15)));
        assert!(
            reserve::read(&reserve, reserve::size(PENDING_MAX))
                .unwrap()
                .is_empty(),
            "emptied once they are in the trail"
        );
        assert_eq!(
            second.flush_at_exit(Duration::ZERO, Duration::from_secs(5)),
            ExitFlush::Written
        );
        drop(second);

        // A stop between appending and emptying: the lines are not
        // appended twice.
        reserve::store(&reserve, (all[5..12].join("\n") + "\n").as_bytes()).unwrap();
        let (_, third) = chained_log(dir.path(), 1 << 20);
        write_n(&third, 15, 1);
        assert_eq!(
            verify(std::slice::from_ref(&file), &[]).unwrap().records,
            16
        );
        drop(third);

        // A reserve that does not continue the trail is kept aside.
        let forged = all[0].replacen("\"seq\":1,", "\"seq\":17,", 1);
        reserve::store(&reserve, (forged + "\n").as_bytes()).unwrap();
        let (_, fourth) = chained_log(dir.path(), 1 << 20);
        write_n(&fourth, 16, 1);
        assert_eq!(
            verify(std::slice::from_ref(&file), &[]).unwrap().records,
            17
        );
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains(".pending.unchained-")
            })
            .collect();
        assert_eq!(aside.len(), 1, "kept for the operator");
        assert!(reserve::read(&reserve, reserve::size(PENDING_MAX))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn two_processes_appending_to_one_trail_keep_one_chain() {
        // The old process draining during an upgrade and the new one
        // serving: two writers, each with its own open file, interleaving
        // and rotating (4 KiB files: about 20 records each).
        let dir = tempfile::tempdir().unwrap();
        let config = Audit {
            file: dir.path().join("audit.jsonl"),
            max_bytes: 4096,
            keep: 50,
            on_failure: AuditFailure::Deny,
        };
        let old = AuditLog::open(&config).unwrap();
        write_n(&old, 0, 7);
        let new = AuditLog::open(&config).unwrap();
        assert_eq!(new.head().0, 7);
        for round in 0..10 {
            write_n(&old, 1000 + round * 3, 3);
            write_n(&new, 2000 + round * 5, 5);
        }
        drop(old);
        write_n(&new, 3000, 4);
        let files = trail_files(&config);
        assert!(files.len() >= 3, "rotated by both writers: {files:?}");
        let v = verify(&files, &[]).unwrap_or_else(|b| panic!("{b}"));
        assert_eq!(v.head.map(|h| h.0), Some(7 + 30 + 50 + 4));
        assert_eq!(new.head().0, 7 + 30 + 50 + 4);
        let all: String = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        for i in (1000..1030).chain(2000..2050).chain(3000..3004) {
            let path = crate::backend_client::paths::file(&format!("{i:08}"));
            assert_eq!(all.matches(&path).count(), 1, "{path} once");
        }
    }

    #[test]
    fn refusal_only_while_failing_and_denying() {
        let dir = tempfile::tempdir().unwrap();
        let (_, log) = chained_log(dir.path(), 1 << 20);
        assert!(log.refusal().is_none());
        log.shared.failing.store(true, Ordering::Relaxed);
        let r = log.refusal().unwrap();
        assert_eq!((r.status, r.audit_reason), (503, "audit_unavailable"));
    }
}
