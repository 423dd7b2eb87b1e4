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
use hyper::body::Incoming;
use hyper::client::conn::http1;
use std::cell::Cell;
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
    /// shards, each connection dropped after `idle_timeout` unused.
    pub fn new(
        connector: Connector,
        dial: http::Uri,
        max_idle: usize,
        idle_timeout: Duration,
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

    /// Sends `req` on an idle connection, or on a new one, and waits for
    /// the response head. The [`Checkin`] goes with the response body.
    pub async fn send(
        &self,
        mut req: http::Request<B>,
    ) -> Result<(http::Response<Incoming>, Checkin<B>), PoolError> {
        // The request line carries the origin form (RFC 9112 §3.2.1); the
        // absolute URI was only for signing, `Host` names the authority.
        if req.uri().scheme().is_some() {
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = req.uri().path_and_query().cloned();
            if let Ok(origin) = http::Uri::from_parts(parts) {
                *req.uri_mut() = origin;
            }
        }
        // A pooled connection the backend closed in the meantime gives the
        // request back unsent: it then goes on the next one.
        let shard = self.shard();
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
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "backend connection ended");
            }
        });
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
/// timeout, so that a quiet gateway does not hold the backend's sockets.
fn start_sweeper<B: Send + 'static>(shard: &Arc<Shared<B>>) {
    let shared = Arc::downgrade(shard);
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        loop {
            let period = match shared.upgrade() {
                Some(s) => s.idle_timeout.max(Duration::from_secs(1)),
                None => return,
            };
            tokio::time::sleep(period / 2).await;
            let Some(s) = shared.upgrade() else { return };
            let mut idle = s.lock();
            let timeout = s.idle_timeout;
            idle.retain(|c| !c.sender.is_closed() && c.since.elapsed() < timeout);
        }
    });
}
