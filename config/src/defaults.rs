//! Every default of `gateway.toml` as a named constant, one module per
//! top-level section, and [`TABLE`], which the test `config/tests/defaults.rs`
//! compares with the defaults docs/configuration.md documents: a default
//! changed in one place and not the other fails the suite.
//!
//! Defaults that depend on other values (`server.threads`: the number of
//! CPUs; `max_connections_per_ip` of SMTP and SFTP: at most
//! `max_connections`; the mailbox port by TLS mode) are documented in prose
//! and computed where they are read.

use std::time::Duration;

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const fn mins(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 24 * 3600)
}

/// A documented default, as [`TABLE`] holds it for the documentation test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A duration, documented like `"30s"`.
    Duration(Duration),
    /// A whole number.
    Int(u64),
    /// A size in bytes, documented like `"35 MiB"` or `32 KiB`.
    Size(u64),
    /// A boolean.
    Bool(bool),
    /// A string (also addresses and enumerated choices).
    Str(&'static str),
    /// A list of strings.
    List(&'static [&'static str]),
}

/// Defaults of `[server]` and its sub-tables.
pub mod server {
    use super::{days, secs};
    use std::time::Duration;

    /// `server.https_listen`.
    pub const HTTPS_LISTEN: &str = "0.0.0.0:8443";
    /// `server.admin_listen`.
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9901";
    /// `server.data_dir`.
    pub const DATA_DIR: &str = "data";
    /// `server.certificate_watch_interval`.
    pub const CERTIFICATE_WATCH_INTERVAL: Duration = secs(5);
    /// `server.tls_handshake_timeout`.
    pub const TLS_HANDSHAKE_TIMEOUT: Duration = secs(10);
    /// `server.keepalive_timeout`.
    pub const KEEPALIVE_TIMEOUT: Duration = secs(60);
    /// `server.h2_window`: a 1 GiB h2 upload kept 0.80x the HTTP/1.1
    /// upload's rate with 1 MiB on a quiet machine, and 0.4x with the
    /// cores shared; 16 MiB kept 0.94x shared (docs/benchmarks.md).
    pub const H2_WINDOW: u64 = 16 << 20;
    /// Smallest `server.h2_window`: h2's own default (RFC 9113 6.9.2), rounded.
    pub const H2_WINDOW_MIN: u64 = 64 << 10;
    /// Largest `server.h2_window`, under h2's 2^31 - 1.
    pub const H2_WINDOW_MAX: u64 = 1 << 30;
    /// `server.shutdown_timeout`.
    pub const SHUTDOWN_TIMEOUT: Duration = secs(300);
    /// `server.tls_min_version`.
    pub const TLS_MIN_VERSION: &str = "1.2";
    /// `server.runtime`.
    pub const RUNTIME: &str = "per-core";
    /// `server.http_engine`.
    pub const HTTP_ENGINE: &str = "hyper";
    /// `server.hsts.max_age`.
    pub const HSTS_MAX_AGE: Duration = days(365);
    /// `server.hsts.include_subdomains`.
    pub const HSTS_INCLUDE_SUBDOMAINS: bool = false;
    /// `server.acme.contact`.
    pub const ACME_CONTACT: &[&str] = &[];
    /// `server.acme.challenge`.
    pub const ACME_CHALLENGE: &str = "tls-alpn-01";
}

/// Defaults of `[organization]`.
pub mod organization {

    /// `organization.name`.
    pub const NAME: &str = "ourcorp";
    /// `organization.email_domains`.
    pub const EMAIL_DOMAINS: &[&str] = &[];
}

/// Defaults of `[backend]`.
pub mod backend {
    use super::secs;
    use std::time::Duration;

    /// `backend.via`.
    pub const VIA: &str = "direct";
    /// `backend.signing_algorithm`.
    pub const SIGNING_ALGORITHM: &str = "hmac-sha256";
    /// `backend.signature_ttl`.
    pub const SIGNATURE_TTL: Duration = secs(30);
    /// `backend.connect_timeout`.
    pub const CONNECT_TIMEOUT: Duration = secs(5);
    /// `backend.read_timeout`.
    pub const READ_TIMEOUT: Duration = secs(60);
    /// `backend.write_timeout`.
    pub const WRITE_TIMEOUT: Duration = secs(60);
    /// `backend.idle_timeout`.
    pub const IDLE_TIMEOUT: Duration = secs(60);
    /// `backend.pool_size`.
    pub const POOL_SIZE: usize = 128;
    /// `backend.pool_purge_delay`: HAProxy's `pool-purge-delay` default.
    pub const POOL_PURGE_DELAY: Duration = secs(5);
    /// `backend.retry_attempts`.
    pub const RETRY_ATTEMPTS: u32 = 6;
    /// `backend.retry_base`.
    pub const RETRY_BASE: Duration = Duration::from_millis(200);
    /// `backend.retry_max`.
    pub const RETRY_MAX: Duration = secs(10);
    /// `backend.breaker_threshold`.
    pub const BREAKER_THRESHOLD: u32 = 5;
    /// `backend.breaker_cooldown`.
    pub const BREAKER_COOLDOWN: Duration = secs(5);
}

/// Defaults of `[connector]`.
pub mod connector {
    use super::secs;
    use std::time::Duration;

    /// `connector.handshake_timeout`.
    pub const HANDSHAKE_TIMEOUT: Duration = secs(10);
    /// `connector.ping_interval`.
    pub const PING_INTERVAL: Duration = secs(4);
    /// `connector.link`: the protocol on each connector connection. HTTP/1.1
    /// costs less per small request (no HPACK, no h2 framing): 1.30x the
    /// direct path's instructions against 1.59x (docs/benchmarks.md).
    pub const LINK: &str = "http1";
}

/// Defaults of the connector's own file (`connector.toml`, its
/// `[connector]` table; docs/configuration.md documents them under that
/// heading, so [`TABLE`] names them `connector.KEY` like the gateway's
/// `[connector]` keys, whose names they do not share).
pub mod lan {
    use super::secs;
    use std::time::Duration;

    /// `connections`.
    pub const CONNECTIONS: u32 = 4;
    /// `max_connections`.
    pub const MAX_CONNECTIONS: u32 = 64;
    /// `connect_timeout`.
    pub const CONNECT_TIMEOUT: Duration = secs(5);
    /// `reconnect_base`.
    pub const RECONNECT_BASE: Duration = Duration::from_millis(250);
    /// `reconnect_max`.
    pub const RECONNECT_MAX: Duration = secs(30);
}

/// Defaults of `[admin]`.
pub mod admin {

    /// `admin.allowed_hosts`.
    pub const ALLOWED_HOSTS: &[&str] = &[];
}

/// Defaults of `[auth]` and its sub-tables.
pub mod auth {
    use super::{mins, secs};
    use std::time::Duration;

    /// `auth.cache_ttl`.
    pub const CACHE_TTL: Duration = secs(60);
    /// `auth.jwt.algorithms`.
    pub const JWT_ALGORITHMS: &[&str] = &["RS256"];
    /// `auth.jwt.scopes_claim`.
    pub const JWT_SCOPES_CLAIM: &str = "scope";
    /// `auth.jwt.leeway`.
    pub const JWT_LEEWAY: Duration = secs(30);
    /// `auth.jwt.refresh`.
    pub const JWT_REFRESH: Duration = mins(10);
}

/// Defaults of `[defender]`.
pub mod defender {
    use super::mins;
    use std::time::Duration;

    /// `defender.enabled`.
    pub const ENABLED: bool = true;
    /// `defender.threshold`.
    pub const THRESHOLD: u32 = 10;
    /// `defender.score_per_failure`.
    pub const SCORE_PER_FAILURE: u32 = 1;
    /// `defender.observation_window`.
    pub const OBSERVATION_WINDOW: Duration = mins(5);
    /// `defender.ban_time`.
    pub const BAN_TIME: Duration = mins(15);
}

/// Defaults of `[retention]`.
pub mod retention {
    use super::days;
    use std::time::Duration;

    /// `retention.finished`.
    pub const FINISHED: Duration = days(30);
}

/// Defaults of `[audit]`.
pub mod audit {

    /// `audit.file`.
    pub const FILE: &str = "audit.jsonl";
    /// `audit.max_bytes`.
    pub const MAX_BYTES: u64 = 100 * 1024 * 1024;
    /// `audit.keep`.
    pub const KEEP: u32 = 10;
    /// `audit.on_failure`.
    pub const ON_FAILURE: &str = "deny";
}

/// Defaults of `[rate_limit]`.
pub mod rate_limit {
    use std::time::Duration;

    /// `rate_limit.on_redis_error`.
    pub const ON_REDIS_ERROR: &str = "local";
    /// `rate_limit.redis_timeout`.
    pub const REDIS_TIMEOUT: Duration = Duration::from_millis(50);
    /// `rate_limit.max_tracked_keys`.
    pub const MAX_TRACKED_KEYS: u64 = 100_000;
}

/// Defaults of `[limits]`.
pub mod limits {
    use super::secs;
    use std::time::Duration;

    /// `limits.max_header_count`.
    pub const MAX_HEADER_COUNT: usize = 100;
    /// `limits.max_header_bytes`.
    pub const MAX_HEADER_BYTES: usize = 32 * 1024;
    /// `limits.max_url_bytes`.
    pub const MAX_URL_BYTES: usize = 8 * 1024;
    /// `limits.max_connections_per_ip`.
    pub const MAX_CONNECTIONS_PER_IP: u32 = 512;
    /// `limits.max_connections`: ~400 MiB of idle TLS connections at
    /// ~24 KiB each, a quarter of the packaged unit's `LimitNOFILE`.
    pub const MAX_CONNECTIONS: u32 = 16_384;
    /// `limits.request_header_timeout`.
    pub const REQUEST_HEADER_TIMEOUT: Duration = secs(10);
    /// `limits.body_idle_timeout`.
    pub const BODY_IDLE_TIMEOUT: Duration = secs(60);
    /// `limits.min_body_rate`, bytes per second (Apache's `MinRate`).
    pub const MIN_BODY_RATE: u64 = 500;
    /// `limits.min_body_rate_window`.
    pub const MIN_BODY_RATE_WINDOW: Duration = secs(60);
}

/// Defaults of `[trust]`.
pub mod trust {
    use super::{days, mins, secs};
    use std::time::Duration;

    /// `trust.request_timeout`.
    pub const REQUEST_TIMEOUT: Duration = secs(10);
    /// `trust.max_clock_skew`.
    pub const MAX_CLOCK_SKEW: Duration = secs(60);
    /// `trust.client_auth`.
    pub const CLIENT_AUTH: bool = false;
    /// `trust.relay_poll_interval`.
    pub const RELAY_POLL_INTERVAL: Duration = secs(2);
    /// `trust.relay_retry_base`.
    pub const RELAY_RETRY_BASE: Duration = secs(5);
    /// `trust.relay_retry_max`.
    pub const RELAY_RETRY_MAX: Duration = mins(10);
    /// `trust.relay_max_age`.
    pub const RELAY_MAX_AGE: Duration = days(7);
}

/// Defaults of `[smtp]`.
pub mod smtp {
    use super::mins;
    use std::time::Duration;

    /// `smtp.hostname`.
    pub const HOSTNAME: &str = "localhost";
    /// `smtp.max_message_bytes`.
    pub const MAX_MESSAGE_BYTES: usize = 35 << 20;
    /// `smtp.require_tls_for_auth`.
    pub const REQUIRE_TLS_FOR_AUTH: bool = true;
    /// `smtp.require_auth`.
    pub const REQUIRE_AUTH: bool = true;
    /// `smtp.max_recipients`.
    pub const MAX_RECIPIENTS: usize = 100;
    /// `smtp.command_timeout`.
    pub const COMMAND_TIMEOUT: Duration = mins(5);
    /// `smtp.data_timeout`.
    pub const DATA_TIMEOUT: Duration = mins(3);
    /// `smtp.max_connections`.
    pub const MAX_CONNECTIONS: usize = 100;
    /// `smtp.max_attachments`.
    pub const MAX_ATTACHMENTS: usize = 100;
    /// `smtp.max_connections_per_ip`.
    pub const MAX_CONNECTIONS_PER_IP: usize = 10;
    /// `smtp.max_session_time`.
    pub const MAX_SESSION_TIME: Duration = mins(30);
    /// `smtp.max_data_time`.
    pub const MAX_DATA_TIME: Duration = mins(10);
    /// `smtp.retry_max_interval`.
    pub const RETRY_MAX_INTERVAL: Duration = mins(1);
    /// `smtp.spool_workers`.
    pub const SPOOL_WORKERS: usize = 4;
    /// `smtp.spool_min_free`.
    pub const SPOOL_MIN_FREE: u64 = 64 << 20;
}

/// Defaults of `[imap]`.
pub mod imap {
    use super::secs;
    use std::time::Duration;

    /// `imap.tls`.
    pub const TLS: &str = "implicit";
    /// `imap.poll_secs`.
    pub const POLL_SECS: u64 = 60;
    /// `imap.command_timeout`.
    pub const COMMAND_TIMEOUT: Duration = secs(60);
    /// `imap.max_message_bytes`.
    pub const MAX_MESSAGE_BYTES: u64 = 50 * 1024 * 1024;
    /// `imap.scopes`.
    pub const SCOPES: &[&str] = &["files:write", "deliveries:write"];
    /// `imap.max_attachments`.
    pub const MAX_ATTACHMENTS: usize = 100;
    /// `imap.relay_to_partners`.
    pub const RELAY_TO_PARTNERS: bool = false;
    /// `imap.relay_senders`.
    pub const RELAY_SENDERS: &[&str] = &[];
    /// `imap.folder`.
    pub const FOLDER: &str = "INBOX";
    /// `imap.idle`.
    pub const IDLE: bool = true;
    /// `imap.delete`.
    pub const DELETE: bool = true;
    /// `imap.sender`.
    pub const SENDER: &str = "from";
    /// `imap.recipients`.
    pub const RECIPIENTS: &str = "to";
    /// `imap.subject`.
    pub const SUBJECT: &str = "subject";
    /// `imap.message`.
    pub const MESSAGE: &str = "text";
    /// `imap.after_upload`.
    pub const AFTER_UPLOAD: &str = "seen";
}

/// Defaults of `[[notify]]`.
pub mod notify {
    use super::{days, mins};
    use std::time::Duration;

    /// `notify.period`.
    pub const PERIOD: Duration = mins(60);
    /// `notify.stale_after` (`mailbox_stale`).
    pub const STALE_AFTER: Duration = mins(30);
    /// `notify.expires_within` (`certificate_expiring`).
    pub const EXPIRES_WITHIN: Duration = days(14);
    /// `notify.bans` (`ban_storm`).
    pub const BANS: u32 = 20;
    /// `notify.window` (`ban_storm`).
    pub const WINDOW: Duration = mins(5);
    /// `notify.spool_depth` (`spool_growing`).
    pub const SPOOL_DEPTH: u64 = 100;
    /// `notify.growing_for` (`spool_growing`).
    pub const GROWING_FOR: Duration = mins(15);
}

/// Defaults of `[logging]`.
pub mod logging {

    /// `logging.format`.
    pub const FORMAT: &str = "pretty";
    /// `logging.level`.
    pub const LEVEL: &str = "info";
    /// `logging.access_log`.
    pub const ACCESS_LOG: bool = true;
}

/// Defaults of `[sftp]` and its sub-tables.
pub mod sftp {
    use super::{days, mins, secs};
    use std::time::Duration;

    /// `sftp.listen`.
    pub const LISTEN: &str = "0.0.0.0:2222";
    /// `sftp.idle_timeout`.
    pub const IDLE_TIMEOUT: Duration = mins(10);
    /// `sftp.chunk_bytes`.
    pub const CHUNK_BYTES: usize = 4 << 20;
    /// `sftp.reorder_window_bytes`.
    pub const REORDER_WINDOW_BYTES: usize = 4 << 20;
    /// `sftp.max_connections`.
    pub const MAX_CONNECTIONS: usize = 100;
    /// `sftp.max_connections_per_ip`.
    pub const MAX_CONNECTIONS_PER_IP: usize = 32;
    /// `sftp.login_timeout`.
    pub const LOGIN_TIMEOUT: Duration = secs(30);
    /// `sftp.delivery_max_age`.
    pub const DELIVERY_MAX_AGE: Duration = days(1);
    /// `sftp.users.api_key_login`.
    pub const USER_API_KEY_LOGIN: bool = false;
    /// `sftp.users.api_key_ids`.
    pub const USER_API_KEY_IDS: &[&str] = &[];
    /// `sftp.users.permissions`.
    pub const USER_PERMISSIONS: &[&str] = &["upload", "download", "list"];
    /// `sftp.users.max_connections`.
    pub const USER_MAX_CONNECTIONS: u32 = 10;
    /// `sftp.users.on_upload.deliver_to`.
    pub const USER_ON_UPLOAD_DELIVER_TO: &[&str] = &[];
}

/// Every documented literal default: the key as docs/configuration.md
/// names it (`section.key`) and its value.
pub const TABLE: &[(&str, Value)] = &[
    ("server.https_listen", Value::Str(server::HTTPS_LISTEN)),
    ("server.admin_listen", Value::Str(server::ADMIN_LISTEN)),
    ("server.data_dir", Value::Str(server::DATA_DIR)),
    (
        "server.certificate_watch_interval",
        Value::Duration(server::CERTIFICATE_WATCH_INTERVAL),
    ),
    (
        "server.tls_handshake_timeout",
        Value::Duration(server::TLS_HANDSHAKE_TIMEOUT),
    ),
    (
        "server.keepalive_timeout",
        Value::Duration(server::KEEPALIVE_TIMEOUT),
    ),
    ("server.h2_window", Value::Size(server::H2_WINDOW)),
    (
        "server.shutdown_timeout",
        Value::Duration(server::SHUTDOWN_TIMEOUT),
    ),
    (
        "server.tls_min_version",
        Value::Str(server::TLS_MIN_VERSION),
    ),
    ("server.runtime", Value::Str(server::RUNTIME)),
    ("server.http_engine", Value::Str(server::HTTP_ENGINE)),
    ("server.hsts.max_age", Value::Duration(server::HSTS_MAX_AGE)),
    (
        "server.hsts.include_subdomains",
        Value::Bool(server::HSTS_INCLUDE_SUBDOMAINS),
    ),
    ("server.acme.contact", Value::List(server::ACME_CONTACT)),
    ("server.acme.challenge", Value::Str(server::ACME_CHALLENGE)),
    ("organization.name", Value::Str(organization::NAME)),
    (
        "organization.email_domains",
        Value::List(organization::EMAIL_DOMAINS),
    ),
    ("backend.via", Value::Str(backend::VIA)),
    (
        "backend.signing_algorithm",
        Value::Str(backend::SIGNING_ALGORITHM),
    ),
    (
        "backend.signature_ttl",
        Value::Duration(backend::SIGNATURE_TTL),
    ),
    (
        "backend.connect_timeout",
        Value::Duration(backend::CONNECT_TIMEOUT),
    ),
    (
        "backend.read_timeout",
        Value::Duration(backend::READ_TIMEOUT),
    ),
    (
        "backend.write_timeout",
        Value::Duration(backend::WRITE_TIMEOUT),
    ),
    (
        "backend.idle_timeout",
        Value::Duration(backend::IDLE_TIMEOUT),
    ),
    ("backend.pool_size", Value::Int(backend::POOL_SIZE as u64)),
    (
        "backend.pool_purge_delay",
        Value::Duration(backend::POOL_PURGE_DELAY),
    ),
    (
        "backend.retry_attempts",
        Value::Int(backend::RETRY_ATTEMPTS as u64),
    ),
    ("backend.retry_base", Value::Duration(backend::RETRY_BASE)),
    ("backend.retry_max", Value::Duration(backend::RETRY_MAX)),
    (
        "backend.breaker_threshold",
        Value::Int(backend::BREAKER_THRESHOLD as u64),
    ),
    (
        "backend.breaker_cooldown",
        Value::Duration(backend::BREAKER_COOLDOWN),
    ),
    (
        "connector.handshake_timeout",
        Value::Duration(connector::HANDSHAKE_TIMEOUT),
    ),
    (
        "connector.ping_interval",
        Value::Duration(connector::PING_INTERVAL),
    ),
    ("connector.link", Value::Str(connector::LINK)),
    ("connector.connections", Value::Int(lan::CONNECTIONS as u64)),
    (
        "connector.max_connections",
        Value::Int(lan::MAX_CONNECTIONS as u64),
    ),
    (
        "connector.connect_timeout",
        Value::Duration(lan::CONNECT_TIMEOUT),
    ),
    (
        "connector.reconnect_base",
        Value::Duration(lan::RECONNECT_BASE),
    ),
    (
        "connector.reconnect_max",
        Value::Duration(lan::RECONNECT_MAX),
    ),
    ("admin.allowed_hosts", Value::List(admin::ALLOWED_HOSTS)),
    ("auth.cache_ttl", Value::Duration(auth::CACHE_TTL)),
    ("auth.jwt.algorithms", Value::List(auth::JWT_ALGORITHMS)),
    ("auth.jwt.scopes_claim", Value::Str(auth::JWT_SCOPES_CLAIM)),
    ("auth.jwt.leeway", Value::Duration(auth::JWT_LEEWAY)),
    ("auth.jwt.refresh", Value::Duration(auth::JWT_REFRESH)),
    ("defender.enabled", Value::Bool(defender::ENABLED)),
    ("defender.threshold", Value::Int(defender::THRESHOLD as u64)),
    (
        "defender.score_per_failure",
        Value::Int(defender::SCORE_PER_FAILURE as u64),
    ),
    (
        "defender.observation_window",
        Value::Duration(defender::OBSERVATION_WINDOW),
    ),
    ("defender.ban_time", Value::Duration(defender::BAN_TIME)),
    ("audit.max_bytes", Value::Int(audit::MAX_BYTES)),
    ("audit.keep", Value::Int(audit::KEEP as u64)),
    ("audit.on_failure", Value::Str(audit::ON_FAILURE)),
    (
        "rate_limit.on_redis_error",
        Value::Str(rate_limit::ON_REDIS_ERROR),
    ),
    (
        "rate_limit.redis_timeout",
        Value::Duration(rate_limit::REDIS_TIMEOUT),
    ),
    (
        "rate_limit.max_tracked_keys",
        Value::Int(rate_limit::MAX_TRACKED_KEYS),
    ),
    (
        "limits.max_header_count",
        Value::Int(limits::MAX_HEADER_COUNT as u64),
    ),
    (
        "limits.max_header_bytes",
        Value::Size(limits::MAX_HEADER_BYTES as u64),
    ),
    (
        "limits.max_url_bytes",
        Value::Size(limits::MAX_URL_BYTES as u64),
    ),
    (
        "limits.max_connections_per_ip",
        Value::Int(limits::MAX_CONNECTIONS_PER_IP as u64),
    ),
    (
        "limits.max_connections",
        Value::Int(limits::MAX_CONNECTIONS as u64),
    ),
    (
        "limits.request_header_timeout",
        Value::Duration(limits::REQUEST_HEADER_TIMEOUT),
    ),
    (
        "limits.body_idle_timeout",
        Value::Duration(limits::BODY_IDLE_TIMEOUT),
    ),
    ("limits.min_body_rate", Value::Size(limits::MIN_BODY_RATE)),
    (
        "limits.min_body_rate_window",
        Value::Duration(limits::MIN_BODY_RATE_WINDOW),
    ),
    (
        "trust.request_timeout",
        Value::Duration(trust::REQUEST_TIMEOUT),
    ),
    (
        "trust.max_clock_skew",
        Value::Duration(trust::MAX_CLOCK_SKEW),
    ),
    ("trust.client_auth", Value::Bool(trust::CLIENT_AUTH)),
    (
        "trust.relay_poll_interval",
        Value::Duration(trust::RELAY_POLL_INTERVAL),
    ),
    (
        "trust.relay_retry_base",
        Value::Duration(trust::RELAY_RETRY_BASE),
    ),
    (
        "trust.relay_retry_max",
        Value::Duration(trust::RELAY_RETRY_MAX),
    ),
    ("trust.relay_max_age", Value::Duration(trust::RELAY_MAX_AGE)),
    ("smtp.hostname", Value::Str(smtp::HOSTNAME)),
    (
        "smtp.max_message_bytes",
        Value::Size(smtp::MAX_MESSAGE_BYTES as u64),
    ),
    (
        "smtp.require_tls_for_auth",
        Value::Bool(smtp::REQUIRE_TLS_FOR_AUTH),
    ),
    ("smtp.require_auth", Value::Bool(smtp::REQUIRE_AUTH)),
    (
        "smtp.max_recipients",
        Value::Int(smtp::MAX_RECIPIENTS as u64),
    ),
    (
        "smtp.command_timeout",
        Value::Duration(smtp::COMMAND_TIMEOUT),
    ),
    ("smtp.data_timeout", Value::Duration(smtp::DATA_TIMEOUT)),
    (
        "smtp.max_connections",
        Value::Int(smtp::MAX_CONNECTIONS as u64),
    ),
    (
        "smtp.max_attachments",
        Value::Int(smtp::MAX_ATTACHMENTS as u64),
    ),
    (
        "smtp.max_session_time",
        Value::Duration(smtp::MAX_SESSION_TIME),
    ),
    ("smtp.max_data_time", Value::Duration(smtp::MAX_DATA_TIME)),
    (
        "smtp.retry_max_interval",
        Value::Duration(smtp::RETRY_MAX_INTERVAL),
    ),
    ("smtp.spool_workers", Value::Int(smtp::SPOOL_WORKERS as u64)),
    ("smtp.spool_min_free", Value::Size(smtp::SPOOL_MIN_FREE)),
    ("imap.tls", Value::Str(imap::TLS)),
    ("imap.poll_secs", Value::Int(imap::POLL_SECS)),
    (
        "imap.command_timeout",
        Value::Duration(imap::COMMAND_TIMEOUT),
    ),
    (
        "imap.max_message_bytes",
        Value::Size(imap::MAX_MESSAGE_BYTES),
    ),
    ("imap.scopes", Value::List(imap::SCOPES)),
    (
        "imap.max_attachments",
        Value::Int(imap::MAX_ATTACHMENTS as u64),
    ),
    (
        "imap.relay_to_partners",
        Value::Bool(imap::RELAY_TO_PARTNERS),
    ),
    ("imap.relay_senders", Value::List(imap::RELAY_SENDERS)),
    ("imap.folder", Value::Str(imap::FOLDER)),
    ("imap.idle", Value::Bool(imap::IDLE)),
    ("imap.delete", Value::Bool(imap::DELETE)),
    ("imap.sender", Value::Str(imap::SENDER)),
    ("imap.recipients", Value::Str(imap::RECIPIENTS)),
    ("imap.subject", Value::Str(imap::SUBJECT)),
    ("imap.message", Value::Str(imap::MESSAGE)),
    ("imap.after_upload", Value::Str(imap::AFTER_UPLOAD)),
    ("notify.period", Value::Duration(notify::PERIOD)),
    ("notify.stale_after", Value::Duration(notify::STALE_AFTER)),
    (
        "notify.expires_within",
        Value::Duration(notify::EXPIRES_WITHIN),
    ),
    ("notify.bans", Value::Int(notify::BANS as u64)),
    ("notify.window", Value::Duration(notify::WINDOW)),
    ("notify.spool_depth", Value::Int(notify::SPOOL_DEPTH)),
    ("notify.growing_for", Value::Duration(notify::GROWING_FOR)),
    ("retention.finished", Value::Duration(retention::FINISHED)),
    ("logging.format", Value::Str(logging::FORMAT)),
    ("logging.level", Value::Str(logging::LEVEL)),
    ("logging.access_log", Value::Bool(logging::ACCESS_LOG)),
    ("sftp.listen", Value::Str(sftp::LISTEN)),
    ("sftp.idle_timeout", Value::Duration(sftp::IDLE_TIMEOUT)),
    ("sftp.chunk_bytes", Value::Size(sftp::CHUNK_BYTES as u64)),
    (
        "sftp.reorder_window_bytes",
        Value::Size(sftp::REORDER_WINDOW_BYTES as u64),
    ),
    (
        "sftp.max_connections",
        Value::Int(sftp::MAX_CONNECTIONS as u64),
    ),
    ("sftp.login_timeout", Value::Duration(sftp::LOGIN_TIMEOUT)),
    (
        "sftp.delivery_max_age",
        Value::Duration(sftp::DELIVERY_MAX_AGE),
    ),
    (
        "sftp.users.api_key_login",
        Value::Bool(sftp::USER_API_KEY_LOGIN),
    ),
    (
        "sftp.users.api_key_ids",
        Value::List(sftp::USER_API_KEY_IDS),
    ),
    (
        "sftp.users.permissions",
        Value::List(sftp::USER_PERMISSIONS),
    ),
    (
        "sftp.users.max_connections",
        Value::Int(sftp::USER_MAX_CONNECTIONS as u64),
    ),
    (
        "sftp.users.on_upload.deliver_to",
        Value::List(sftp::USER_ON_UPLOAD_DELIVER_TO),
    ),
];
