//! Pooled keep-alive HTTP/1.1 connections to the backend, on hyper's
//! connection-level client.
//!
//! Not hyper-util's pooled `Client`: per request it hashed the pool key
//! (scheme and authority) with SipHash three times, moved the request
//! through several layers of futures (~20 copies of request and body), and
//! spawned a task per request to put the connection back once it was ready
//! again (docs/benchmarks.md, "own upstream pool"). Here there is one
//! backend, so the pool is one stack of idle connections: the most recently
//! used comes out first (warm in every cache), and a connection goes back
//! when the response body has been read to its end, by the task that read
//! it. Each connection has the one task that drives it (hyper's
//! `Connection`), which also notices when the backend closes it; no other
//! watcher.

use super::body::GuardedBody;
use futures_util::FutureExt as _;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tower_service::Service;

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;
type Sender<B> = http1::SendRequest<B>;

/// Why no connection could be had or used.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// TCP or TLS toward the backend failed.
    #[error("cannot connect to the backend: {0}")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The HTTP/1.1 exchange failed (handshake, send, or response head).
    #[error("backend connection failed: {0}")]
    Http(#[from] hyper::Error),
}

struct Idle<B> {
    sender: Sender<B>,
    since: Instant,
}

struct Shared<B> {
    /// A stack: pushed and popped at the end.
    idle: Mutex<Vec<Idle<B>>>,
    max_idle: usize,
    idle_timeout: Duration,
    /// Idle this long, a connection is surplus; half the surplus closes
    /// every period ([`surplus_to_close`]).
    purge_delay: Duration,
    /// The sweeper starts with the first connection, on the runtime that
    /// serves this shard's requests.
    sweeping: AtomicBool,
}

thread_local! {
    /// The per-core worker this thread is ([`set_worker`]); none elsewhere.
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Marks the current thread as per-core worker `index`: its requests use
/// the pool shard of that index, whose connections' tasks run on the same
/// thread, so sending a request wakes no other thread.
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(Some(index)));
}

/// The per-core worker the current thread is, if it is one.
pub fn worker() -> Option<usize> {
    WORKER.with(Cell::get)
}

impl<B> Shared<B> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle<B>>> {
        // A panic while the lock was held leaves a valid Vec behind.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn put(&self, sender: Sender<B>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// The most recently used connection that is still open and fresh.
    fn take(&self) -> Option<Sender<B>> {
        let mut idle = self.lock();
        while let Some(c) = idle.pop() {
            if !c.sender.is_closed() && c.since.elapsed() < self.idle_timeout {
                return Some(c.sender);
            }
        }
        None
    }
}

/// A connection lent to one request; [`Checkin::release`] gives it back
/// once the response body has been read to its end.
pub struct Checkin<B = GuardedBody> {
    sender: Sender<B>,
    shared: Arc<Shared<B>>,
}

impl<B: Send + 'static> Checkin<B> {
    /// Back into the pool, now if the connection can take the next request,
    /// else as soon as it can. Dropping a `Checkin` instead closes the
    /// connection: that is right when the response was not read to its end.
    pub fn release(self) {
        let Checkin { mut sender, shared } = self;
        if sender.is_ready() {
            shared.put(sender);
            return;
        }
        // The connection's task has not taken in the end of the exchange
        // yet (it runs on its own), or the request body is still being
        // written: wait for it there rather than make the next request
        // wait or open another connection.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if sender.ready().await.is_ok() {
                    shared.put(sender);
                }
            });
        }
    }
}

/// Idle connections toward `[backend] url`: one shard, or one per per-core
/// worker. `B` is the request body type (the connector forwards its
/// HTTP/2 streams' bodies, the gateway its guarded ones).
pub struct UpstreamPool<B = GuardedBody> {
    shards: Box<[Arc<Shared<B>>]>,
    connector: Connector,
    /// What the connector dials (scheme and authority only matter).
    dial: http::Uri,
}

impl<B> UpstreamPool<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// A pool of at most `max_idle` idle connections in all, in `shards`
    /// shards, each connection dropped after `idle_timeout` unused, and
    /// half of those unused for `purge_delay` closed every `purge_delay`.
    pub fn new(
        connector: Connector,
        dial: http::Uri,
        max_idle: usize,
        (idle_timeout, purge_delay): (Duration, Duration),
        shards: usize,
    ) -> Self {
        let shards = shards.max(1);
        let per_shard = max_idle.div_ceil(shards);
        UpstreamPool {
            shards: (0..shards)
                .map(|_| {
                    Arc::new(Shared {
                        idle: Mutex::new(Vec::with_capacity(per_shard.min(1024))),
                        max_idle: per_shard,
                        idle_timeout,
                        purge_delay,
                        sweeping: AtomicBool::new(false),
                    })
                })
                .collect(),
            connector,
            dial,
        }
    }

    fn shard(&self) -> &Arc<Shared<B>> {
        let index = worker().unwrap_or(0) % self.shards.len();
        &self.shards[index]
    }

    /// Idle connections in all shards.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Sends `req` on an idle connection, or on a new one, and waits for
    /// the response head. The [`Checkin`] goes with the response body.
    ///
    /// Not an async fn: one keeps a parameter twice (as passed, and as its
    /// local), and this one is 480 bytes in every request's future.
    pub fn send(
        &self,
        mut req: http::Request<B>,
    ) -> impl Future<Output = Result<(http::Response<Incoming>, Checkin<B>), PoolError>> + Send + '_
    {
        // The request line carries the origin form (RFC 9112 §3.2.1); the
        // absolute URI was only for signing, `Host` names the authority.
        if req.uri().scheme().is_some() {
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = req.uri().path_and_query().cloned();
            if let Ok(origin) = http::Uri::from_parts(parts) {
                *req.uri_mut() = origin;
            }
        }
        let shard = self.shard();
        async move {
            // A pooled connection the backend closed in the meantime gives
            // the request back unsent: it then goes on the next one.
            while let Some(mut sender) = shard.take() {
                if sender.ready().await.is_err() {
                    continue;
                }
                match sender.try_send_request(req).await {
                    Ok(response) => return Ok((response, checkin(sender, shard))),
                    Err(mut failed) => match failed.take_message() {
                        Some(unsent) => req = unsent,
                        None => return Err(failed.into_error().into()),
                    },
                }
            }
            // Boxed: a new connection is rare next to a pooled one, and its
            // state (dial, handshake) would otherwise be inline in every request.
            let mut sender = Box::pin(self.connect(shard)).await?;
            let response = sender.send_request(req).await?;
            Ok((response, checkin(sender, shard)))
        }
    }

    async fn connect(&self, shard: &Arc<Shared<B>>) -> Result<Sender<B>, PoolError> {
        if !shard.sweeping.swap(true, Ordering::Relaxed) {
            start_sweeper(shard);
        }
        let io = self
            .connector
            .clone()
            .call(self.dial.clone())
            .await
            .map_err(PoolError::Connect)?;
        let (sender, connection) = http1::Builder::new().handshake(io).await?;
        // A combinator, not an async block: awaiting the captured
        // connection would keep it twice in the task (3.5 KiB, not 1.7).
        tokio::spawn(connection.map(|ended| {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "backend connection ended");
            }
        }));
        Ok(sender)
    }
}

fn checkin<B>(sender: Sender<B>, shard: &Arc<Shared<B>>) -> Checkin<B> {
    Checkin {
        sender,
        shared: shard.clone(),
    }
}

/// Drops a shard's idle connections unused for longer than the idle
/// timeout, so that a quiet gateway does not hold the backend's sockets, and
/// half of the surplus every purge period, so that the connections a burst
/// opened do not stay until then: each holds hyper's buffers and its task
/// (~46 KiB, docs/benchmarks.md), 23 MiB for a pool of 512.
fn start_sweeper<B: Send + 'static>(shard: &Arc<Shared<B>>) {
    let shared = Arc::downgrade(shard);
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (period, purging) = sweep_period(shard.idle_timeout, shard.purge_delay);
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let Some(s) = shared.upgrade() else { return };
            let mut idle = s.lock();
            let now = Instant::now();
            let timeout = s.idle_timeout;
            idle.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < timeout);
            if purging {
                let close = surplus_to_close(idle.iter().map(|c| c.since), now, s.purge_delay);
                idle.drain(..close);
            }
        }
    });
}

/// How often the sweeper runs, and whether it purges: every purge delay
/// when that comes before the idle timeout, else twice per idle timeout.
fn sweep_period(idle_timeout: Duration, purge_delay: Duration) -> (Duration, bool) {
    let floor = Duration::from_millis(10);
    if purge_delay < idle_timeout {
        (purge_delay.max(floor), true)
    } else {
        ((idle_timeout / 2).max(floor), false)
    }
}

/// How many idle connections to close from the bottom of the stack (the
/// least recently used first, `since` ascending): half of those unused for
/// `purge_delay`, rounded down, as HAProxy's `pool-purge-delay` does. A
/// burst's extra connections drain in a few periods; a lone one stays warm
/// until the idle timeout.
fn surplus_to_close(
    since: impl Iterator<Item = Instant>,
    now: Instant,
    purge_delay: Duration,
) -> usize {
    since
        .take_while(|t| now.duration_since(*t) >= purge_delay)
        .count()
        / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_of_the_connections_unused_for_the_delay_close() {
        let now = Instant::now();
        let delay = Duration::from_secs(5);
        let ago = |s: u64| now - Duration::from_secs(s);
        // Stack order: least recently used first.
        let since = [ago(30), ago(20), ago(9), ago(6), ago(5), ago(4), ago(1)];
        assert_eq!(surplus_to_close(since.into_iter(), now, delay), 2);
        assert_eq!(surplus_to_close(since[..1].iter().copied(), now, delay), 0);
        assert_eq!(surplus_to_close(since[5..].iter().copied(), now, delay), 0);
        let burst = vec![ago(7); 256];
        assert_eq!(surplus_to_close(burst.into_iter(), now, delay), 128);
    }

    #[test]
    fn the_sweeper_purges_only_before_the_idle_timeout() {
        let s = Duration::from_secs;
        assert_eq!(sweep_period(s(60), s(5)), (s(5), true));
        assert_eq!(sweep_period(s(60), s(60)), (s(30), false));
        assert_eq!(sweep_period(s(4), s(5)), (s(2), false));
    }

    /// Real connections to a local HTTP/1.1 server: a burst fills the
    /// pool, then the purge halves what nothing used.
    #[tokio::test]
    async fn a_bursts_idle_connections_drain_by_halves() {
        use http_body_util::Empty;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        // Long enough that the burst's requests overlap.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            Empty::<bytes::Bytes>::new(),
                        ))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            )
            .https_or_http()
            .enable_http1()
            .wrap_connector({
                let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
                http.enforce_http(false);
                http
            });
        let dial: http::Uri = format!("http://{addr}").parse().unwrap();
        let delay = Duration::from_millis(300);
        let pool: Arc<UpstreamPool<Empty<bytes::Bytes>>> = Arc::new(UpstreamPool::new(
            connector,
            dial,
            64,
            (Duration::from_secs(60), delay),
            1,
        ));
        let burst = (0..16).map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let req = http::Request::get("/").body(Empty::new()).unwrap();
                let (response, checkin) = pool.send(req).await.unwrap();
                // Read to the end, then give the connection back.
                http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .unwrap();
                checkin.release();
            })
        });
        for task in burst.collect::<Vec<_>>() {
            task.await.unwrap();
        }
        // Released connections may go back from their own task.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(pool.idle_count(), 16);
        // Within three periods: 16 -> 8 -> 4 (a first sweep may find none
        // old enough yet).
        let mut seen = vec![pool.idle_count()];
        for _ in 0..14 {
            tokio::time::sleep(delay / 4).await;
            let n = pool.idle_count();
            if seen.last() != Some(&n) {
                seen.push(n);
            }
        }
        assert_eq!(&seen[..3], &[16, 8, 4], "idle counts over time: {seen:?}");
        // A request after the purge still finds a warm connection.
        let (response, checkin) = pool
            .send(http::Request::get("/").body(Empty::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        drop(checkin);
    }
}
