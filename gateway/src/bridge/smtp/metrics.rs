//! The SMTP listener's Prometheus series.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use std::collections::HashMap;
use std::sync::Arc;

/// `mft_smtp_sessions_total` per outcome, resolved once: a session counts
/// without a label lookup.
#[derive(Clone)]
pub struct SessionCounters {
    /// Accepted connections.
    pub accepted: IntCounter,
    /// Client outside `allowed_client_networks`.
    pub refused_network: IntCounter,
    /// Banned by the defender.
    pub refused_banned: IntCounter,
    /// At the per-client connection cap.
    pub refused_per_ip: IntCounter,
    /// At the global connection cap.
    pub refused_busy: IntCounter,
    /// A session or DATA time limit ended it.
    pub cut_deadline: IntCounter,
    /// `421 4.3.2` between messages at shutdown.
    pub cut_shutdown: IntCounter,
}

/// `mft_smtp_messages_total` per outcome, resolved once.
#[derive(Clone)]
pub struct MessageCounters {
    /// Spooled and answered 250.
    pub accepted: IntCounter,
    /// Over `max_message_size`.
    pub too_big: IntCounter,
    /// Not a message we can parse.
    pub unparseable: IntCounter,
    /// More attachments than allowed.
    pub too_many_attachments: IntCounter,
    /// The spool could not take it.
    pub spool_error: IntCounter,
}

/// Every reason the session refuses a command with; their counters are
/// resolved at start (another reason still counts, through a lookup).
const REJECT_REASONS: &[&str] = &[
    "audit_unavailable",
    "auth_cancelled",
    "auth_failed",
    "auth_mechanism",
    "auth_required",
    "auth_syntax",
    "auth_unavailable",
    "auth_without_tls",
    "bad_sequence",
    "insufficient_scope",
    "key_revoked",
    "line_too_long",
    "not_implemented",
    "recipient_domain",
    "sender_domain",
    "sender_missing",
    "sender_not_bound",
    "spool_error",
    "syntax",
    "too_big",
    "too_many_attachments",
    "too_many_recipients",
    "unparseable",
];

/// Registered once per process on the gateway's registry.
#[derive(Clone)]
pub struct SmtpMetrics {
    /// `mft_smtp_sessions_total{outcome}`: accepted, refused_network, refused_banned, refused_per_ip, refused_busy, cut_deadline (a session or DATA time limit ended it), cut_shutdown (421 4.3.2 between messages at shutdown).
    pub sessions: IntCounterVec,
    /// `mft_smtp_messages_total{outcome}`: accepted, too_big, unparseable, spool_error.
    pub messages: IntCounterVec,
    /// `mft_smtp_rejections_total{reason}`: commands answered with a 4xx/5xx.
    pub rejections: IntCounterVec,
    /// `mft_smtp_spool_depth`: messages accepted and not yet delivered.
    pub spool_depth: IntGauge,
    /// `mft_smtp_spool_failed_total`: messages moved to `spool/failed/`.
    pub spool_failed: IntCounterVec,
    /// [`SmtpMetrics::sessions`] by outcome.
    pub session: SessionCounters,
    /// [`SmtpMetrics::messages`] by outcome.
    pub message: MessageCounters,
    rejected: Arc<HashMap<&'static str, IntCounter>>,
}

impl SmtpMetrics {
    /// Creates and registers the series.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let sessions = IntCounterVec::new(
            Opts::new("mft_smtp_sessions_total", "SMTP connections by outcome."),
            &["outcome"],
        )?;
        let messages = IntCounterVec::new(
            Opts::new(
                "mft_smtp_messages_total",
                "Messages received over SMTP DATA by outcome.",
            ),
            &["outcome"],
        )?;
        let rejections = IntCounterVec::new(
            Opts::new(
                "mft_smtp_rejections_total",
                "SMTP commands refused, by reason.",
            ),
            &["reason"],
        )?;
        let spool_depth = IntGauge::new(
            "mft_smtp_spool_depth",
            "Messages in the SMTP spool waiting for delivery to the backend.",
        )?;
        let spool_failed = IntCounterVec::new(
            Opts::new(
                "mft_smtp_spool_failed_total",
                "Spooled messages the backend refused permanently (moved to spool/failed).",
            ),
            &["stage"],
        )?;
        registry.register(Box::new(sessions.clone()))?;
        registry.register(Box::new(messages.clone()))?;
        registry.register(Box::new(rejections.clone()))?;
        registry.register(Box::new(spool_depth.clone()))?;
        registry.register(Box::new(spool_failed.clone()))?;
        let by = |vec: &IntCounterVec, label: &str| vec.with_label_values(&[label]);
        let session = SessionCounters {
            accepted: by(&sessions, "accepted"),
            refused_network: by(&sessions, "refused_network"),
            refused_banned: by(&sessions, "refused_banned"),
            refused_per_ip: by(&sessions, "refused_per_ip"),
            refused_busy: by(&sessions, "refused_busy"),
            cut_deadline: by(&sessions, "cut_deadline"),
            cut_shutdown: by(&sessions, "cut_shutdown"),
        };
        let message = MessageCounters {
            accepted: by(&messages, "accepted"),
            too_big: by(&messages, "too_big"),
            unparseable: by(&messages, "unparseable"),
            too_many_attachments: by(&messages, "too_many_attachments"),
            spool_error: by(&messages, "spool_error"),
        };
        let rejected = REJECT_REASONS
            .iter()
            .map(|r| (*r, by(&rejections, r)))
            .collect();
        Ok(SmtpMetrics {
            session,
            message,
            rejected: Arc::new(rejected),
            sessions,
            messages,
            rejections,
            spool_depth,
            spool_failed,
        })
    }

    /// Counts a refused command.
    pub fn reject(&self, reason: &str) {
        match self.rejected.get(reason) {
            Some(counter) => counter.inc(),
            None => self.rejections.with_label_values(&[reason]).inc(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_handles_count_in_the_labelled_series() {
        let registry = Registry::new();
        let m = SmtpMetrics::new(&registry).unwrap();
        m.session.accepted.inc();
        m.message.too_big.inc();
        m.reject("syntax");
        m.reject("something_new");
        assert_eq!(m.sessions.with_label_values(&["accepted"]).get(), 1);
        assert_eq!(m.messages.with_label_values(&["too_big"]).get(), 1);
        assert_eq!(m.rejections.with_label_values(&["syntax"]).get(), 1);
        assert_eq!(m.rejections.with_label_values(&["something_new"]).get(), 1);
    }
}
