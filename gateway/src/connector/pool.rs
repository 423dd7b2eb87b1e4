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

    /// The usable connection with the fewest requests in flight, rotating
    /// among equals so a quiet pool still uses every connector; never `avoid`.
    fn pick(&self, avoid: Option<u64>) -> Option<Arc<Link>> {
        let links = self.links.read().unwrap_or_else(|p| p.into_inner());
        let n = links.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<&Arc<Link>> = None;
        for i in 0..n {
            let link = &links[(start + i) % n];
            if !link.is_usable() || Some(link.id) == avoid {
                continue;
            }
            if best.is_none_or(|b| link.in_flight() < b.in_flight()) {
                best = Some(link);
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
                self.metrics
                    .requests
                    .with_label_values(&[&*name, "retried"])
                    .inc();
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
        let name = &*link.name;
        match outcome {
            Ok(Ok(response)) => {
                self.metrics.requests.with_label_values(&[name, "ok"]).inc();
                Ok(response)
            }
            Ok(Err(source)) => {
                self.metrics
                    .requests
                    .with_label_values(&[name, "failed"])
                    .inc();
                Err(PoolError::Lost {
                    name: link.name.clone(),
                    source,
                })
            }
            Err(_) => {
                self.metrics
                    .requests
                    .with_label_values(&[name, "failed"])
                    .inc();
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
