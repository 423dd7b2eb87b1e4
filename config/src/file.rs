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
    /// `[admin]`
    #[serde(default)]
    pub admin: AdminFile,
    /// `[auth]`
    #[serde(default)]
    pub auth: AuthFile,
    /// `[defender]`
    #[serde(default)]
    pub defender: DefenderFile,
    /// `[audit]`
    #[serde(default)]
    pub audit: AuditFile,
    /// `[limits]`
    #[serde(default)]
    pub limits: crate::limits::LimitsFile,
    /// `[smtp]`: the SMTP listener bridge (absent: no listener).
    pub smtp: Option<crate::smtp::SmtpFile>,
    /// `[[imap]]`: mailboxes polled over IMAP.
    #[serde(default)]
    pub imap: Vec<crate::mailbox::ImapFile>,
    /// `[[pop3]]`: mailboxes polled over POP3.
    #[serde(default)]
    pub pop3: Vec<crate::mailbox::Pop3File>,
    /// `[trust]`: trust-network settings.
    #[serde(default)]
    pub trust: crate::trust::TrustFile,
    /// `[sftp]`: the SFTP server bridge (absent: no server).
    pub sftp: Option<crate::sftp::SftpFile>,
    /// `[connector]`: where DMZ-mode connectors dial in (absent: no listener).
    pub connector: Option<crate::connector::ConnectorListenFile>,
    /// `[[notify]]`: notification rules.
    #[serde(default)]
    pub notify: Vec<crate::notify::NotifyFile>,
    /// `[retention]`
    #[serde(default)]
    pub retention: RetentionFile,
}

/// `[retention]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    /// How long finished work stays in the store: a duration or `"never"`.
    pub finished: Option<String>,
}

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// Secret reference of the bearer token for `/admin/v1/...`.
    pub token: Option<String>,
    /// Host names (besides IP literals and `localhost`) the admin listener
    /// answers to, e.g. the name Prometheus scrapes.
    pub allowed_hosts: Option<Vec<String>>,
}

/// `[auth]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    /// Key store: absent for SQLite under `data_dir`, or a `postgres://` URL (may be a secret reference).
    pub store: Option<String>,
    /// How long a verified key stays in the in-memory cache.
    pub cache_ttl: Option<String>,
    /// `[[auth.jwt]]` trusted token issuers.
    #[serde(default)]
    pub jwt: Vec<JwtFile>,
    /// `[[auth.scopes]]` route policy overrides.
    #[serde(default)]
    pub scopes: Vec<ScopeRuleFile>,
}

/// `[[auth.jwt]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtFile {
    /// Short name of the issuer, part of its principals (`jwt:<name>:<sub>`);
    /// required when several issuers are configured.
    pub name: Option<String>,
    /// Expected `iss`.
    pub issuer: Option<String>,
    /// Accepted `aud` values.
    pub audience: Option<Vec<String>>,
    /// JWKS location: an `https://` URL or `file:PATH`.
    pub jwks: Option<String>,
    /// Allowed `alg` values, e.g. `["RS256"]`.
    pub algorithms: Option<Vec<String>>,
    /// Claim holding the scopes (space-separated string or array).
    pub scopes_claim: Option<String>,
    /// Clock-skew allowance for `exp` and `nbf`.
    pub leeway: Option<String>,
    /// How often the JWKS is refetched.
    pub refresh: Option<String>,
    /// Extra CA certificate (PEM) to trust for the JWKS URL.
    pub ca_file: Option<String>,
}

/// `[[auth.scopes]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeRuleFile {
    /// HTTP methods; absent for any.
    pub methods: Option<Vec<String>>,
    /// Path prefix, on segment boundaries.
    pub path_prefix: Option<String>,
    /// Scope required.
    pub scope: Option<String>,
}

/// `[defender]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefenderFile {
    /// Whether failed authentications lead to bans.
    pub enabled: Option<bool>,
    /// Score at which an IP is banned.
    pub threshold: Option<u32>,
    /// Points per failed authentication.
    pub score_per_failure: Option<u32>,
    /// Window in which failures add up.
    pub observation_window: Option<String>,
    /// Length of a ban.
    pub ban_time: Option<String>,
}

/// `[audit]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// Audit file, relative to `server.data_dir` unless absolute.
    pub file: Option<String>,
    /// Size at which the file is rotated, in bytes.
    pub max_bytes: Option<u64>,
    /// Rotated files kept.
    pub keep: Option<u32>,
    /// `"deny"` or `"allow"`: what requests get while records cannot be written.
    pub on_failure: Option<String>,
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
    /// h2 flow-control window per stream and per connection.
    pub h2_window: Option<crate::limits::Size>,
    /// After SIGTERM: how long in-flight requests may take to finish.
    pub shutdown_timeout: Option<String>,
    /// Lowest TLS version of the public listener: "1.2" or "1.3".
    pub tls_min_version: Option<String>,
    /// HTTP implementation of the public listener: "pingora" or "hyper".
    pub http_engine: Option<String>,
    /// Scheduling of the public listener's workers: "work-stealing" or "per-core".
    pub runtime: Option<String>,
    /// `[[server.certificates]]`: more certificates, chosen by SNI.
    #[serde(default)]
    pub certificates: Vec<CertificateFile>,
    /// How often the certificate and key files are checked for changes.
    pub certificate_watch_interval: Option<String>,
    /// Cipher suites of the public listener, as rustls names them.
    pub tls_cipher_suites: Option<Vec<String>>,
    /// `[server.hsts]`: send `Strict-Transport-Security` on every answer.
    pub hsts: Option<HstsFile>,
    /// `[server.acme]`: certificates from an ACME CA (RFC 8555).
    pub acme: Option<AcmeFile>,
}

/// `[server.hsts]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HstsFile {
    /// `max-age`, a duration ("365d").
    pub max_age: Option<String>,
    /// Adds `includeSubDomains`.
    pub include_subdomains: Option<bool>,
}

/// `[server.acme]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeFile {
    /// The CA's directory URL.
    pub directory: Option<String>,
    /// Account contacts (`mailto:` URLs).
    pub contact: Option<Vec<String>>,
    /// Host names the certificate covers.
    pub names: Option<Vec<String>>,
    /// Extra CA (PEM) that signs the directory's own HTTPS certificate.
    pub ca_file: Option<String>,
    /// `"tls-alpn-01"` or `"http-01"`.
    pub challenge: Option<String>,
    /// Plain-HTTP listener for HTTP-01 (`/.well-known/acme-challenge/`).
    pub http_listen: Option<String>,
}

/// `[[server.certificates]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFile {
    /// Host names (SNI) this certificate serves; `*.example.com` covers one label.
    pub names: Option<Vec<String>>,
    /// PEM certificate chain.
    pub cert: Option<String>,
    /// PEM private key.
    pub key: Option<String>,
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
    /// `"direct"` (default) or `"connector"` (DMZ mode).
    pub via: Option<String>,
    /// Secret reference of the request-signing key.
    pub signing_key: Option<String>,
    /// `"hmac-sha256"` (default) or `"ed25519"`.
    pub signing_algorithm: Option<String>,
    /// Key id signed as `keyid`; default: a fingerprint of the key.
    pub signing_key_id: Option<String>,
    /// Validity of each signature (`expires - created`).
    pub signature_ttl: Option<String>,
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
    /// Idle connections unused this long are surplus: half of them close
    /// every period.
    pub pool_purge_delay: Option<String>,
    /// Attempts per bridge call to the backend, the first included.
    pub retry_attempts: Option<u32>,
    /// First retry delay; doubled per attempt, with full jitter.
    pub retry_base: Option<String>,
    /// Longest delay between two attempts.
    pub retry_max: Option<String>,
    /// Consecutive failed calls that open the circuit breaker.
    pub breaker_threshold: Option<u32>,
    /// How long an open breaker refuses calls before one probe.
    pub breaker_cooldown: Option<String>,
}

/// `[rate_limit]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// Per authenticated principal, e.g. `"50/s burst 100"`.
    pub per_key: Option<String>,
    /// Per client IP before authentication.
    pub per_ip: Option<String>,
    /// Shared state for cluster-wide limits: a `redis://` URL or a secret reference to one.
    pub redis: Option<String>,
    /// `"local"` or `"deny"`: what to do while Redis cannot be reached.
    pub on_redis_error: Option<String>,
    /// Longest wait for one Redis call.
    pub redis_timeout: Option<String>,
    /// Most keys (IPs, principals) whose limiter state is kept in memory.
    pub max_tracked_keys: Option<u64>,
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
