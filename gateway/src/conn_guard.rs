//! Per-connection defences below HTTP: a cap on open connections per client
//! IP, and a deadline for each HTTP/1.1 request header.
//!
//! pingora times out each *read* of a request header, not the whole header,
//! so a client trickling one byte just inside that timeout (slowloris) keeps a
//! connection forever. [`GuardedStream`] arms a deadline when the first byte
//! of a request arrives; the proxy disarms it once the header is parsed
//! ([`mark_header_done`]) and re-arms it for the next request on the
//! connection ([`mark_request_done`]).

use async_trait::async_trait;
use mft_filters::client_key::client_key;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest};
use pingora_core::protocols::{Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType, ALPN};
use pingora_core::protocols::{SocketDigest, TimingDigest};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Open connections per client (an IPv4 address or an IPv6 /64, the key
/// the rate limiter and the defender use too), for the HTTPS listener and
/// the bridges' (SMTP, SFTP).
pub struct ConnLimiter {
    max: Option<u32>,
    // Held only for a map update at accept and close, never across an await.
    open: Mutex<HashMap<IpAddr, u32>>,
}

impl ConnLimiter {
    /// A limiter allowing `max` connections per IP (`None`: unlimited).
    pub fn new(max: Option<u32>) -> Arc<Self> {
        Arc::new(ConnLimiter {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`'s client, or `None` at the cap.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        let max = self.max?;
        let ip = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnSlot {
            limiter: self.clone(),
            ip,
        })
    }

    /// Admits a new connection from `peer` before any work on it: `Err` at
    /// the cap (logged), else its slot (`None` without a cap or an address).
    pub fn admit(self: &Arc<Self>, peer: Option<SocketAddr>) -> Result<Option<ConnSlot>, AtCap> {
        let (Some(_), Some(addr)) = (self.max, peer) else {
            return Ok(None);
        };
        match self.acquire(addr.ip()) {
            Some(slot) => Ok(Some(slot)),
            None => {
                tracing::debug!(peer = %addr, "connection refused: connections per client at the cap");
                Err(AtCap)
            }
        }
    }

    /// Open connections from `ip`'s client (for tests and diagnostics).
    pub fn open_from(&self, ip: IpAddr) -> u32 {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&client_key(ip)).copied().unwrap_or(0)
    }
}

/// The client holds as many connections as the cap allows.
#[derive(Debug, Clone, Copy)]
pub struct AtCap;

/// One counted connection; released on drop.
pub struct ConnSlot {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            // Entries exist only for live connections, so memory stays bounded
            // by the number of open sockets, not by the number of IPs ever seen.
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl std::fmt::Debug for ConnSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnSlot").field("ip", &self.ip).finish()
    }
}

const IDLE: u8 = 0;
const HEADER: u8 = 1;
const IN_REQUEST: u8 = 2;
/// h2 multiplexes requests on one connection; the deadline is per HTTP/1.1 request.
const OFF: u8 = 3;

/// The decrypted client stream with the header deadline and the IP slot.
pub struct GuardedStream {
    inner: Stream,
    phase: AtomicU8,
    header_timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    _slot: Option<ConnSlot>,
}

impl GuardedStream {
    /// Wraps a TLS stream; the deadline applies only to HTTP/1.1.
    pub fn new(inner: Stream, header_timeout: Duration, slot: Option<ConnSlot>) -> Self {
        let phase = if inner.selected_alpn_proto() == Some(ALPN::H2) {
            OFF
        } else {
            IDLE
        };
        GuardedStream {
            inner,
            phase: AtomicU8::new(phase),
            header_timeout,
            deadline: Box::pin(tokio::time::sleep(header_timeout)),
            _slot: slot,
        }
    }

    fn set_phase(&self, from: u8, to: u8) {
        let _ = self
            .phase
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire);
    }
}

fn guarded(session: &pingora_proxy::Session) -> Option<&GuardedStream> {
    let stream = session.downstream_session.stream()?;
    // Deref the box: `as_any` of `dyn IO` is the concrete stream's.
    (**stream).as_any().downcast_ref::<GuardedStream>()
}

/// The request header was parsed: stop its deadline (the body may take hours).
pub fn mark_header_done(session: &pingora_proxy::Session) {
    if let Some(g) = guarded(session) {
        g.set_phase(HEADER, IN_REQUEST);
    }
}

/// The request is finished: the next bytes start a new header deadline.
pub fn mark_request_done(session: &pingora_proxy::Session) {
    if let Some(g) = guarded(session) {
        g.set_phase(IN_REQUEST, IDLE);
        g.set_phase(HEADER, IDLE);
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.phase.load(Ordering::Acquire) == HEADER
            && this.deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request header not complete within request_header_timeout",
            )));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && this.phase.load(Ordering::Acquire) == IDLE
        {
            this.phase.store(HEADER, Ordering::Release);
            let at = Instant::now() + this.header_timeout;
            this.deadline.as_mut().reset(at);
        }
        result
    }
}

impl AsyncWrite for GuardedStream {
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
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
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

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("phase", &self.phase.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_ip_and_released_on_drop() {
        let limiter = ConnLimiter::new(Some(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = limiter.acquire(a);
        let s2 = limiter.acquire(a);
        assert!(s1.is_some() && s2.is_some());
        assert!(limiter.acquire(a).is_none(), "third connection from a");
        assert!(limiter.acquire(b).is_some(), "b has its own count");
        drop(s1);
        assert_eq!(limiter.open_from(a), 1);
        assert!(limiter.acquire(a).is_some());
    }

    #[test]
    fn an_ipv6_64_is_one_client() {
        let limiter = ConnLimiter::new(Some(2));
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let _x = limiter.acquire(v6("2001:db8::1"));
        let _y = limiter.acquire(v6("2001:db8::ffff:2"));
        assert!(limiter.acquire(v6("2001:db8::3")).is_none());
        assert!(limiter.acquire(v6("2001:db8:0:1::1")).is_some());
        assert_eq!(limiter.open_from(v6("2001:db8::9")), 2);
    }

    #[test]
    fn released_ips_leave_no_entry() {
        let limiter = ConnLimiter::new(Some(1));
        for i in 0..1000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            drop(limiter.acquire(ip));
        }
        assert!(limiter.open.lock().unwrap().is_empty());
    }
}
