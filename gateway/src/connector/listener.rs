//! `[connector] listen`: TLS, the attach request, then the gateway becomes
//! the HTTP/2 (or, with `[connector] link = "http1"`, HTTP/1.1) client on
//! the connection the connector opened.
//!
//! The socket takes part in graceful upgrade like the other listeners. With
//! per-core HTTPS workers each attached connection's HTTP/2 client runs on
//! one of those workers ([`ConnectorListener::start`]), and the pool sends a
//! request over a connection of the worker it arrived on: the request and
//! its response then never change thread in the gateway (on the listener's
//! own threads every small request cost two cross-thread wake-ups).

use super::auth::{self, Refusal};
use super::body::{self as up_body, UpBody};
use super::counted_io::CountedIo;
use super::link::{Exchange, Link, LinkSender, Origin};
use super::liveness::TcpLiveness;
use super::pool::ConnectorPool;
use super::wire;
use crate::audit::{AuditLog, AuditRecord};
use crate::runtime::ServiceRuntime;
use crate::store::connectors::ConnectorRecord;
use crate::store::Store;
use bytes::Bytes;
use http_body_util::Full;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use mft_config::connector::LinkMode;
use mft_filters::problem::Problem;
use pingora_core::server::ExecutionPhase;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Accepts connectors.
pub struct ConnectorListener {
    tls: tokio_rustls::TlsAcceptor,
    pool: Arc<ConnectorPool>,
    store: Store,
    control: ServiceRuntime,
    audit: AuditLog,
    handshake_timeout: Duration,
    ping_interval: Duration,
    /// Keepalive and user timeout of each accepted socket.
    liveness: TcpLiveness,
    link: LinkMode,
    /// The per-core HTTPS workers' runtimes (empty: connections stay on
    /// the listener's runtime).
    homes: Vec<tokio::runtime::Handle>,
}

type Attached = (OnUpgrade, ConnectorRecord, LinkMode);

/// An attached connection's stream, its bytes counted.
type LinkIo = TokioIo<CountedIo<TokioIo<Upgraded>>>;

impl ConnectorListener {
    /// A listener with the gateway's certificate (`tls`, ALPN narrowed to
    /// HTTP/1.1 for the attach request) feeding `pool`. `homes` are the
    /// per-core HTTPS workers' runtimes that drive the attached connections
    /// (none with the work-stealing runtime).
    pub fn new(
        tls: &rustls::ServerConfig,
        pool: Arc<ConnectorPool>,
        store: Store,
        control: ServiceRuntime,
        audit: AuditLog,
        config: &mft_config::connector::ConnectorListen,
        homes: Vec<tokio::runtime::Handle>,
    ) -> ConnectorListener {
        let mut tls = tls.clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Both ends are ours: follow the connector's order of suites, which
        // puts AES-128-GCM first (every transferred byte is sealed on one
        // side and opened on the other).
        tls.ignore_client_order = false;
        ConnectorListener {
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            pool,
            store,
            control,
            audit,
            handshake_timeout: config.handshake_timeout,
            ping_interval: config.ping_interval,
            liveness: TcpLiveness::gateway(config.ping_interval),
            link: config.link,
            homes,
        }
    }

    fn audit(
        &self,
        event: &'static str,
        name: Option<&str>,
        peer: Option<SocketAddr>,
        reason: &str,
    ) {
        let mut r = AuditRecord::new(event);
        r.principal = name.map(|n| format!("connector:{n}"));
        r.client_ip = peer.map(|a| a.ip());
        r.path = Some(wire::ATTACH_PATH.to_string());
        r.decision = Some(if event == "connector_refused" {
            "deny"
        } else {
            "allow"
        });
        r.reason = Some(reason.to_string().into());
        self.audit.record(r);
    }

    /// TLS plus the attach request; the upgraded stream of an accepted connector.
    async fn attach(
        self: &Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: Option<SocketAddr>,
    ) -> Option<(Upgraded, ConnectorRecord, LinkMode)> {
        let tls = match self.tls.accept(stream).await {
            Ok(tls) => tls,
            Err(e) => {
                tracing::info!(peer = ?peer, error = %e, "connector TLS handshake failed");
                return None;
            }
        };
        // A client certificate is optional at the TLS layer (any one is
        // accepted there): a pinned connector's is checked after its key.
        let presented: Option<Arc<str>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|der| Arc::from(crate::tls::pin::cert_sha256(der.as_ref())));
        let slot: Arc<Mutex<Option<Attached>>> = Arc::new(Mutex::new(None));
        let me = self.clone();
        let found = slot.clone();
        let service = hyper::service::service_fn(move |req| {
            let me = me.clone();
            let found = found.clone();
            let presented = presented.clone();
            async move {
                Ok::<_, std::convert::Infallible>(
                    me.answer(req, peer, presented.as_deref(), &found).await,
                )
            }
        });
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .keep_alive(false)
            .header_read_timeout(self.handshake_timeout)
            .serve_connection(TokioIo::new(tls), service)
            .with_upgrades()
            .await;
        if let Err(e) = served {
            tracing::debug!(peer = ?peer, error = %e, "connector attach request failed");
        }
        let (on_upgrade, record, mode) = slot.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        match on_upgrade.await {
            Ok(upgraded) => Some((upgraded, record, mode)),
            Err(e) => {
                tracing::info!(peer = ?peer, connector = %record.name, error = %e, "connector upgrade failed");
                None
            }
        }
    }

    /// The answer to the attach request: 101 for a known key, else a problem.
    async fn answer(
        &self,
        mut req: http::Request<hyper::body::Incoming>,
        peer: Option<SocketAddr>,
        presented: Option<&str>,
        found: &Mutex<Option<Attached>>,
    ) -> http::Response<Full<Bytes>> {
        let upgrade_asked = req.headers().get(http::header::UPGRADE).is_some_and(|v| {
            v.as_bytes()
                .eq_ignore_ascii_case(wire::UPGRADE_TOKEN.as_bytes())
        });
        if req.uri().path() != wire::ATTACH_PATH || !upgrade_asked {
            return problem(
                404,
                "this listener serves only DMZ connectors (mft-gateway connector)",
                false,
            );
        }
        let verified = match auth::bearer(req.headers()) {
            Ok(token) => auth::verify(&self.store, &self.control, token, presented).await,
            Err(r) => Err(r),
        };
        match verified {
            Ok(record) => {
                let mode = self.choose_link(req.headers());
                let on_upgrade = hyper::upgrade::on(&mut req);
                *found.lock().unwrap_or_else(|p| p.into_inner()) = Some((on_upgrade, record, mode));
                let mut response = http::Response::new(Full::new(Bytes::new()));
                *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                let h = response.headers_mut();
                h.insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("upgrade"),
                );
                h.insert(
                    http::header::UPGRADE,
                    http::HeaderValue::from_static(wire::UPGRADE_TOKEN),
                );
                h.insert(
                    wire::LINK_HEADER,
                    http::HeaderValue::from_static(mode.as_str()),
                );
                if mode == LinkMode::Http1 {
                    h.insert(
                        wire::HEARTBEAT_HEADER,
                        http::HeaderValue::from(self.ping_interval.as_secs().max(1)),
                    );
                }
                response
            }
            Err(refusal) => {
                self.pool
                    .metrics
                    .refused
                    .with_label_values(&[refusal.reason()])
                    .inc();
                self.audit("connector_refused", None, peer, refusal.reason());
                tracing::warn!(peer = ?peer, reason = refusal.reason(), "connector refused");
                let detail = match refusal {
                    Refusal::Store => "the gateway's key store is unavailable; try again",
                    Refusal::Certificate => {
                        "this connector must present the client certificate it is pinned to"
                    }
                    _ => "connector key refused",
                };
                problem(refusal.status(), detail, refusal == Refusal::Store)
            }
        }
    }

    /// `[connector] link` if the connector offers it, else HTTP/2 (a
    /// connector that names no protocol speaks only that).
    fn choose_link(&self, headers: &http::HeaderMap) -> LinkMode {
        let offered = headers
            .get(wire::LINK_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|m| LinkMode::parse(m) == Some(self.link)));
        if offered {
            self.link
        } else {
            LinkMode::H2
        }
    }

    /// Runs the gateway's client on an attached connection until it dies
    /// or is closed.
    async fn serve_link(
        &self,
        upgraded: Upgraded,
        record: ConnectorRecord,
        mode: LinkMode,
        peer: Option<SocketAddr>,
        home: Option<usize>,
    ) {
        let name: Arc<str> = Arc::from(record.name.as_str());
        let totals = self.pool.totals(&name);
        // Counted on the stream: what really crossed, streamed or not.
        let io = TokioIo::new(CountedIo::new(
            TokioIo::new(upgraded),
            totals.bytes_in.clone(),
            totals.bytes_out.clone(),
        ));
        if mode == LinkMode::Http1 {
            return self.serve_http1(io, record, name, peer, home).await;
        }
        let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(wire::STREAM_WINDOW)
            .initial_connection_window_size(wire::CONNECTION_WINDOW)
            .max_frame_size(wire::MAX_FRAME)
            .keep_alive_interval(self.ping_interval)
            .keep_alive_timeout(wire::ping_timeout(self.ping_interval))
            .keep_alive_while_idle(true)
            .handshake::<_, UpBody>(io)
            .await;
        let (sender, conn) = match handshake {
            Ok(pair) => pair,
            Err(e) => {
                tracing::info!(connector = %record.name, error = %e, "connector h2 handshake failed");
                return;
            }
        };
        let (link, close) = self.attached(&record, &name, peer, home, LinkSender::H2(sender));
        let reason = tokio::select! {
            ended = conn => why_ended(ended),
            () = close.cancelled() => REMOVED.to_string(),
        };
        self.detached(&link, &reason);
    }

    /// An HTTP/1.1 link: one exchange at a time; a heartbeat on it while
    /// idle proves it alive, and each finished exchange wakes a request
    /// waiting for a free link.
    async fn serve_http1(
        &self,
        io: LinkIo,
        record: ConnectorRecord,
        name: Arc<str>,
        peer: Option<SocketAddr>,
        home: Option<usize>,
    ) {
        let handshake = hyper::client::conn::http1::Builder::new()
            .handshake::<_, UpBody>(io)
            .await;
        let (sender, conn) = match handshake {
            Ok(pair) => pair,
            Err(e) => {
                tracing::info!(connector = %record.name, error = %e, "connector HTTP/1.1 handshake failed");
                return;
            }
        };
        let sender = LinkSender::Http1(Mutex::new(sender));
        let (link, close) = self.attached(&record, &name, peer, home, sender);
        let driven = self.pool.drive_http1(&link, Box::pin(conn));
        let reason = tokio::select! {
            ended = driven => why_ended(ended),
            reason = heartbeat(&link, self.ping_interval) => reason,
            () = close.cancelled() => REMOVED.to_string(),
        };
        self.detached(&link, &reason);
    }

    /// A connection past its handshake joins the pool as a [`Link`] over
    /// `sender`, its address goes to `connectors list`, and it is audited;
    /// cancelling the token ends it.
    fn attached(
        &self,
        record: &ConnectorRecord,
        name: &Arc<str>,
        peer: Option<SocketAddr>,
        home: Option<usize>,
        sender: LinkSender,
    ) -> (Arc<Link>, CancellationToken) {
        let totals = self.pool.totals(name);
        if let Some(p) = peer {
            *totals.address.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.to_string());
        }
        let close = CancellationToken::new();
        let link = Arc::new(Link::new(
            self.pool.next_id(),
            Origin {
                name: name.clone(),
                key_id: record.key_id.clone(),
                peer,
                home,
            },
            totals,
            self.pool.metrics.outcomes(name),
            sender,
            close.clone(),
        ));
        self.pool.add(link.clone());
        self.audit("connector_connect", Some(&link.name), link.peer, "attached");
        tracing::info!(connector = %link.name, peer = ?link.peer, "connector connected");
        (link, close)
    }

    fn detached(&self, link: &Link, reason: &str) {
        self.pool.remove(link.id);
        self.audit("connector_disconnect", Some(&link.name), link.peer, reason);
        tracing::info!(connector = %link.name, peer = ?link.peer, reason = %reason, "connector disconnected");
    }
}

/// The disconnect reason of a link the gateway closed.
const REMOVED: &str = "closed by the gateway (connector removed)";

/// The disconnect reason of a link whose connection ended by itself.
fn why_ended(ended: hyper::Result<()>) -> String {
    match ended {
        Ok(()) => "closed by the connector".to_string(),
        Err(e) => format!("connection failed: {e}"),
    }
}

/// Proves an idle HTTP/1.1 link alive every `interval` (HTTP/1.1 has no
/// PING): the connector must answer within `interval`, so a link whose
/// path went silent is found dead within twice it. Busy links are left
/// alone: a silent path under them ends them by TCP keepalive and the user
/// timeout ([`super::liveness`]), within about the same bound.
/// Returns why the link ends.
async fn heartbeat(link: &Link, interval: Duration) -> String {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if !link.is_usable() {
            continue;
        }
        let mut req = http::Request::new(up_body::empty());
        *req.uri_mut() = http::Uri::from_static(wire::HEARTBEAT_PATH);
        req.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_static("connector"),
        );
        match tokio::time::timeout(interval, link.exchange(req)).await {
            Ok(Ok(answer)) => {
                let retired = answer
                    .headers()
                    .get(http::header::CONNECTION)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                if retired {
                    return "retired by the connector (more idle connections than it keeps)"
                        .to_string();
                }
            }
            Ok(Err(Exchange::Unsent(_))) => {}
            Ok(Err(Exchange::Lost(e))) => return format!("heartbeat failed: {e}"),
            Ok(Err(Exchange::Timeout)) | Err(_) => {
                return format!("no answer to the heartbeat within {interval:?}")
            }
        }
    }
}

fn problem(status: u16, detail: &str, retry: bool) -> http::Response<Full<Bytes>> {
    let body = Problem::new(status, Some(detail.to_string())).to_json();
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(mft_filters::problem::CONTENT_TYPE),
    );
    if retry {
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from(super::pool::RETRY_AFTER_SECS),
        );
    }
    response
}

impl ConnectorListener {
    /// Accepts connectors on `socket` from a runtime of `threads` threads
    /// until pingora's shutdown phases say stop. With per-core workers
    /// (`homes`) each accepted connection moves to the worker with the
    /// fewest connector connections and lives there.
    pub fn start(
        self: Arc<Self>,
        socket: std::net::TcpListener,
        threads: usize,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> std::io::Result<()> {
        socket.set_nonblocking(true)?;
        // Only accepting and attaching when the links live on the workers.
        let threads = if self.homes.is_empty() { threads } else { 1 };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("connector")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        // Attached links outlive a moved or closed socket: the runtime that
        // drives them (without per-core workers) lives until the process ends.
        std::thread::Builder::new()
            .name("connector-accept".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        // A reload that changes `connector.listen` hands a new socket to a
        // new accept loop; the old loop ends (upgrade.rs).
        crate::upgrade::serve_movable_bound(
            crate::upgrade::names::CONNECTOR,
            socket,
            move |socket, moved| {
                let _ = socket.set_nonblocking(true);
                handle.spawn(
                    self.clone()
                        .accept_loop(socket, phases.resubscribe(), moved),
                );
            },
        )
    }

    async fn accept_loop(
        self: Arc<Self>,
        socket: std::net::TcpListener,
        mut phases: broadcast::Receiver<ExecutionPhase>,
        mut moved: crate::upgrade::Moved,
    ) {
        let listener = match tokio::net::TcpListener::from_std(socket) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "connector listener cannot join the runtime");
                return;
            }
        };
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => self.place(tcp, peer),
                    Err(e) => {
                        tracing::warn!(error = %e, "connector accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                // A reload moved the listener; links accepted here go on.
                () = moved.wait() => break,
                phase = phases.recv() => match phase {
                    Ok(ExecutionPhase::GracefulTerminate | ExecutionPhase::ShutdownStarted)
                    | Err(broadcast::error::RecvError::Closed) => break,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                },
            }
        }
        // Closing the socket refuses new connectors (or leaves them to the
        // new process after an upgrade, or to the new address after a
        // move); attached ones stay until they end.
        drop(listener);
    }

    /// Serves `tcp` here, or on the per-core worker with the fewest links.
    fn place(self: &Arc<Self>, tcp: tokio::net::TcpStream, peer: SocketAddr) {
        // Small requests must not wait for Nagle's timer.
        let _ = tcp.set_nodelay(true);
        // A busy HTTP/1.1 link has no heartbeat: the kernel watches its path.
        if let Err(e) = self.liveness.apply(&tcp) {
            tracing::warn!(peer = %peer, error = %e, "cannot set keepalive on a connector connection");
        }
        let home = self.pool.quietest_home(self.homes.len());
        let Some((index, handle)) = home.and_then(|i| Some((i, self.homes.get(i)?))) else {
            tokio::spawn(self.clone().process(tcp, Some(peer), None));
            return;
        };
        // Leaves this runtime's reactor; the worker registers it with its own.
        let std_tcp = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "cannot move a connector connection to a worker");
                return;
            }
        };
        let me = self.clone();
        handle.spawn(async move {
            match tokio::net::TcpStream::from_std(std_tcp) {
                Ok(tcp) => me.process(tcp, Some(peer), Some(index)).await,
                Err(e) => {
                    tracing::debug!(error = %e, "a connector connection cannot join a worker")
                }
            }
        });
    }

    /// One connection: attach within the handshake timeout, then carry
    /// requests until it ends.
    async fn process(
        self: Arc<Self>,
        tcp: tokio::net::TcpStream,
        peer: Option<SocketAddr>,
        home: Option<usize>,
    ) {
        let attached = tokio::time::timeout(self.handshake_timeout, self.attach(tcp, peer)).await;
        match attached {
            Ok(Some((upgraded, record, mode))) => {
                self.serve_link(upgraded, record, mode, peer, home).await
            }
            Ok(None) => {}
            Err(_) => tracing::info!(peer = ?peer, "connector attach timed out"),
        }
    }
}
