//! The SFTP bridge's Prometheus series.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Sessions, failed logins, bytes and upload outcomes.
pub struct SftpMetrics {
    sessions: IntCounter,
    active: IntGauge,
    /// Open sessions per user (users come from the config: few series).
    per_user: IntGaugeVec,
    auth_failures: IntCounter,
    bytes: IntCounterVec,
    uploads: IntCounterVec,
    /// Folder pages read from the backend for READDIR.
    list_pages: IntCounter,
    /// By reason, resolved once: refusals come in floods.
    refused: [IntCounter; 4],
}

/// Why a connection was closed before or instead of a session.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    /// The client's address is banned: closed before the key exchange.
    Banned = 0,
    /// The client holds `max_connections_per_ip` already.
    PerIp = 1,
    /// The listener holds `max_connections`.
    Busy = 2,
    /// No login within `login_timeout`.
    LoginTimeout = 3,
}

impl SftpMetrics {
    /// Registers the series in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<SftpMetrics> {
        let sessions = IntCounter::new("mft_sftp_sessions_total", "SFTP sessions authenticated")?;
        let active = IntGauge::new("mft_sftp_sessions_active", "SFTP sessions open now")?;
        let auth_failures = IntCounter::new(
            "mft_sftp_auth_failures_total",
            "SFTP login attempts refused (keys, passwords, API keys, limits)",
        )?;
        let bytes = IntCounterVec::new(
            Opts::new("mft_sftp_bytes_total", "File bytes moved through SFTP"),
            &["direction"],
        )?;
        let uploads = IntCounterVec::new(
            Opts::new("mft_sftp_uploads_total", "SFTP uploads by outcome"),
            &["outcome"],
        )?;
        registry.register(Box::new(sessions.clone()))?;
        registry.register(Box::new(active.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(uploads.clone()))?;
        let list_pages = IntCounter::new(
            "mft_sftp_listing_pages_total",
            "Folder pages read from the backend for SFTP directory listings",
        )?;
        registry.register(Box::new(list_pages.clone()))?;
        let refused_vec = IntCounterVec::new(
            Opts::new(
                "mft_sftp_connections_refused_total",
                "SFTP connections closed by the listener's limits",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(refused_vec.clone()))?;
        let per_user = IntGaugeVec::new(
            Opts::new(
                "mft_sftp_user_sessions_active",
                "SFTP sessions open now per user",
            ),
            &["user"],
        )?;
        registry.register(Box::new(per_user.clone()))?;
        let refused = ["banned", "per_ip", "busy", "login_timeout"]
            .map(|r| refused_vec.with_label_values(&[r]));
        Ok(SftpMetrics {
            sessions,
            active,
            per_user,
            auth_failures,
            bytes,
            uploads,
            list_pages,
            refused,
        })
    }

    /// One folder page was read for a listing.
    pub fn list_page(&self) {
        self.list_pages.inc();
    }

    /// A session logged in; the gauge goes down when the guard drops.
    pub fn session(&self) -> ActiveGuard {
        self.sessions.inc();
        self.active.inc();
        ActiveGuard(self.active.clone())
    }

    /// `user` holds `open` sessions now (the admin console's bridges screen).
    pub fn user_sessions(&self, user: &str, open: u32) {
        self.per_user
            .with_label_values(&[user])
            .set(i64::from(open));
    }

    /// A connection closed by a listener limit.
    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].inc();
    }

    /// A refused login.
    pub fn auth_failure(&self) {
        self.auth_failures.inc();
    }

    /// `direction` is `up` or `down`.
    pub fn bytes(&self, direction: &str, n: u64) {
        self.bytes.with_label_values(&[direction]).inc_by(n);
    }

    /// `outcome` is `completed` or `failed`.
    pub fn upload(&self, outcome: &str) {
        self.uploads.with_label_values(&[outcome]).inc();
    }
}

/// Counts one open session while alive.
pub struct ActiveGuard(IntGauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
