//! Step 8: the request on to the backend over pooled keep-alive HTTP/1.1
//! (hyper-util's pooled client), its body streamed through the guards.

use super::body::GuardedBody;
use mft_config::model::Backend;
use std::time::Duration;
use thiserror::Error;

/// Why the backend is not usable with the hyper engine.
#[derive(Debug, Error)]
pub enum ForwardError {
    /// hyper's own connector speaks plain HTTP only.
    #[error(
        "backend.url {0}: server.http_engine = \"hyper\" forwards over http:// only \
         (the backend sits on the internal network); use the pingora engine for https"
    )]
    NotHttp(String),
    /// The URL has no host.
    #[error("backend.url {0}: no host")]
    NoHost(String),
}

/// Why a forwarded request got no response header.
#[derive(Debug, Error)]
pub enum UpstreamFailure {
    /// No response header within `backend.read_timeout`, or the connect timed out.
    #[error("the backend did not answer in time")]
    Timeout,
    /// Connect refused, reset, invalid response, or the request body failed.
    #[error("the backend could not be reached: {0}")]
    Failed(#[source] hyper_util::client::legacy::Error),
}

/// The backend's pooled client.
pub struct Forwarder {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        GuardedBody,
    >,
    /// `http://host[:port]`, prefixed to each request's path.
    base: String,
    /// `host[:port]`, sent as `Host`.
    pub authority: String,
    read_timeout: Duration,
}

impl Forwarder {
    /// A pool toward `[backend] url` with its timeouts and pool size.
    pub fn new(backend: &Backend) -> Result<Self, ForwardError> {
        let url = &backend.url;
        if url.scheme() != "http" {
            return Err(ForwardError::NotHttp(url.to_string()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| ForwardError::NoHost(url.to_string()))?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        // Small requests and responses would otherwise wait for Nagle's timer.
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(backend.connect_timeout));
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .pool_idle_timeout(backend.idle_timeout)
                .pool_max_idle_per_host(backend.pool_size)
                .build(connector);
        Ok(Forwarder {
            client,
            base: format!("http://{authority}"),
            authority,
            read_timeout: backend.read_timeout,
        })
    }

    /// The absolute URI for `path_and_query` on the backend.
    pub fn uri(&self, path_and_query: &str) -> Result<http::Uri, http::uri::InvalidUri> {
        let mut s = String::with_capacity(self.base.len() + path_and_query.len());
        s.push_str(&self.base);
        s.push_str(path_and_query);
        s.parse()
    }

    /// Sends `req` and waits for the response header.
    pub async fn send(
        &self,
        req: http::Request<GuardedBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, UpstreamFailure> {
        match tokio::time::timeout(self.read_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamFailure::Timeout),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if timed_out(&e) => Err(UpstreamFailure::Timeout),
            Ok(Err(e)) => Err(UpstreamFailure::Failed(e)),
        }
    }
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

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1);
/// hyper frames each side itself.
pub const HOP_BY_HOP: [http::header::HeaderName; 7] = [
    http::header::CONNECTION,
    http::header::HeaderName::from_static("keep-alive"),
    http::header::HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::TRAILER,
];
