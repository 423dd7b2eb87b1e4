//! The gateway's side of DMZ mode: every live connector connection, and
//! "send this request to the backend" over the least busy of them.

use super::body::{self, UpBody};
use super::link::{Exchange, Link, Totals};
use super::metrics::ConnectorMetrics;
use http_body::Body as _;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a client is told to wait before it tries again when no connector
/// is connected: a connector reconnects within seconds.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Why a request got no response over the connectors.
#[derive(Debug, Error)]
pub enum PoolError {
    /// No connector is connected: nothing was sent.
    #[error("no connector is connected")]
    NoConnector,
    /// Every connector connection stayed busy (HTTP/1.1 links, at the
    /// connectors' `max_connections`) for as long as a request may wait
    /// for one: nothing was sent.
    #[error("every connector connection is busy")]
    Busy,
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
    /// How long a request waits for a free HTTP/1.1 link.
    link_wait: Duration,
    /// Requests waiting for a free link right now; only then do links
    /// that finish an exchange say so ([`ConnectorPool::link_freed`]).
    waiting: AtomicUsize,
    freed: Notify,
    /// Metrics per connector.
    pub metrics: ConnectorMetrics,
}

/// An HTTP/1.1 link's connection, boxed as a `Send` future where its type
/// is concrete: held inside a generic async fn's state, rustc cannot prove
/// it `Send` (its body error's `Into<BoxError>` bound is checked for every
/// lifetime).
pub type Http1Conn = std::pin::Pin<Box<dyn std::future::Future<Output = hyper::Result<()>> + Send>>;

/// The link a request went out on, and what came of it.
type Sent = (Arc<Link>, Result<http::Response<Incoming>, PoolError>);

/// Counts a request as waiting for a link until dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectorPool {
    /// `[backend] read_timeout`.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// An empty pool; `read_timeout` bounds the wait for a response
    /// header, `link_wait` the wait for a free HTTP/1.1 link when every
    /// one is busy (`[backend] connect_timeout`: what dialling a new
    /// connection may take on the direct path).
    pub fn new(
        read_timeout: Duration,
        link_wait: Duration,
        metrics: ConnectorMetrics,
    ) -> ConnectorPool {
        ConnectorPool {
            links: RwLock::new(Vec::new()),
            totals: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            read_timeout,
            link_wait,
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
            metrics,
        }
    }

    /// Whether a request is waiting for a free link.
    fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Drives `conn`, the connection of HTTP/1.1 link `link`: its task is
    /// where an exchange ends, so each time it has run while a request
    /// waits for a free link and the link is free, one such request wakes.
    pub async fn drive_http1(&self, link: &Link, mut conn: Http1Conn) -> hyper::Result<()> {
        std::future::poll_fn(|cx| {
            let polled = conn.as_mut().poll(cx);
            if self.has_waiters() && link.is_usable() {
                self.freed.notify_one();
            }
            polled
        })
        .await
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
        self.freed.notify_waiters();
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
        drop(links);
        // Waiting requests look again: with no connection left they get 503 now.
        self.freed.notify_waiters();
    }

    /// A snapshot of the live connections.
    pub fn links(&self) -> Vec<Arc<Link>> {
        self.links.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether any connection is open (busy or not).
    pub fn is_connected(&self) -> bool {
        self.links
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|l| l.is_alive())
    }

    fn is_connected_but(&self, avoid: Option<u64>) -> bool {
        self.links
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|l| l.is_alive() && Some(l.id) != avoid)
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
            if Some(link.id) == avoid {
                continue;
            }
            let home = link.is_home(here);
            let better = match best {
                None => true,
                Some(b) => {
                    (home && !best_home) || (home == best_home && link.in_flight() < b.in_flight())
                }
            };
            // Whether it can take a request is asked last: on an HTTP/1.1
            // link that takes its lock.
            if !better || !link.is_usable() {
                continue;
            }
            // Nothing beats an idle connection of this worker's.
            if home && link.in_flight() == 0 {
                return Some(link.clone());
            }
            best = Some(link);
            best_home = home;
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
        // The copy for the retry costs a header map clone per request:
        // made only when another connection could take the retry.
        let again = (matches!(*req.method(), http::Method::GET | http::Method::HEAD)
            && req.body().is_end_stream()
            && self.links.read().unwrap_or_else(|p| p.into_inner()).len() > 1)
            .then(|| {
                let mut copy = http::Request::new(());
                *copy.method_mut() = req.method().clone();
                *copy.uri_mut() = req.uri().clone();
                *copy.version_mut() = req.version();
                *copy.headers_mut() = req.headers().clone();
                copy
            });
        let (first, outcome) = match self.send_somewhere(req, None).await {
            Ok(sent) => sent,
            Err(e) => {
                self.metrics.unavailable.inc();
                return Err(e);
            }
        };
        match outcome {
            Err(PoolError::Lost { name, source }) => {
                let Some(mut copy) = again.filter(|_| self.is_connected_but(Some(first.id))) else {
                    return Err(PoolError::Lost { name, source });
                };
                if !resign(&mut copy) {
                    return Err(PoolError::Lost { name, source });
                }
                first.outcomes.retried.inc();
                let (parts, ()) = copy.into_parts();
                let retry = http::Request::from_parts(parts, body::empty());
                match self.send_somewhere(retry, Some(first.id)).await {
                    Ok((second, outcome)) => {
                        tracing::info!(connector = %name, error = %source, retry_on = %second.name, "request lost with its connector connection; retried once");
                        outcome
                    }
                    // Nowhere to retry: the first failure is the one to tell.
                    Err(_) => Err(PoolError::Lost { name, source }),
                }
            }
            other => other,
        }
    }

    /// Sends `req` on the best link (never `avoid`), waiting for an HTTP/1.1
    /// link to come free when all are busy; the link used and its outcome.
    /// `Err` only when nothing was sent.
    async fn send_somewhere(
        &self,
        mut req: http::Request<UpBody>,
        avoid: Option<u64>,
    ) -> Result<Sent, PoolError> {
        let mut deadline = None;
        loop {
            if let Some(link) = self.pick(avoid) {
                match self.send_on(&link, req).await {
                    Ok(response) => return Ok((link, Ok(response))),
                    Err(Exchange::Lost(source)) => {
                        let lost = PoolError::Lost {
                            name: link.name.clone(),
                            source,
                        };
                        return Ok((link, Err(lost)));
                    }
                    Err(Exchange::Timeout) => {
                        let name = link.name.clone();
                        return Ok((link, Err(PoolError::Timeout(name))));
                    }
                    // Taken by another worker a moment ago, or closed:
                    // nothing was sent, another link takes it.
                    Err(Exchange::Unsent(back)) => {
                        req = *back;
                        tokio::task::yield_now().await;
                        continue;
                    }
                }
            }
            self.wait_for_link(&mut deadline, avoid).await?;
        }
    }

    /// Waits until a link may be free (one finished its exchange, attached
    /// or went away), at most until `deadline` (set on the first wait).
    async fn wait_for_link(
        &self,
        deadline: &mut Option<Instant>,
        avoid: Option<u64>,
    ) -> Result<(), PoolError> {
        let deadline = *deadline.get_or_insert_with(|| Instant::now() + self.link_wait);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        let notified = self.freed.notified();
        tokio::pin!(notified);
        // Registered before looking again, so a link freed in between wakes us.
        notified.as_mut().enable();
        if !self.is_connected_but(avoid) {
            return Err(PoolError::NoConnector);
        }
        if self.pick(avoid).is_some() {
            return Ok(());
        }
        tokio::time::timeout_at(deadline, notified)
            .await
            .map_err(|_| PoolError::Busy)
    }

    async fn send_on(
        &self,
        link: &Arc<Link>,
        req: http::Request<UpBody>,
    ) -> Result<http::Response<Incoming>, Exchange> {
        let _in_flight = link.enter();
        match tokio::time::timeout(self.read_timeout, link.exchange(req)).await {
            Ok(Ok(response)) => {
                link.outcomes.ok.inc();
                Ok(response)
            }
            Ok(Err(Exchange::Unsent(req))) => Err(Exchange::Unsent(req)),
            Ok(Err(lost)) => {
                link.outcomes.failed.inc();
                Err(lost)
            }
            Err(_) => {
                link.outcomes.failed.inc();
                // An HTTP/1.1 connection with an exchange left half done
                // cannot carry the next one.
                if link.is_http1() {
                    link.close();
                }
                Err(Exchange::Timeout)
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
    use crate::connector::link::{LinkSender, Origin};
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
            LinkSender::H2(sender),
            CancellationToken::new(),
        ))
    }

    fn pool() -> ConnectorPool {
        let metrics = ConnectorMetrics::new(&prometheus::Registry::new()).unwrap();
        ConnectorPool::new(Duration::from_secs(5), Duration::from_secs(1), metrics)
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

    /// An HTTP/1.1 link whose connector answers a request only once `gate`
    /// gives it a permit.
    async fn http1_link(pool: &Arc<ConnectorPool>, gate: Arc<tokio::sync::Semaphore>) -> Arc<Link> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let service = hyper::service::service_fn(move |_req| {
            let gate = gate.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                    bytes::Bytes,
                >::new()))
            }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), service),
        );
        let (sender, conn) =
            hyper::client::conn::http1::handshake::<_, UpBody>(TokioIo::new(client))
                .await
                .unwrap();
        let name: Arc<str> = Arc::from("lan");
        let link = Arc::new(Link::new(
            pool.next_id(),
            Origin {
                name: name.clone(),
                key_id: "k".to_string(),
                peer: None,
                home: None,
            },
            pool.totals(&name),
            pool.metrics.outcomes(&name),
            LinkSender::Http1(Mutex::new(sender)),
            CancellationToken::new(),
        ));
        let (p, l) = (pool.clone(), link.clone());
        tokio::spawn(async move { p.drive_http1(&l, Box::pin(conn)).await });
        link
    }

    fn get(pool: &Arc<ConnectorPool>) -> tokio::task::JoinHandle<Result<u16, String>> {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut req = http::Request::new(body::empty());
            *req.uri_mut() = http::Uri::from_static("http://backend.internal/healthz");
            pool.send(req, &|_| true)
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string())
        })
    }

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..1000 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test]
    async fn an_http1_link_carries_one_exchange_at_a_time_and_requests_wait_for_it() {
        let pool = Arc::new(pool());
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let link = http1_link(&pool, gate.clone()).await;
        pool.add(link.clone());
        assert!(pool.is_connected());

        // The first request holds the link; the second waits for it
        // rather than failing or going out on the busy connection.
        let first = get(&pool);
        until(|| link.in_flight() == 1).await;
        assert!(link.is_alive() && !link.is_usable());
        let second = get(&pool);
        until(|| pool.has_waiters()).await;
        assert!(!second.is_finished());
        gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Ok(200));
        assert_eq!(second.await.unwrap(), Ok(200));
        until(|| link.is_usable()).await;

        // Held longer than a request may wait: 503's error, nothing sent.
        let held = get(&pool);
        until(|| link.in_flight() == 1).await;
        let refused = get(&pool).await.unwrap();
        assert_eq!(refused, Err(PoolError::Busy.to_string()));
        gate.add_permits(1);
        assert_eq!(held.await.unwrap(), Ok(200));
        assert_eq!(
            pool.metrics
                .requests
                .with_label_values(&["lan", "ok"])
                .get(),
            3
        );

        // Gone: no connector at all.
        link.close();
        pool.remove(link.id);
        assert_eq!(
            get(&pool).await.unwrap(),
            Err(PoolError::NoConnector.to_string())
        );
    }
}
