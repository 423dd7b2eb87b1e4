//! The one client the bridges (and the proxy's side calls) use to reach the
//! backend: every request is signed (RFC 9421) like proxied ones, bounded by
//! timeouts, retried per the gateway's one policy ([`crate::backoff`]) when the
//! failure is transient, and refused fast by a circuit breaker while the
//! backend is down, so callers keep their work queued instead of piling up.
//!
//! Bodies are re-creatable ([`Body`]) so a retry sends the same bytes again;
//! deliveries carry an `Idempotency-Key` so a retry never creates a second one.

pub mod breaker;
pub mod endpoints;
pub mod error;
pub mod model;
pub mod paths;

pub use crate::backoff::RetryPolicy;
use crate::connector::ConnectorPool;
use crate::proxy::sign::RequestSigner;
pub use breaker::CircuitBreaker;
use bytes::Bytes;
pub use endpoints::TusPatched;
pub use error::BackendError;
use futures_util::{StreamExt, TryStreamExt};
use http::{HeaderName, HeaderValue, Method};
use mft_config::model::Backend;
pub use mft_protocols::mime::Body;
use mft_protocols::mime::{base64_stream, qp_stream};
pub use model::{
    Delivery, DeliveryPage, FileInfo, FileList, FileQuery, NewDelivery, NewReceipt, RelayStatus,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Who a call is made for; becomes the `X-MFT-*` headers the backend trusts
/// because they are signed.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// `X-MFT-Principal`, e.g. `key:<id>`, `smtp:<user>`, `imap:<name>`, `sftp:<user>`.
    pub principal: String,
    /// `X-MFT-Scopes`, space separated.
    pub scopes: String,
    /// `X-MFT-Origin` (`smtp`, `imap:<name>`, `pop3:<name>`, `sftp:<user>`), if any.
    pub origin: Option<String>,
    /// `X-Request-Id`; a fresh UUID v7 when `None`.
    pub request_id: Option<String>,
}

impl CallContext {
    /// A context for `principal` with `scopes` and `origin`.
    pub fn new(principal: impl Into<String>, scopes: &str, origin: Option<&str>) -> Self {
        CallContext {
            principal: principal.into(),
            scopes: scopes.to_string(),
            origin: origin.map(str::to_string),
            request_id: None,
        }
    }
}

/// A decoder fed a file's bytes as they are read ([`Body::Base64File`],
/// [`Body::QuotedPrintableFile`]).
trait StreamDecoder: Send + 'static {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()>;
    fn finish(&mut self, out: &mut Vec<u8>) -> std::io::Result<()>;
}

impl StreamDecoder for base64_stream::Base64Stream {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        base64_stream::Base64Stream::push(self, input, out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        // An unpadded last group.
        self.flush(out);
        Ok(())
    }
}

impl StreamDecoder for qp_stream::QpStream {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        qp_stream::QpStream::push(self, input, out).map_err(std::io::Error::other)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        qp_stream::QpStream::finish(self, out).map_err(std::io::Error::other)
    }
}

/// `len` bytes of `file` decoded by `decoder` as they are read, in pieces
/// of about 64 KiB.
fn decoded_stream<D: StreamDecoder>(
    file: tokio::io::Take<tokio::fs::File>,
    decoder: D,
) -> reqwest::Body {
    let chunks = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
    let decoded = futures_util::stream::unfold(
        (chunks, Some(decoder)),
        |(mut chunks, decoder)| async move {
            let mut decoder = decoder?;
            loop {
                let mut out = Vec::new();
                match chunks.next().await {
                    Some(Ok(chunk)) => {
                        if let Err(e) = decoder.push(&chunk, &mut out) {
                            return Some((Err(e), (chunks, None)));
                        }
                        if !out.is_empty() {
                            return Some((Ok(Bytes::from(out)), (chunks, Some(decoder))));
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), (chunks, None))),
                    None => {
                        return match decoder.finish(&mut out) {
                            Err(e) => Some((Err(e), (chunks, None))),
                            Ok(()) => {
                                (!out.is_empty()).then(|| (Ok(Bytes::from(out)), (chunks, None)))
                            }
                        };
                    }
                }
            }
        },
    );
    reqwest::Body::wrap_stream(decoded)
}

/// One request to the backend.
#[derive(Debug, Clone)]
pub struct Call {
    /// Method.
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path: String,
    /// Extra headers (not `X-MFT-*`: those come from the [`CallContext`]).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body.
    pub body: Body,
    /// Whether a transient failure is retried. Off for calls whose repeat
    /// would not be safe (a tus PATCH at a stale offset).
    pub retry: bool,
    /// Size of the answer expected (a file download), so the overall
    /// timeout leaves it time to stream.
    pub response_len: u64,
}

impl Call {
    /// A retried call without body.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Call {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Body::Empty,
            retry: true,
            response_len: 0,
        }
    }

    /// Expects an answer of about `len` bytes (see [`Call::response_len`]).
    pub fn expect_response_bytes(mut self, len: u64) -> Self {
        self.response_len = len;
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    /// A JSON body.
    pub fn json<T: Serialize>(self, value: &T) -> Result<Self, BackendError> {
        let bytes = serde_json::to_vec(value).map_err(|e| BackendError::Decode {
            what: format!("{} {}", self.method, self.path),
            reason: format!("cannot encode the request: {e}"),
        })?;
        Ok(self
            .header(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .body(Body::Bytes(Bytes::from(bytes))))
    }

    /// Turns retries off.
    pub fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }

    fn what(&self) -> String {
        let path = self.path.split('?').next().unwrap_or("");
        format!("{} {}", self.method, path)
    }
}

/// Longest error body read to extract a problem's `type` and `detail`.
const MAX_PROBLEM_BYTES: usize = 16 * 1024;

/// The shared backend client; cheap to clone.
#[derive(Clone)]
pub struct BackendClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// DMZ mode: calls go over connector connections, never `http`'s own.
    connectors: Option<Arc<ConnectorPool>>,
    base: url::Url,
    /// `host[:port]`, the `@authority` signed (what reqwest sends as `Host`).
    authority: String,
    signer: Option<Arc<RequestSigner>>,
    retry: RetryPolicy,
    breaker: CircuitBreaker,
    read_timeout: Duration,
}

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("backend client: {0}")]
pub struct ClientBuildError(String);

impl BackendClient {
    /// A client for `[backend]`, signing with `signer` when there is one.
    pub fn new(
        config: &Backend,
        signer: Option<Arc<RequestSigner>>,
    ) -> Result<BackendClient, ClientBuildError> {
        Self::new_via(config, signer, None)
    }

    /// [`BackendClient::new`]; with `connectors`, every call goes over the
    /// DMZ connectors' connections instead of a connection of its own.
    pub fn new_via(
        config: &Backend,
        signer: Option<Arc<RequestSigner>>,
        connectors: Option<Arc<ConnectorPool>>,
    ) -> Result<BackendClient, ClientBuildError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .pool_idle_timeout(config.idle_timeout)
            .pool_max_idle_per_host(config.pool_size.min(32))
            // The backend is one fixed internal address; a redirect would be a
            // misconfiguration, and following it would carry signed headers elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientBuildError(e.to_string()))?;
        let base = config.url.clone();
        let host = base
            .host_str()
            .ok_or_else(|| ClientBuildError(format!("{base}: no host")))?;
        let authority = match base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        Ok(BackendClient {
            inner: Arc::new(Inner {
                http,
                connectors,
                base,
                authority,
                signer,
                retry: RetryPolicy {
                    attempts: config.retry_attempts.max(1),
                    base: config.retry_base,
                    max: config.retry_max,
                },
                breaker: CircuitBreaker::new(config.breaker_threshold, config.breaker_cooldown),
                read_timeout: config.read_timeout,
            }),
        })
    }

    /// The retry policy in use.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    /// Whether the breaker currently refuses calls.
    pub fn is_circuit_open(&self) -> bool {
        self.inner.breaker.is_open(Instant::now())
    }

    /// Sends `call`, retrying transient failures per the policy when
    /// `call.retry`. `Ok` only for a 2xx answer; any other status is a
    /// [`BackendError::Status`] with the backend's problem type and detail.
    pub async fn send(
        &self,
        ctx: &CallContext,
        call: &Call,
    ) -> Result<reqwest::Response, BackendError> {
        let attempts = if call.retry {
            self.inner.retry.attempts
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            let result = self.send_once(ctx, call).await;
            match result {
                Ok(response) => return Ok(response),
                Err(e) if attempt < attempts && e.is_transient() => {
                    let floor = match &e {
                        BackendError::Status { retry_after, .. } => *retry_after,
                        BackendError::CircuitOpen { retry_in } => Some(*retry_in),
                        _ => None,
                    };
                    let delay = self.inner.retry.next_delay(attempt, floor);
                    tracing::debug!(call = %call.what(), attempt, error = %e, ?delay, "backend call failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt, through the breaker.
    pub async fn send_once(
        &self,
        ctx: &CallContext,
        call: &Call,
    ) -> Result<reqwest::Response, BackendError> {
        let inner = &self.inner;
        inner
            .breaker
            .admit(Instant::now())
            .map_err(|retry_in| BackendError::CircuitOpen { retry_in })?;
        let result = self.attempt(ctx, call).await;
        match &result {
            Ok(_) => inner.breaker.record_success(),
            Err(e) if e.counts_as_failure() => inner.breaker.record_failure(Instant::now()),
            // The backend answered (a 4xx): it is up.
            Err(BackendError::Status { .. }) => inner.breaker.record_success(),
            Err(_) => {}
        }
        result
    }

    async fn attempt(
        &self,
        ctx: &CallContext,
        call: &Call,
    ) -> Result<reqwest::Response, BackendError> {
        let inner = &self.inner;
        let what = call.what();
        let url = inner
            .base
            .join(&call.path)
            .map_err(|e| BackendError::Decode {
                what: what.clone(),
                reason: format!("bad path: {e}"),
            })?;
        let request_id = ctx
            .request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let len = call.body.len();
        let mut headers = http::HeaderMap::with_capacity(call.headers.len() + 8);
        for (n, v) in &call.headers {
            headers.append(n.clone(), v.clone());
        }
        let bad = |field: &str| BackendError::Sign {
            what: what.clone(),
            reason: format!("{field} is not a valid header value"),
        };
        headers.insert(
            "x-request-id",
            HeaderValue::from_str(&request_id).map_err(|_| bad("X-Request-Id"))?,
        );
        headers.insert(
            "x-mft-principal",
            HeaderValue::from_str(&ctx.principal).map_err(|_| bad("X-MFT-Principal"))?,
        );
        headers.insert(
            "x-mft-scopes",
            HeaderValue::from_str(&ctx.scopes).map_err(|_| bad("X-MFT-Scopes"))?,
        );
        if let Some(origin) = &ctx.origin {
            headers.insert(
                "x-mft-origin",
                HeaderValue::from_str(origin).map_err(|_| bad("X-MFT-Origin"))?,
            );
        }
        if !matches!(call.body, Body::Empty) || call.method == Method::POST {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        if let Some(signer) = &inner.signer {
            let signed = signer
                .sign_fields(
                    call.method.as_str(),
                    &inner.authority,
                    url.path(),
                    url.query(),
                    &headers,
                )
                .map_err(|e| BackendError::Sign {
                    what: what.clone(),
                    reason: e.to_string(),
                })?;
            for (name, value) in [
                ("signature-input", signed.signature_input),
                ("signature", signed.signature),
            ] {
                let value = HeaderValue::try_from(value).map_err(|e| BackendError::Sign {
                    what: what.clone(),
                    reason: e.to_string(),
                })?;
                headers.insert(name, value);
            }
        }
        let body = match &call.body {
            Body::Empty => reqwest::Body::from(Bytes::new()),
            Body::Bytes(b) => reqwest::Body::from(b.clone()),
            Body::File { path, offset, len } => {
                let file = open_at(path, *offset, &what).await?;
                let stream =
                    tokio_util::io::ReaderStream::with_capacity(file.take(*len), 64 * 1024);
                reqwest::Body::wrap_stream(stream)
            }
            Body::Base64File {
                path, offset, len, ..
            } => {
                let file = open_at(path, *offset, &what).await?;
                decoded_stream(file.take(*len), base64_stream::Base64Stream::new())
            }
            Body::QuotedPrintableFile {
                path, offset, len, ..
            } => {
                let file = open_at(path, *offset, &what).await?;
                decoded_stream(file.take(*len), qp_stream::QpStream::new())
            }
        };
        // A stalled backend must not hold a bridge forever: allow the read
        // timeout plus the body at a floor rate of 512 KiB/s.
        let moved = len.saturating_add(call.response_len);
        let timeout = inner.read_timeout + Duration::from_secs(moved / (512 * 1024));
        let response = match &inner.connectors {
            None => inner
                .http
                .request(call.method.clone(), url)
                .headers(headers)
                .body(body)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| transport(what.clone(), e))?,
            Some(pool) => via_connector(pool, &call.method, &url, headers, body, &what).await?,
        };
        if response.status().is_success() {
            return Ok(response);
        }
        Err(status_error(what, response).await)
    }
}

/// Percent-encodes a UTF-8 value for `X-Filename`/`X-Folder` (the backend
/// decodes them), so any valid name fits in a header.
pub(crate) fn encoded_header(value: &str) -> HeaderValue {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'/')
        .remove(b' ');
    let text = percent_encoding::utf8_percent_encode(value, SET).to_string();
    // Only visible ASCII and spaces remain, which is always a valid value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Decodes a 2xx JSON answer.
pub async fn decode<T: serde::de::DeserializeOwned>(
    call: &Call,
    response: reqwest::Response,
) -> Result<T, BackendError> {
    let what = call.what();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport(what.clone(), e))?;
    serde_json::from_slice(&bytes).map_err(|e| BackendError::Decode {
        what,
        reason: e.to_string(),
    })
}

/// One call over the connectors, its answer in the form the callers read
/// (a `reqwest::Response` over the streamed h2 body). The pool bounds the
/// wait for the response header; h2 PINGs bound a dead connection.
async fn via_connector(
    pool: &ConnectorPool,
    method: &Method,
    url: &url::Url,
    headers: http::HeaderMap,
    body: reqwest::Body,
    what: &str,
) -> Result<reqwest::Response, BackendError> {
    let uri: http::Uri = url.as_str().parse().map_err(|e| BackendError::Decode {
        what: what.to_string(),
        reason: format!("bad URL: {e}"),
    })?;
    let mut req = http::Request::new(crate::connector::body::boxed(body));
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    // No retry inside the pool: `send` retries with a fresh signature.
    match pool.send(req, &|_| false).await {
        Ok(response) => Ok(reqwest::Response::from(response.map(reqwest::Body::wrap))),
        Err(
            crate::connector::pool::PoolError::NoConnector
            | crate::connector::pool::PoolError::Busy,
        ) => Err(BackendError::NoConnector {
            what: what.to_string(),
        }),
        Err(crate::connector::pool::PoolError::Timeout(_)) => Err(BackendError::Timeout {
            what: what.to_string(),
        }),
        Err(source) => Err(BackendError::Connector {
            what: what.to_string(),
            source,
        }),
    }
}

fn transport(what: String, e: reqwest::Error) -> BackendError {
    if e.is_timeout() {
        BackendError::Timeout { what }
    } else {
        BackendError::Transport { what, source: e }
    }
}

/// Reads at most [`MAX_PROBLEM_BYTES`] of an error answer for its problem fields.
async fn status_error(what: String, response: reqwest::Response) -> BackendError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Ok(Some(chunk)) = stream.try_next().await {
        let room = MAX_PROBLEM_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_PROBLEM_BYTES {
            break;
        }
    }
    #[derive(Deserialize, Default)]
    struct Problem {
        #[serde(rename = "type")]
        problem_type: Option<String>,
        title: Option<String>,
        detail: Option<String>,
    }
    let p: Problem = serde_json::from_slice(&body).unwrap_or_default();
    BackendError::Status {
        what,
        status,
        problem_type: p.problem_type.unwrap_or_else(|| "about:blank".into()),
        detail: p.detail.or(p.title).unwrap_or_default(),
        retry_after,
    }
}

/// `path` opened and positioned at `offset`, for a streamed body.
async fn open_at(
    path: &std::path::Path,
    offset: u64,
    what: &str,
) -> Result<tokio::fs::File, BackendError> {
    let body_err = |source| BackendError::Body {
        what: what.to_string(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(body_err)?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(body_err)?;
    Ok(file)
}
