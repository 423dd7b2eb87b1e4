//! The SMTP listener: ESMTP with STARTTLS or implicit TLS, AUTH, and a
//! durable spool drained into the delivery pipeline.
//!
//! Layout: [`session`] is the state machine, [`conn`] the buffered IO with
//! idle limits, [`auth`] the credential checks, [`policy`] the pure
//! network/domain checks, [`reply`] every reply text, [`worker`] the spool
//! drain, [`metrics`] the series. See docs/smtp.md.

pub mod auth;
pub mod conn;
pub mod metrics;
pub mod policy;
pub mod reply;
pub mod session;
pub mod space;
pub mod worker;

use super::spool::Spool;
use super::BridgeContext;
use crate::conn_guard::ConnLimiter;
use anyhow::Context;
use conn::Conn;
use metrics::SmtpMetrics;
use mft_config::smtp::Smtp;
use session::{Exit, Session};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// What every session of the listener shares.
pub struct Shared {
    /// The bridges' context (auth, audit, pipeline).
    pub ctx: Arc<BridgeContext>,
    /// `[smtp]`.
    pub cfg: Arc<Smtp>,
    /// `organization.email_domains`, lower case.
    pub email_domains: Vec<String>,
    /// The durable spool.
    pub spool: Spool,
    /// Free space on the spool's file system (`smtp.spool_min_free`).
    pub space: Arc<space::SpoolSpace>,
    /// Series.
    pub metrics: SmtpMetrics,
    /// Bridge users.
    pub users: auth::Users,
    /// STARTTLS and implicit TLS.
    pub tls: TlsAcceptor,
    /// Session slots (`max_connections`).
    pub conns: Arc<Semaphore>,
    /// Sessions per client (`max_connections_per_ip`).
    pub per_client: Arc<ConnLimiter>,
    /// Deadline for a TLS handshake.
    pub handshake_timeout: Duration,
}

/// Starts the listeners and the spool workers when `[smtp]` is configured.
/// Binding happens here, so a port in use is a startup error.
pub fn start(ctx: &Arc<BridgeContext>) -> anyhow::Result<()> {
    let Some(cfg) = ctx.config.smtp.clone() else {
        return Ok(());
    };
    let cfg = Arc::new(cfg);
    let metrics =
        SmtpMetrics::new(ctx.metrics.registry()).context("cannot register SMTP metrics")?;
    let spool_dir = ctx.config.server.data_dir.join("spool");
    let spool = Spool::open(&spool_dir, metrics.spool_depth.clone())
        .with_context(|| format!("cannot open the SMTP spool {}", spool_dir.display()))?;
    let users = auth::Users::new(&cfg.users)?;
    let tls = tls_acceptor(ctx)?;
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        email_domains: ctx.config.organization.email_domains.clone(),
        spool: spool.clone(),
        space: space::SpoolSpace::watch(
            spool_dir.clone(),
            cfg.spool_min_free,
            ctx.runtime.handle(),
        ),
        metrics,
        users,
        tls,
        conns: Arc::new(Semaphore::new(cfg.max_connections)),
        per_client: ConnLimiter::new(Some(
            u32::try_from(cfg.max_connections_per_ip).unwrap_or(u32::MAX),
        )),
        handshake_timeout: ctx.config.server.tls_handshake_timeout,
        cfg: cfg.clone(),
    });
    let mut listeners = vec![(cfg.listen, false)];
    if let Some(addr) = cfg.tls_listen {
        listeners.push((addr, true));
    }
    for (addr, implicit_tls) in listeners {
        let name = if implicit_tls {
            crate::upgrade::names::SMTPS
        } else {
            crate::upgrade::names::SMTP
        };
        let (shared, runtime) = (shared.clone(), ctx.runtime.handle().clone());
        // Movable: a reload that changes the address rebinds it (upgrade.rs).
        crate::upgrade::serve_movable(name, addr, move |socket, moved| {
            let _guard = runtime.enter();
            match TcpListener::from_std(socket) {
                Ok(l) => {
                    runtime.spawn(accept_loop(shared.clone(), l, implicit_tls, moved));
                }
                Err(e) => tracing::error!(error = %e, "smtp listener unusable"),
            }
        })
        .with_context(|| format!("smtp: cannot listen on {addr}"))?;
        tracing::info!(%addr, implicit_tls, "smtp listener started");
    }
    for _ in 0..cfg.spool_workers {
        ctx.runtime.spawn(worker::run(
            ctx.clone(),
            spool.clone(),
            cfg.clone(),
            shared.metrics.clone(),
        ));
    }
    Ok(())
}

/// The HTTPS certificate without ALPN (SMTP negotiates no application protocol).
fn tls_acceptor(ctx: &BridgeContext) -> anyhow::Result<TlsAcceptor> {
    let https = crate::tls::server_config_resolving(
        ctx.certificates.clone(),
        &crate::tls::TlsPolicy::default(),
    )
    .context("smtp: cannot build the TLS configuration")?;
    let mut config = (*https).clone();
    config.alpn_protocols.clear();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    implicit_tls: bool,
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
        match accepted {
            Ok((tcp, peer)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    handle(shared, tcp, peer, implicit_tls).await;
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "smtp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Refuses a connection with one reply, without waiting for the client.
async fn refuse(mut tcp: TcpStream, text: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = tcp.write_all(text.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

async fn handle(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, implicit_tls: bool) {
    let ip = peer.ip();
    let m = &shared.metrics;
    if !policy::client_allowed(&shared.cfg.allowed_client_networks, ip) {
        m.session.refused_network.inc();
        return refuse(tcp, reply::ACCESS_DENIED).await;
    }
    let gate = crate::auth::LoginGate::new(
        shared.ctx.auth.defender(),
        &shared.ctx.audit,
        Some(ip),
        "SMTP",
    );
    if gate.is_banned() {
        m.session.refused_banned.inc();
        return refuse(tcp, reply::ACCESS_DENIED).await;
    }
    // Per client first: one address filling every slot is refused alone,
    // before it can take the global ones.
    let Some(_client_slot) = shared.per_client.acquire(ip) else {
        m.session.refused_per_ip.inc();
        return refuse(tcp, reply::BUSY_CLIENT).await;
    };
    let Ok(_permit) = shared.conns.clone().try_acquire_owned() else {
        m.session.refused_busy.inc();
        return refuse(tcp, reply::BUSY).await;
    };
    m.session.accepted.inc();
    // The process waits for the session (a DATA transfer finishes); one
    // idle between messages ends at once with 421.
    let _working = shared.ctx.drain.work();
    let _ = tcp.set_nodelay(true);
    let write_timeout = shared.cfg.command_timeout;
    let mut session = Session::new(shared.clone(), peer, implicit_tls);
    if implicit_tls {
        let Some(tls) = handshake(&shared, tcp).await else {
            return;
        };
        let mut conn = Conn::new(tls, write_timeout);
        conn.send(&reply::greeting(&shared.cfg.hostname));
        run(&mut session, &mut conn).await;
        return;
    }
    let mut conn = Conn::new(tcp, write_timeout);
    conn.send(&reply::greeting(&shared.cfg.hostname));
    if let Some(Exit::StartTls) = run(&mut session, &mut conn).await {
        // Anything pipelined after STARTTLS is dropped with `conn` (RFC 3207).
        let Some(tls) = handshake(&shared, conn.stream).await else {
            return;
        };
        session.upgraded();
        let mut conn = Conn::new(tls, write_timeout);
        run(&mut session, &mut conn).await;
    }
}

async fn handshake(
    shared: &Shared,
    tcp: TcpStream,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(shared.handshake_timeout, shared.tls.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "smtp TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}

/// Runs the session; closes the connection unless it asked for STARTTLS.
async fn run<S>(session: &mut Session, conn: &mut Conn<S>) -> Option<Exit>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match session.run(conn).await {
        Ok(Exit::StartTls) if !session.tls => Some(Exit::StartTls),
        Ok(_) => {
            conn.close().await;
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, "smtp session ended");
            None
        }
    }
}
