//! Per-mailbox series, labelled `mailbox="imap:<name>"` / `"pop3:<name>"`.
//! Registered once for both protocols; each poller resolves its handles.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use std::sync::OnceLock;

/// The vectors, shared by every poller.
pub struct MailboxMetrics {
    polls: IntCounterVec,
    messages: IntCounterVec,
    last_success: IntGaugeVec,
    connected: IntGaugeVec,
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
        Ok(MailboxMetrics {
            polls,
            messages,
            last_success,
            connected,
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
        })
    }
}

impl Handles {
    /// A poll got through: count it and stamp the time.
    pub fn poll_ok(&self) {
        self.polls.inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_success
            .set(i64::try_from(now).unwrap_or(i64::MAX));
    }
}
