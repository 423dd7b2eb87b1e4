//! `mft-gateway connector`: the LAN side of DMZ mode. It dials out to the
//! gateway ([`dial`]), keeps `connections` attached connections with
//! reconnect, backoff and jitter ([`slot`]), and serves HTTP/2 or HTTP/1.1
//! on each, as the gateway chose ([`serve`]), forwarding every request to
//! its own backend ([`backend`]) and nowhere else.

pub mod backend;
pub mod check;
pub mod dial;
pub mod serve;
pub mod slot;
pub mod trust;

use crate::backend_client::RetryPolicy;
use anyhow::Context;
use backend::BackendLink;
use dial::Dialer;
use mft_config::connector::Lan;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// Loads `config`, then runs the connector (or, with `check`, checks it).
pub fn run(config: &Path, check: bool) -> anyhow::Result<ExitCode> {
    if check {
        return Ok(check::run(config));
    }
    let loaded = mft_config::connector::load_lan(config)
        .with_context(|| format!("invalid configuration {}", config.display()))?;
    crate::telemetry::init(&loaded.config.logging);
    crate::memory::purge_freed_memory_in_background();
    for w in &loaded.warnings {
        tracing::warn!("{}", w.display_in(config));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(loaded.config))?;
    Ok(ExitCode::SUCCESS)
}

/// Everything one connection slot needs.
pub struct Parts {
    /// Opens attached connections.
    pub dialer: Dialer,
    /// Where requests go.
    pub backend: BackendLink,
    /// Reconnect backoff.
    pub backoff: RetryPolicy,
}

impl Parts {
    /// Builds the dialer and the backend client from `config`.
    pub fn new(config: &Lan) -> anyhow::Result<Parts> {
        let tls = trust::client_config(&config.trust, config.client_cert.as_ref())?;
        Ok(Parts {
            dialer: Dialer::new(config, tls)?,
            backend: BackendLink::new(&config.backend, config.connect_timeout)?,
            backoff: RetryPolicy {
                attempts: u32::MAX,
                base: config.reconnect_base,
                max: config.reconnect_max,
            },
        })
    }
}

/// Starts one thread per connection slot, then waits for SIGTERM or ^C.
///
/// Each slot runs on its own single-threaded runtime with its own backend
/// client, like the gateway's per-core workers: the connection, the
/// request tasks and the backend connections of one slot never hand a
/// chunk to another thread, which costs a wake-up per chunk (the download
/// direction measured 0.5-0.6x the direct path with one shared runtime).
/// With an HTTP/1.1 link a slot keeps one idle connection ready and opens
/// more under load, up to its share of `max_connections` ([`slot`]).
async fn serve(config: Lan) -> anyhow::Result<()> {
    let first = Parts::new(&config)?;
    tracing::info!(
        gateway = %first.dialer.target(),
        backend = %first.backend.authority,
        connections = config.connections,
        "mft-gateway connector starting"
    );
    let mut first = Some(first);
    let shares = slot::shares(config.max_connections, config.connections);
    for (index, max) in (0..config.connections).zip(shares) {
        let parts = match first.take() {
            Some(p) => p,
            None => Parts::new(&config)?,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        std::thread::Builder::new()
            .name(format!("connector-{index}"))
            .spawn(move || runtime.block_on(slot::keep_connected(Arc::new(parts), index, max)))
            .context("cannot start a connector thread")?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch SIGTERM")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("connector stopping");
    Ok(())
}
