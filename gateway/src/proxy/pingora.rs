//! The previous engine (`[server] http_engine = "pingora"`, kept for one
//! release): pingora's `ProxyHttp` phases, each delegating to the shared
//! modules; federation for this engine is answered in its `request_filter`.

use super::ctx::RequestCtx;
use super::limits::InputLimits;
use super::routes::{self, Route};
use super::upstream::Upstream;
use super::{digest_guard, federation, head_checks, rescue, sign, ProxyParts, STRIPPED};
use super::{forwarded_value, ms};
use crate::audit::{AuditLog, AuditRecord};
use crate::auth::{AuthRequest, Authenticator};
use crate::conn_guard;
use crate::drain::InFlight;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use async_trait::async_trait;
use bytes::Bytes;
use http::header::HeaderName;
use mft_filters::decision::{Decision, Rejection};
use mft_filters::problem::Problem;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use std::time::Instant;

/// The gateway's proxy logic.
pub struct GatewayProxy {
    upstream: Option<Upstream>,
    auth: Arc<Authenticator>,
    audit: AuditLog,
    in_flight: InFlight,
    access_log: bool,
    keepalive_secs: u64,
    limits: InputLimits,
    rate_limiter: Arc<RateLimiter>,
    metrics: Arc<Metrics>,
    signer: Option<Arc<sign::RequestSigner>>,
    federation: Arc<crate::trust::inbound::PartnerGate>,
    trust: Arc<crate::trust::services::Federation>,
}

impl GatewayProxy {
    /// A proxy from its parts.
    pub fn new(p: ProxyParts) -> Self {
        GatewayProxy {
            upstream: p.upstream,
            auth: p.auth,
            audit: p.audit,
            in_flight: p.in_flight,
            access_log: p.access_log,
            keepalive_secs: p.keepalive_secs,
            limits: p.limits,
            rate_limiter: p.rate_limiter,
            metrics: p.metrics,
            signer: p.signer,
            federation: p.federation,
            trust: p.trust,
        }
    }

    /// Ends a request with `rejection` before its body was read. With a body
    /// pending, the connection is not reused (the rest of the body would be
    /// read as the next request) and what is left is read and discarded for a
    /// moment so the client sees the answer.
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        rejection: &Rejection,
    ) -> Result<bool> {
        let unread_body = !session.is_body_done();
        if unread_body {
            session.set_keepalive(None);
        }
        ctx.reject_reason = Some(rejection.audit_reason);
        rescue::reject(session, ctx, rejection).await?;
        if unread_body {
            linger(session).await;
        }
        Ok(true)
    }

    async fn authorize(
        &self,
        session: &Session,
        ctx: &RequestCtx,
    ) -> Decision<crate::auth::Identity> {
        let header = session.req_header();
        let request = AuthRequest::from_head(
            &ctx.id,
            ctx.client.map(|a| a.ip()),
            &header.method,
            &header.uri,
            &header.headers,
        );
        self.auth.authorize(&request).await
    }
}

/// Largest JSON body of a federation delivery or receipt.
const MAX_FEDERATION_JSON: u64 = 1024 * 1024;

impl GatewayProxy {
    /// Serves a `/federation/v1/` request: only an authenticated partner
    /// within its rate limit gets past the gate. `GET ping`, deliveries and
    /// receipts are answered here (signed); a file upload is proxied to the
    /// backend's `/api/v1/files` as `partner:<name>`, its body checked
    /// against the signed `Content-Digest`. `Ok(true)`: answered.
    async fn federation(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let cert = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .map(|s| s.cert_digest.clone());
        let header = session.req_header();
        let req = crate::trust::inbound::InboundRequest::from_head(
            &ctx.id,
            ctx.client.map(|a| a.ip()),
            &header.method,
            &header.uri,
            &header.headers,
            cert.as_deref(),
        );
        let outcome = self.federation.authenticate(&req).await;
        let ok = match outcome {
            Ok(ok) => ok,
            Err(rejection) => {
                self.metrics.auth(false);
                return self.refuse(session, ctx, &rejection).await;
            }
        };
        self.metrics.auth(true);
        let principal: Arc<str> = Arc::from(format!("partner:{}", ok.partner.name));
        let limited = self
            .rate_limiter
            .check_principal(&principal, self.trust.rate_limit, &mut ctx.rate_headers)
            .await;
        if let Err(rejection) = limited {
            return self.refuse(session, ctx, &rejection).await;
        }
        // Only now, within the partner's rate limit, is the nonce kept.
        if let Err(rejection) = self.federation.admit(&req, &ok) {
            return self.refuse(session, ctx, &rejection).await;
        }
        let (method, path) = (req.method, req.path);
        let digest = req.content_digest.map(crate::trust::wire::sha256_of_digest);
        if method == "GET" && path == crate::trust::wire::PING_PATH {
            let answer = self.federation.ping_answer(&req, &ok);
            match answer {
                Ok((body, headers)) => {
                    rescue::respond_owned_json(session, ctx, 200, body, headers).await?
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot sign the ping answer");
                    rescue::respond(session, ctx, Problem::new(500, None)).await?
                }
            };
            return Ok(true);
        }
        let local = crate::trust::federation_api::is_local_endpoint(path);
        if method != "POST" || !(local || path == crate::trust::wire::FILES_PATH) {
            let problem = Problem::new(
                404,
                Some("no such federation endpoint on this gateway version".to_string()),
            );
            rescue::respond(session, ctx, problem).await?;
            return Ok(true);
        }
        // A body is bound to the signature only through its digest.
        let Some(Some(expected)) = digest else {
            let r = Rejection::bad_request(
                "a federation request with a body needs a signed Content-Digest (sha-256)"
                    .to_string(),
                "missing_content_digest",
            );
            return self.refuse(session, ctx, &r).await;
        };
        if local {
            let answered_path = path.to_string();
            let answered_authority = req.authority.to_string();
            self.federation_local(
                session,
                ctx,
                ok,
                expected,
                &answered_authority,
                &answered_path,
            )
            .await?;
            return Ok(true);
        }
        self.federation_upload(session, ctx, &ok.partner, principal, expected)
            .await
    }

    /// `POST /federation/v1/files`: on to the backend, streamed.
    async fn federation_upload(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        partner: &crate::store::partners::PartnerRecord,
        principal: Arc<str>,
        expected: [u8; 32],
    ) -> Result<bool> {
        if session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_none()
        {
            let r = Rejection::new(
                411,
                "about:blank",
                "a federation file upload needs a Content-Length",
                "length_required",
            );
            return self.refuse(session, ctx, &r).await;
        }
        ctx.identity = Some(crate::auth::Identity {
            principal,
            scopes: Arc::from(vec!["files:write".to_string()]),
            scopes_header: Arc::from("files:write"),
            rate_limit: None,
            senders: None,
        });
        session
            .req_header_mut()
            .set_uri(http::Uri::from_static(crate::backend_client::paths::FILES));
        let h = session.req_header();
        let checked = self.limits.check_request(&h.method, &h.uri, &h.headers);
        match checked {
            Ok(watch) => ctx.body = watch,
            Err(rejection) => return self.refuse(session, ctx, &rejection).await,
        }
        let admitted = self
            .federation
            .inboxes
            .admit(partner, &session.req_header().headers)
            .await;
        match admitted {
            Ok(target) => {
                session
                    .req_header_mut()
                    .insert_header("x-folder", target.folder)?;
                ctx.quota = target.reservation;
            }
            Err(rejection) => return self.refuse(session, ctx, &rejection).await,
        }
        ctx.digest = Some(digest_guard::DigestGuard::new(expected));
        session.set_read_timeout(Some(self.limits.body_idle_timeout));
        Ok(false)
    }

    /// `POST /federation/v1/deliveries` and `/receipts`: a small JSON body,
    /// read whole (bounded), checked against its digest, handled on the
    /// federation runtime, answered signed.
    async fn federation_local(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        ok: crate::trust::inbound::Authenticated,
        expected: [u8; 32],
        authority: &str,
        path: &str,
    ) -> Result<()> {
        session.set_read_timeout(Some(self.limits.body_idle_timeout));
        let mut body = Vec::new();
        let mut meter = mft_filters::limits::BodyMeter::new(MAX_FEDERATION_JSON);
        while let Some(chunk) = session.read_request_body().await? {
            if let Err(r) = meter.add(chunk.len()) {
                self.refuse(session, ctx, &r).await?;
                return Ok(());
            }
            body.extend_from_slice(&chunk);
        }
        let call = crate::trust::services::LocalCall {
            ok: &ok,
            authority,
            path,
            request_id: &ctx.id,
            client_ip: ctx.client.map(|a| a.ip()),
            body,
            expected,
        };
        use crate::trust::services::LocalAnswer;
        match self.trust.answer_local(call).await {
            LocalAnswer::Signed(status, body, headers) => {
                rescue::respond_owned_json(session, ctx, status, body, headers).await
            }
            LocalAnswer::Refused(r) => {
                ctx.reject_reason = Some(r.audit_reason);
                rescue::reject(session, ctx, &r).await
            }
            LocalAnswer::Problem(problem) => rescue::respond(session, ctx, problem).await,
        }
    }
}

/// How long a refused HTTP/1.1 body is still read and discarded.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards what is left of a refused HTTP/1.1 request body for a
/// short while. Closing with unread data makes the kernel send a reset, and
/// a client still writing its body would then lose our error response.
async fn linger(session: &mut Session) {
    if session.is_http2() || session.is_body_done() {
        return;
    }
    session.set_total_drain_timeout(Some(LINGER));
    if let Err(e) = session.drain_request_body().await {
        tracing::debug!(error = %e, "stopped draining a refused request body");
    }
}

fn client_addr(session: &Session) -> Option<std::net::SocketAddr> {
    session.client_addr().and_then(|a| a.as_inet()).copied()
}

#[async_trait]
impl ProxyHttp for GatewayProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            id: uuid::Uuid::now_v7().to_string(),
            started: Instant::now(),
            route: Route::NotFound,
            upstream_started: None,
            upstream_time: None,
            identity: None,
            client: None,
            body: Default::default(),
            digest: None,
            sender: None,
            quota: None,
            body_rejection: None,
            rate_headers: Default::default(),
            reject_reason: None,
            _in_flight: self.in_flight.enter(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        conn_guard::mark_header_done(session);
        ctx.client = client_addr(session);
        // pingora resets keep-alive to None once shutdown started; keep that.
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(self.keepalive_secs));
        }
        let checked = {
            let h = session.req_header();
            head_checks::check(&self.limits, h.version, &h.uri, &h.headers, false)
        };
        if let Err(rejection) = checked {
            return self.refuse(session, ctx, &rejection).await;
        }
        let header = session.req_header();
        ctx.route = routes::classify(&header.method, header.uri.path());
        // audit.on_failure = "deny": nothing is served while its record
        // could not be written.
        if ctx.route != Route::Health {
            if let Some(rejection) = self.audit.refusal() {
                return self.refuse(session, ctx, &rejection).await;
            }
        }
        // Before authentication, so unauthenticated floods are cheap to refuse;
        // health checks are exempt (load balancers poll them).
        if ctx.route != Route::Health {
            if let Some(ip) = ctx.client.map(|a| a.ip()) {
                let checked = self.rate_limiter.check_ip(ip, &mut ctx.rate_headers).await;
                if let Err(rejection) = checked {
                    return self.refuse(session, ctx, &rejection).await;
                }
            }
        }
        match ctx.route {
            Route::Health => {
                rescue::respond_json(session, ctx, br#"{"status":"ok"}"#).await?;
                Ok(true)
            }
            Route::Api => match self.authorize(session, ctx).await {
                Decision::Continue(identity) => {
                    self.metrics.auth(true);
                    let checked = self
                        .rate_limiter
                        .check_principal(
                            &identity.principal,
                            identity.rate_limit,
                            &mut ctx.rate_headers,
                        )
                        .await;
                    ctx.identity = Some(identity);
                    if let Err(rejection) = checked {
                        return self.refuse(session, ctx, &rejection).await;
                    }
                    let h = session.req_header();
                    let checked = self.limits.check_request(&h.method, &h.uri, &h.headers);
                    match checked {
                        Ok(watch) => ctx.body = watch,
                        Err(rejection) => return self.refuse(session, ctx, &rejection).await,
                    }
                    let empty = session.is_body_empty();
                    let digest = digest_guard::for_client(&session.req_header().headers, empty);
                    match digest {
                        Ok(guard) => ctx.digest = guard,
                        Err(rejection) => return self.refuse(session, ctx, &rejection).await,
                    }
                    let h = session.req_header();
                    let bound = super::sender_binding::binding_for(
                        ctx.identity.as_ref(),
                        &h.method,
                        h.uri.path(),
                    );
                    if let Some(binding) = bound {
                        if empty {
                            let rejection =
                                mft_filters::auth::senders::check_delivery(&binding, b"")
                                    .err()
                                    .unwrap_or_else(mft_filters::auth::senders::sender_not_allowed);
                            return self.refuse(session, ctx, &rejection).await;
                        }
                        ctx.sender = Some(super::sender_binding::SenderGuard::new(binding));
                    }
                    // pingora times out each body read; this bounds a client
                    // that stalls mid-upload.
                    session.set_read_timeout(Some(self.limits.body_idle_timeout));
                    Ok(false)
                }
                Decision::Reject(rejection) => {
                    self.metrics.auth(false);
                    self.refuse(session, ctx, &rejection).await
                }
            },
            Route::Federation => self.federation(session, ctx).await,
            Route::NotFound => {
                let problem = Problem::new(
                    404,
                    Some("no such endpoint; the API is under /api/v1/".to_string()),
                );
                rescue::respond(session, ctx, problem).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.upstream_started = Some(Instant::now());
        // Config validation keeps DMZ mode (no resolved backend) off this engine.
        self.upstream
            .as_ref()
            .map(Upstream::peer)
            .ok_or_else(|| pingora_core::Error::new(pingora_core::ErrorType::ConnectNoRoute))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        for name in &STRIPPED {
            upstream.remove_header(name);
        }
        let spoofed: Vec<HeaderName> = upstream
            .headers
            .keys()
            .filter(|n| super::client_may_not_send(n))
            .cloned()
            .collect();
        for name in &spoofed {
            upstream.remove_header(name);
        }
        let header = session.req_header();
        let original_host = super::original_host(&header.uri, &header.headers);
        upstream.insert_header("x-request-id", ctx.id.as_str())?;
        upstream.insert_header(
            http::header::FORWARDED,
            forwarded_value(ctx.client, original_host.as_deref()),
        )?;
        if let Some(peer) = &self.upstream {
            upstream.insert_header(http::header::HOST, peer.authority.as_str())?;
        }
        if let Some(identity) = &ctx.identity {
            upstream.insert_header("x-mft-principal", &*identity.principal)?;
            upstream.insert_header("x-mft-scopes", &*identity.scopes_header)?;
        }
        // Last: the signature must cover the header exactly as it leaves.
        if let Some(signer) = &self.signer {
            signer.sign(upstream)?;
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let mut verdict = Ok(());
        if let (Some(meter), Some(chunk)) = (ctx.body.meter.as_mut(), body.as_ref()) {
            verdict = meter.add(chunk.len());
        }
        if verdict.is_ok() {
            if let Some(guard) = ctx.body.multipart.as_mut() {
                verdict = guard.feed(body.as_ref(), end_of_stream).await;
            }
        }
        if verdict.is_ok() {
            if let Some(guard) = ctx.sender.as_mut() {
                verdict = guard.feed(body, end_of_stream);
            }
        }
        if verdict.is_ok() {
            if let Some(guard) = ctx.digest.as_mut() {
                verdict = guard.feed(body, end_of_stream);
            }
        }
        match verdict {
            Ok(()) => Ok(()),
            Err(rejection) => {
                // The header went upstream already; failing here cuts the
                // upstream body short, which the backend discards.
                let status = rejection.status;
                // Nothing will be stored: a quota reservation goes back
                // before the client sees the answer.
                ctx.quota = None;
                ctx.reject_reason = Some(rejection.audit_reason);
                ctx.body_rejection = Some(rejection);
                Err(pingora_core::Error::explain(
                    pingora_core::ErrorType::HTTPStatus(status),
                    "request body refused by an input limit",
                ))
            }
        }
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_time = ctx.upstream_started.map(|t| t.elapsed());
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        response.insert_header("x-request-id", ctx.id.as_str())?;
        if let (Some(policy), Some(state)) = (ctx.rate_headers.policy(), ctx.rate_headers.state()) {
            response.insert_header("ratelimit-policy", policy)?;
            response.insert_header("ratelimit", state)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora_core::Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // The connection is not reused after a failure; say so, or a client
        // would send its next request into a closing socket.
        session.set_keepalive(None);
        if let Some(rejection) = ctx.body_rejection.take() {
            if session.response_written().is_none() {
                if let Err(write_err) = rescue::reject(session, ctx, &rejection).await {
                    tracing::debug!(request_id = %ctx.id, error = %write_err, "could not send error response");
                }
                linger(session).await;
            }
            return FailToProxy {
                error_code: rejection.status,
                can_reuse_downstream: false,
            };
        }
        let code = rescue::status_for(e);
        // Once the response header went out (a failure mid-body), the only
        // honest signal left is to cut the connection, which pingora does.
        if code > 0 && session.response_written().is_none() {
            let problem = Problem::new(code, Some(rescue::detail_for(code).to_string()));
            if let Err(write_err) = rescue::respond(session, ctx, problem).await {
                tracing::debug!(request_id = %ctx.id, error = %write_err, "could not send error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(
        &self,
        session: &mut Session,
        e: Option<&pingora_core::Error>,
        ctx: &mut RequestCtx,
    ) {
        conn_guard::mark_request_done(session);
        let header = session.req_header();
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        self.metrics.response(status);
        self.metrics.finished(
            session.body_bytes_read() as u64,
            session.body_bytes_sent() as u64,
            ctx.started.elapsed(),
        );
        federation::settle_quota(ctx, status, e.is_some());
        if ctx.route == Route::Api && e.is_none() {
            federation::trust_hooks(&self.trust, &header.method, header.uri.path(), status, ctx);
        }
        if let Some(identity) = &ctx.identity {
            let mut r = AuditRecord::new("request");
            r.request_id = Some(ctx.id.clone());
            r.principal = Some(identity.principal.to_string());
            r.client_ip = ctx.client.map(|a| a.ip());
            r.method = Some(crate::audit::method_text(header.method.as_str()));
            r.path = Some(header.uri.path().to_string());
            r.status = Some(status);
            r.bytes_in = Some(session.body_bytes_read() as u64);
            r.bytes_out = Some(session.body_bytes_sent() as u64);
            r.decision = Some(if e.is_none() && status < 400 {
                "allow"
            } else {
                "deny"
            });
            r.reason = ctx
                .reject_reason
                .map(std::borrow::Cow::Borrowed)
                .or_else(|| e.map(|e| e.etype().as_str().to_string().into()));
            self.audit.record(r);
        }
        if !self.access_log {
            return;
        }
        let client = ctx.client.map(|a| a.ip().to_string()).unwrap_or_default();
        tracing::info!(
            target: "access",
            request_id = %ctx.id,
            client = %client,
            method = %header.method,
            path = header.uri.path(),
            status,
            bytes_in = session.body_bytes_read(),
            bytes_out = session.body_bytes_sent(),
            duration_ms = ms(ctx.started.elapsed()),
            upstream_ms = ctx.upstream_time.map(ms),
            http2 = session.is_http2(),
            principal = ctx.identity.as_ref().map(|i| &*i.principal),
            error = e.map(|e| e.etype().as_str()),
        );
    }
}
