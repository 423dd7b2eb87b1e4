//! Live reload of the config file (SIGHUP, `mft-gateway reload`,
//! `POST /admin/v1/reload`; docs/operations.md).
//!
//! A reload reads and validates the whole file and builds every new part
//! (certificates, TLS config, the request path's snapshot) before it swaps
//! anything: on any error nothing changes. The swap is one atomic store per
//! part; a request reads the request path's snapshot once when it starts
//! and finishes on it, so uploads in flight keep the settings they began
//! with. What cannot change in a running process is named in the answer
//! and the log as "needs restart", never silently ignored.

use crate::audit::{AuditLog, AuditRecord};
use crate::auth::jwks::IssuerSet;
use crate::connector::ConnectorPool;
use crate::metrics::Metrics;
use crate::proxy::accept::HyperFront;
use crate::proxy::backend_path::BackendPath;
use crate::proxy::forward::Forwarder;
use crate::proxy::limits::InputLimits;
use crate::proxy::listener::{HttpsListener, HttpsRuntime};
use crate::proxy::service::HyperGateway;
use crate::proxy::sign::RequestSigner;
use crate::proxy::ProxyParts;
use crate::ratelimit::RateLimiter;
use crate::runtime::ServiceRuntime;
use crate::tls::certs::CertStore;
use crate::upgrade::names;
use mft_config::model::Runtime;
use mft_config::Config;
use prometheus::{IntCounter, IntCounterVec, Opts};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// What a successful reload did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The file that was read.
    pub config: PathBuf,
    /// Sections (and `server.` keys) whose new values are in force now.
    pub changed: Vec<String>,
    /// Sections (and keys) that changed but take effect only after a restart.
    pub needs_restart: Vec<String>,
    /// Non-fatal findings of the file (as `check` prints them).
    pub warnings: Vec<String>,
}

/// Why a reload changed nothing.
#[derive(Debug, Error)]
pub enum ReloadError {
    /// The file cannot be read or is invalid: `file:line: key: message` lines.
    #[error("invalid configuration:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// The file is valid but a part cannot be built from it (e.g. a
    /// certificate file that does not match its key).
    #[error("cannot apply the configuration: {0}")]
    Apply(String),
    /// Another reload is running.
    #[error("another reload is in progress")]
    Busy,
}

impl ReloadError {
    /// The lines an operator reads (CLI, admin API, log).
    pub fn lines(&self) -> Vec<String> {
        match self {
            ReloadError::Invalid(lines) => lines.clone(),
            other => vec![other.to_string()],
        }
    }
}

/// The parts of the running process a reload swaps.
pub struct Reloader {
    current: Mutex<Config>,
    front: Option<Arc<HyperFront>>,
    /// The hyper engine's HTTPS workers (their address moves on reload).
    https: Option<Mutex<HttpsRuntime>>,
    certs: Arc<CertStore>,
    control: ServiceRuntime,
    metrics: Arc<Metrics>,
    audit: AuditLog,
    /// The connector pool in DMZ mode (the backend path goes through it).
    backend_pool: Option<Arc<ConnectorPool>>,
    ok: IntCounter,
    failed: IntCounter,
}

impl Reloader {
    /// A reloader for a process started with `config`; `hyper` is the
    /// hyper engine's listener front and HTTPS workers (`None` with
    /// `http_engine = "pingora"`, whose request path does not reload).
    pub fn new(
        config: Config,
        hyper: Option<(Arc<HyperFront>, HttpsRuntime)>,
        certs: Arc<CertStore>,
        control: ServiceRuntime,
        metrics: Arc<Metrics>,
        audit: AuditLog,
        backend_pool: Option<Arc<ConnectorPool>>,
    ) -> anyhow::Result<Arc<Reloader>> {
        let (front, https) = match hyper {
            Some((front, https)) => (Some(front), Some(Mutex::new(https))),
            None => (None, None),
        };
        let counter = IntCounterVec::new(
            Opts::new(
                "mft_config_reloads_total",
                "Config reloads by result (success: applied; failure: nothing changed).",
            ),
            &["result"],
        )?;
        metrics.registry().register(Box::new(counter.clone()))?;
        Ok(Arc::new(Reloader {
            current: Mutex::new(config),
            front,
            https,
            certs,
            control,
            metrics,
            audit,
            backend_pool,
            ok: counter.with_label_values(&["success"]),
            failed: counter.with_label_values(&["failure"]),
        }))
    }

    /// The config in force now; `None` while a reload holds it.
    pub fn running(&self) -> Option<Config> {
        self.current.try_lock().ok().map(|c| c.clone())
    }

    /// Reloads on a thread of its own (reading files and starting JWKS
    /// fetches block) and waits for the result without blocking the
    /// caller's runtime. `trigger` (`SIGHUP`, `admin`, `console:NAME`) goes
    /// into the audit record.
    pub async fn reload(self: &Arc<Self>, trigger: String) -> Result<Report, ReloadError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("config-reload".into())
            .spawn(move || {
                let _ = tx.send(me.reload_blocking(&trigger));
            });
        if let Err(e) = spawned {
            return Err(ReloadError::Apply(format!(
                "cannot start the reload thread: {e}"
            )));
        }
        rx.await
            .unwrap_or_else(|_| Err(ReloadError::Apply("the reload thread ended early".into())))
    }

    /// [`Reloader::reload`] on the calling thread; never call it on a runtime worker.
    pub fn reload_blocking(&self, trigger: &str) -> Result<Report, ReloadError> {
        let result = self.try_reload();
        let mut record = AuditRecord::new("config_reloaded");
        record.principal = Some(trigger.to_string());
        match &result {
            Ok(report) => {
                self.ok.inc();
                tracing::info!(
                    trigger,
                    config = %report.config.display(),
                    changed = %report.changed.join(","),
                    needs_restart = %report.needs_restart.join(","),
                    "configuration reloaded"
                );
                if !report.needs_restart.is_empty() {
                    tracing::warn!(
                        sections = %report.needs_restart.join(","),
                        "these settings changed but take effect only after a restart"
                    );
                }
                record.decision = Some("allow");
                record.reason = Some(
                    format!(
                        "changed: {}; needs restart: {}",
                        list(&report.changed),
                        list(&report.needs_restart)
                    )
                    .into(),
                );
            }
            Err(e) => {
                for line in e.lines() {
                    tracing::error!(trigger, "config reload refused, nothing changed: {line}");
                }
                // Counted after the log lines: whoever sees the count sees them.
                self.failed.inc();
                record.decision = Some("deny");
                record.reason = Some(match e {
                    ReloadError::Invalid(lines) => {
                        format!("invalid: {} problem(s)", lines.len()).into()
                    }
                    ReloadError::Apply(_) => "cannot apply".into(),
                    ReloadError::Busy => "busy".into(),
                });
            }
        }
        self.audit.record(record);
        result
    }

    fn try_reload(&self) -> Result<Report, ReloadError> {
        let mut current = match self.current.try_lock() {
            Ok(c) => c,
            Err(std::sync::TryLockError::WouldBlock) => return Err(ReloadError::Busy),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        };
        let path = current.source.clone();
        let loaded = mft_config::load(&path).map_err(|e| {
            ReloadError::Invalid(match e {
                mft_config::ConfigError::Invalid { path, issues } => issues
                    .iter()
                    .map(|i| i.display_in(&path).to_string())
                    .collect(),
                other => vec![other.to_string()],
            })
        })?;
        let warnings = loaded
            .warnings
            .iter()
            .map(|w| w.display_in(&path).to_string())
            .collect();
        let new = loaded.config;
        let diff = Diff::between(&current, &new);

        // Build everything first: an error here leaves the process as it was.
        let certs = crate::tls::certs::load_all(&new.server)
            .map_err(|e| ReloadError::Apply(format!("server certificates: {e}")))?;
        let mut changed = diff.live.clone();
        let mut needs_restart = diff.restart.clone();
        let mut swap_tls = None;
        let mut swap_gateway = None;
        match &self.front {
            Some(front) => {
                if diff.tls_settings {
                    swap_tls = Some(
                        crate::tls::server_config_resolving(
                            self.certs.resolver(),
                            &crate::tls::TlsPolicy::of(&new.server, new.trust.client_auth),
                        )
                        .map_err(|e| ReloadError::Apply(format!("TLS settings: {e}")))?,
                    );
                }
                if diff.request_path {
                    swap_gateway = Some(self.build_gateway(&front.gateway(), &new, &diff)?);
                }
            }
            None => {
                // The pingora engine's request path and TLS settings are
                // built once; its certificates come from the same resolver.
                let (kept, fixed): (Vec<String>, Vec<String>) = changed
                    .into_iter()
                    .partition(|s| s == "server.certificates");
                changed = kept;
                needs_restart.extend(fixed);
            }
        }

        let mut rebound = Vec::new();
        for (name, key, addr) in &diff.moved {
            match crate::upgrade::rebind(name, *addr) {
                Some(Ok(r)) => rebound.push(r),
                // Dropping `rebound` closes what was bound so far.
                Some(Err(e)) => {
                    return Err(ReloadError::Apply(format!(
                        "{key} {addr}: cannot listen: {e}"
                    )))
                }
                None => {
                    changed.retain(|c| c != key);
                    needs_restart.push(key.to_string());
                }
            }
        }

        // Last, as nothing after it can fail: the new HTTPS address is bound
        // before anything changes (a taken port changes nothing).
        let mut rebind = None;
        if diff.https_listen {
            if let Some(https) = &self.https {
                let https = https.lock().unwrap_or_else(|p| p.into_inner());
                let (threads, per_core) = match https.per_core() {
                    Some(n) => (n, true),
                    None => (new.server.threads, false),
                };
                let addr = new.server.https_listen;
                rebind = Some(HttpsListener::bind(addr, threads, per_core).map_err(|e| {
                    // A per-core socket bound before the one that failed.
                    crate::upgrade::forget(names::HTTPS, addr);
                    ReloadError::Apply(format!("server.https_listen {addr}: cannot listen: {e}"))
                })?);
            }
        }

        // Swap.
        let moved_any = !rebound.is_empty() || rebind.is_some();
        for r in rebound {
            r.switch();
        }
        if let (Some(sockets), Some(https)) = (rebind, &self.https) {
            let mut https = https.lock().unwrap_or_else(|p| p.into_inner());
            let old = https.addr();
            https.switch(sockets).map_err(|e| {
                ReloadError::Apply(format!("server.https_listen: cannot serve: {e}"))
            })?;
            tracing::info!(from = ?old, to = ?https.addr(), "HTTPS listener moved; connections on the old address finish there");
        }
        if moved_any {
            crate::listeners::record(&current.server.data_dir);
        }
        self.certs
            .replace(certs, new.server.certificate_watch_interval);
        if let Some(front) = &self.front {
            if let Some(tls) = swap_tls {
                front.swap_tls(tls);
            }
            if let Some(gateway) = swap_gateway {
                front.swap_gateway(gateway);
            }
            if diff.cache_ttl {
                front.gateway().p.auth.set_key_cache_ttl(new.auth.cache_ttl);
            }
        }
        *current = new;
        Ok(Report {
            config: path,
            changed,
            needs_restart,
            warnings,
        })
    }

    /// The request path's next snapshot: what changed is built anew, the
    /// rest (and the state it holds: key cache, defender, backend pool,
    /// rate-limit buckets) shared with the current one.
    fn build_gateway(
        &self,
        old: &Arc<HyperGateway>,
        new: &Config,
        diff: &Diff,
    ) -> Result<Arc<HyperGateway>, ReloadError> {
        let apply =
            |what: &str, e: &dyn std::fmt::Display| ReloadError::Apply(format!("{what}: {e}"));
        let auth = if diff.auth {
            let issuers = IssuerSet::start(&new.auth.jwt, &self.control)
                .map_err(|e| apply("auth.jwt", &e))?;
            Arc::new(
                old.p
                    .auth
                    .with_policy(issuers, crate::server::scope_policy(new)),
            )
        } else {
            old.p.auth.clone()
        };
        let rate_limiter = if diff.rate_limit {
            Arc::new(
                RateLimiter::from_config(&new.rate_limit, self.metrics.clone(), &self.control)
                    .map_err(|e| apply("rate_limit", &e))?,
            )
        } else {
            old.p.rate_limiter.clone()
        };
        let (signer, forward) = if diff.backend {
            let signer = RequestSigner::from_config(&new.backend)
                .map_err(|e| apply("backend.signing_key", &e))?
                .map(Arc::new);
            let forward = match &self.backend_pool {
                Some(pool) => BackendPath::connectors(&new.backend, pool.clone(), signer.clone())
                    .map_err(|e| apply("backend", &e))?,
                None => BackendPath::Direct(Box::new(
                    Forwarder::new(
                        &new.backend,
                        match new.server.runtime {
                            Runtime::PerCore => new.server.threads,
                            Runtime::WorkStealing => 1,
                        },
                    )
                    .map_err(|e| apply("backend", &e))?,
                )),
            };
            (signer, Arc::new(forward))
        } else {
            (old.p.signer.clone(), old.forward.clone())
        };
        let p = &old.p;
        let parts = ProxyParts {
            upstream: None,
            auth,
            audit: p.audit.clone(),
            in_flight: p.in_flight.clone(),
            access_log: new.logging.access_log,
            keepalive_secs: p.keepalive_secs,
            limits: InputLimits::new(&new.limits),
            rate_limiter,
            metrics: p.metrics.clone(),
            signer,
            federation: p.federation.clone(),
            trust: p.trust.clone(),
            hsts: crate::server::hsts_value(&new.server),
        };
        Ok(Arc::new(HyperGateway::with_shared_path(parts, forward)))
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// What changed between two configs, and what of it a running process applies.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    /// Applied live (hyper engine).
    pub live: Vec<String>,
    /// Needs a restart.
    pub restart: Vec<String>,
    /// The rustls config must be rebuilt (`tls_min_version`, `trust.client_auth`).
    pub tls_settings: bool,
    /// The request path's snapshot must be rebuilt.
    pub request_path: bool,
    /// JWT issuers or scope rules.
    pub auth: bool,
    /// `[rate_limit]`.
    pub rate_limit: bool,
    /// `[backend]`.
    pub backend: bool,
    /// `auth.cache_ttl`.
    pub cache_ttl: bool,
    /// `server.https_listen`: rebound live (hyper engine).
    pub https_listen: bool,
    /// Listeners other than HTTPS rebound live: (socket name, config key, new address).
    pub moved: Vec<(&'static str, &'static str, std::net::SocketAddr)>,
}

impl Diff {
    /// Compares `old` and `new` section by section (secrets by value, never printed).
    pub fn between(old: &Config, new: &Config) -> Diff {
        let mut d = Diff::default();
        let (o, n) = (&old.server, &new.server);
        let live = |d: &mut Diff, name: &str, changed: bool| {
            if changed {
                d.live.push(name.to_string());
            }
            changed
        };
        let restart = |d: &mut Diff, name: &str, changed: bool| {
            if changed {
                d.restart.push(name.to_string());
            }
        };
        // Certificate files are compared by path here; their content is
        // reloaded in every reload and by the watcher.
        live(
            &mut d,
            "server.certificates",
            o.tls_cert != n.tls_cert
                || o.tls_key != n.tls_key
                || o.certificates != n.certificates
                || o.certificate_watch_interval != n.certificate_watch_interval,
        );
        let min_version = live(
            &mut d,
            "server.tls_min_version",
            o.tls_min_version != n.tls_min_version,
        );
        let suites = live(
            &mut d,
            "server.tls_cipher_suites",
            o.tls_cipher_suites != n.tls_cipher_suites,
        );
        let hsts = live(&mut d, "server.hsts", o.hsts != n.hsts);
        restart(&mut d, "server.acme", o.acme != n.acme);
        d.https_listen = live(
            &mut d,
            "server.https_listen",
            o.https_listen != n.https_listen,
        );
        if live(
            &mut d,
            "server.admin_listen",
            o.admin_listen != n.admin_listen,
        ) {
            d.moved
                .push((names::ADMIN, "server.admin_listen", n.admin_listen));
        }
        restart(&mut d, "server.data_dir", o.data_dir != n.data_dir);
        restart(&mut d, "server.threads", o.threads != n.threads);
        restart(&mut d, "server.http_engine", o.http_engine != n.http_engine);
        restart(&mut d, "server.runtime", o.runtime != n.runtime);
        restart(
            &mut d,
            "server.shutdown_timeout",
            o.shutdown_timeout != n.shutdown_timeout,
        );
        restart(
            &mut d,
            "server.tls_handshake_timeout",
            o.tls_handshake_timeout != n.tls_handshake_timeout,
        );
        restart(
            &mut d,
            "server.keepalive_timeout",
            o.keepalive_timeout != n.keepalive_timeout,
        );
        restart(&mut d, "server.h2_window", o.h2_window != n.h2_window);

        let (oa, na) = (&old.auth, &new.auth);
        let jwt = live(&mut d, "auth.jwt", oa.jwt != na.jwt);
        let scopes = live(&mut d, "auth.scopes", oa.scopes != na.scopes);
        d.auth = jwt || scopes;
        restart(&mut d, "auth.store", oa.store != na.store);
        d.cache_ttl = live(&mut d, "auth.cache_ttl", oa.cache_ttl != na.cache_ttl);

        d.rate_limit = live(&mut d, "rate_limit", old.rate_limit != new.rate_limit);
        d.backend = live(&mut d, "backend", old.backend != new.backend);
        if d.backend && (bridges(old) || bridges(new)) {
            restart(&mut d, "backend (bridges' client)", true);
        }
        if d.backend {
            // The trust network's relay has a backend client of its own.
            restart(&mut d, "backend (trust relay and webhooks)", true);
        }
        let (ol, nl) = (&old.limits, &new.limits);
        let request_limits = ol.max_body_bytes != nl.max_body_bytes
            || ol.max_header_count != nl.max_header_count
            || ol.max_header_bytes != nl.max_header_bytes
            || ol.max_url_bytes != nl.max_url_bytes
            || ol.body_idle_timeout != nl.body_idle_timeout
            || ol.min_body_rate != nl.min_body_rate
            || ol.min_body_rate_window != nl.min_body_rate_window
            || ol.routes != nl.routes;
        let limits = live(&mut d, "limits", request_limits);
        restart(
            &mut d,
            "limits.max_connections_per_ip",
            ol.max_connections_per_ip != nl.max_connections_per_ip,
        );
        restart(
            &mut d,
            "limits.max_connections",
            ol.max_connections != nl.max_connections,
        );
        restart(
            &mut d,
            "limits.request_header_timeout",
            ol.request_header_timeout != nl.request_header_timeout,
        );
        let access_log = live(
            &mut d,
            "logging.access_log",
            old.logging.access_log != new.logging.access_log,
        );
        restart(
            &mut d,
            "logging",
            old.logging.format != new.logging.format || old.logging.level != new.logging.level,
        );
        let client_auth = live(
            &mut d,
            "trust.client_auth",
            old.trust.client_auth != new.trust.client_auth,
        );
        d.tls_settings = min_version || client_auth || suites;
        let mut trust = old.trust.clone();
        trust.client_auth = new.trust.client_auth;
        restart(&mut d, "trust", trust != new.trust);
        restart(&mut d, "organization", old.organization != new.organization);
        restart(&mut d, "admin", old.admin != new.admin);
        restart(&mut d, "defender", old.defender != new.defender);
        restart(&mut d, "audit", old.audit != new.audit);
        // A changed listen address alone moves the listener; anything else
        // in the section needs a restart.
        match (&old.smtp, &new.smtp) {
            (Some(o), Some(n)) => {
                let mut same = o.clone();
                same.listen = n.listen;
                if o.tls_listen.is_some() && n.tls_listen.is_some() {
                    same.tls_listen = n.tls_listen;
                }
                restart(&mut d, "smtp", same != *n);
                if same == *n {
                    if o.listen != n.listen {
                        d.live.push("smtp.listen".into());
                        d.moved.push((names::SMTP, "smtp.listen", n.listen));
                    }
                    if let (Some(ot), Some(nt)) = (o.tls_listen, n.tls_listen) {
                        if ot != nt {
                            d.live.push("smtp.tls_listen".into());
                            d.moved.push((names::SMTPS, "smtp.tls_listen", nt));
                        }
                    }
                }
            }
            (o, n) => restart(&mut d, "smtp", o != n),
        }
        restart(&mut d, "imap", old.imap != new.imap);
        restart(&mut d, "pop3", old.pop3 != new.pop3);
        match (&old.sftp, &new.sftp) {
            (Some(o), Some(n)) => {
                let mut same = o.clone();
                same.listen = n.listen;
                restart(&mut d, "sftp", same != *n);
                if same == *n && o.listen != n.listen {
                    d.live.push("sftp.listen".into());
                    d.moved.push((names::SFTP, "sftp.listen", n.listen));
                }
            }
            (o, n) => restart(&mut d, "sftp", o != n),
        }
        match (&old.connector, &new.connector) {
            (Some(o), Some(n)) => {
                let mut same = o.clone();
                same.listen = n.listen;
                restart(&mut d, "connector", same != *n);
                if same == *n && o.listen != n.listen {
                    d.live.push("connector.listen".into());
                    d.moved
                        .push((names::CONNECTOR, "connector.listen", n.listen));
                }
            }
            (o, n) => restart(&mut d, "connector", o != n),
        }
        restart(&mut d, "notify", old.notify != new.notify);
        restart(&mut d, "retention", old.retention != new.retention);
        d.request_path = d.auth || d.rate_limit || d.backend || limits || access_log || hsts;
        d
    }
}

fn bridges(c: &Config) -> bool {
    c.smtp.is_some() || !c.imap.is_empty() || !c.pop3.is_empty() || c.sftp.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n[backend]\nurl = \"http://127.0.0.1:1\"\n{extra}"
        );
        match mft_config::load_str(&text, std::path::Path::new("/tmp/gateway.toml")) {
            Ok(l) => l.config,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn nothing_changed_is_an_empty_diff() {
        let d = Diff::between(&config(""), &config(""));
        assert_eq!(d, Diff::default());
    }

    #[test]
    fn live_and_restart_sections_are_named() {
        let old = config("[rate_limit]\nper_ip = \"10/s\"\n");
        let new = config(
            "[rate_limit]\nper_ip = \"20/s\"\n[limits]\nmax_body_bytes = 1000\nmax_connections_per_ip = 3\n[admin]\nallowed_hosts = [\"gw\"]\n",
        );
        let d = Diff::between(&old, &new);
        assert_eq!(d.live, vec!["rate_limit", "limits"]);
        assert_eq!(d.restart, vec!["limits.max_connections_per_ip", "admin"]);
        assert!(d.request_path && d.rate_limit && !d.auth && !d.backend && !d.tls_settings);
    }

    #[test]
    fn a_changed_secret_is_seen_without_its_value() {
        std::env::set_var(
            "MFT_RELOAD_TEST_KEY_A",
            "first-secret-value-0123456789abcdef",
        );
        std::env::set_var(
            "MFT_RELOAD_TEST_KEY_B",
            "other-secret-value-0123456789abcdef",
        );
        let old = config("signing_key = \"env:MFT_RELOAD_TEST_KEY_A\"\n");
        let new = config("signing_key = \"env:MFT_RELOAD_TEST_KEY_B\"\n");
        let d = Diff::between(&old, &new);
        assert!(d.backend);
        assert!(d.live.contains(&"backend".to_string()));
        assert!(!format!("{d:?}").contains("secret-value"));
    }

    #[test]
    fn moved_admin_and_connector_listeners_apply_live() {
        let old = config("[connector]\nlisten = \"127.0.0.1:8444\"\n");
        let moved = config("[connector]\nlisten = \"127.0.0.1:8445\"\n");
        let d = Diff::between(&old, &moved);
        assert_eq!(d.live, vec!["connector.listen"]);
        assert!(d.restart.is_empty());
        assert_eq!(d.moved.len(), 1);
        // Another connector setting with it: a restart, not a move.
        let changed = config("[connector]\nlisten = \"127.0.0.1:8445\"\nping_interval = \"9s\"\n");
        let d = Diff::between(&old, &changed);
        assert_eq!(d.restart, vec!["connector"]);
        assert!(d.moved.is_empty());

        let text = "[server]\nadmin_listen = \"127.0.0.1:9902\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n[backend]\nurl = \"http://127.0.0.1:1\"\n";
        let admin = match mft_config::load_str(text, std::path::Path::new("/tmp/gateway.toml")) {
            Ok(l) => l.config,
            Err(e) => panic!("{e}"),
        };
        let d = Diff::between(&config(""), &admin);
        assert_eq!(d.live, vec!["server.admin_listen"]);
        assert!(d.restart.is_empty());
        assert_eq!(d.moved[0].0, names::ADMIN);
    }

    #[test]
    fn a_moved_https_listener_applies_live() {
        let old = config("");
        let text = "[server]\nhttps_listen = \"127.0.0.1:9443\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n[backend]\nurl = \"http://127.0.0.1:1\"\n";
        let new = match mft_config::load_str(text, std::path::Path::new("/tmp/gateway.toml")) {
            Ok(l) => l.config,
            Err(e) => panic!("{e}"),
        };
        let d = Diff::between(&old, &new);
        assert_eq!(d.live, vec!["server.https_listen"]);
        assert!(d.restart.is_empty() && d.https_listen && d.moved.is_empty());
    }

    #[test]
    fn hsts_applies_live_and_acme_needs_a_restart() {
        let old = config("");
        let new = config(
            "[server.hsts]\nmax_age = \"1d\"\n[server.acme]\ndirectory = \"https://ca.test/dir\"\nnames = [\"gw.test\"]\n",
        );
        let d = Diff::between(&old, &new);
        assert_eq!(d.live, vec!["server.hsts"]);
        assert_eq!(d.restart, vec!["server.acme"]);
        assert!(d.request_path && !d.tls_settings);
    }
}
