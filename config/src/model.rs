//! The validated runtime configuration.

use crate::quota::Quota;
use crate::secret::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// Everything the gateway needs, validated and resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this was loaded from.
    pub source: PathBuf,
    /// `[server]`
    pub server: Server,
    /// `[organization]`
    pub organization: Organization,
    /// `[backend]`
    pub backend: Backend,
    /// `[rate_limit]`
    pub rate_limit: RateLimit,
    /// `[logging]`
    pub logging: Logging,
    /// `[admin]`
    pub admin: Admin,
    /// `[auth]`
    pub auth: Auth,
    /// `[defender]`
    pub defender: Defender,
    /// `[audit]`
    pub audit: Audit,
    /// `[limits]`
    pub limits: crate::limits::Limits,
    /// `[smtp]`, when the SMTP listener is configured.
    pub smtp: Option<crate::smtp::Smtp>,
    /// `[[imap]]` mailboxes.
    pub imap: Vec<crate::mailbox::Imap>,
    /// `[[pop3]]` mailboxes.
    pub pop3: Vec<crate::mailbox::Pop3>,
    /// `[trust]`
    pub trust: crate::trust::Trust,
    /// `[sftp]`, when the SFTP server is configured.
    pub sftp: Option<crate::sftp::Sftp>,
    /// `[connector]`, when connectors may dial in (DMZ mode).
    pub connector: Option<crate::connector::ConnectorListen>,
    /// `[[notify]]` rules.
    pub notify: Vec<crate::notify::Notify>,
    /// `[retention]`
    pub retention: Retention,
}

/// How long the store keeps history.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// Rows of work that ended successfully (delivered relays, sent
    /// receipts and messages, delivered webhook messages and SFTP uploads)
    /// are deleted this long after they ended; `None`: kept for ever.
    pub finished: Option<Duration>,
}

/// The admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    /// Bearer token for `/admin/v1/...`; without one the admin API is disabled.
    pub token: Option<Secret>,
    /// Host names the admin listener answers to besides IP literals and
    /// `localhost` (lower case): a page in a browser on this host, served
    /// from a name that an attacker points at 127.0.0.1 (DNS rebinding),
    /// gets no answer.
    pub allowed_hosts: Vec<String>,
}

/// Shortest admin token accepted: it guards every key and partner.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// Authentication.
#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    /// `None`: SQLite under `data_dir`; otherwise a `postgres://` URL.
    pub store: Option<Secret>,
    /// Lifetime of a verified key in the cache.
    pub cache_ttl: Duration,
    /// Trusted JWT issuers.
    pub jwt: Vec<JwtIssuer>,
    /// Route policy overrides, ahead of the defaults.
    pub scopes: Vec<ScopeRule>,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Fetched and refreshed over HTTPS.
    Url(Url),
    /// Read from a file (re-read on refresh).
    File(PathBuf),
}

/// One trusted token issuer.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtIssuer {
    /// Short name: principals are `jwt:<name>:<sub>`. `None` only for a
    /// single unnamed issuer, whose principals stay `jwt:<sub>`.
    pub name: Option<String>,
    /// Expected `iss`.
    pub issuer: String,
    /// Accepted audiences.
    pub audience: Vec<String>,
    /// Key source.
    pub jwks: JwksSource,
    /// Allowed algorithms, upper-case names as in JOSE (`RS256`, `ES256`, `EdDSA`, `HS256`...).
    pub algorithms: Vec<String>,
    /// Claim with the scopes.
    pub scopes_claim: String,
    /// Allowed clock skew.
    pub leeway: Duration,
    /// Refresh interval of the key set.
    pub refresh: Duration,
    /// Extra CA for the JWKS URL.
    pub ca_file: Option<PathBuf>,
}

/// A route-to-scope rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRule {
    /// Upper-case methods; `None` for any.
    pub methods: Option<Vec<String>>,
    /// Path prefix.
    pub path_prefix: String,
    /// Scope required.
    pub scope: String,
}

/// Brute-force defence.
#[derive(Debug, Clone, PartialEq)]
pub struct Defender {
    /// On or off.
    pub enabled: bool,
    /// Ban threshold.
    pub threshold: u32,
    /// Points per failure.
    pub score_per_failure: u32,
    /// Failures older than this are forgotten.
    pub observation_window: Duration,
    /// Ban length.
    pub ban_time: Duration,
}

/// The audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    /// JSON-lines file.
    pub file: PathBuf,
    /// Rotation size.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
    /// What requests get while audit records cannot be written.
    pub on_failure: AuditFailure,
}

/// `audit.on_failure`: what happens to requests while the audit trail cannot
/// be written (its disk is full, its file system read-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditFailure {
    /// Refuse them with 503 until records can be written again.
    #[default]
    Deny,
    /// Serve them; their records wait in memory (bounded), then are dropped and counted.
    Allow,
}

/// Listeners, TLS material and process behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// Public HTTPS listener.
    pub https_listen: SocketAddr,
    /// Certificate chain file (absolute).
    pub tls_cert: PathBuf,
    /// Private key file (absolute).
    pub tls_key: PathBuf,
    /// Admin listener; never public.
    pub admin_listen: SocketAddr,
    /// Data directory (absolute).
    pub data_dir: PathBuf,
    /// Proxy worker threads.
    pub threads: usize,
    /// Limit for a client to complete its TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Idle HTTP/1.1 keep-alive time.
    pub keepalive_timeout: Duration,
    /// h2 flow-control window per stream and per connection, in bytes.
    pub h2_window: u32,
    /// Drain time for in-flight requests after SIGTERM.
    pub shutdown_timeout: Duration,
    /// Lowest TLS version the public listener accepts.
    pub tls_min_version: TlsVersion,
    /// Which HTTP implementation serves the public listener.
    pub http_engine: HttpEngine,
    /// How the hyper engine's workers share the connections.
    pub runtime: Runtime,
    /// `[[server.certificates]]`: chosen by SNI; `tls_cert`/`tls_key` is
    /// the default for any other name (and for clients without SNI).
    pub certificates: Vec<Certificate>,
    /// How often the certificate and key files are checked for changes.
    pub certificate_watch_interval: Duration,
    /// Cipher suites (rustls names) in order of preference; empty: rustls's defaults.
    pub tls_cipher_suites: Vec<String>,
    /// `Strict-Transport-Security` on every HTTPS answer, when set.
    pub hsts: Option<Hsts>,
    /// Certificates obtained and renewed from an ACME CA.
    pub acme: Option<Acme>,
}

/// `[server.hsts]`
#[derive(Debug, Clone, PartialEq)]
pub struct Hsts {
    /// `max-age`.
    pub max_age: Duration,
    /// `includeSubDomains`.
    pub include_subdomains: bool,
}

impl Hsts {
    /// The header value, e.g. `max-age=31536000; includeSubDomains`.
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age.as_secs());
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        v
    }
}

/// `[server.acme]`
#[derive(Debug, Clone, PartialEq)]
pub struct Acme {
    /// Directory URL (https).
    pub directory: String,
    /// Account contacts (`mailto:` URLs).
    pub contact: Vec<String>,
    /// Lower-case host names of the certificate (no wildcards: TLS-ALPN-01).
    pub names: Vec<String>,
    /// Extra CA for the directory's own TLS (absolute path).
    pub ca_file: Option<PathBuf>,
    /// How the CA validates the names.
    pub challenge: AcmeChallenge,
}

/// `server.acme.challenge`: how the CA checks that the gateway answers for
/// its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// RFC 8737 on the HTTPS listener itself.
    TlsAlpn01,
    /// RFC 8555 §8.3 on a plain-HTTP listener (`server.acme.http_listen`)
    /// that serves only `/.well-known/acme-challenge/`.
    Http01 {
        /// `server.acme.http_listen` (port 80 of each name, as the CA sees it).
        listen: std::net::SocketAddr,
    },
}

/// The cipher suites `server.tls_cipher_suites` accepts: every suite of
/// rustls's ring provider, spelled as rustls prints them.
pub const CIPHER_SUITES: &[&str] = &[
    "TLS13_AES_256_GCM_SHA384",
    "TLS13_AES_128_GCM_SHA256",
    "TLS13_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// One `[[server.certificates]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Certificate {
    /// Lower-case host names; `*.example.com` matches exactly one label.
    pub names: Vec<String>,
    /// Certificate chain file (absolute).
    pub cert: PathBuf,
    /// Private key file (absolute).
    pub key: PathBuf,
}

/// How the public listener's worker threads share the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Runtime {
    /// One multi-threaded tokio runtime: a busy worker's tasks move to an
    /// idle one, so a few large transfers use every core.
    WorkStealing,
    /// One single-threaded runtime per worker, each with its own
    /// `SO_REUSEPORT` socket and backend pool, as nginx's workers: no
    /// wake-up crosses threads (cheaper per request); a new connection goes
    /// to the worker holding the fewest and stays there. The default.
    #[default]
    PerCore,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 (and 1.3).
    #[default]
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

/// The HTTP implementation of the public listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpEngine {
    /// hyper 1.x + hyper-util (gateway/src/proxy/accept.rs onward).
    #[default]
    Hyper,
    /// pingora's `ProxyHttp`, kept selectable for one release as a fallback.
    Pingora,
}

/// Our organisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Organization {
    /// Short name.
    pub name: String,
    /// Lower-case e-mail domains.
    pub email_domains: Vec<String>,
}

/// The MFT REST backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// Base URL (`http` or `https`, with a host). With `via = "connector"`
    /// only its authority is used (sent as `Host` and signed); the
    /// connector dials its own backend URL.
    pub url: Url,
    /// Whether the gateway dials the backend or connectors carry the calls.
    pub via: crate::connector::Via,
    /// Request-signing key: the HMAC secret (`base64:...` or text), or an
    /// Ed25519 PKCS#8 PEM.
    pub signing_key: Option<Secret>,
    /// Algorithm of `signing_key`.
    pub signing_algorithm: SigningAlgorithm,
    /// Key id to sign as `keyid`; `None`: a fingerprint of the key.
    pub signing_key_id: Option<String>,
    /// Validity of each signature.
    pub signature_ttl: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Read timeout.
    pub read_timeout: Duration,
    /// Write timeout.
    pub write_timeout: Duration,
    /// Idle time of a pooled connection.
    pub idle_timeout: Duration,
    /// Idle connections kept.
    pub pool_size: usize,
    /// Idle connections unused this long are surplus: half of those close
    /// every `pool_purge_delay`, so a burst's extra connections drain.
    pub pool_purge_delay: Duration,
    /// Attempts per bridge call, the first included (at least 1).
    pub retry_attempts: u32,
    /// First retry delay; doubled per attempt, full jitter.
    pub retry_base: Duration,
    /// Longest delay between two attempts.
    pub retry_max: Duration,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker refuses calls before letting one probe through.
    pub breaker_cooldown: Duration,
}

/// How requests toward the backend are signed (RFC 9421).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// `hmac-sha256`: a secret shared with the backend.
    HmacSha256,
    /// `ed25519`: the backend holds only the public key.
    Ed25519,
}

impl SigningAlgorithm {
    /// The RFC 9421 registry name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::HmacSha256 => "hmac-sha256",
            SigningAlgorithm::Ed25519 => "ed25519",
        }
    }
}

/// Rate-limit quotas.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Per principal.
    pub per_key: Option<Quota>,
    /// Per client IP before authentication.
    pub per_ip: Option<Quota>,
    /// `redis://` URL of the shared state; `None`: limits per instance.
    pub redis: Option<Secret>,
    /// What to do while Redis cannot be reached.
    pub on_redis_error: OnRedisError,
    /// Longest wait for one Redis call.
    pub redis_timeout: Duration,
    /// Most keys whose limiter state is kept in memory (per kind: IPs, principals).
    pub max_tracked_keys: u64,
}

/// Policy while the shared rate-limit store is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisError {
    /// Keep serving under this instance's own limits (fail open to local).
    Local,
    /// Refuse limited requests with 503 (fail closed).
    Deny,
}

/// Log output.
#[derive(Debug, Clone, PartialEq)]
pub struct Logging {
    /// Output format.
    pub format: LogFormat,
    /// tracing filter directive.
    pub level: String,
    /// Whether to emit one access line per request.
    pub access_log: bool,
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured when on a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}
