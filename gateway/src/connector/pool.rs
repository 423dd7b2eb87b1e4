//! The gateway's side of DMZ mode: every live connector connection, and
//! "send this request to the backend" over the least busy of them.

use super::body::{self, UpBody};
use super::link::{Link, Totals};
use super::metrics::ConnectorMetrics;
use http_body::Body as _;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use thiserror::Error;

/// What a client is told to wait before it tries again when no connector
/// is connected: a connector reconnects within seconds.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Why a request got no response over the connectors.
#[derive(Debug, Error)]
pub enum PoolError {
    /// No connector is connected: nothing was sent.
    #[error("no connector is connected")]
    NoConnector,
    /// No response header within `backend.read_timeout`.
    #[error("the backend did not answer in time (through connector {0})")]
    Timeout(Arc<str>),
    /// The connection or the stream failed: the connector died, was
    /// removed, or reset the request.
    #[error("connector {name} lost the request: {source}")]
    Lost {
        /// The connector.
        name: Arc<str>,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
}

/// Prepares the copy of a lost GET or HEAD for its one retry (a fresh
/// signature: the backend refuses a replayed nonce); `false` skips the retry.
pub type Resign<'a> = &'a (dyn Fn(&mut http::Request<()>) -> bool + Sync);

/// Every live connection, spread over by [`ConnectorPool::send`].
pub struct ConnectorPool {
    links: RwLock<Vec<Arc<Link>>>,
    totals: Mutex<HashMap<Arc<str>, Arc<Totals>>>,
    next: AtomicUsize,
    next_id: AtomicU64,
    read_timeout: Duration,
    /// Metrics per connector.
    pub metrics: ConnectorMetrics,
}

impl ConnectorPool {
    /// `[backend] read_timeout`.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// An empty pool; `read_timeout` bounds the wait for a response header.
    pub fn new(read_timeout: Duration, metrics: ConnectorMetrics) -> ConnectorPool {
        ConnectorPool {
            links: RwLock::new(Vec::new()),
            totals: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            read_timeout,
            metrics,
        }
    }

    /// A fresh link id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The totals of connector `name`, created on first use.
    pub fn totals(&self, name: &Arc<str>) -> Arc<Totals> {
        let mut all = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(name.clone()).or_default().clone()
    }

    /// Adds a connection that just attached.
    pub fn add(&self, link: Arc<Link>) {
        self.metrics
            .connections
            .with_label_values(&[&*link.name])
            .inc();
        self.write().push(link);
    }

    /// Removes a connection that ended.
    pub fn remove(&self, id: u64) {
        let mut links = self.write();
        if let Some(i) = links.iter().position(|l| l.id == id) {
            let link = links.swap_remove(i);
            self.metrics
                .connections
                .with_label_values(&[&*link.name])
                .dec();
        }
    }

    /// A snapshot of the live connections.
    pub fn links(&self) -> Vec<Arc<Link>> {
        self.links.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether any connection can take a request now.
    pub fn is_connected(&self) -> bool {
        self.links
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|l| l.is_usable())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Link>>> {
        self.links.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The per-core worker (of `homes`) driving the fewest connections,
    /// for a connection that is attaching; `None` without workers.
    pub fn quietest_home(&self, homes: usize) -> Option<usize> {
        if homes == 0 {
            return None;
        }
        let links = self.links.read().unwrap_or_else(|p| p.into_inner());
        let mut count = vec![0usize; homes];
        for home in links.iter().filter_map(|l| l.home) {
            if let Some(c) = count.get_mut(home) {
                *c += 1;
            }
        }
        // Rotate the start so a burst of attaches spreads over the workers.
        let start = self.next.fetch_add(1, Ordering::Relaxed) % homes;
        (0..homes)
            .map(|i| (start + i) % homes)
            .min_by_key(|&i| count[i])
    }

    /// The usable connection with the fewest requests in flight, rotating
    /// among equals so a quiet pool still uses every connector; never
    /// `avoid`. A connection driven by the calling per-core worker comes
    /// first: sending on it wakes no other thread.
    fn pick(&self, avoid: Option<u64>) -> Option<Arc<Link>> {
        let links = self.links.read().unwrap_or_else(|p| p.into_inner());
        let n = links.len();
        if n == 0 {
            return None;
        }
        let here = crate::proxy::pool::worker();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<&Arc<Link>> = None;
        let mut best_home = false;
        for i in 0..n {
            let link = &links[(start + i) % n];
            if !link.is_usable() || Some(link.id) == avoid {
                continue;
            }
            let home = link.is_home(here);
            let better = match best {
                None => true,
                Some(b) => {
                    (home && !best_home) || (home == best_home && link.in_flight() < b.in_flight())
                }
            };
            if better {
                best = Some(link);
                best_home = home;
            }
        }
        best.cloned()
    }

    /// Sends `req` over a connector. A GET or HEAD without a body that is
    /// lost with its connection is sent once more on another one, after
    /// `resign` prepared it: nothing reached the backend that a repeat could double.
    pub async fn send(
        &self,
        req: http::Request<UpBody>,
        resign: Resign<'_>,
    ) -> Result<http::Response<Incoming>, PoolError> {
        let Some(first) = self.pick(None) else {
            self.metrics.unavailable.inc();
            return Err(PoolError::NoConnector);
        };
        let again = (matches!(*req.method(), http::Method::GET | http::Method::HEAD)
            && req.body().is_end_stream())
        .then(|| {
            let mut copy = http::Request::new(());
            *copy.method_mut() = req.method().clone();
            *copy.uri_mut() = req.uri().clone();
            *copy.version_mut() = req.version();
            *copy.headers_mut() = req.headers().clone();
            copy
        });
        match self.send_on(&first, req).await {
            Err(PoolError::Lost { name, source }) => {
                let (Some(mut copy), Some(second)) = (again, self.pick(Some(first.id))) else {
                    return Err(PoolError::Lost { name, source });
                };
                if !resign(&mut copy) {
                    return Err(PoolError::Lost { name, source });
                }
                tracing::info!(connector = %name, error = %source, retry_on = %second.name, "request lost with its connector connection; retrying once");
                first.outcomes.retried.inc();
                let (parts, ()) = copy.into_parts();
                self.send_on(&second, http::Request::from_parts(parts, body::empty()))
                    .await
            }
            other => other,
        }
    }

    async fn send_on(
        &self,
        link: &Arc<Link>,
        req: http::Request<UpBody>,
    ) -> Result<http::Response<Incoming>, PoolError> {
        let _in_flight = link.enter();
        let mut sender = link.sender();
        let outcome = tokio::time::timeout(self.read_timeout, sender.send_request(req)).await;
        match outcome {
            Ok(Ok(response)) => {
                link.outcomes.ok.inc();
                Ok(response)
            }
            Ok(Err(source)) => {
                link.outcomes.failed.inc();
                Err(PoolError::Lost {
                    name: link.name.clone(),
                    source,
                })
            }
            Err(_) => {
                link.outcomes.failed.inc();
                Err(PoolError::Timeout(link.name.clone()))
            }
        }
    }

    /// Closes every connection of the connectors whose key ids are not in `keep`.
    pub fn close_all_but(&self, keep: &std::collections::HashSet<String>) -> usize {
        let links = self.links();
        let mut closed = 0;
        for link in links.iter().filter(|l| !keep.contains(&l.key_id)) {
            link.close();
            closed += 1;
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::link::Origin;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio_util::sync::CancellationToken;

    /// A link over an in-memory HTTP/2 connection, driven by `home`.
    async fn link(pool: &ConnectorPool, home: Option<usize>) -> Arc<Link> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let service = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                bytes::Bytes,
            >::new()))
        });
        tokio::spawn(
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(server), service),
        );
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake::<_, UpBody>(TokioIo::new(client))
            .await
            .unwrap();
        tokio::spawn(conn);
        let name: Arc<str> = Arc::from("lan");
        Arc::new(Link::new(
            pool.next_id(),
            Origin {
                name: name.clone(),
                key_id: "k".to_string(),
                peer: None,
                home,
            },
            pool.totals(&name),
            pool.metrics.outcomes(&name),
            sender,
            CancellationToken::new(),
        ))
    }

    fn pool() -> ConnectorPool {
        let metrics = ConnectorMetrics::new(&prometheus::Registry::new()).unwrap();
        ConnectorPool::new(Duration::from_secs(5), metrics)
    }

    #[tokio::test]
    async fn a_worker_sends_on_its_own_connections_first_and_new_ones_spread_over_workers() {
        let pool = pool();
        assert_eq!(pool.quietest_home(0), None);
        let on0 = link(&pool, Some(0)).await;
        pool.add(on0.clone());
        // Worker 0 drives one: the next connection goes to worker 1.
        assert_eq!(pool.quietest_home(2), Some(1));
        let on1 = link(&pool, Some(1)).await;
        pool.add(on1.clone());

        // Worker 1's own connection wins although it is the busier one.
        let _busy = on1.enter();
        crate::proxy::pool::set_worker(1);
        for _ in 0..4 {
            assert_eq!(pool.pick(None).map(|l| l.id), Some(on1.id));
        }
        // Not its own when told to avoid it (the retry of a lost request).
        assert_eq!(pool.pick(Some(on1.id)).map(|l| l.id), Some(on0.id));
        // Its own closed: another worker's is used.
        on1.close();
        assert_eq!(pool.pick(None).map(|l| l.id), Some(on0.id));

        // A request through the chosen connection gets its answer.
        let mut req = http::Request::new(body::empty());
        *req.uri_mut() = http::Uri::from_static("http://backend.internal/healthz");
        let response = pool.send(req, &|_| true).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(
            pool.metrics
                .requests
                .with_label_values(&["lan", "ok"])
                .get(),
            1
        );
    }
}
