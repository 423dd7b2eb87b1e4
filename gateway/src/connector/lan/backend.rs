//! The connector's one destination: its configured backend. Whatever
//! authority or absolute URI the gateway sends, the request goes to this
//! backend's address; only the path and query are taken from it, so a
//! connector can never be used as an open proxy into the LAN.

use crate::proxy::forward::HOP_BY_HOP;
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use mft_filters::problem::Problem;
use std::time::Duration;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The body a connector answers with: the backend's, or its own problem.
pub type AnswerBody = Either<Incoming, Full<Bytes>>;

/// Header the connector adds to answers it wrote itself, so the gateway
/// and an operator can tell "backend unreachable from the connector" apart
/// from the backend's own 502.
pub const ORIGIN_HEADER: &str = "x-mft-connector";

/// A pooled HTTP/1.1 client toward the configured backend.
pub struct BackendLink {
    client: hyper_util::client::legacy::Client<Connector, Incoming>,
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
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(64)
                .build(connector);
        Ok(BackendLink {
            client,
            probe,
            base: format!("{}://{authority}", backend.scheme()),
            authority,
        })
    }

    /// Forwards one request from the gateway to the backend, streaming both bodies.
    pub async fn forward(&self, req: http::Request<Incoming>) -> http::Response<AnswerBody> {
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        // The gateway signed the authority it sent (`@authority` of RFC
        // 9421): pass it on as Host so the backend verifies what was signed.
        let host = parts.headers.get(http::header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        });
        let Ok(uri) = format!("{}{path}", self.base).parse::<http::Uri>() else {
            return own_problem(400, "the request target is not a valid path");
        };
        for name in &HOP_BY_HOP {
            parts.headers.remove(name);
        }
        if let Some(host) = host {
            parts.headers.insert(http::header::HOST, host);
        }
        let mut out = http::Request::new(body);
        *out.method_mut() = parts.method;
        *out.uri_mut() = uri;
        *out.headers_mut() = parts.headers;
        match self.client.request(out).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                // HTTP/2 forbids connection-specific fields.
                for name in &HOP_BY_HOP {
                    parts.headers.remove(name);
                }
                http::Response::from_parts(parts, Either::Left(body))
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
