//! Step 8: the request on to the backend over pooled keep-alive HTTP/1.1
//! (our own pool on hyper's connection-level client, `pool.rs`), its body
//! streamed through the guards.

use super::body::GuardedBody;
use futures_util::FutureExt as _;
use mft_config::model::Backend;
use std::future::Future;
use std::time::Duration;
use thiserror::Error;

/// Why the backend is not usable.
#[derive(Debug, Error)]
pub enum ForwardError {
    /// Neither `http` nor `https`.
    #[error("backend.url {0}: the scheme must be http or https")]
    Scheme(String),
    /// The URL has no host.
    #[error("backend.url {0}: no host")]
    NoHost(String),
    /// `https` needs trust roots and none could be loaded.
    #[error(
        "backend.url {url}: no trusted root certificates could be loaded from the system: {reason}"
    )]
    Roots {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Why a forwarded request got no response header.
#[derive(Debug, Error)]
pub enum UpstreamFailure {
    /// No response header within `backend.read_timeout`, or the connect timed out.
    #[error("the backend did not answer in time")]
    Timeout,
    /// Connect refused, reset, invalid response, the request body failed,
    /// or the connector connection carrying the request died.
    #[error("the backend could not be reached: {0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// DMZ mode with no connector connected: nothing was sent (503).
    #[error("no connector is connected")]
    NoConnector,
}

/// Where upstream requests go, parsed once from `[backend] url`: no string
/// to build and parse again per request.
pub struct Target {
    /// `host[:port]`, sent as `Host`.
    pub authority: String,
    scheme: http::uri::Scheme,
    parsed_authority: http::uri::Authority,
    host_value: http::HeaderValue,
}

impl Target {
    /// The target of `url` (http or https, with a host).
    pub fn from_url(url: &url::Url) -> Result<Self, ForwardError> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(ForwardError::Scheme(url.to_string()));
        }
        let no_host = || ForwardError::NoHost(url.to_string());
        let host = url.host_str().ok_or_else(no_host)?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        Ok(Target {
            scheme: scheme.parse().map_err(|_| no_host())?,
            parsed_authority: authority.parse().map_err(|_| no_host())?,
            host_value: http::HeaderValue::try_from(authority.as_str()).map_err(|_| no_host())?,
            authority,
        })
    }

    /// The absolute URI for `path_and_query` on the backend.
    pub fn uri(
        &self,
        path_and_query: Option<&http::uri::PathAndQuery>,
    ) -> Result<http::Uri, http::uri::InvalidUriParts> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.parsed_authority.clone());
        parts.path_and_query = Some(
            path_and_query
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        http::Uri::from_parts(parts)
    }

    /// `Host` for every upstream request.
    pub fn host_value(&self) -> http::HeaderValue {
        self.host_value.clone()
    }
}

/// The backend's pooled client.
pub struct Forwarder {
    pool: super::pool::UpstreamPool,
    /// Where requests go.
    pub target: Target,
    read_timeout: Duration,
}

impl Forwarder {
    /// `[backend] read_timeout`.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// A pool toward `[backend] url` with its timeouts and pool size, in
    /// `shards` (one per per-core worker, else one).
    pub fn new(backend: &Backend, shards: usize) -> Result<Self, ForwardError> {
        let url = &backend.url;
        let target = Target::from_url(url)?;
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        // Small requests and responses would otherwise wait for Nagle's timer.
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(backend.connect_timeout));
        // The HTTPS layer also needs to see https:// URIs.
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_tls(url, url.scheme() == "https")?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let dial = target
            .uri(None)
            .map_err(|_| ForwardError::NoHost(url.to_string()))?;
        let pool = super::pool::UpstreamPool::new(
            connector,
            dial,
            backend.pool_size,
            (backend.idle_timeout, backend.pool_purge_delay),
            shards,
        );
        Ok(Forwarder {
            pool,
            target,
            read_timeout: backend.read_timeout,
        })
    }

    /// Sends `req` and waits for the response header; the connection goes
    /// back to the pool through the [`Checkin`](super::pool::Checkin) once
    /// the response body was read to its end.
    ///
    /// Not an async fn: one would keep its own copy of `req` (480 bytes)
    /// beside the pool's for the whole exchange, and copy it once more.
    pub fn send(
        &self,
        req: http::Request<GuardedBody>,
    ) -> impl Future<
        Output = Result<
            (http::Response<hyper::body::Incoming>, super::pool::Checkin),
            UpstreamFailure,
        >,
    > + Send
           + '_ {
        // A combinator, not an async block: awaiting a captured future
        // moves it into a second slot of the block.
        tokio::time::timeout(self.read_timeout, self.pool.send(req)).map(|sent| match sent {
            Err(_) => Err(UpstreamFailure::Timeout),
            Ok(Ok(sent)) => Ok(sent),
            Ok(Err(e)) if timed_out(&e) => Err(UpstreamFailure::Timeout),
            Ok(Err(e)) => Err(UpstreamFailure::Failed(Box::new(e))),
        })
    }
}

/// The client TLS config toward an https:// backend: the system's trust
/// roots (as pingora's upstream TLS used), the URL's host as SNI and
/// verified name, HTTP/1.1. For an http:// backend no roots are loaded.
pub(crate) fn client_tls(
    url: &url::Url,
    https: bool,
) -> Result<rustls::ClientConfig, ForwardError> {
    let mut roots = rustls::RootCertStore::empty();
    if https {
        let native = rustls_native_certs::load_native_certs().map_err(|e| ForwardError::Roots {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let (added, _ignored) = roots.add_parsable_certificates(native);
        if added == 0 {
            return Err(ForwardError::Roots {
                url: url.to_string(),
                reason: "none parsed".to_string(),
            });
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ForwardError::Roots {
            url: url.to_string(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Whether a connect timeout is somewhere in the error chain.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// The hop-by-hop fields as names: the list [`is_hop_by_hop`] matches,
/// kept for the test that holds the two equal.
#[cfg(test)]
pub static HOP_BY_HOP: [http::header::HeaderName; 7] = [
    http::header::CONNECTION,
    http::header::HeaderName::from_static("keep-alive"),
    http::header::HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::TRAILER,
];

/// Removes the hop-by-hop fields ([`is_hop_by_hop`]).
pub fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    remove_fields(headers, is_hop_by_hop);
}

/// Whether `name` describes one hop, not the message (RFC 9110 §7.6.1;
/// hyper frames each side itself): one match on the text (a switch on its
/// length, then one compare) instead of seven comparisons per field of
/// every request and response.
pub fn is_hop_by_hop(name: &http::header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "transfer-encoding"
            | "upgrade"
            | "trailer"
    )
}

/// Removes every field whose name is `doomed`: one pass over the fields
/// present rather than a lookup per name that is rarely there.
pub fn remove_fields(
    headers: &mut http::HeaderMap,
    doomed: impl Fn(&http::header::HeaderName) -> bool,
) {
    let names: Vec<http::header::HeaderName> =
        headers.keys().filter(|n| doomed(n)).cloned().collect();
    for name in &names {
        headers.remove(name);
    }
}
