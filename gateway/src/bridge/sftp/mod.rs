//! The SFTP bridge: an SSH server (russh) whose file system is the
//! backend. Uploads stream into tus uploads and are published only when
//! complete and verified; downloads stream from the backend.
//!
//! - [`server`]: SSH algorithms, logins, limits, the `sftp` subsystem
//! - [`session`]: the SFTP request loop (pipelined writes, extensions)
//! - [`upload`] / [`download`]: the streams to and from the backend
//! - [`fs`]: the backend seen as folders and files; [`paths`]: the chroot
//! - [`auth`]: users, keys, password hashes; [`hostkey`]: the host key
//! - [`delivery`]: on_upload deliveries, durable in the store and retried
//! - [`directory`]: config users, then users stored at run time (cached);
//!   [`accounts`]: the rules for adding one

pub mod accounts;
pub mod auth;
pub mod delivery;
pub mod directory;
pub mod download;
pub mod fs;
pub mod hostkey;
pub mod metrics;
pub mod server;
pub mod session;
pub mod upload;

// The chroot's path rules are pure, in mft-filters (fuzzed without the gateway).
pub use mft_filters::validation::virtual_path as paths;

use super::BridgeContext;
use metrics::Refusal;
use mft_config::Config;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The host keys the server offers: the ed25519 key (generated if
/// missing) and the optional RSA key.
pub fn host_keys(config: &Config) -> anyhow::Result<Vec<russh::keys::PrivateKey>> {
    let Some(sftp) = &config.sftp else {
        return Ok(Vec::new());
    };
    let path = sftp
        .host_key
        .clone()
        .unwrap_or_else(|| hostkey::default_path(&config.server.data_dir));
    let mut keys = vec![hostkey::load_or_generate(&path)?];
    if let Some(rsa) = &sftp.rsa_host_key {
        keys.push(hostkey::load(rsa)?);
    }
    Ok(keys)
}

/// Starts the sftp bridge when it is configured.
pub fn start(ctx: &Arc<BridgeContext>) -> anyhow::Result<()> {
    let Some(cfg) = ctx.config.sftp.clone() else {
        return Ok(());
    };
    let keys = host_keys(&ctx.config)?;
    for k in &keys {
        tracing::info!(fingerprint = %hostkey::fingerprint(k), "sftp host key");
    }
    let mut config_users = HashMap::new();
    for u in cfg.users.iter().cloned() {
        let user = auth::User::new(u)?;
        config_users.insert(user.config.name.clone(), Arc::new(user));
    }
    let users = ctx
        .runtime
        .block_on(directory::UserDirectory::load(
            config_users,
            ctx.store.clone(),
        ))
        .map_err(|e| anyhow::anyhow!("sftp: the stored users' task failed: {e}"))?
        .map_err(|e| anyhow::anyhow!("sftp: cannot read the stored users: {e}"))?;
    users.start(ctx.runtime.handle());
    let stored = users.stored_count();
    let metrics = Arc::new(metrics::SftpMetrics::new(ctx.metrics.registry())?);
    let sender_domain = ctx
        .config
        .organization
        .email_domains
        .first()
        .cloned()
        .unwrap_or_else(|| "sftp.invalid".to_string());
    let deliveries = Arc::new(delivery::SftpDeliveries::new(
        ctx.store.clone(),
        ctx.pipeline.clone(),
        ctx.audit.clone(),
        cfg.delivery_max_age,
        ctx.metrics.registry(),
    )?);
    // One look at the queue at start (jobs a restart or a crash left),
    // then asleep until an upload queues one.
    ctx.runtime.spawn(deliveries.clone().run(ctx.drain.clone()));
    let shared = Arc::new(server::Shared {
        ctx: ctx.clone(),
        users,
        made: Mutex::new(HashMap::new()),
        open: Mutex::new(HashMap::new()),
        metrics,
        per_client: crate::conn_guard::ConnLimiter::new(Some(
            u32::try_from(cfg.max_connections_per_ip).unwrap_or(u32::MAX),
        )),
        max_connections: cfg.max_connections,
        login_timeout: cfg.login_timeout,
        limits: upload::UploadLimits {
            chunk: cfg.chunk_bytes,
            window: cfg.reorder_window_bytes,
            budget: upload::ReorderBudget::new(
                cfg.reorder_window_bytes
                    .saturating_mul(REORDER_BUDGET_WINDOWS),
            ),
        },
        sender_domain,
        deliveries,
    });
    let config = Arc::new(server::ssh_config(keys, cfg.idle_timeout));
    // Bound here so a busy port is a startup error, not a log line; a
    // reload that changes the address rebinds it (upgrade.rs).
    let conns = Arc::new(tokio::sync::Semaphore::new(shared.max_connections));
    let runtime = ctx.runtime.handle().clone();
    crate::upgrade::serve_movable(
        crate::upgrade::names::SFTP,
        cfg.listen,
        move |socket, moved| {
            let _guard = runtime.enter();
            match tokio::net::TcpListener::from_std(socket) {
                Ok(l) => {
                    runtime.spawn(accept_loop(
                        l,
                        config.clone(),
                        shared.clone(),
                        conns.clone(),
                        moved,
                    ));
                }
                Err(e) => tracing::error!(error = %e, "sftp listener unusable"),
            }
        },
    )
    .map_err(|e| anyhow::anyhow!("sftp: cannot listen on {}: {e}", cfg.listen))?;
    tracing::info!(
        listen = %cfg.listen,
        users = cfg.users.len(),
        stored_users = stored,
        "sftp bridge listening"
    );
    Ok(())
}

/// Out-of-order bytes the whole process holds at most, in reorder windows:
/// a few clients reordering at once, never one user's many handles.
const REORDER_BUDGET_WINDOWS: usize = 16;

async fn accept_loop(
    listener: tokio::net::TcpListener,
    config: Arc<russh::server::Config>,
    shared: Arc<server::Shared>,
    // Shared by the accept loops before and after a move.
    conns: Arc<tokio::sync::Semaphore>,
    mut moved: crate::upgrade::Moved,
) {
    let drain = shared.ctx.drain.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            // Dropping the listener closes the port: new clients are refused.
            () = drain.stopping() => return,
            // A reload moved the listener; sessions accepted here go on.
            () = moved.wait() => return,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "sftp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // Limits before any key-exchange work: a banned or greedy client
        // costs one accept and one close.
        let refused = |why: Refusal| {
            shared.metrics.refused(why);
            tracing::debug!(%peer, ?why, "sftp connection refused");
        };
        let gate = crate::auth::LoginGate::new(
            shared.ctx.auth.defender(),
            &shared.ctx.audit,
            Some(peer.ip()),
            "SFTP",
        );
        if gate.is_banned() {
            refused(Refusal::Banned);
            continue;
        }
        let Some(client_slot) = shared.per_client.acquire(peer.ip()) else {
            refused(Refusal::PerIp);
            continue;
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            refused(Refusal::Busy);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let logged_in = Arc::new(AtomicBool::new(false));
        let handler = server::Conn::new(shared.clone(), Some(peer), logged_in.clone());
        let config = config.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let _held = (client_slot, permit);
            let connection = async move {
                match russh::server::run_stream(config, stream, handler).await {
                    Ok(session) => {
                        if let Err(e) = session.await {
                            tracing::debug!(%peer, error = %e, "sftp connection ended");
                        }
                    }
                    Err(e) => tracing::debug!(%peer, error = %e, "ssh handshake failed"),
                }
            };
            tokio::pin!(connection);
            // Before the login the idle timeout is no limit: a client can
            // trickle key-exchange or auth packets for ever.
            tokio::select! {
                () = &mut connection => return,
                () = tokio::time::sleep(shared.login_timeout) => {}
            }
            if !logged_in.load(Ordering::Acquire) {
                shared.metrics.refused(Refusal::LoginTimeout);
                tracing::info!(%peer, "sftp connection closed: no login within login_timeout");
                return;
            }
            connection.await;
        });
    }
}
