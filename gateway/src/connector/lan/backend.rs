//! The connector's one destination: its configured backend. Whatever
//! authority or absolute URI the gateway sends, the request goes to this
//! backend's address; only the path and query are taken from it, so a
//! connector can never be used as an open proxy into the LAN.

use crate::proxy::pool::{Checkin, UpstreamPool};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use mft_filters::problem::Problem;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The body a connector answers with: the backend's, or its own problem.
pub type AnswerBody = Either<Returning, Full<Bytes>>;

/// Header the connector adds to answers it wrote itself, so the gateway
/// and an operator can tell "backend unreachable from the connector" apart
/// from the backend's own 502.
pub const ORIGIN_HEADER: &str = "x-mft-connector";

/// Idle backend connections kept per connection slot.
const MAX_IDLE: usize = 64;

/// How long an unused backend connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Pooled HTTP/1.1 connections toward the configured backend, one pool per
/// connection slot (its thread).
///
/// The gateway's own upstream pool, not hyper-util's `Client`: per request
/// that one hashed its pool key with SipHash, moved the request through
/// several layers of futures and spawned tasks to put the connection back
/// (docs/benchmarks.md, DMZ mode).
pub struct BackendLink {
    pool: UpstreamPool<Incoming>,
    probe: hyper_util::client::legacy::Client<Connector, http_body_util::Empty<Bytes>>,
    base: String,
    /// `host[:port]` of the configured backend.
    pub authority: String,
}

impl BackendLink {
    /// A client for `backend` (http or https; https trusts the system roots).
    pub fn new(backend: &url::Url, connect_timeout: Duration) -> anyhow::Result<BackendLink> {
        let host = backend
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("connector.backend {backend}: no host"))?;
        let authority = match backend.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.enforce_http(false);
        let tls = crate::proxy::forward::client_tls(backend, backend.scheme() == "https")?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let probe =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector.clone());
        let base = format!("{}://{authority}", backend.scheme());
        let dial: http::Uri = base
            .parse()
            .map_err(|e| anyhow::anyhow!("connector.backend {backend}: {e}"))?;
        Ok(BackendLink {
            pool: UpstreamPool::new(
                connector,
                dial,
                MAX_IDLE,
                (
                    IDLE_TIMEOUT,
                    mft_config::defaults::backend::POOL_PURGE_DELAY,
                ),
                1,
            ),
            probe,
            base,
            authority,
        })
    }

    /// Forwards one request from the gateway to the backend, streaming both bodies.
    pub async fn forward(&self, req: http::Request<Incoming>) -> http::Response<AnswerBody> {
        let (mut parts, body) = req.into_parts();
        // The gateway signed the authority it sent (`@authority` of RFC
        // 9421): pass it on as Host so the backend verifies what was signed.
        let host = match parts.headers.get(http::header::HOST) {
            Some(h) => Some(h.clone()),
            None => parts
                .uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok()),
        };
        // Only the path and query: the pool dials the configured backend
        // whatever authority came with the request.
        let mut target = http::uri::Parts::default();
        target.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        let Ok(uri) = http::Uri::from_parts(target) else {
            return own_problem(400, "the request target is not a valid path");
        };
        crate::proxy::forward::strip_hop_by_hop(&mut parts.headers);
        if let Some(host) = host {
            parts.headers.insert(http::header::HOST, host);
        }
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        match self.pool.send(http::Request::from_parts(parts, body)).await {
            Ok((response, checkin)) => {
                let (mut parts, body) = response.into_parts();
                // HTTP/2 forbids connection-specific fields.
                crate::proxy::forward::strip_hop_by_hop(&mut parts.headers);
                http::Response::from_parts(parts, Either::Left(Returning::new(body, checkin)))
            }
            Err(e) => {
                tracing::warn!(backend = %self.authority, error = %e, "backend unreachable from the connector");
                own_problem(502, "the backend could not be reached from the connector")
            }
        }
    }

    /// `GET /healthz` on the backend, for `connector --check`.
    pub async fn health(&self) -> Result<u16, String> {
        let uri: http::Uri = format!("{}/healthz", self.base)
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        let mut req = http::Request::new(http_body_util::Empty::<Bytes>::new());
        *req.uri_mut() = uri;
        self.probe
            .request(req)
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| error_chain(&e))
    }
}

/// hyper-util's top-level message hides the cause ("client error (Connect)").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cur = inner.source();
    }
    text
}

/// The backend's response body; its connection goes back to the pool once
/// the body was read to its end (dropped earlier, the connection closes).
pub struct Returning {
    body: Incoming,
    checkin: Option<Checkin<Incoming>>,
}

impl Returning {
    fn new(body: Incoming, checkin: Checkin<Incoming>) -> Returning {
        let mut returning = Returning {
            body,
            checkin: Some(checkin),
        };
        if returning.body.is_end_stream() {
            returning.release();
        }
        returning
    }

    fn release(&mut self) {
        if let Some(checkin) = self.checkin.take() {
            checkin.release();
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.checkin = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

fn own_problem(status: u16, detail: &str) -> http::Response<AnswerBody> {
    let body = Problem::new(status, Some(detail.to_string())).to_json();
    let mut response = http::Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(mft_filters::problem::CONTENT_TYPE),
    );
    h.insert(ORIGIN_HEADER, http::HeaderValue::from_static("1"));
    response
}
