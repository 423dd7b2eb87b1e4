//! The serde schema of `gateway.toml`, exactly as an operator writes it.
//!
//! Every table denies unknown fields so a typo is an error, not a silently
//! ignored setting. Values stay as written (strings for addresses, durations and
//! secrets); [`crate::model`] holds the validated forms.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[server]`
    #[serde(default)]
    pub server: ServerFile,
    /// `[organization]`
    #[serde(default)]
    pub organization: OrganizationFile,
    /// `[backend]`
    pub backend: Option<BackendFile>,
    /// `[rate_limit]`
    #[serde(default)]
    pub rate_limit: RateLimitFile,
    /// `[logging]`
    #[serde(default)]
    pub logging: LoggingFile,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// Public HTTPS listener, `IP:PORT`.
    pub https_listen: Option<String>,
    /// PEM certificate chain.
    pub tls_cert: Option<String>,
    /// PEM private key.
    pub tls_key: Option<String>,
    /// Admin listener (health, metrics, admin API).
    pub admin_listen: Option<String>,
    /// Directory for the key store, spool and bridge state.
    pub data_dir: Option<String>,
    /// Worker threads of the proxy.
    pub threads: Option<usize>,
    /// Time allowed for a client to finish the TLS handshake.
    pub tls_handshake_timeout: Option<String>,
    /// How long an idle HTTP/1.1 keep-alive connection is kept.
    pub keepalive_timeout: Option<String>,
    /// After SIGTERM: how long in-flight requests may take to finish.
    pub shutdown_timeout: Option<String>,
}

/// `[organization]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationFile {
    /// Short name of the organisation.
    pub name: Option<String>,
    /// E-mail domains of the organisation's users.
    pub email_domains: Option<Vec<String>>,
}

/// `[backend]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendFile {
    /// Base URL of the MFT REST backend.
    pub url: Option<String>,
    /// Secret reference of the request-signing key.
    pub signing_key: Option<String>,
    /// TCP (and TLS) connect timeout.
    pub connect_timeout: Option<String>,
    /// Longest wait for the backend to send data while a response is expected.
    pub read_timeout: Option<String>,
    /// Longest wait for the backend to accept data while a body is being sent.
    pub write_timeout: Option<String>,
    /// How long an idle pooled upstream connection is kept.
    pub idle_timeout: Option<String>,
    /// Idle upstream connections kept per worker pool.
    pub pool_size: Option<usize>,
}

/// `[rate_limit]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// Per authenticated principal, e.g. `"50/s burst 100"`.
    pub per_key: Option<String>,
    /// Per client IP before authentication.
    pub per_ip: Option<String>,
}

/// `[logging]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingFile {
    /// `"pretty"` or `"json"`.
    pub format: Option<String>,
    /// A tracing filter, e.g. `"info"` or `"info,mft_gateway=debug"`.
    pub level: Option<String>,
    /// One line per request at target `access`.
    pub access_log: Option<bool>,
}
