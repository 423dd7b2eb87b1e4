//! The hyper engine's request path, in order: head checks → route → IP
//! limit → identity → principal limit → body limits → sign → forward →
//! respond. Each step either lets the request on or stops it with a
//! [`Stop`]; [`HyperGateway::answer`] is the one place a stop becomes a
//! response, and the response body's drop is the logging phase.

use super::accept::ConnInfo;
use super::backend_path::BackendPath;
use super::body::{BodyStats, GuardedBody, Linger, OnFinish, RespBody};
use super::ctx::RequestCtx;
use super::digest_guard::DigestGuard;
use super::forward::UpstreamFailure;
use super::limits::BodyWatch;
use super::pool::Checkin;
use super::routes::{self, Route};
use super::{head_checks, identity, names, respond, sender_binding, ProxyParts};
use crate::trust::inbound::AnswerFields;
use bytes::Bytes;
use http::header::HeaderValue;
use http_body::Body as _;
use hyper::body::Incoming;
use mft_filters::decision::{Decision, Rejection};
use mft_filters::problem::Problem;
use std::sync::Arc;
use std::time::Instant;

/// Why a request ends at the gateway.
pub enum Stop {
    /// A filter's decision (401, 403, 413, 429, 400 ...).
    Reject(Rejection),
    /// A problem of our own (404, 500, 502, 504).
    Problem(Problem),
    /// A JSON answer of our own (federation), with its extra headers.
    Json(u16, Vec<u8>, AnswerFields),
    /// `GET /healthz`.
    Health,
}

/// One request on its way through the steps.
pub struct Exchange {
    /// Per-request state shared with the pingora engine.
    pub ctx: RequestCtx,
    /// The request head as the client sent it (the path never changes,
    /// except for a federation upload's fixed target).
    pub head: http::request::Parts,
    /// The body until a step takes it upstream.
    pub body: Option<Incoming>,
    /// The connection it came on.
    pub conn: Arc<ConnInfo>,
    /// The head had both `Content-Length` and `Transfer-Encoding`.
    pub ambiguous_framing: bool,
    /// The client waits for `100 Continue` before it sends its body.
    pub expects_continue: bool,
    /// Set once the body went into a [`GuardedBody`].
    pub stats: Option<Arc<BodyStats>>,
    /// What the logging phase calls the failure, if any.
    pub error: Option<&'static str>,
    /// The pooled backend connection the response came on.
    pub checkin: Option<Checkin>,
    /// A body read ahead whole (a sender-bound key's delivery), forwarded
    /// in place of the client's stream.
    pub read_ahead: Option<Bytes>,
}

/// The hyper engine: everything the steps need.
pub struct HyperGateway {
    /// The same parts the pingora engine gets.
    pub p: ProxyParts,
    /// The way to the backend: direct, or through connectors; shared by
    /// the snapshots of a reload that left `[backend]` alone.
    pub forward: Arc<BackendPath>,
}

impl HyperGateway {
    /// An engine from its parts.
    pub fn new(p: ProxyParts, forward: BackendPath) -> Self {
        HyperGateway {
            p,
            forward: Arc::new(forward),
        }
    }

    /// An engine sharing a backend path (and its pool) with another.
    pub fn with_shared_path(p: ProxyParts, forward: Arc<BackendPath>) -> Self {
        HyperGateway { p, forward }
    }

    /// Serves one request.
    ///
    /// Not an async fn: the request and its head would each keep a slot
    /// (~0.5 KiB) in this future, which is allocated and written per
    /// request; only the [`Exchange`] built from them is kept.
    pub fn serve(
        self: Arc<Self>,
        req: http::Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> impl std::future::Future<Output = http::Response<RespBody>> + Send {
        let ambiguous_framing = conn.header_done();
        let (head, body) = req.into_parts();
        let expects_continue = head
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        // Boxed: the exchange (~1 KiB) then moves as a pointer, into the
        // future hyper boxes, into `answer` and into the logging phase's
        // `Done`, instead of being copied at each step.
        let mut x = Box::new(Exchange {
            ctx: RequestCtx {
                // Encoded straight into the string, not through `fmt`.
                id: uuid::Uuid::now_v7()
                    .hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer())
                    .to_owned(),
                started: Instant::now(),
                route: Route::NotFound,
                upstream_started: None,
                upstream_time: None,
                identity: None,
                client: conn.peer,
                body: BodyWatch::default(),
                digest: None,
                sender: None,
                quota: None,
                body_rejection: None,
                rate_headers: Default::default(),
                reject_reason: None,
                _in_flight: self.p.in_flight.enter(),
            },
            head,
            body: Some(body),
            conn,
            ambiguous_framing,
            expects_continue,
            stats: None,
            error: None,
            checkin: None,
            read_ahead: None,
        });
        async move {
            match self.steps(&mut x).await {
                Ok(upstream) => self.respond_upstream(x, upstream),
                Err(stop) => self.answer(x, stop),
            }
        }
    }

    async fn steps(&self, x: &mut Exchange) -> Result<http::Response<Incoming>, Stop> {
        head_checks::check(
            &self.p.limits,
            x.head.version,
            &x.head.uri,
            &x.head.headers,
            x.ambiguous_framing,
        )
        .map_err(Stop::Reject)?;
        x.ctx.route = routes::classify(&x.head.method, x.head.uri.path());
        // audit.on_failure = "deny": nothing is served while its record
        // could not be written.
        if x.ctx.route != Route::Health {
            if let Some(rejection) = self.p.audit.refusal() {
                return Err(Stop::Reject(rejection));
            }
        }
        // Before authentication, so unauthenticated floods are cheap to
        // refuse; health checks are exempt (load balancers poll them).
        if x.ctx.route != Route::Health {
            if let Some(ip) = x.ctx.client.map(|a| a.ip()) {
                if let Err(limited) = self
                    .p
                    .rate_limiter
                    .check_ip(ip, &mut x.ctx.rate_headers)
                    .await
                {
                    // Only on the refusal path: a limited address the
                    // defender banned gets the ban (its connection closes).
                    return Err(Stop::Reject(
                        self.p
                            .auth
                            .banned_for(ip)
                            .map_or(limited, Rejection::banned),
                    ));
                }
            }
        }
        match x.ctx.route {
            Route::Health => Err(Stop::Health),
            Route::NotFound => Err(Stop::Problem(Problem::new(
                404,
                Some("no such endpoint; the API is under /api/v1/".to_string()),
            ))),
            // Boxed: partners' requests are rare next to API calls, and
            // the federation steps' state would otherwise be inline in every
            // request's future, which hyper keeps for each idle connection.
            Route::Federation => Box::pin(super::federation::serve(self, x)).await,
            Route::Api => {
                let identity = match identity::authorize(&self.p, &x.ctx, &x.head).await {
                    Decision::Continue(identity) => identity,
                    Decision::Reject(rejection) => return Err(Stop::Reject(rejection)),
                };
                let checked = self
                    .p
                    .rate_limiter
                    .check_principal(
                        &identity.principal,
                        identity.rate_limit,
                        &mut x.ctx.rate_headers,
                    )
                    .await;
                x.ctx.identity = Some(identity);
                checked.map_err(Stop::Reject)?;
                x.ctx.body = self
                    .p
                    .limits
                    .check_request(&x.head.method, &x.head.uri, &x.head.headers)
                    .map_err(Stop::Reject)?;
                let empty = x.body.as_ref().is_none_or(|b| b.is_end_stream());
                let digest = super::digest_guard::for_client(&x.head.headers, empty)
                    .map_err(Stop::Reject)?;
                let bound = sender_binding::binding_for(
                    x.ctx.identity.as_ref(),
                    &x.head.method,
                    x.head.uri.path(),
                );
                if let Some(binding) = bound {
                    let idle = self.p.limits.body_idle_timeout;
                    let rate = self.p.limits.min_body_rate;
                    x.read_ahead = Some(sender_binding::read_ahead(x, &binding, idle, rate).await?);
                }
                self.forward(x, digest).await
            }
        }
    }

    /// Sends the request on, its body through the guards; `digest` checks
    /// the body against a client's or a partner's `Content-Digest`.
    pub async fn forward(
        &self,
        x: &mut Exchange,
        digest: Option<DigestGuard>,
    ) -> Result<http::Response<Incoming>, Stop> {
        // Built by a plain function and moved straight into the send: a
        // request that were a local here would keep its 480 bytes in this
        // future for the whole exchange, beside the pool's copy.
        let (req, stats) = self.upstream_request(x, digest)?;
        x.ctx.upstream_started = Some(Instant::now());
        let sent = self.forward.send(req).await;
        x.ctx.upstream_time = x.ctx.upstream_started.map(|t| t.elapsed());
        match sent {
            Ok((response, checkin)) => {
                x.checkin = checkin;
                Ok(response)
            }
            Err(failure) => {
                // Nothing was stored: a quota reservation goes back now,
                // before the client can see the answer and try again.
                x.ctx.quota = None;
                if let Some(rejection) = stats.rejection.get() {
                    // The header went upstream already; the cut-off body is
                    // discarded by the backend.
                    return Err(Stop::Reject(rejection.clone()));
                }
                let status = match failure {
                    UpstreamFailure::NoConnector => {
                        x.error = Some("no_connector");
                        return Err(Stop::Reject(no_connector()));
                    }
                    UpstreamFailure::Timeout => 504,
                    UpstreamFailure::Failed(ref e) => {
                        tracing::debug!(request_id = %x.ctx.id, error = %e, "upstream failed");
                        502
                    }
                };
                x.error = Some(if status == 504 {
                    "upstream_timeout"
                } else {
                    "upstream_failed"
                });
                Err(Stop::Problem(Problem::new(
                    status,
                    Some(respond::detail_for(status).to_string()),
                )))
            }
        }
    }

    /// The request as it goes upstream: URI, header fields (signed last),
    /// and the client's body behind its guards.
    fn upstream_request(
        &self,
        x: &mut Exchange,
        digest: Option<DigestGuard>,
    ) -> Result<(http::Request<GuardedBody>, Arc<BodyStats>), Stop> {
        let uri = self
            .forward
            .uri(x.head.uri.path_and_query())
            .map_err(|_| Stop::Problem(Problem::new(400, Some(respond::detail_for(400).into()))))?;
        let mut headers = self.upstream_headers(x).map_err(Stop::Reject)?;
        if let Some(signer) = &self.p.signer {
            signer
                .sign_map(&x.head.method, &uri, &mut headers)
                .map_err(|e| match e {
                    // Only a client-sent Content-Digest can get here (the
                    // rest are ours): the client's fault.
                    super::sign::FieldError::NotAscii => Stop::Reject(Rejection::bad_request(
                        "a header to be signed is not visible ASCII".to_string(),
                        "bad_request",
                    )),
                    other => {
                        tracing::error!(request_id = %x.ctx.id, error = %other, "cannot sign the request");
                        Stop::Problem(Problem::new(500, None))
                    }
                })?;
        }
        let Some(body) = x.body.take() else {
            return Err(Stop::Problem(Problem::new(500, None)));
        };
        let stats = Arc::new(BodyStats::default());
        x.stats = Some(stats.clone());
        let mut body = GuardedBody::new(
            body,
            std::mem::take(&mut x.ctx.body),
            digest,
            self.p.limits.body_idle_timeout,
            self.p.limits.min_body_rate,
            stats.clone(),
        )
        .on_connection(x.conn.clone());
        if let Some(read) = x.read_ahead.take() {
            body = body.with_read_ahead(read);
        }
        let mut req = http::Request::new(body);
        *req.method_mut() = x.head.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        Ok((req, stats))
    }

    /// The request's header fields as they go upstream: the client's
    /// credentials, hop-by-hop fields and anything it may not pre-set
    /// removed; request id, `Forwarded`, `Host` and identity added.
    fn upstream_headers(&self, x: &mut Exchange) -> Result<http::HeaderMap, Rejection> {
        let original_host = super::original_host(&x.head.uri, &x.head.headers);
        let mut headers = std::mem::take(&mut x.head.headers);
        super::forward::remove_fields(&mut headers, super::never_forwarded);
        let value = |v: &str| {
            HeaderValue::from_str(v).map_err(|_| {
                Rejection::bad_request("a header value is not valid".to_string(), "bad_request")
            })
        };
        headers.insert(names::X_REQUEST_ID, value(&x.ctx.id)?);
        headers.insert(
            http::header::FORWARDED,
            value(&super::forwarded_value(
                x.ctx.client,
                original_host.as_deref(),
            ))?,
        );
        headers.insert(http::header::HOST, self.forward.target().host_value());
        if let Some(identity) = &x.ctx.identity {
            headers.insert(names::X_MFT_PRINCIPAL, value(&identity.principal)?);
            headers.insert(names::X_MFT_SCOPES, value(&identity.scopes_header)?);
        }
        Ok(headers)
    }

    fn respond_upstream(
        self: Arc<Self>,
        mut x: Box<Exchange>,
        upstream: http::Response<Incoming>,
    ) -> http::Response<RespBody> {
        let (mut parts, body) = upstream.into_parts();
        super::forward::strip_hop_by_hop(&mut parts.headers);
        respond::add_common(&mut parts.headers, &x.ctx, true);
        let status = parts.status.as_u16();
        let checkin = x.checkin.take();
        let idle = self.forward.read_timeout();
        let finish = Box::new(Done::new(self, x, status));
        http::Response::from_parts(parts, RespBody::upstream(body, checkin, finish, idle))
    }

    /// The one place a stop becomes a response.
    fn answer(self: Arc<Self>, mut x: Box<Exchange>, stop: Stop) -> http::Response<RespBody> {
        let problem = matches!(stop, Stop::Problem(_) | Stop::Reject(_));
        let (status, content_type, body, extra): (u16, &str, Bytes, AnswerFields) = match stop {
            Stop::Health => (
                200,
                "application/json",
                Bytes::from_static(br#"{"status":"ok"}"#),
                Vec::new(),
            ),
            Stop::Json(status, body, headers) => {
                (status, "application/json", Bytes::from(body), headers)
            }
            Stop::Problem(problem) => (
                problem.status,
                mft_filters::problem::CONTENT_TYPE,
                Bytes::from(problem.with_request_id(x.ctx.id.clone()).to_json()),
                Vec::new(),
            ),
            Stop::Reject(rejection) => {
                x.ctx.reject_reason = Some(rejection.audit_reason);
                if rejection.problem_type == mft_filters::problem_types::BANNED {
                    x.conn.close_after_this();
                }
                let body = match rejection.detail {
                    std::borrow::Cow::Borrowed(detail) => mft_filters::problem::json_for_fixed(
                        rejection.problem_type,
                        rejection.status,
                        detail,
                        &x.ctx.id,
                    ),
                    std::borrow::Cow::Owned(ref detail) => mft_filters::problem::json_for(
                        rejection.problem_type,
                        rejection.status,
                        Some(detail),
                        Some(&x.ctx.id),
                    ),
                };
                (
                    rejection.status,
                    mft_filters::problem::CONTENT_TYPE,
                    Bytes::from(body),
                    rejection.headers,
                )
            }
        };
        let head_only = x.head.method == http::Method::HEAD && status == 200;
        let mut response = http::Response::new(());
        *response.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let h = response.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        let rate_described = extra.iter().any(|(n, _)| *n == names::RATELIMIT);
        for (name, value) in extra {
            if let Some(value) = respond::header_value(value) {
                h.insert(name, value);
            }
        }
        // Our own answers tell the client what its limits left too, unless
        // the rejection is a rate limit describing itself.
        respond::add_common(h, &x.ctx, problem && !rate_described);
        // An unread body (still coming, or cut off by a guard) means the
        // connection cannot carry another HTTP/1.1 request. An HTTP/1.1
        // client waiting for 100 Continue has sent no body: it reads our
        // answer instead, nothing to linger for.
        let unsent = x.body.take();
        let pending = unsent.as_ref().is_some_and(|b| !b.is_end_stream());
        let unread = unsent
            .filter(|_| x.conn.http2 || !x.expects_continue)
            .and_then(|b| Linger::new(b, x.conn.http2));
        let leftover = x
            .stats
            .as_ref()
            .and_then(|s| s.take_leftover())
            .and_then(|b| Linger::new(b, x.conn.http2));
        let cut = x.stats.is_some() && status >= 400;
        if cut {
            // The body may still be coming (the backend failed mid-upload):
            // the close lingers rather than reset the client's writes.
            x.conn.body_left_unread();
        }
        let linger = unread.or(leftover);
        if !x.conn.http2 && (pending || linger.is_some() || x.ambiguous_framing || cut) {
            h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        if !x.conn.http2 && linger.is_some() {
            // hyper closes the connection as soon as a Content-Length answer
            // is written, before the rest of the body could be read: chunked,
            // the answer ends only once the body was discarded.
            h.remove(http::header::CONTENT_LENGTH);
        }
        let (parts, ()) = response.into_parts();
        let finish = Box::new(Done::new(self, x, status));
        let body = if head_only { Bytes::new() } else { body };
        http::Response::from_parts(parts, RespBody::full(body, linger, finish))
    }
}

/// DMZ mode with no connector connected: the backend is not down, only
/// out of reach for a moment; connectors reconnect within seconds.
fn no_connector() -> Rejection {
    Rejection::new(
        503,
        "about:blank",
        "the backend is not reachable right now (no connector is connected); retry shortly",
        "no_connector",
    )
    .with_header(
        http::header::RETRY_AFTER,
        crate::connector::pool::RETRY_AFTER_SECS.to_string(),
    )
}

/// The logging phase of one request: runs when hyper drops the response body.
struct Done {
    gateway: Arc<HyperGateway>,
    x: Box<Exchange>,
    status: u16,
}

impl Done {
    fn new(gateway: Arc<HyperGateway>, x: Box<Exchange>, status: u16) -> Self {
        Done { gateway, x, status }
    }
}

impl OnFinish for Done {
    fn finish(&mut self, bytes_out: u64, completed: bool) {
        let x = &self.x;
        x.conn.request_done();
        let bytes_in = x
            .stats
            .as_ref()
            .map_or(0, |s| s.bytes_in.load(std::sync::atomic::Ordering::Relaxed));
        let error = x.error.or((!completed).then_some("incomplete"));
        respond::log(
            &self.gateway.p,
            &respond::Finished {
                ctx: &x.ctx,
                method: &x.head.method,
                path: x.head.uri.path(),
                status: self.status,
                bytes_in,
                bytes_out,
                http2: x.conn.http2,
                error,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, F: std::future::Future>(_: impl FnOnce(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_requests_future_keeps_no_second_copy_of_the_request() {
        // Allocated and written for every request, and moved level by
        // level on its way to the pool: each copy of the request (~0.5
        // KiB) kept at a level is work per request.
        let size = future_size(HyperGateway::serve);
        assert!(size <= 2800, "HyperGateway::serve is {size} bytes");
    }
}
