//! Process wiring for `run`: check everything that can be checked before
//! pingora starts (it panics or logs-and-continues on bad input), then serve.

use crate::admin::AdminApp;
use crate::audit::AuditLog;
use crate::auth::jwks::IssuerSet;
use crate::auth::keys::KeyCache;
use crate::auth::Authenticator;
use crate::backend_client::BackendClient;
use crate::bridge::pipeline::DeliveryPipeline;
use crate::bridge::BridgeContext;
use crate::conn_guard::ConnLimiter;
use crate::connector::listener::ConnectorListener;
use crate::connector::metrics::ConnectorMetrics;
use crate::connector::ConnectorPool;
use crate::drain::{self, Drain, InFlight};
use crate::metrics::Metrics;
use crate::proxy::accept::HyperFront;
use crate::proxy::backend_path::BackendPath;
use crate::proxy::forward::Forwarder;
use crate::proxy::limits::InputLimits;
use crate::proxy::listener::HttpsListener;
use crate::proxy::service::HyperGateway;
use crate::proxy::sign::RequestSigner;
use crate::proxy::upstream::Upstream;
use crate::proxy::{GatewayProxy, ProxyParts};
use crate::ratelimit::RateLimiter;
use crate::reload::Reloader;
use crate::runtime::ServiceRuntime;
use crate::store::Store;
use crate::tls::{self, TlsFront};
use crate::trust::directory::PartnerDirectory;
use crate::upgrade;
use anyhow::Context;
use mft_config::connector::Via;
use mft_config::model::{HttpEngine, Runtime};
use mft_config::Config;
use mft_filters::auth::scope::{ScopePolicy, ScopeRule};
use mft_filters::clock::SystemClock;
use mft_filters::defender::{Defender, DefenderPolicy};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long the exit flush retries audit records the disk refuses before
/// it puts them in the shutdown reserve, and how long it may take at most.
const AUDIT_EXIT_RETRY: Duration = Duration::from_secs(3);
const AUDIT_EXIT_LIMIT: Duration = Duration::from_secs(5);

/// Binds (or takes over, after an upgrade) a listener before anything
/// else starts, so "address in use" is a clean startup error.
fn bind(name: &str, addr: SocketAddr, key: &str) -> anyhow::Result<std::net::TcpListener> {
    upgrade::listener(name, addr).with_context(|| format!("{key} {addr}: cannot listen"))
}

/// Serves until SIGTERM (drain, then exit) or SIGINT (immediate exit).
pub fn run(config: Config) -> anyhow::Result<()> {
    let s = &config.server;
    crate::memory::purge_freed_memory_in_background();
    // First: takes the sockets an upgrade or systemd passed (clears LISTEN_*).
    let passed = upgrade::adopt_inherited(&s.data_dir);
    std::fs::create_dir_all(&s.data_dir)
        .with_context(|| format!("server.data_dir {}: cannot create", s.data_dir.display()))?;
    let certificates = tls::certs::load_all(s)?;
    let dmz = config.backend.via == Via::Connector;
    // In DMZ mode the backend's name may not even resolve here: the gateway never dials it.
    let upstream = if dmz {
        None
    } else {
        Some(Upstream::new(&config.backend)?)
    };
    let signer = RequestSigner::from_config(&config.backend)?.map(Arc::new);
    let https_listener = HttpsListener::bind(
        s.https_listen,
        s.threads,
        s.runtime == Runtime::PerCore && s.http_engine == HttpEngine::Hyper,
    )
    .with_context(|| format!("server.https_listen {}: cannot listen", s.https_listen))?;
    let admin_socket = bind(upgrade::names::ADMIN, s.admin_listen, "server.admin_listen")?;
    let connector_socket = match &config.connector {
        Some(c) => Some(bind(
            upgrade::names::CONNECTOR,
            c.listen,
            "connector.listen",
        )?),
        None => None,
    };
    let acme_http_socket = match s.acme.as_ref().map(|a| a.challenge) {
        Some(mft_config::model::AcmeChallenge::Http01 { listen }) => Some(bind(
            upgrade::names::ACME_HTTP,
            listen,
            "server.acme.http_listen",
        )?),
        _ => None,
    };

    let control =
        ServiceRuntime::start("control", 1).context("cannot start the control-plane runtime")?;
    let store = open_store(&config, &control)?;
    let audit = AuditLog::open(&config.audit)
        .with_context(|| format!("audit.file {}: cannot open", config.audit.file.display()))?;
    let issuers = IssuerSet::start(&config.auth.jwt, &control)?;
    let keys = KeyCache::new(store.clone(), control.clone(), config.auth.cache_ttl);
    keys.start_maintenance();
    let auth = Arc::new(Authenticator::new(
        keys,
        issuers,
        scope_policy(&config),
        defender(&config),
        audit.clone(),
        Arc::new(SystemClock),
    ));

    let metrics = Arc::new(
        Metrics::new(config.rate_limit.redis.is_some()).context("cannot register metrics")?,
    );
    metrics
        .registry()
        .register(Box::new(
            audit.collector().context("cannot register audit metrics")?,
        ))
        .context("cannot register audit metrics")?;
    metrics
        .registry()
        .register(Box::new(
            crate::memory::MemoryCollector::new().context("cannot register memory metrics")?,
        ))
        .context("cannot register memory metrics")?;
    // Every certificate (SNI), swapped when its files change or on reload.
    let cert_store = tls::certs::CertStore::new(
        certificates,
        s.certificate_watch_interval,
        metrics.registry(),
    )
    .context("cannot register certificate metrics")?;
    // [server.acme]: the stored certificate is served from the first
    // handshake on; the task that orders and renews starts below.
    let acme = match &s.acme {
        Some(a) => {
            // The account key is sealed like partner keys when there is a key to seal with.
            let sealer = config
                .trust
                .encryption_key
                .as_ref()
                .map(crate::trust::seal::Sealer::new)
                .transpose()
                .context("trust.encryption_key")?;
            let manager = tls::acme::AcmeManager::new(
                a.clone(),
                &s.data_dir,
                cert_store.clone(),
                metrics.registry(),
                // The port bound, which port 0 in the config leaves to the kernel.
                https_listener.local_addr().unwrap_or(s.https_listen),
                sealer,
            )
            .context("cannot register ACME metrics")?;
            let stored = manager.serve_stored();
            Some((manager, stored))
        }
        None => None,
    };
    let tls_config = tls::server_config_resolving(
        cert_store.resolver(),
        &tls::TlsPolicy::of(s, config.trust.client_auth),
    )?;
    let tls_for_connectors = (*tls::server_config_resolving(
        cert_store.resolver(),
        &tls::TlsPolicy {
            acme_tls_alpn: false,
            // Client certificates offered, never required: a connector
            // pinned to one (`connectors set-pin`) must present it.
            ..tls::TlsPolicy::of(s, true)
        },
    )?)
    .clone();
    let rate_limiter = Arc::new(RateLimiter::from_config(
        &config.rate_limit,
        metrics.clone(),
        &control,
    )?);

    let pool = match &config.connector {
        Some(_) => Some(Arc::new(ConnectorPool::new(
            config.backend.read_timeout,
            config.backend.connect_timeout,
            ConnectorMetrics::new(metrics.registry())
                .context("cannot register connector metrics")?,
        ))),
        None => None,
    };
    // Only with via = "connector" do the connectors carry the backend calls.
    let backend_pool = pool.clone().filter(|_| dmz);
    // The console's overview probes the backend with a client (and breaker)
    // of its own, so its probes never open the data path's breaker.
    let overview_backend =
        BackendClient::new_via(&config.backend, signer.clone(), backend_pool.clone()).ok();

    let shared_config = Arc::new(config.clone());
    // SIGTERM stops the bridges and workers through this (see drain.rs).
    let bridge_drain = Drain::new();
    start_bridges(
        &shared_config,
        &bridge_drain,
        BackendClient::new_via(&config.backend, signer.clone(), backend_pool.clone())?,
        &auth,
        &store,
        &audit,
        &metrics,
        cert_store.resolver(),
    )?;
    let auth_defender = auth.defender().cloned();
    let auth_defender_admin = auth.defender().cloned();
    let partners = {
        let store = store.clone();
        let checks = crate::trust::directory::checks_counter(metrics.registry())
            .context("cannot register partner cache metrics")?;
        control
            .block_on(async move { PartnerDirectory::load(store, checks).await })?
            .context("cannot read the partner connections")?
    };
    partners.start(&control);
    let trust = Arc::new(crate::trust::services::Federation::start(
        shared_config.clone(),
        partners.clone(),
        signer.clone(),
        audit.clone(),
        metrics.registry(),
        backend_pool.clone(),
        bridge_drain.clone(),
    )?);

    // [[notify]] rules for watched events (a mailbox not polled, a
    // certificate expiring, a ban storm, a growing spool).
    control.spawn(
        crate::transports::watch::Watcher::new(
            trust.notifier.clone(),
            shared_config.clone(),
            store.clone(),
            metrics.registry().clone(),
            auth_defender_admin.clone(),
        )
        .run(bridge_drain.clone()),
    );

    // [retention]: finished queue rows do not pile up for ever.
    if let Some(finished) = config.retention.finished {
        let pruned = crate::retention::pruned_counter(metrics.registry())?;
        control.spawn(crate::retention::run(store.clone(), finished, pruned));
    }

    let conf = ServerConf {
        threads: s.threads,
        pid_file: s
            .data_dir
            .join("mft-gateway.pid")
            .to_string_lossy()
            .into_owned(),
        upgrade_sock: s
            .data_dir
            .join("upgrade.sock")
            .to_string_lossy()
            .into_owned(),
        // The drain watcher exits as soon as nothing is in flight; this is only the upper bound.
        // (plus the time the bridges get to abandon unfinished work cleanly).
        grace_period_seconds: Some(
            s.shutdown_timeout.as_secs().max(1) + drain::ABORT_CLEANUP.as_secs() + 1,
        ),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: config.backend.pool_size,
        // Work stealing stays on: with one runtime per thread, pingora's idle
        // watcher of a pooled upstream connection lives on another runtime
        // than the request reusing it, which costs a cross-runtime wake per
        // request and, when the watcher has not let go yet, a fresh upstream
        // connection (measured: ~4% of requests reconnected).
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    crate::service::start(server.watch_execution_phase(), &control);

    let in_flight = InFlight::default();
    let shared_quotas = rate_limiter.shared_redis();
    let parts = ProxyParts {
        hsts: hsts_value(s),
        upstream,
        auth,
        audit: audit.clone(),
        in_flight: in_flight.clone(),
        access_log: config.logging.access_log,
        keepalive_secs: s.keepalive_timeout.as_secs(),
        limits: InputLimits::new(&config.limits),
        rate_limiter,
        metrics: metrics.clone(),
        signer,
        federation: Arc::new(
            crate::trust::inbound::PartnerGate::new(
                store.clone(),
                control.clone(),
                partners,
                &config,
                auth_defender,
                audit.clone(),
            )
            .with_shared_quotas(shared_quotas),
        ),
        trust,
    };
    let conns = ConnLimiter::new(config.limits.max_connections_per_ip);
    let mut reloadable_front = None;
    let mut https_runtime = None;
    match s.http_engine {
        HttpEngine::Pingora => {
            let mut proxy =
                pingora_proxy::http_proxy(&server.configuration, GatewayProxy::new(parts));
            proxy.h2_options = Some(h2_options());
            let front = TlsFront::new(
                tls_config,
                Arc::new(proxy),
                s.tls_handshake_timeout,
                conns,
                config.limits.request_header_timeout,
            );
            let socket = https_listener
                .into_socket()
                .context("server.https_listen: no socket")?;
            upgrade::serve_pingora_app(
                "https",
                socket,
                Arc::new(front),
                s.threads,
                server.watch_execution_phase(),
            )
            .context("cannot start the HTTPS runtime")?;
        }
        HttpEngine::Hyper => {
            let forward = match &backend_pool {
                Some(pool) => {
                    BackendPath::connectors(&config.backend, pool.clone(), parts.signer.clone())?
                }
                None => BackendPath::Direct(Box::new(Forwarder::new(
                    &config.backend,
                    match s.runtime {
                        Runtime::PerCore => s.threads,
                        Runtime::WorkStealing => 1,
                    },
                )?)),
            };
            let front = Arc::new(HyperFront::new(
                tls_config,
                Arc::new(HyperGateway::new(parts, forward)),
                s.tls_handshake_timeout,
                conns,
                config.limits.request_header_timeout,
                s.keepalive_timeout,
                s.h2_window,
            ));
            reloadable_front = Some(front.clone());
            https_runtime = Some(
                https_listener
                    .start(
                        front,
                        crate::proxy::listener::ConnectionCap::new(config.limits.max_connections),
                        server.watch_execution_phase(),
                    )
                    .context("cannot start the HTTPS runtime")?,
            );
        }
    };
    if let (Some(pool), Some(c), Some(socket)) = (&pool, &config.connector, connector_socket) {
        // Per-core workers drive the connector connections themselves, so
        // a proxied request goes out and comes back on its own thread.
        let homes = https_runtime
            .as_ref()
            .map(|r| r.worker_handles())
            .unwrap_or_default();
        let listener = ConnectorListener::new(
            &tls_for_connectors,
            pool.clone(),
            store.clone(),
            control.clone(),
            audit.clone(),
            c,
            homes,
        );
        crate::connector::watch::start(pool.clone(), store.clone(), &control);
        Arc::new(listener)
            .start(socket, s.threads, server.watch_execution_phase())
            .context("cannot start the connector runtime")?;
    }
    cert_store
        .watch()
        .context("cannot start the certificate watcher")?;
    // OCSP stapling for the certificates that name a responder (ocsp.rs).
    let ocsp_metrics =
        tls::ocsp::OcspMetrics::new(metrics.registry()).context("cannot register OCSP metrics")?;
    control.spawn(tls::ocsp::run(Arc::downgrade(&cert_store), ocsp_metrics));
    if let Some((manager, stored)) = acme {
        if let Some(socket) = acme_http_socket {
            upgrade::serve_pingora_app(
                upgrade::names::ACME_HTTP,
                socket,
                Arc::new(tls::acme_http::Http01App::new(manager.http01_tokens())),
                1,
                server.watch_execution_phase(),
            )
            .context("cannot start the ACME HTTP-01 listener")?;
        }
        control.spawn(manager.run(stored));
    }
    let reloader = Reloader::new(
        config.clone(),
        reloadable_front.zip(https_runtime),
        cert_store,
        control.clone(),
        metrics.clone(),
        audit.clone(),
        backend_pool.clone(),
    )
    .context("cannot register reload metrics")?;
    reload_on_sighup(&reloader, &control)?;
    let control_for_upgrade = control.clone();
    if config.admin.token.is_none() {
        tracing::info!("admin API disabled: set [admin] token to enable /admin/v1");
    }
    let admin_app = AdminApp::new(
        config.admin.token.clone(),
        store,
        control,
        audit.clone(),
        metrics,
        shared_config,
    )
    .with_defender(auth_defender_admin)
    .with_reloader(reloader)
    .with_overview(overview_backend);
    upgrade::serve_pingora_app_movable(
        upgrade::names::ADMIN,
        admin_socket,
        Arc::new(admin_app),
        s.threads,
        server.watch_execution_phase(),
    )
    .context("cannot start the admin runtime")?;
    // Every listener is bound now (bridges, connector and ACME included).
    crate::listeners::record(&s.data_dir);
    upgrade::upgrade_on_sigusr2(&control_for_upgrade)?;
    upgrade::close_unclaimed();
    upgrade::start(server.watch_execution_phase());

    let audit_at_exit = audit.clone();
    drain::exit_when_drained(
        server.watch_execution_phase(),
        in_flight,
        bridge_drain,
        s.shutdown_timeout,
        move || {
            // The last requests' audit records must reach the disk before
            // exit: on a full disk, retried for a while, then kept in the
            // shutdown reserve for the next start (docs/reliability.md).
            audit_at_exit
                .flush_at_exit(AUDIT_EXIT_RETRY, AUDIT_EXIT_LIMIT)
                .log();
        },
    );
    tracing::info!(
        https = %s.https_listen,
        admin = %s.admin_listen,
        backend = %config.backend.url,
        threads = s.threads,
        engine = ?s.http_engine,
        passed_sockets = passed,
        "mft-gateway starting"
    );
    server.run_forever()
}

/// SIGHUP reloads the config file the process was started with. Registered
/// before serving: SIGHUP's default action would end the process.
fn reload_on_sighup(reloader: &Arc<Reloader>, control: &ServiceRuntime) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = control
        .block_on(async { signal(SignalKind::hangup()) })
        .context("cannot watch SIGHUP")?
        .context("cannot watch SIGHUP")?;
    let reloader = reloader.clone();
    control.spawn(async move {
        while hup.recv().await.is_some() {
            // The outcome is logged, audited and counted by the reloader.
            let _ = reloader.reload("signal:SIGHUP".to_string()).await;
        }
    });
    Ok(())
}

/// HTTP/2 settings of the public listener: pingora's bounded defaults with
/// larger flow-control windows. With h2's default 64 KiB windows an upload
/// waits for a WINDOW_UPDATE every 64 KiB; measured, a 1 GiB h2 upload ran
/// at a third of the HTTP/1.1 rate (docs/benchmarks.md). The connection
/// window equals one stream's, so a connection buffers at most 1 MiB
/// however many streams a client opens.
fn h2_options() -> pingora_core::protocols::http::v2::server::H2Options {
    let mut options = pingora_core::protocols::http::v2::server::default_h2_options();
    options.initial_window_size(1024 * 1024);
    options.initial_connection_window_size(1024 * 1024);
    options
}

/// Starts the protocol bridges on their own runtime, when any is configured.
// The process's shared services, handed over once: a struct for them would
// only repeat BridgeContext.
#[allow(clippy::too_many_arguments)]
fn start_bridges(
    config: &Arc<Config>,
    drain: &Drain,
    backend: BackendClient,
    auth: &Arc<crate::auth::Authenticator>,
    store: &Store,
    audit: &AuditLog,
    metrics: &Arc<Metrics>,
    certificates: Arc<crate::tls::certs::CertResolver>,
) -> anyhow::Result<()> {
    if config.smtp.is_none()
        && config.imap.is_empty()
        && config.pop3.is_empty()
        && config.sftp.is_none()
    {
        return Ok(());
    }
    let pipeline = Arc::new(
        DeliveryPipeline::new(backend.clone(), metrics.registry())
            .context("cannot register bridge metrics")?,
    );
    let runtime = ServiceRuntime::start("bridge", 2).context("cannot start the bridge runtime")?;
    let ctx = Arc::new(BridgeContext {
        config: config.clone(),
        backend,
        pipeline,
        auth: auth.clone(),
        store: store.clone(),
        audit: audit.clone(),
        metrics: metrics.clone(),
        certificates,
        runtime,
        drain: drain.clone(),
    });
    crate::bridge::start_all(&ctx)
}

/// Opens the key store (SQLite under `data_dir`, or PostgreSQL) on the control plane.
pub fn open_store(config: &Config, control: &ServiceRuntime) -> anyhow::Result<Store> {
    let url = config.auth.store.as_ref().map(|s| s.expose().to_string());
    let data_dir = config.server.data_dir.clone();
    control
        .block_on(async move { Store::open(url.as_deref(), &data_dir).await })?
        .context("auth.store: cannot open the key store")
}

pub(crate) fn scope_policy(config: &Config) -> ScopePolicy {
    let extra = config
        .auth
        .scopes
        .iter()
        .map(|r| ScopeRule {
            methods: r.methods.clone(),
            path_prefix: r.path_prefix.clone(),
            scope: r.scope.clone(),
        })
        .collect();
    ScopePolicy::with_overrides(ScopePolicy::default_policy(), extra)
}

fn defender(config: &Config) -> Option<Arc<Defender>> {
    let d = &config.defender;
    d.enabled.then(|| {
        Arc::new(Defender::new(DefenderPolicy {
            score_per_failure: d.score_per_failure,
            threshold: d.threshold,
            observation_window: d.observation_window,
            ban_time: d.ban_time,
            max_tracked: 100_000,
        }))
    })
}

/// The `Strict-Transport-Security` value of `[server.hsts]`.
pub(crate) fn hsts_value(s: &mft_config::model::Server) -> Option<http::HeaderValue> {
    s.hsts
        .as_ref()
        .and_then(|h| http::HeaderValue::from_str(&h.header_value()).ok())
}
