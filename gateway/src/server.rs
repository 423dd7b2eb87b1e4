//! Process wiring for `run`: check everything that can be checked before
//! pingora starts (it panics or logs-and-continues on bad input), then serve.

use crate::admin::AdminApp;
use crate::drain::{self, InFlight};
use crate::proxy::upstream::Upstream;
use crate::proxy::GatewayProxy;
use crate::tls::{self, TlsFront};
use anyhow::Context;
use mft_config::Config;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::services::listening::Service;
use std::net::SocketAddr;
use std::sync::Arc;

/// Binding once ourselves turns "address in use" into a clean startup error
/// instead of a pingora panic inside a service thread.
fn ensure_bindable(addr: SocketAddr, key: &str) -> anyhow::Result<()> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .with_context(|| format!("{key} {addr}: cannot listen"))
}

/// Serves until SIGTERM (drain, then exit) or SIGINT (immediate exit).
pub fn run(config: Config) -> anyhow::Result<()> {
    let s = &config.server;
    std::fs::create_dir_all(&s.data_dir)
        .with_context(|| format!("server.data_dir {}: cannot create", s.data_dir.display()))?;
    let key = tls::load_certified_key(&s.tls_cert, &s.tls_key)?;
    let tls_config = tls::server_config(key)?;
    let upstream = Upstream::new(&config.backend)?;
    ensure_bindable(s.https_listen, "server.https_listen")?;
    ensure_bindable(s.admin_listen, "server.admin_listen")?;

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
        grace_period_seconds: Some(s.shutdown_timeout.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: config.backend.pool_size,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let in_flight = InFlight::default();
    let proxy = pingora_proxy::http_proxy(
        &server.configuration,
        GatewayProxy::new(
            upstream,
            in_flight.clone(),
            config.logging.access_log,
            s.keepalive_timeout.as_secs(),
        ),
    );
    let front = TlsFront::new(tls_config, Arc::new(proxy), s.tls_handshake_timeout);
    let mut https = Service::new("https".to_string(), front);
    https.add_tcp(&s.https_listen.to_string());
    let mut admin = Service::new("admin".to_string(), AdminApp);
    admin.add_tcp(&s.admin_listen.to_string());
    server.add_service(https);
    server.add_service(admin);

    drain::exit_when_drained(
        server.watch_execution_phase(),
        in_flight,
        s.shutdown_timeout,
    );
    tracing::info!(
        https = %s.https_listen,
        admin = %s.admin_listen,
        backend = %config.backend.url,
        threads = s.threads,
        "mft-gateway starting"
    );
    server.run_forever()
}
