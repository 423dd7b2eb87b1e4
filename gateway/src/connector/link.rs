//! One live connector connection as the gateway's pool sees it.

use super::body::UpBody;
use super::metrics::Outcomes;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio_util::sync::CancellationToken;

/// The gateway's client half of a connection, by link protocol.
pub enum LinkSender {
    /// HTTP/2: handles are cheap clones; many streams at once.
    H2(http2::SendRequest<UpBody>),
    /// HTTP/1.1: one exchange at a time. The handle never leaves the
    /// link: a request is handed to the connection under the lock only
    /// when the previous exchange is over (`is_ready`), so two workers
    /// never race for it, and nothing has to be given back afterwards.
    Http1(Mutex<http1::SendRequest<UpBody>>),
}

/// Why an exchange on a link gave no response.
pub enum Exchange {
    /// Nothing was sent (the HTTP/1.1 link was busy or had just closed):
    /// the request comes back to go on another link (boxed: rare, and the
    /// other variants are small).
    Unsent(Box<http::Request<UpBody>>),
    /// The connection or the stream failed after the request was handed over.
    Lost(hyper::Error),
    /// No response head within `[backend] read_timeout`.
    Timeout,
}

/// Byte totals and last address of one connector, kept across its
/// connections for `connectors list` and `/metrics`.
#[derive(Default)]
pub struct Totals {
    /// Bytes sent to it (h2 frames after TLS: bodies, headers, framing).
    pub bytes_out: Arc<AtomicU64>,
    /// Bytes received from it, counted as they stream in.
    pub bytes_in: Arc<AtomicU64>,
    /// Peer address of its most recent connection.
    pub address: Mutex<Option<String>>,
}

/// One connection on which the gateway is the client.
pub struct Link {
    /// Unique in this process, to tell connections apart.
    pub id: u64,
    /// The connector's name.
    pub name: Arc<str>,
    /// Its key's public id: the store row it stands for.
    pub key_id: String,
    /// Where the connection came from.
    pub peer: Option<SocketAddr>,
    /// The per-core HTTPS worker whose runtime drives the connection.
    pub home: Option<usize>,
    /// Its connector's totals.
    pub totals: Arc<Totals>,
    /// Its connector's request counters.
    pub outcomes: Outcomes,
    sender: LinkSender,
    in_flight: AtomicUsize,
    close: CancellationToken,
}

/// Whose connection a [`Link`] is and where it runs.
pub struct Origin {
    /// The connector's name.
    pub name: Arc<str>,
    /// Its key's public id.
    pub key_id: String,
    /// Where the connection came from.
    pub peer: Option<SocketAddr>,
    /// The per-core HTTPS worker whose runtime drives the connection.
    pub home: Option<usize>,
}

impl Link {
    /// A link over `sender`; cancelling `close` ends the connection.
    pub fn new(
        id: u64,
        origin: Origin,
        totals: Arc<Totals>,
        outcomes: Outcomes,
        sender: LinkSender,
        close: CancellationToken,
    ) -> Link {
        let Origin {
            name,
            key_id,
            peer,
            home,
        } = origin;
        Link {
            id,
            name,
            key_id,
            peer,
            home,
            totals,
            outcomes,
            sender,
            in_flight: AtomicUsize::new(0),
            close,
        }
    }

    /// Whether the connection is still open (busy or not).
    pub fn is_alive(&self) -> bool {
        !self.close.is_cancelled()
            && match &self.sender {
                LinkSender::H2(s) => !s.is_closed(),
                LinkSender::Http1(s) => !lock(s).is_closed(),
            }
    }

    /// Whether a request can go out on it now: an HTTP/1.1 link only when
    /// its previous exchange is over.
    pub fn is_usable(&self) -> bool {
        !self.close.is_cancelled()
            && match &self.sender {
                LinkSender::H2(s) => !s.is_closed(),
                LinkSender::Http1(s) => s.try_lock().is_ok_and(|s| s.is_ready()),
            }
    }

    /// Whether this is an HTTP/1.1 link.
    pub fn is_http1(&self) -> bool {
        matches!(self.sender, LinkSender::Http1(_))
    }

    /// Requests on it right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Sends `req` and waits for the response head. On an HTTP/1.1 link
    /// that is busy (another worker took it a moment ago) or closed before
    /// taking the request, the request comes back unsent.
    pub async fn exchange(
        &self,
        req: http::Request<UpBody>,
    ) -> Result<http::Response<Incoming>, Exchange> {
        match &self.sender {
            LinkSender::H2(s) => s.clone().send_request(req).await.map_err(Exchange::Lost),
            LinkSender::Http1(s) => {
                let req = origin_form(req);
                // Handed over synchronously, under the lock; the future
                // then holds no borrow of the handle.
                let sent = {
                    let mut sender = lock(s);
                    if !sender.is_ready() {
                        return Err(Exchange::Unsent(Box::new(req)));
                    }
                    sender.try_send_request(req)
                };
                sent.await.map_err(|mut e| match e.take_message() {
                    Some(req) => Exchange::Unsent(Box::new(req)),
                    None => Exchange::Lost(e.into_error()),
                })
            }
        }
    }

    /// Whether the connection is driven by per-core worker `worker`.
    pub fn is_home(&self, worker: Option<usize>) -> bool {
        self.home.is_some() && self.home == worker
    }

    /// Counts a request as in flight until the guard drops.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Ends the connection (connector removed, or shutting down).
    pub fn close(&self) {
        self.close.cancel();
    }
}

/// HTTP/1.1 carries the authority in `Host` and the target in origin form
/// (RFC 9112 §3.2.1); HTTP/2 took both from the absolute URI.
fn origin_form(mut req: http::Request<UpBody>) -> http::Request<UpBody> {
    if req.uri().scheme().is_none() {
        return req;
    }
    if !req.headers().contains_key(http::header::HOST) {
        if let Some(host) = req
            .uri()
            .authority()
            .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(http::header::HOST, host);
        }
    }
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = req.uri().path_and_query().cloned();
    if let Ok(origin) = http::Uri::from_parts(parts) {
        *req.uri_mut() = origin;
    }
    req
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request in flight on a [`Link`].
pub struct InFlight(Arc<Link>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
