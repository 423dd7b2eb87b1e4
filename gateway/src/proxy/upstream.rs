//! The backend as a pingora peer: address resolved once, timeouts, pooling.

use mft_config::model::Backend;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use thiserror::Error;

/// Why the backend URL cannot be used.
#[derive(Debug, Error)]
pub enum UpstreamError {
    /// DNS resolution failed or returned nothing.
    #[error("backend.url {url}: cannot resolve host: {reason}")]
    Resolve {
        /// The URL.
        url: String,
        /// Resolver message.
        reason: String,
    },
}

/// A prepared peer template plus the `Host` value to send.
#[derive(Clone)]
pub struct Upstream {
    peer: HttpPeer,
    /// `host[:port]` of the backend, sent as `Host`.
    pub authority: String,
}

impl Upstream {
    /// Resolves the backend host once at startup. The backend of an edge
    /// gateway is a fixed internal address; per-request DNS would only add latency.
    pub fn new(backend: &Backend) -> Result<Self, UpstreamError> {
        let url = &backend.url;
        let addr: SocketAddr = url
            .socket_addrs(|| None)
            .map_err(|e| UpstreamError::Resolve {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .into_iter()
            .next()
            .ok_or_else(|| UpstreamError::Resolve {
                url: url.to_string(),
                reason: "no addresses".to_string(),
            })?;
        let host = url.host_str().unwrap_or_default().to_string();
        let tls = url.scheme() == "https";
        // An empty SNI would disable certificate verification: always set it.
        let mut peer = HttpPeer::new(addr, tls, host.clone());
        let o = &mut peer.options;
        o.connection_timeout = Some(backend.connect_timeout);
        o.total_connection_timeout = Some(backend.connect_timeout);
        o.read_timeout = Some(backend.read_timeout);
        o.write_timeout = Some(backend.write_timeout);
        o.idle_timeout = Some(backend.idle_timeout);
        o.alpn = ALPN::H1;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        Ok(Upstream { peer, authority })
    }

    /// A peer for one request (a cheap clone of the template; pooling is keyed by it).
    pub fn peer(&self) -> Box<HttpPeer> {
        Box::new(self.peer.clone())
    }
}
