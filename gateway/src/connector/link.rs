//! One live connector connection as the gateway's pool sees it.

use super::body::UpBody;
use super::metrics::Outcomes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

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

/// One HTTP/2 connection on which the gateway is the client.
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
    sender: hyper::client::conn::http2::SendRequest<UpBody>,
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
        sender: hyper::client::conn::http2::SendRequest<UpBody>,
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

    /// Whether a request can go out on it now.
    pub fn is_usable(&self) -> bool {
        !self.close.is_cancelled() && !self.sender.is_closed()
    }

    /// Requests on it right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A handle to send one request (h2 handles are cheap clones).
    pub fn sender(&self) -> hyper::client::conn::http2::SendRequest<UpBody> {
        self.sender.clone()
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

/// A request in flight on a [`Link`].
pub struct InFlight(Arc<Link>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
