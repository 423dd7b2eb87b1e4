//! Per-mailbox series, labelled `mailbox="imap:<name>"` / `"pop3:<name>"`.
//! Registered once for both protocols; each poller resolves its handles.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

/// The longest error text kept per mailbox.
const MAX_ERROR_TEXT: usize = 300;

/// The vectors, shared by every poller.
pub struct MailboxMetrics {
    polls: IntCounterVec,
    messages: IntCounterVec,
    last_success: IntGaugeVec,
    last_poll: IntGaugeVec,
    last_error_at: IntGaugeVec,
    connected: IntGaugeVec,
    /// The last error's text per mailbox, for the console (a number
    /// series cannot hold it); written only when a poll fails.
    last_error: Mutex<BTreeMap<String, String>>,
}

/// One mailbox's handles.
pub struct Handles {
    /// Completed polls (a look at the mailbox that got an answer).
    pub polls: IntCounter,
    /// Messages delivered.
    pub delivered: IntCounter,
    /// Messages skipped for good (unparseable, too large, refused by the backend).
    pub failed: IntCounter,
    /// Delivery attempts that will be retried (backend unreachable).
    pub retried: IntCounter,
    /// Unix time of the last successful poll.
    pub last_success: prometheus::IntGauge,
    /// 1 while logged in.
    pub connected: prometheus::IntGauge,
    /// Unix time of the last poll, whatever its outcome.
    pub last_poll: prometheus::IntGauge,
    /// Unix time of the last failed poll.
    pub last_error_at: prometheus::IntGauge,
    mailbox: String,
}

static SHARED: OnceLock<Result<MailboxMetrics, String>> = OnceLock::new();

impl MailboxMetrics {
    fn register(registry: &Registry) -> prometheus::Result<MailboxMetrics> {
        let polls = IntCounterVec::new(
            Opts::new("mft_mailbox_polls_total", "Completed polls per mailbox."),
            &["mailbox"],
        )?;
        let messages = IntCounterVec::new(
            Opts::new(
                "mft_mailbox_messages_total",
                "Messages per mailbox by outcome (delivered, failed, retry).",
            ),
            &["mailbox", "outcome"],
        )?;
        let last_success = IntGaugeVec::new(
            Opts::new(
                "mft_mailbox_last_success_timestamp_seconds",
                "Unix time of the last successful poll per mailbox.",
            ),
            &["mailbox"],
        )?;
        let connected = IntGaugeVec::new(
            Opts::new("mft_mailbox_connected", "1 while the poller is logged in."),
            &["mailbox"],
        )?;
        registry.register(Box::new(polls.clone()))?;
        registry.register(Box::new(messages.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        registry.register(Box::new(connected.clone()))?;
        let last_poll = IntGaugeVec::new(
            Opts::new(
                "mft_mailbox_last_poll_timestamp_seconds",
                "Unix time of the last poll per mailbox, successful or not.",
            ),
            &["mailbox"],
        )?;
        let last_error_at = IntGaugeVec::new(
            Opts::new(
                "mft_mailbox_last_error_timestamp_seconds",
                "Unix time of the last failed poll per mailbox.",
            ),
            &["mailbox"],
        )?;
        registry.register(Box::new(last_poll.clone()))?;
        registry.register(Box::new(last_error_at.clone()))?;
        Ok(MailboxMetrics {
            polls,
            messages,
            last_success,
            last_poll,
            last_error_at,
            connected,
            last_error: Mutex::new(BTreeMap::new()),
        })
    }

    /// The handles of `mailbox`, registering the vectors on first use.
    pub fn handles(registry: &Registry, mailbox: &str) -> anyhow::Result<Handles> {
        let shared = SHARED
            .get_or_init(|| MailboxMetrics::register(registry).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("cannot register mailbox metrics: {e}"))?;
        Ok(Handles {
            polls: shared.polls.with_label_values(&[mailbox]),
            delivered: shared.messages.with_label_values(&[mailbox, "delivered"]),
            failed: shared.messages.with_label_values(&[mailbox, "failed"]),
            retried: shared.messages.with_label_values(&[mailbox, "retry"]),
            last_success: shared.last_success.with_label_values(&[mailbox]),
            connected: shared.connected.with_label_values(&[mailbox]),
            last_poll: shared.last_poll.with_label_values(&[mailbox]),
            last_error_at: shared.last_error_at.with_label_values(&[mailbox]),
            mailbox: mailbox.to_string(),
        })
    }
}

/// The last error text of each mailbox that failed a poll since the start
/// (`imap:<name>` / `pop3:<name>`); empty before any poller ran.
pub fn last_errors() -> BTreeMap<String, String> {
    match SHARED.get() {
        Some(Ok(shared)) => shared
            .last_error
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default(),
        _ => BTreeMap::new(),
    }
}

fn unix_now() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(now).unwrap_or(i64::MAX)
}

impl Handles {
    /// A poll got through: count it and stamp the time.
    pub fn poll_ok(&self) {
        self.polls.inc();
        let now = unix_now();
        self.last_success.set(now);
        self.last_poll.set(now);
    }

    /// A poll (or the login before it) failed: stamp the time and keep
    /// the error's text (no secrets: mail servers' answers and our own
    /// error texts, as audited) for the console.
    pub fn poll_failed(&self, error: &dyn std::fmt::Display) {
        let now = unix_now();
        self.last_poll.set(now);
        self.last_error_at.set(now);
        let mut text = error.to_string();
        if text.len() > MAX_ERROR_TEXT {
            let mut end = MAX_ERROR_TEXT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        if let Some(Ok(shared)) = SHARED.get() {
            if let Ok(mut m) = shared.last_error.lock() {
                m.insert(self.mailbox.clone(), text);
            }
        }
    }
}
