//! File schema -> runtime model, collecting every error with its key and line.

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
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(base: &'a Path, index: &'a SpanIndex) -> Self {
        Ctx {
            base,
            index,
            errors: Vec::new(),
            warnings: Vec::new(),
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

    fn error(&mut self, key: &str, message: impl Into<String>) {
        let issue = self.issue(key, message.into());
        self.errors.push(issue);
    }

    fn warn(&mut self, key: &str, message: impl Into<String>) {
        let issue = self.issue(key, message.into());
        self.warnings.push(issue);
    }

    fn path(&self, value: &str) -> PathBuf {
        let p = Path::new(value);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn addr(&mut self, key: &str, value: Option<String>, default: &str) -> Option<SocketAddr> {
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

    fn duration(&mut self, key: &str, value: Option<String>, default: Duration) -> Duration {
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

    fn secret(&mut self, key: &str, reference: Option<String>) -> Option<Secret> {
        let reference = reference?;
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

pub(crate) fn convert(file: FileConfig, source: &Path, ctx: &mut Ctx<'_>) -> Option<Config> {
    let s = file.server;
    let https_listen = ctx.addr("server.https_listen", s.https_listen, "0.0.0.0:8443");
    let admin_listen = ctx.addr("server.admin_listen", s.admin_listen, "127.0.0.1:9901");
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
    let data_dir = ctx.path(s.data_dir.as_deref().unwrap_or("data"));
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
        Duration::from_secs(10),
    );
    let keepalive_timeout = ctx.duration(
        "server.keepalive_timeout",
        s.keepalive_timeout,
        Duration::from_secs(60),
    );
    let shutdown_timeout = ctx.duration(
        "server.shutdown_timeout",
        s.shutdown_timeout,
        Duration::from_secs(300),
    );

    let o = file.organization;
    let name = o.name.unwrap_or_else(|| "ourcorp".to_string());
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
    let rate_limit = RateLimit {
        per_key: quota_of("rate_limit.per_key", r.per_key),
        per_ip: quota_of("rate_limit.per_ip", r.per_ip),
    };

    let l = file.logging;
    let format = match l.format.as_deref() {
        None | Some("pretty") => LogFormat::Pretty,
        Some("json") => LogFormat::Json,
        Some(other) => {
            ctx.error(
                "logging.format",
                format!("expected \"pretty\" or \"json\", got {other:?}"),
            );
            LogFormat::Pretty
        }
    };
    let logging = Logging {
        format,
        level: l.level.unwrap_or_else(|| "info".to_string()),
        access_log: l.access_log.unwrap_or(true),
    };

    Some(Config {
        source: source.to_path_buf(),
        server: Server {
            https_listen: https_listen?,
            tls_cert: tls_cert?,
            tls_key: tls_key?,
            admin_listen: admin_listen?,
            data_dir,
            threads,
            tls_handshake_timeout,
            keepalive_timeout,
            shutdown_timeout,
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
    let signing_key = ctx.secret("backend.signing_key", b.signing_key);
    let connect_timeout = ctx.duration(
        "backend.connect_timeout",
        b.connect_timeout,
        Duration::from_secs(5),
    );
    let read_timeout = ctx.duration(
        "backend.read_timeout",
        b.read_timeout,
        Duration::from_secs(60),
    );
    let write_timeout = ctx.duration(
        "backend.write_timeout",
        b.write_timeout,
        Duration::from_secs(60),
    );
    let idle_timeout = ctx.duration(
        "backend.idle_timeout",
        b.idle_timeout,
        Duration::from_secs(60),
    );
    let pool_size = b.pool_size.unwrap_or(128);
    Some(Backend {
        url: url?,
        signing_key,
        connect_timeout,
        read_timeout,
        write_timeout,
        idle_timeout,
        pool_size,
    })
}
