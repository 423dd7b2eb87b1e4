//! The SMTP listener's Prometheus series.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

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
        Ok(SmtpMetrics {
            sessions,
            messages,
            rejections,
            spool_depth,
            spool_failed,
        })
    }

    /// Counts a refused command.
    pub fn reject(&self, reason: &str) {
        self.rejections.with_label_values(&[reason]).inc();
    }
}
