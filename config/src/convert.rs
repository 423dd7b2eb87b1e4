//! File schema -> runtime model, collecting every error with its key and line.

use crate::defaults as D;
use crate::error::Issue;
use crate::file::{BackendFile, FileConfig};
use crate::locate::SpanIndex;
use crate::model::*;
use crate::quota;
use crate::secret::{self, Secret, SecretSource};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) struct Ctx<'a> {
    base: &'a Path,
    index: &'a SpanIndex,
    pub(crate) errors: Vec<Issue>,
    pub(crate) warnings: Vec<Issue>,
    /// Keys read as secret references, for [`crate::redact`].
    pub(crate) secret_keys: Vec<String>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(base: &'a Path, index: &'a SpanIndex) -> Self {
        Ctx {
            base,
            index,
            errors: Vec::new(),
            warnings: Vec::new(),
            secret_keys: Vec::new(),
        }
    }

    fn issue(&self, key: &str, message: String) -> Issue {
        // A missing key has no line of its own; point at its table instead.
        let line = self.index.line_of_key(key).or_else(|| {
            key.rsplit_once('.')
                .and_then(|(table, _)| self.index.line_of_key(table))
        });
        Issue {
            key: key.to_string(),
            line,
            message,
        }
    }

    pub(crate) fn error(&mut self, key: &str, message: impl Into<String>) {
        let issue = self.issue(key, message.into());
        self.errors.push(issue);
    }

    pub(crate) fn warn(&mut self, key: &str, message: impl Into<String>) {
        let issue = self.issue(key, message.into());
        self.warnings.push(issue);
    }

    pub(crate) fn path(&self, value: &str) -> PathBuf {
        let p = Path::new(value);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    pub(crate) fn addr(
        &mut self,
        key: &str,
        value: Option<String>,
        default: &str,
    ) -> Option<SocketAddr> {
        let text = value.unwrap_or_else(|| default.to_string());
        match text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    key,
                    format!("expected IP:PORT (e.g. \"0.0.0.0:8443\"), got {text:?}"),
                );
                None
            }
        }
    }

    pub(crate) fn duration(
        &mut self,
        key: &str,
        value: Option<String>,
        default: Duration,
    ) -> Duration {
        let Some(text) = value else { return default };
        match humantime::parse_duration(&text) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.error(key, "must be greater than zero");
                default
            }
            Err(e) => {
                self.error(
                    key,
                    format!("expected a duration like \"30s\" or \"5m\": {e}"),
                );
                default
            }
        }
    }

    /// Like [`Ctx::secret`] but a literal value is fine (a database URL
    /// without a password is not a secret); warns only if it embeds a password.
    pub(crate) fn secret_quiet(&mut self, key: &str, reference: Option<String>) -> Option<Secret> {
        let reference = reference?;
        self.secret_keys.push(key.to_string());
        match secret::resolve(&reference, self.base) {
            Ok((secret, source)) => {
                if source == SecretSource::Literal
                    && url::Url::parse(secret.expose()).is_ok_and(|u| u.password().is_some())
                {
                    self.warn(
                        key,
                        "URL with a password written in clear; use \"env:NAME\" or \"file:PATH\"",
                    );
                }
                Some(secret)
            }
            Err(message) => {
                self.error(key, message);
                None
            }
        }
    }

    pub(crate) fn secret(&mut self, key: &str, reference: Option<String>) -> Option<Secret> {
        let reference = reference?;
        self.secret_keys.push(key.to_string());
        match secret::resolve(&reference, self.base) {
            Ok((secret, source)) => {
                if source == SecretSource::Literal {
                    self.warn(
                        key,
                        "secret is written in clear in the config file; use \"env:NAME\" or \"file:PATH\"",
                    );
                }
                Some(secret)
            }
            Err(message) => {
                self.error(key, message);
                None
            }
        }
    }
}

/// Longest path a Unix socket address holds on Linux (`sun_path` is 108
/// bytes with its terminating NUL).
const MAX_UNIX_SOCKET_PATH: usize = 107;

pub(crate) fn convert(file: FileConfig, source: &Path, ctx: &mut Ctx<'_>) -> Option<Config> {
    let s = file.server;
    let https_listen = ctx.addr(
        "server.https_listen",
        s.https_listen,
        D::server::HTTPS_LISTEN,
    );
    let admin_listen = ctx.addr(
        "server.admin_listen",
        s.admin_listen,
        D::server::ADMIN_LISTEN,
    );
    let tls_cert = match s.tls_cert {
        Some(p) => Some(ctx.path(&p)),
        None => {
            ctx.error(
                "server.tls_cert",
                "missing: path of the PEM certificate chain",
            );
            None
        }
    };
    let tls_key = match s.tls_key {
        Some(p) => Some(ctx.path(&p)),
        None => {
            ctx.error("server.tls_key", "missing: path of the PEM private key");
            None
        }
    };
    let data_dir = ctx.path(s.data_dir.as_deref().unwrap_or(D::server::DATA_DIR));
    // The longest Unix socket made under data_dir: the new process's
    // readiness socket of an upgrade, `upgrade-<pid>.sock` (pid ≤ 4194304).
    let longest_socket = data_dir.join("upgrade-4194304.sock");
    if longest_socket.as_os_str().len() > MAX_UNIX_SOCKET_PATH {
        ctx.warn(
            "server.data_dir",
            format!(
                "{} is too long for the Unix sockets made in it ({} bytes at most for \
                 upgrade-<pid>.sock under it): `mft-gateway upgrade` will fail; choose a \
                 shorter path",
                data_dir.display(),
                MAX_UNIX_SOCKET_PATH
            ),
        );
    }
    let threads = match s.threads {
        Some(0) => {
            ctx.error("server.threads", "must be at least 1");
            1
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let tls_handshake_timeout = ctx.duration(
        "server.tls_handshake_timeout",
        s.tls_handshake_timeout,
        D::server::TLS_HANDSHAKE_TIMEOUT,
    );
    let keepalive_timeout = ctx.duration(
        "server.keepalive_timeout",
        s.keepalive_timeout,
        D::server::KEEPALIVE_TIMEOUT,
    );
    let h2_window = match crate::limits::size(ctx, "server.h2_window", s.h2_window) {
        None => D::server::H2_WINDOW,
        Some(n) if (D::server::H2_WINDOW_MIN..=D::server::H2_WINDOW_MAX).contains(&n) => n,
        Some(_) => {
            ctx.error(
                "server.h2_window",
                format!(
                    "must be between {} and {} bytes (64 KiB and 1 GiB)",
                    D::server::H2_WINDOW_MIN,
                    D::server::H2_WINDOW_MAX
                ),
            );
            D::server::H2_WINDOW
        }
    };
    let shutdown_timeout = ctx.duration(
        "server.shutdown_timeout",
        s.shutdown_timeout,
        D::server::SHUTDOWN_TIMEOUT,
    );
    let tls_min_version = match s.tls_min_version.as_deref() {
        None | Some(D::server::TLS_MIN_VERSION) => TlsVersion::V1_2,
        Some("1.3") => TlsVersion::V1_3,
        Some(other) => {
            ctx.error(
                "server.tls_min_version",
                format!("\"{other}\" is not a TLS version: use \"1.2\" or \"1.3\""),
            );
            TlsVersion::V1_2
        }
    };
    let http_engine = match s.http_engine.as_deref() {
        None | Some(D::server::HTTP_ENGINE) => HttpEngine::Hyper,
        Some("pingora") => HttpEngine::Pingora,
        Some(other) => {
            ctx.error(
                "server.http_engine",
                format!("\"{other}\" is not an engine: use \"hyper\" or \"pingora\""),
            );
            HttpEngine::Hyper
        }
    };
    let runtime = match s.runtime.as_deref() {
        // Per core is the measured cheaper default (docs/benchmarks.md); the
        // pingora engine has only the work-stealing runtime.
        None if http_engine == HttpEngine::Pingora => Runtime::WorkStealing,
        None | Some(D::server::RUNTIME) => Runtime::PerCore,
        Some("work-stealing") => Runtime::WorkStealing,
        Some(other) => {
            ctx.error(
                "server.runtime",
                format!("\"{other}\" is not a runtime: use \"work-stealing\" or \"per-core\""),
            );
            Runtime::WorkStealing
        }
    };
    let certificates = convert_certificates(s.certificates, ctx);
    let certificate_watch_interval = ctx.duration(
        "server.certificate_watch_interval",
        s.certificate_watch_interval,
        D::server::CERTIFICATE_WATCH_INTERVAL,
    );
    if certificate_watch_interval < Duration::from_secs(1) {
        // Every look reads every certificate and key file.
        ctx.error("server.certificate_watch_interval", "must be at least 1s");
    }
    let tls_cipher_suites = convert_cipher_suites(s.tls_cipher_suites, tls_min_version, ctx);
    let hsts = s.hsts.map(|h| Hsts {
        max_age: ctx.duration("server.hsts.max_age", h.max_age, D::server::HSTS_MAX_AGE),
        include_subdomains: h
            .include_subdomains
            .unwrap_or(D::server::HSTS_INCLUDE_SUBDOMAINS),
    });
    let acme = s.acme.and_then(|a| convert_acme(a, ctx));
    if hsts.is_some() && http_engine == HttpEngine::Pingora {
        ctx.warn(
            "server.hsts",
            "only the hyper engine (the default) sends Strict-Transport-Security",
        );
    }
    if runtime == Runtime::PerCore && http_engine == HttpEngine::Pingora {
        ctx.error(
            "server.runtime",
            "\"per-core\" needs server.http_engine = \"hyper\" (the default)".to_string(),
        );
    }

    let o = file.organization;
    let name = o.name.unwrap_or_else(|| D::organization::NAME.to_string());
    let mut email_domains = Vec::new();
    for (i, d) in o.email_domains.unwrap_or_default().into_iter().enumerate() {
        let d = d.trim().to_ascii_lowercase();
        if d.is_empty() || d.contains('@') || d.contains(char::is_whitespace) || !d.contains('.') {
            ctx.error(
                &format!("organization.email_domains[{i}]"),
                format!("not a domain name: {d:?}"),
            );
        } else {
            email_domains.push(d);
        }
    }

    let backend = match file.backend {
        Some(b) => convert_backend(b, ctx),
        None => {
            ctx.error("backend", "missing table [backend] with at least `url`");
            None
        }
    };

    let r = file.rate_limit;
    let mut quota_of = |key: &str, v: Option<String>| {
        v.and_then(|text| match quota::parse(&text) {
            Ok(q) => Some(q),
            Err(m) => {
                ctx.error(key, m);
                None
            }
        })
    };
    let per_key = quota_of("rate_limit.per_key", r.per_key);
    let per_ip = quota_of("rate_limit.per_ip", r.per_ip);
    let rate_limit = convert_rate_limit(
        per_key,
        per_ip,
        r.redis,
        r.on_redis_error,
        r.redis_timeout,
        r.max_tracked_keys,
        ctx,
    );

    let logging = convert_logging(file.logging, ctx);

    let token = ctx.secret("admin.token", file.admin.token);
    if token
        .as_ref()
        .is_some_and(|t| t.expose().trim().chars().count() < crate::model::MIN_ADMIN_TOKEN_CHARS)
    {
        ctx.error(
            "admin.token",
            format!(
                "shorter than {} characters: use a random token, e.g. `openssl rand -base64 32`",
                crate::model::MIN_ADMIN_TOKEN_CHARS
            ),
        );
    }
    let admin = Admin {
        token,
        allowed_hosts: file
            .admin
            .allowed_hosts
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
    };
    let auth = convert_auth(file.auth, ctx);
    let retention = Retention {
        finished: match file.retention.finished {
            Some(never) if never.trim() == "never" => None,
            text => Some(ctx.duration("retention.finished", text, D::retention::FINISHED)),
        },
    };
    let d = file.defender;
    let defender = Defender {
        enabled: d.enabled.unwrap_or(D::defender::ENABLED),
        threshold: positive(
            ctx,
            "defender.threshold",
            d.threshold,
            D::defender::THRESHOLD,
        ),
        score_per_failure: positive(
            ctx,
            "defender.score_per_failure",
            d.score_per_failure,
            D::defender::SCORE_PER_FAILURE,
        ),
        observation_window: ctx.duration(
            "defender.observation_window",
            d.observation_window,
            D::defender::OBSERVATION_WINDOW,
        ),
        ban_time: ctx.duration("defender.ban_time", d.ban_time, D::defender::BAN_TIME),
    };
    let a = file.audit;
    let audit_file = a
        .file
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(D::audit::FILE));
    let audit = Audit {
        file: if audit_file.is_absolute() {
            audit_file
        } else {
            data_dir.join(audit_file)
        },
        max_bytes: match a.max_bytes {
            Some(n) if n < 4096 => {
                ctx.error("audit.max_bytes", "must be at least 4096");
                n
            }
            Some(n) => n,
            None => D::audit::MAX_BYTES,
        },
        keep: a.keep.unwrap_or(D::audit::KEEP),
        on_failure: match a.on_failure.as_deref() {
            None | Some(D::audit::ON_FAILURE) => AuditFailure::Deny,
            Some("allow") => AuditFailure::Allow,
            Some(_) => {
                ctx.error("audit.on_failure", "must be \"deny\" or \"allow\"");
                AuditFailure::Deny
            }
        },
    };

    let limits = crate::limits::convert(file.limits, ctx);
    let smtp = crate::smtp::convert(file.smtp, ctx);
    let imap = crate::mailbox::convert_imap(file.imap, ctx);
    let pop3 = crate::mailbox::convert_pop3(file.pop3, ctx);
    let sftp = crate::sftp::convert(file.sftp, ctx);
    let trust = crate::trust::convert(file.trust, ctx);
    let connector = crate::connector::convert_listen(file.connector, ctx);
    let notify = crate::notify::convert(file.notify, ctx);
    if acme.is_some() && trust.encryption_key.is_none() {
        ctx.warn(
            "server.acme",
            "the ACME account's private key is stored unsealed (file mode 0600) in \
             data_dir/acme/account.json; set [trust] encryption_key to seal it",
        );
    }
    check_dmz(
        backend.as_ref().map(|b| b.via),
        connector.as_ref(),
        http_engine,
        ctx,
    );

    Some(Config {
        source: source.to_path_buf(),
        limits,
        smtp,
        imap,
        pop3,
        sftp,
        trust,
        connector,
        notify,
        retention,
        admin,
        auth,
        defender,
        audit,
        server: Server {
            https_listen: https_listen?,
            tls_cert: tls_cert?,
            tls_key: tls_key?,
            admin_listen: admin_listen?,
            data_dir,
            threads,
            tls_handshake_timeout,
            keepalive_timeout,
            // At most H2_WINDOW_MAX (1 GiB): fits.
            h2_window: u32::try_from(h2_window).unwrap_or(u32::MAX >> 1),
            shutdown_timeout,
            tls_min_version,
            http_engine,
            runtime,
            certificates,
            certificate_watch_interval,
            tls_cipher_suites,
            hsts,
            acme,
        },
        organization: Organization {
            name,
            email_domains,
        },
        backend: backend?,
        rate_limit,
        logging,
    })
}

/// `server.tls_cipher_suites`: names rustls knows, at least one for TLS 1.3
/// (always offered), and one for TLS 1.2 unless `tls_min_version` is 1.3.
fn convert_cipher_suites(
    list: Option<Vec<String>>,
    min: TlsVersion,
    ctx: &mut Ctx<'_>,
) -> Vec<String> {
    let Some(list) = list else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for (i, name) in list.into_iter().enumerate() {
        let name = name.trim().to_ascii_uppercase();
        if !CIPHER_SUITES.contains(&name.as_str()) {
            ctx.error(
                &format!("server.tls_cipher_suites[{i}]"),
                format!(
                    "unknown cipher suite {name:?}: use one of {}",
                    CIPHER_SUITES.join(", ")
                ),
            );
        } else if !out.contains(&name) {
            out.push(name);
        }
    }
    if !out.iter().any(|n| n.starts_with("TLS13_")) {
        ctx.error(
            "server.tls_cipher_suites",
            "needs at least one TLS 1.3 suite (TLS13_...)",
        );
    }
    if min == TlsVersion::V1_2 && !out.iter().any(|n| n.starts_with("TLS_ECDHE_")) {
        ctx.error(
            "server.tls_cipher_suites",
            "needs at least one TLS 1.2 suite (TLS_ECDHE_...), or set tls_min_version = \"1.3\"",
        );
    }
    out
}

/// `[server.acme]`: an https directory, `mailto:` contacts, plain host names.
fn convert_acme(a: crate::file::AcmeFile, ctx: &mut Ctx<'_>) -> Option<Acme> {
    let directory = match a.directory {
        Some(d) if d.starts_with("https://") => Some(d),
        Some(d) => {
            ctx.error(
                "server.acme.directory",
                format!("must be an https:// URL, got {d:?}"),
            );
            None
        }
        None => {
            ctx.error(
                "server.acme.directory",
                "missing: the CA's directory URL (e.g. https://acme-v02.api.letsencrypt.org/directory)",
            );
            None
        }
    };
    let mut contact = Vec::new();
    for (i, c) in a.contact.unwrap_or_default().into_iter().enumerate() {
        let c = c.trim().to_string();
        if c.strip_prefix("mailto:").is_some_and(|m| m.contains('@')) {
            contact.push(c);
        } else {
            ctx.error(
                &format!("server.acme.contact[{i}]"),
                format!("expected \"mailto:someone@example.com\", got {c:?}"),
            );
        }
    }
    let mut names = Vec::new();
    match a.names {
        None => ctx.error(
            "server.acme.names",
            "missing: the host names the certificate covers",
        ),
        Some(list) if list.is_empty() => {
            ctx.error("server.acme.names", "must name at least one host")
        }
        Some(list) => {
            for (j, name) in list.into_iter().enumerate() {
                let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
                if name.starts_with("*.") {
                    ctx.error(
                        &format!("server.acme.names[{j}]"),
                        "wildcards need DNS-01, which is not supported: name each host",
                    );
                } else if !valid_sni_name(&name) {
                    ctx.error(
                        &format!("server.acme.names[{j}]"),
                        format!("not a host name: {name:?}"),
                    );
                } else if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    let ca_file = a.ca_file.map(|p| ctx.path(&p));
    let challenge = match a
        .challenge
        .as_deref()
        .unwrap_or(crate::defaults::server::ACME_CHALLENGE)
    {
        "tls-alpn-01" => {
            if a.http_listen.is_some() {
                ctx.error(
                    "server.acme.http_listen",
                    "only used with challenge = \"http-01\"",
                );
            }
            Some(AcmeChallenge::TlsAlpn01)
        }
        "http-01" => match a.http_listen {
            Some(text) => ctx
                .addr("server.acme.http_listen", Some(text), "")
                .map(|listen| AcmeChallenge::Http01 { listen }),
            None => {
                ctx.error(
                    "server.acme.http_listen",
                    "missing: challenge = \"http-01\" needs a plain-HTTP listener that the CA reaches as port 80 of each name (e.g. \"0.0.0.0:80\")",
                );
                None
            }
        },
        other => {
            ctx.error(
                "server.acme.challenge",
                format!("expected \"tls-alpn-01\" or \"http-01\", got {other:?}"),
            );
            None
        }
    };
    Some(Acme {
        directory: directory?,
        contact,
        names,
        ca_file,
        challenge: challenge?,
    })
}

/// `[[server.certificates]]`: every entry needs names, a chain and a key;
/// a name may appear once across all entries.
fn convert_certificates(
    entries: Vec<crate::file::CertificateFile>,
    ctx: &mut Ctx<'_>,
) -> Vec<Certificate> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, e) in entries.into_iter().enumerate() {
        let at = format!("server.certificates[{i}]");
        let mut names = Vec::new();
        match e.names {
            None => ctx.error(
                &format!("{at}.names"),
                "missing: the host names (SNI) this certificate serves",
            ),
            Some(list) if list.is_empty() => {
                ctx.error(&format!("{at}.names"), "must name at least one host")
            }
            Some(list) => {
                for (j, name) in list.into_iter().enumerate() {
                    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
                    if !valid_sni_name(&name) {
                        ctx.error(
                            &format!("{at}.names[{j}]"),
                            format!("not a host name (or \"*.\" + host name): {name:?}"),
                        );
                    } else if !seen.insert(name.clone()) {
                        ctx.error(
                            &format!("{at}.names[{j}]"),
                            format!("{name:?} is already served by another certificate"),
                        );
                    } else {
                        names.push(name);
                    }
                }
            }
        }
        let cert = match e.cert {
            Some(p) => Some(ctx.path(&p)),
            None => {
                ctx.error(
                    &format!("{at}.cert"),
                    "missing: path of the PEM certificate chain",
                );
                None
            }
        };
        let key = match e.key {
            Some(p) => Some(ctx.path(&p)),
            None => {
                ctx.error(&format!("{at}.key"), "missing: path of the PEM private key");
                None
            }
        };
        if let (Some(cert), Some(key)) = (cert, key) {
            out.push(Certificate { names, cert, key });
        }
    }
    out
}

/// A DNS name as SNI carries it (no IP literals: SNI never holds one), or
/// `*.` followed by one.
fn valid_sni_name(name: &str) -> bool {
    let host = name.strip_prefix("*.").unwrap_or(name);
    !host.is_empty()
        && host.len() <= 253
        && host.parse::<std::net::IpAddr>().is_err()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

pub(crate) fn convert_logging(l: crate::file::LoggingFile, ctx: &mut Ctx<'_>) -> Logging {
    let format = match l.format.as_deref() {
        None | Some(D::logging::FORMAT) => LogFormat::Pretty,
        Some("json") => LogFormat::Json,
        Some(other) => {
            ctx.error(
                "logging.format",
                format!("expected \"pretty\" or \"json\", got {other:?}"),
            );
            LogFormat::Pretty
        }
    };
    Logging {
        format,
        level: l.level.unwrap_or_else(|| D::logging::LEVEL.to_string()),
        access_log: l.access_log.unwrap_or(D::logging::ACCESS_LOG),
    }
}

fn convert_rate_limit(
    per_key: Option<quota::Quota>,
    per_ip: Option<quota::Quota>,
    redis: Option<String>,
    on_redis_error: Option<String>,
    redis_timeout: Option<String>,
    max_tracked_keys: Option<u64>,
    ctx: &mut Ctx<'_>,
) -> RateLimit {
    let redis = ctx.secret_quiet("rate_limit.redis", redis);
    if let Some(url) = &redis {
        // Only the scheme is ever quoted back: the URL may carry a password.
        match url::Url::parse(url.expose()) {
            Ok(u) if u.scheme() == "redis" && u.host_str().is_some_and(|h| !h.is_empty()) => {}
            Ok(u) if u.scheme() == "redis" => ctx.error("rate_limit.redis", "URL has no host"),
            Ok(u) => ctx.error(
                "rate_limit.redis",
                format!(
                    "expected a redis://host:port/db URL, got scheme {:?} (TLS to Redis is not supported)",
                    u.scheme()
                ),
            ),
            Err(e) => ctx.error("rate_limit.redis", format!("not a URL: {e}")),
        }
    }
    let on_redis_error = match on_redis_error.as_deref() {
        None | Some(D::rate_limit::ON_REDIS_ERROR) => OnRedisError::Local,
        Some("deny") => OnRedisError::Deny,
        Some(other) => {
            ctx.error(
                "rate_limit.on_redis_error",
                format!("expected \"local\" or \"deny\", got {other:?}"),
            );
            OnRedisError::Local
        }
    };
    let redis_timeout = ctx.duration(
        "rate_limit.redis_timeout",
        redis_timeout,
        D::rate_limit::REDIS_TIMEOUT,
    );
    let max_tracked_keys = match max_tracked_keys {
        Some(n) if n < 100 => {
            ctx.error("rate_limit.max_tracked_keys", "must be at least 100");
            n
        }
        Some(n) => n,
        None => D::rate_limit::MAX_TRACKED_KEYS,
    };
    RateLimit {
        per_key,
        per_ip,
        redis,
        on_redis_error,
        redis_timeout,
        max_tracked_keys,
    }
}

fn positive(ctx: &mut Ctx<'_>, key: &str, value: Option<u32>, default: u32) -> u32 {
    match value {
        Some(0) => {
            ctx.error(key, "must be at least 1");
            default
        }
        Some(n) => n,
        None => default,
    }
}

const KNOWN_ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

fn convert_auth(a: crate::file::AuthFile, ctx: &mut Ctx<'_>) -> Auth {
    let store = ctx.secret_quiet("auth.store", a.store);
    if let Some(url) = &store {
        if !(url.expose().starts_with("postgres://") || url.expose().starts_with("postgresql://")) {
            ctx.error(
                "auth.store",
                "expected a postgres:// URL (leave it out for the SQLite store under data_dir)",
            );
        }
    }
    let cache_ttl = ctx.duration("auth.cache_ttl", a.cache_ttl, D::auth::CACHE_TTL);
    let mut jwt = Vec::new();
    let several = a.jwt.len() > 1;
    let mut names: Vec<String> = Vec::new();
    for (i, j) in a.jwt.into_iter().enumerate() {
        let key = |k: &str| format!("auth.jwt[{i}].{k}");
        // Subjects of different issuers are different people: with several
        // issuers each one's principals carry its name.
        let name = match j.name {
            Some(n)
                if !n.is_empty()
                    && n.len() <= 64
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                if names.contains(&n) {
                    ctx.error(&key("name"), format!("{n:?} is used by another issuer"));
                }
                names.push(n.clone());
                Some(n)
            }
            Some(n) => {
                ctx.error(
                    &key("name"),
                    format!("{n:?}: use 1-64 letters, digits, '-', '_' or '.'"),
                );
                None
            }
            None if several => {
                ctx.error(
                    &key("name"),
                    "missing: with several issuers each needs a name (principals are jwt:<name>:<sub>)",
                );
                None
            }
            None => None,
        };
        let issuer = j.issuer.unwrap_or_default();
        if issuer.is_empty() {
            ctx.error(&key("issuer"), "missing: the expected `iss` claim");
        }
        let audience = j.audience.unwrap_or_default();
        if audience.is_empty() {
            ctx.error(
                &key("audience"),
                "missing: at least one accepted `aud` value",
            );
        }
        let jwks = match j.jwks.as_deref() {
            None => {
                ctx.error(&key("jwks"), "missing: an https:// URL or file:PATH");
                None
            }
            Some(text) => match text.strip_prefix("file:") {
                Some(path) => Some(JwksSource::File(ctx.path(path))),
                None => match url::Url::parse(text) {
                    Ok(u) if u.scheme() == "https" => Some(JwksSource::Url(u)),
                    Ok(_) => {
                        ctx.error(&key("jwks"), "must be an https:// URL or file:PATH");
                        None
                    }
                    Err(e) => {
                        ctx.error(&key("jwks"), e.to_string());
                        None
                    }
                },
            },
        };
        let algorithms = j.algorithms.unwrap_or_else(|| {
            D::auth::JWT_ALGORITHMS
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        for (n, alg) in algorithms.iter().enumerate() {
            if !KNOWN_ALGORITHMS.contains(&alg.as_str()) {
                ctx.error(
                    &format!("auth.jwt[{i}].algorithms[{n}]"),
                    format!(
                        "unknown algorithm {alg:?}; one of {}",
                        KNOWN_ALGORITHMS.join(", ")
                    ),
                );
            }
        }
        if algorithms.is_empty() {
            ctx.error(&key("algorithms"), "must list at least one algorithm");
        }
        let leeway = ctx.duration(&key("leeway"), j.leeway, D::auth::JWT_LEEWAY);
        let refresh = ctx.duration(&key("refresh"), j.refresh, D::auth::JWT_REFRESH);
        let ca_file = j.ca_file.map(|p| ctx.path(&p));
        if let Some(jwks) = jwks {
            jwt.push(JwtIssuer {
                name,
                issuer,
                audience,
                jwks,
                algorithms,
                scopes_claim: j
                    .scopes_claim
                    .unwrap_or_else(|| D::auth::JWT_SCOPES_CLAIM.to_string()),
                leeway,
                refresh,
                ca_file,
            });
        }
    }
    let mut scopes = Vec::new();
    for (i, r) in a.scopes.into_iter().enumerate() {
        let key = |k: &str| format!("auth.scopes[{i}].{k}");
        let path_prefix = r.path_prefix.unwrap_or_default();
        if !path_prefix.starts_with('/') {
            ctx.error(&key("path_prefix"), "must start with /");
        }
        let scope = r.scope.unwrap_or_default();
        if scope.is_empty() {
            ctx.error(&key("scope"), "missing: the scope this route requires");
        }
        scopes.push(ScopeRule {
            methods: r
                .methods
                .map(|m| m.into_iter().map(|x| x.to_ascii_uppercase()).collect()),
            path_prefix,
            scope,
        });
    }
    Auth {
        store,
        cache_ttl,
        jwt,
        scopes,
    }
}

fn convert_backend(b: BackendFile, ctx: &mut Ctx<'_>) -> Option<Backend> {
    let url = match b.url {
        None => {
            ctx.error(
                "backend.url",
                "missing: base URL of the MFT backend, e.g. \"http://127.0.0.1:8080\"",
            );
            None
        }
        Some(text) => match url::Url::parse(&text) {
            Err(e) => {
                ctx.error("backend.url", e.to_string());
                None
            }
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                ctx.error(
                    "backend.url",
                    format!("scheme must be http or https, got {:?}", u.scheme()),
                );
                None
            }
            Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                ctx.error("backend.url", "URL has no host");
                None
            }
            Ok(u) if u.path() != "/" || u.query().is_some() => {
                ctx.error(
                    "backend.url",
                    "give only scheme, host and port: the gateway forwards /api/v1/... paths unchanged",
                );
                None
            }
            Ok(u) => Some(u),
        },
    };
    let via = crate::connector::convert_via(b.via.as_deref(), ctx);
    let signing_key = ctx.secret("backend.signing_key", b.signing_key);
    let signing_algorithm = match b.signing_algorithm.as_deref() {
        None | Some(D::backend::SIGNING_ALGORITHM) => SigningAlgorithm::HmacSha256,
        Some("ed25519") => SigningAlgorithm::Ed25519,
        Some(other) => {
            ctx.error(
                "backend.signing_algorithm",
                format!("expected \"hmac-sha256\" or \"ed25519\", got {other:?}"),
            );
            SigningAlgorithm::HmacSha256
        }
    };
    let signing_key_id = b.signing_key_id.filter(|id| {
        // The id is written into an sf-string unescaped.
        let ok = !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\');
        if !ok {
            ctx.error(
                "backend.signing_key_id",
                "must be 1 to 128 printable ASCII characters without '\"' or '\\'",
            );
        }
        ok
    });
    if signing_key.is_none() && (b.signing_algorithm.is_some() || signing_key_id.is_some()) {
        ctx.warn(
            "backend.signing_key",
            "signing_algorithm / signing_key_id are set but signing_key is not: requests go unsigned",
        );
    }
    let signature_ttl = ctx.duration(
        "backend.signature_ttl",
        b.signature_ttl,
        D::backend::SIGNATURE_TTL,
    );
    if signature_ttl > Duration::from_secs(300) {
        ctx.error(
            "backend.signature_ttl",
            "at most 5m: the backend refuses signatures valid for longer (replay window)",
        );
    }
    let connect_timeout = ctx.duration(
        "backend.connect_timeout",
        b.connect_timeout,
        D::backend::CONNECT_TIMEOUT,
    );
    let read_timeout = ctx.duration(
        "backend.read_timeout",
        b.read_timeout,
        D::backend::READ_TIMEOUT,
    );
    let write_timeout = ctx.duration(
        "backend.write_timeout",
        b.write_timeout,
        D::backend::WRITE_TIMEOUT,
    );
    let idle_timeout = ctx.duration(
        "backend.idle_timeout",
        b.idle_timeout,
        D::backend::IDLE_TIMEOUT,
    );
    let pool_size = b.pool_size.unwrap_or(D::backend::POOL_SIZE);
    let pool_purge_delay = ctx.duration(
        "backend.pool_purge_delay",
        b.pool_purge_delay,
        D::backend::POOL_PURGE_DELAY,
    );
    let retry_attempts = match b.retry_attempts {
        Some(0) => {
            ctx.error("backend.retry_attempts", "must be at least 1");
            1
        }
        Some(n) => n,
        None => D::backend::RETRY_ATTEMPTS,
    };
    let retry_base = ctx.duration("backend.retry_base", b.retry_base, D::backend::RETRY_BASE);
    let retry_max = ctx.duration("backend.retry_max", b.retry_max, D::backend::RETRY_MAX);
    let breaker_threshold = match b.breaker_threshold {
        Some(0) => {
            ctx.error("backend.breaker_threshold", "must be at least 1");
            1
        }
        Some(n) => n,
        None => D::backend::BREAKER_THRESHOLD,
    };
    let breaker_cooldown = ctx.duration(
        "backend.breaker_cooldown",
        b.breaker_cooldown,
        D::backend::BREAKER_COOLDOWN,
    );
    Some(Backend {
        url: url?,
        via,
        signing_key,
        signing_algorithm,
        signing_key_id,
        signature_ttl,
        connect_timeout,
        read_timeout,
        write_timeout,
        idle_timeout,
        pool_size,
        pool_purge_delay,
        retry_attempts,
        retry_base,
        retry_max,
        breaker_threshold,
        breaker_cooldown,
    })
}

/// DMZ mode needs both halves, and only the hyper engine carries it.
fn check_dmz(
    via: Option<crate::connector::Via>,
    connector: Option<&crate::connector::ConnectorListen>,
    engine: HttpEngine,
    ctx: &mut Ctx<'_>,
) {
    use crate::connector::Via;
    match (via, connector) {
        (Some(Via::Connector), None) => ctx.error(
            "backend.via",
            "\"connector\" needs [connector] listen = \"IP:PORT\" where connectors dial in",
        ),
        (Some(Via::Direct), Some(_)) => ctx.warn(
            "connector.listen",
            "connectors may dial in, but [backend] via is \"direct\": they carry nothing",
        ),
        _ => {}
    }
    if via == Some(Via::Connector) && engine == HttpEngine::Pingora {
        ctx.error(
            "backend.via",
            "\"connector\" needs server.http_engine = \"hyper\" (the default)",
        );
    }
}
