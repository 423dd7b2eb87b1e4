//! Steps 1 and 2 of the hyper engine: accept a connection (per-IP cap before
//! any crypto), terminate TLS (handshake deadline, client certificate
//! digest for partner pinning), then serve HTTP/1.1 or h2 by ALPN.
//!
//! [`super::listener`] accepts the TCP connection and hands it to
//! [`HyperFront::serve`].
//!
//! Below HTTP, [`ConnIo`] keeps two per-request deadlines hyper does not
//! have in the form we need: the header deadline starts at a request's first
//! byte (hyper's starts when the connection goes idle, which would make the
//! keep-alive time count against the next header), and an idle keep-alive
//! connection closes after `keepalive_timeout`. It also notes whether a
//! request head carried both `Content-Length` and `Transfer-Encoding`, which
//! hyper resolves silently (it drops `Content-Length`) and we refuse.

use super::lingering_close::Lingering;
use super::service::HyperGateway;
use crate::conn_guard::{ConnLimiter, ConnSlot};
use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use rustls::ServerConfig;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

/// TLS, then HTTP on hyper, for each accepted connection.
pub struct HyperFront {
    /// Swapped by a reload (TLS settings); read once per connection.
    tls: ArcSwap<ServerConfig>,
    /// Swapped by a reload; read once per request, so a request in flight
    /// finishes on the settings it started with.
    gateway: ArcSwap<HyperGateway>,
    handshake_timeout: Duration,
    conns: Arc<ConnLimiter>,
    header_timeout: Duration,
    keepalive_timeout: Duration,
    h1: hyper::server::conn::http1::Builder,
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl HyperFront {
    /// Serves `gateway` behind TLS with `config`; `conns` caps connections
    /// per client IP, `header_timeout` bounds each HTTP/1.1 request header,
    /// `keepalive_timeout` an idle HTTP/1.1 connection; `h2_window` is the
    /// h2 flow-control window.
    pub fn new(
        config: Arc<ServerConfig>,
        gateway: Arc<HyperGateway>,
        handshake_timeout: Duration,
        conns: Arc<ConnLimiter>,
        header_timeout: Duration,
        keepalive_timeout: Duration,
        h2_window: u32,
    ) -> Self {
        // hyper's own builders, not hyper-util's auto builder: ALPN has
        // chosen the protocol already, and the auto builder's connection
        // is sized for both protocols (2.8 KiB against HTTP/1.1's 2.0 KiB)
        // and reads through one more I/O wrapper (for a version it need
        // not sniff).
        let mut h1 = hyper::server::conn::http1::Builder::new();
        // No timer, and hyper's own header timer off: `ConnIo` bounds the
        // header (`request_header_timeout`) and the idle wait
        // (`keepalive_timeout`) already, and the header timer is all an
        // HTTP/1.1 server connection would use a timer for. hyper's default
        // (30 s, on once a timer is set) started at the end of every
        // response, so it cut idle keep-alive connections at 30 s whatever
        // `keepalive_timeout` said, and cost a boxed sleep, a timer
        // registration and one more turn of hyper's poll loop per request.
        h1.header_read_timeout(None).keep_alive(true);
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        // Equal windows per stream and per connection: one upload gets the
        // whole window, and a connection buffers at most that much however
        // many streams it opens (`server.h2_window`, configuration.md).
        h2.timer(TokioTimer::new())
            .initial_stream_window_size(h2_window)
            .initial_connection_window_size(h2_window);
        HyperFront {
            tls: ArcSwap::new(config),
            gateway: ArcSwap::new(gateway),
            handshake_timeout,
            conns,
            header_timeout,
            keepalive_timeout,
            h1,
            h2,
        }
    }
}

impl HyperFront {
    /// The request path new requests take.
    pub fn gateway(&self) -> Arc<HyperGateway> {
        self.gateway.load_full()
    }

    /// New requests take `gateway` (a reload); those in flight keep theirs.
    pub fn swap_gateway(&self, gateway: Arc<HyperGateway>) {
        self.gateway.store(gateway);
    }

    /// New connections handshake with `config` (a reload).
    pub fn swap_tls(&self, config: Arc<ServerConfig>) {
        self.tls.store(config);
    }

    /// Serves one accepted TCP connection until it ends, or until
    /// `shutdown` turns true (then what is in flight finishes).
    pub async fn serve<S>(
        self: Arc<Self>,
        stream: S,
        peer: Option<SocketAddr>,
        mut shutdown: watch::Receiver<bool>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Refused before the handshake: a client at its cap, or one the
        // defender banned, costs us no crypto.
        if self.banned(peer) {
            return;
        }
        let Ok(slot) = self.conns.admit(peer) else {
            return;
        };
        // Boxed so the handshake's state is freed once it is done, not kept
        // for as long as the connection lives.
        let handshake = Box::pin(tokio::time::timeout(
            self.handshake_timeout,
            tokio_rustls::TlsAcceptor::from(self.tls.load_full()).accept(stream),
        ));
        let tls = match handshake.await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(peer = ?peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = ?peer, "TLS handshake timed out");
                return;
            }
        };
        let (served, this_conn) = self.connection(tls, peer, slot);
        let mut served = std::pin::pin!(served);
        let http2 = this_conn.http2;
        let result = tokio::select! {
            r = served.as_mut() => r,
            // A banned client's connection: the answer in flight goes out,
            // then the connection closes (h2: GOAWAY), so a flood has to
            // reconnect, and is refused at accept, instead of getting cheap
            // refusals over one kept-alive connection.
            () = this_conn.shed.notified() => {
                served.as_mut().graceful_shutdown();
                served.await
            }
            () = stopped(&mut shutdown) => {
                if !http2 {
                    // A kept-alive HTTP/1.1 connection closed under a client
                    // that is sending its next request fails that request.
                    // For DRAIN_LINGER every response closes its connection
                    // instead, so a busy client moves on cleanly; only then
                    // is an idle one closed.
                    this_conn.closing.store(true, Ordering::Relaxed);
                    let linger = tokio::time::sleep(crate::drain::DRAIN_LINGER);
                    tokio::pin!(linger);
                    tokio::select! {
                        r = served.as_mut() => return log_end(peer, r),
                        () = linger => {}
                    }
                }
                // Finish what is in flight (h2: GOAWAY), accept nothing new.
                served.as_mut().graceful_shutdown();
                served.await
            }
        };
        log_end(peer, result);
    }
}

impl HyperFront {
    /// The HTTP connection over `tls`, boxed. Built here rather than in
    /// [`HyperFront::serve`]: an async fn keeps room for each of its locals
    /// for as long as it runs, so the TLS stream, the I/O wrapper and the
    /// connection moved from one into the next would each stay in every
    /// connection's task (8.7 KiB, against the 2.8 KiB this box holds),
    /// and that task is most of what an idle connection costs.
    fn connection<S>(
        self: &Arc<Self>,
        tls: tokio_rustls::server::TlsStream<S>,
        peer: Option<SocketAddr>,
        slot: Option<ConnSlot>,
    ) -> (
        Served<
            impl GracefulConnection<Error = hyper::Error> + '_,
            impl GracefulConnection<Error = hyper::Error> + '_,
        >,
        Arc<ConnInfo>,
    )
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (_, session) = tls.get_ref();
        let http2 = session.alpn_protocol() == Some(&b"h2"[..]);
        let client_cert_sha256 = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| {
                let d: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(c.as_ref()).into();
                d
            });
        let conn = Arc::new(ConnInfo {
            peer,
            client_cert_sha256,
            http2,
            phase: AtomicU8::new(if http2 { OFF } else { IDLE }),
            length_and_chunked: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            shed: tokio::sync::Notify::new(),
            unread_body: AtomicBool::new(false),
        });
        let io = TokioIo::new(ConnIo::new(
            tls,
            conn.clone(),
            self.header_timeout,
            self.keepalive_timeout,
            slot,
        ));
        let front = Arc::clone(self);
        let this_conn = conn.clone();
        let service = hyper::service::service_fn(move |req| {
            // One atomic load per request: the snapshot a reload swaps.
            let gateway = front.gateway.load_full();
            // Boxed: hyper's HTTP/1.1 server allocates room for this future
            // once per connection and keeps it while the connection idles
            // (about 5 KiB, a fifth of an idle connection); boxed, it costs
            // one allocation per request instead.
            let hsts = gateway.p.hsts.clone();
            let serving = Box::pin(gateway.serve(req, conn.clone()));
            let conn = conn.clone();
            async move {
                let mut response = serving.await;
                if conn.closing.load(Ordering::Relaxed) {
                    response.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                if let Some(hsts) = hsts {
                    response
                        .headers_mut()
                        .insert(http::header::STRICT_TRANSPORT_SECURITY, hsts);
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let served = if http2 {
            Served::H2(Box::pin(self.h2.serve_connection(io, service)))
        } else {
            Served::H1(Box::pin(self.h1.serve_connection(io, service)))
        };
        (served, this_conn)
    }

    /// Whether the defender bans `peer` now (one shard lookup; false
    /// without a defender or an address).
    fn banned(&self, peer: Option<SocketAddr>) -> bool {
        let Some(addr) = peer else {
            return false;
        };
        let banned = self.gateway.load().p.auth.banned_for(addr.ip()).is_some();
        if banned {
            tracing::debug!(peer = %addr, "connection refused: client banned");
        }
        banned
    }
}

/// A client connection's HTTP, each protocol's in a box of its own size.
enum Served<H1, H2> {
    H1(Pin<Box<H1>>),
    H2(Pin<Box<H2>>),
}

impl<H1, H2> Served<H1, H2>
where
    H1: GracefulConnection<Error = hyper::Error>,
    H2: GracefulConnection<Error = hyper::Error>,
{
    /// Finishes what is in flight (h2: GOAWAY), then ends.
    fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.get_mut() {
            Served::H1(c) => c.as_mut().graceful_shutdown(),
            Served::H2(c) => c.as_mut().graceful_shutdown(),
        }
    }
}

impl<H1, H2> Future for Served<H1, H2>
where
    H1: GracefulConnection<Error = hyper::Error>,
    H2: GracefulConnection<Error = hyper::Error>,
{
    type Output = Result<(), hyper::Error>;

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Served::H1(c) => c.as_mut().poll(cx),
            Served::H2(c) => c.as_mut().poll(cx),
        }
    }
}

fn log_end(peer: Option<SocketAddr>, result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!(peer = ?peer, error = %e, "connection ended with an error");
    }
}

/// Resolves once `shutdown` is true (at once if it already is).
pub(super) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: dropped here, not held
    // across the caller's awaits.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

const IDLE: u8 = 0;
const HEADER: u8 = 1;
const IN_REQUEST: u8 = 2;
/// h2 multiplexes requests on one connection; the deadlines are per HTTP/1.1 request.
const OFF: u8 = 3;

/// What the request path needs from its connection.
pub struct ConnInfo {
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// SHA-256 of the TLS client certificate, if one was presented.
    pub client_cert_sha256: Option<[u8; 32]>,
    /// ALPN chose h2.
    pub http2: bool,
    phase: AtomicU8,
    length_and_chunked: AtomicBool,
    /// The process drains: every HTTP/1.1 response says `Connection: close`.
    closing: AtomicBool,
    /// Woken to close the connection once the answer in flight is out.
    shed: tokio::sync::Notify,
    /// A request body was dropped before its end (HTTP/1.1): the client
    /// may still be sending it, so the close lingers.
    unread_body: AtomicBool,
}

impl ConnInfo {
    /// The request head was parsed: stop the header deadline (the body may
    /// take hours). Returns whether that head carried both `Content-Length`
    /// and `Transfer-Encoding`.
    pub fn header_done(&self) -> bool {
        let _ =
            self.phase
                .compare_exchange(HEADER, IN_REQUEST, Ordering::AcqRel, Ordering::Acquire);
        self.length_and_chunked.swap(false, Ordering::AcqRel)
    }

    /// Closes the connection after the answer in flight (the client is
    /// banned): HTTP/1.1 says `Connection: close`, h2 sends GOAWAY.
    pub fn close_after_this(&self) {
        if !self.http2 {
            self.closing.store(true, Ordering::Relaxed);
        }
        self.shed.notify_one();
    }

    /// A request body was left unread: the connection's close lingers
    /// (see [`super::lingering_close`]). HTTP/2 resets the stream instead.
    pub fn body_left_unread(&self) {
        if !self.http2 {
            self.unread_body.store(true, Ordering::Relaxed);
        }
    }

    /// The response is finished: the next bytes start a new header deadline.
    pub fn request_done(&self) {
        for from in [IN_REQUEST, HEADER] {
            let _ = self
                .phase
                .compare_exchange(from, IDLE, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

/// The longest header line prefix [`HeadScan`] compares.
const SCAN: usize = 18;

/// Notes `Content-Length` and `Transfer-Encoding` in one request head.
#[derive(Default)]
struct HeadScan {
    line: [u8; SCAN],
    len: usize,
    length: bool,
    chunked: bool,
    done: bool,
}

impl HeadScan {
    /// Feeds bytes of a request head; true once both fields were seen.
    /// Only each line's first [`SCAN`] bytes are looked at; the rest of a
    /// line is skipped with `memchr` rather than byte by byte.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        while !self.done && !bytes.is_empty() {
            let end = memchr::memchr(b'\n', bytes);
            let line = &bytes[..end.unwrap_or(bytes.len())];
            if self.len == 0 && line.first().is_some_and(|b| !b"cCtT\r".contains(b)) {
                // Neither field, nor the empty line that ends the head (the
                // request line, Host, ...): nothing to copy or compare.
                self.len = SCAN;
            }
            let take = line.len().min(SCAN - self.len);
            if take > 0 {
                for (slot, b) in self.line[self.len..self.len + take].iter_mut().zip(line) {
                    *slot = b.to_ascii_lowercase();
                }
                self.len += take;
                let seen = &self.line[..self.len];
                self.length |= seen.starts_with(b"content-length:");
                self.chunked |= seen.starts_with(b"transfer-encoding:");
            }
            let Some(end) = end else { break };
            self.done = self.len == 0 || (self.len == 1 && self.line[0] == b'\r');
            self.len = 0;
            bytes = &bytes[end + 1..];
        }
        self.length && self.chunked
    }
}

/// The decrypted client stream with the per-request deadlines and the IP slot.
pub struct ConnIo<S> {
    inner: S,
    conn: Arc<ConnInfo>,
    header_timeout: Duration,
    keepalive_timeout: Duration,
    /// Fires at or before `due`; moved only when `due` comes earlier (see
    /// [`ConnIo::arm`]).
    deadline: Pin<Box<Sleep>>,
    /// When the current phase's deadline (idle or header) passes.
    due: Instant,
    /// The idle deadline of this idle phase is set.
    idle_armed: bool,
    scan: HeadScan,
    lingering: Lingering,
    _slot: Option<ConnSlot>,
}

impl<S> ConnIo<S> {
    fn new(
        inner: S,
        conn: Arc<ConnInfo>,
        header_timeout: Duration,
        keepalive_timeout: Duration,
        slot: Option<ConnSlot>,
    ) -> Self {
        ConnIo {
            inner,
            conn,
            header_timeout,
            keepalive_timeout,
            deadline: Box::pin(tokio::time::sleep(keepalive_timeout)),
            due: Instant::now() + keepalive_timeout,
            idle_armed: true,
            scan: HeadScan::default(),
            lingering: Lingering::default(),
            _slot: slot,
        }
    }
}

impl<S> ConnIo<S> {
    /// Sets the current phase's deadline. The timer moves only if it would
    /// fire after `due`: moving it earlier takes the timer driver's lock,
    /// and one request moves the deadline twice (header, then idle), so
    /// under load the timer is left to fire early and [`Self::passed`]
    /// re-arms it, once per deadline's length rather than per request.
    fn arm(&mut self, due: Instant) {
        self.due = due;
        if self.deadline.deadline() > due {
            self.deadline.as_mut().reset(due);
        }
    }

    /// Whether the current phase's deadline has passed; registers `cx`
    /// to be woken when it does.
    fn passed(&mut self, cx: &mut Context<'_>) -> bool {
        while self.deadline.as_mut().poll(cx).is_ready() {
            if Instant::now() >= self.due {
                return true;
            }
            // Fired early (set for an earlier phase): wait for the rest.
            self.deadline.as_mut().reset(self.due);
        }
        false
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ConnIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let phase = this.conn.phase.load(Ordering::Acquire);
        match phase {
            IDLE => {
                if !this.idle_armed {
                    this.idle_armed = true;
                    this.arm(Instant::now() + this.keepalive_timeout);
                }
                if this.passed(cx) {
                    // An idle keep-alive connection ends quietly.
                    return Poll::Ready(Ok(()));
                }
            }
            HEADER if this.passed(cx) => {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "request header not complete within request_header_timeout",
                )));
            }
            _ => {}
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            if phase == IDLE {
                this.conn.phase.store(HEADER, Ordering::Release);
                this.idle_armed = false;
                this.scan = HeadScan::default();
                this.arm(Instant::now() + this.header_timeout);
            }
            if (phase == IDLE || phase == HEADER) && this.scan.feed(&buf.filled()[before..]) {
                this.conn.length_and_chunked.store(true, Ordering::Release);
            }
        }
        result
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ConnIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let linger = this.conn.unread_body.load(Ordering::Relaxed);
        this.lingering
            .poll_shutdown(&mut this.inner, linger, &mut this.deadline, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, D, F: Future>(_: impl FnOnce(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_connections_task_keeps_only_what_it_needs_across_awaits() {
        // Every connection's task is this future, for as long as the
        // connection lives: what it keeps is memory per idle connection.
        let size = future_size(HyperFront::serve::<tokio::net::TcpStream>);
        assert!(size <= 1024, "HyperFront::serve is {size} bytes");
    }

    #[test]
    fn scan_sees_both_lengths_in_any_case_and_order() {
        let mut s = HeadScan::default();
        assert!(s.feed(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nhost: x\r\nCONTENT-LENGTH: 5\r\n\r\n"
        ));
        let mut s = HeadScan::default();
        assert!(!s.feed(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nTransfer-Encoding: x\r\n"));
        let mut s = HeadScan::default();
        assert!(
            !s.feed(b"POST / HTTP/1.1\r\nX-Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")
        );
        // Split across reads.
        let mut s = HeadScan::default();
        assert!(!s.feed(b"POST / HTTP/1.1\r\nContent-Len"));
        assert!(s.feed(b"gth: 5\r\nTransfer-Encoding: chunked\r\n\r\n"));
        // One byte per read, and a long line before the fields.
        let head = format!(
            "POST / HTTP/1.1\r\nx-long: {}\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
            "a".repeat(300)
        );
        let mut s = HeadScan::default();
        let seen: Vec<bool> = head.as_bytes().chunks(1).map(|b| s.feed(b)).collect();
        assert_eq!(seen.last(), Some(&true));
        // A blank line ends the head even when it arrives on its own.
        let mut s = HeadScan::default();
        assert!(!s.feed(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n"));
        assert!(!s.feed(b"\r"));
        assert!(!s.feed(b"\nTransfer-Encoding: chunked\r\n"));
        // Bare line feeds too.
        let mut s = HeadScan::default();
        assert!(!s.feed(b"POST / HTTP/1.1\nContent-Length: 5\n\nTransfer-Encoding: x\n"));
    }
}
