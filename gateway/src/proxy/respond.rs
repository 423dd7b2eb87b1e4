//! Step 9 of the hyper engine: what every response carries, and the
//! logging phase (metrics, trust hooks, audit, access log) once it is sent.

use super::ctx::RequestCtx;
use super::names;
use super::routes::Route;
use super::ProxyParts;
use crate::audit::AuditRecord;
use http::header::HeaderValue;

pub use super::rescue::detail_for;

/// Adds our request id and, with `rate`, what the client's limits left.
pub fn add_common(headers: &mut http::HeaderMap, ctx: &RequestCtx, rate: bool) {
    // Values new on every response are sent "never indexed" over h2: put in
    // the HPACK dynamic table they would only evict what repeats (measured:
    // hpack's table search was the largest h2-only cost per request).
    if let Ok(mut id) = HeaderValue::from_str(&ctx.id) {
        id.set_sensitive(true);
        headers.insert(names::X_REQUEST_ID, id);
    }
    if !rate {
        return;
    }
    if let (Some(policy), Some(state)) = (ctx.rate_headers.policy(), ctx.rate_headers.state()) {
        if let (Ok(p), Ok(mut s)) = (HeaderValue::from_str(policy), HeaderValue::from_str(state)) {
            // The policy repeats per key and stays indexable; the state moves.
            s.set_sensitive(true);
            headers.insert(names::RATELIMIT_POLICY, p);
            headers.insert(names::RATELIMIT, s);
        }
    }
}

/// A refusal's or a signed answer's field value as a header value: our
/// fixed texts (a 401's challenge) are used in place, without a copy.
pub fn header_value(value: std::borrow::Cow<'static, str>) -> Option<HeaderValue> {
    match value {
        std::borrow::Cow::Borrowed(s) => {
            HeaderValue::from_maybe_shared(bytes::Bytes::from_static(s.as_bytes())).ok()
        }
        std::borrow::Cow::Owned(s) => HeaderValue::try_from(s).ok(),
    }
}

/// What the logging phase knows about a finished request.
pub struct Finished<'a> {
    /// The request's state.
    pub ctx: &'a RequestCtx,
    /// Method.
    pub method: &'a http::Method,
    /// Path as received.
    pub path: &'a str,
    /// Response status.
    pub status: u16,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Over h2.
    pub http2: bool,
    /// Why the exchange failed, if it did.
    pub error: Option<&'static str>,
}

/// The logging phase.
pub fn log(p: &ProxyParts, f: &Finished<'_>) {
    let ctx = f.ctx;
    p.metrics.response(f.status);
    p.metrics
        .finished(f.bytes_in, f.bytes_out, ctx.started.elapsed());
    super::federation::settle_quota(ctx, f.status, f.error.is_some());
    if ctx.route == Route::Api && f.error.is_none() {
        super::federation::trust_hooks(&p.trust, f.method, f.path, f.status, ctx);
    }
    if let Some(identity) = &ctx.identity {
        let mut r = AuditRecord::new("request");
        r.request_id = Some(ctx.id.clone());
        // Copied as text: `to_string` on a method or an `Arc<str>` goes
        // through `fmt`, a few hundred instructions each per request.
        r.principal = Some(String::from(&*identity.principal));
        r.client_ip = ctx.client.map(|a| a.ip());
        r.method = Some(crate::audit::method_text(f.method.as_str()));
        r.path = Some(f.path.to_string());
        r.status = Some(f.status);
        r.bytes_in = Some(f.bytes_in);
        r.bytes_out = Some(f.bytes_out);
        r.decision = Some(if f.error.is_none() && f.status < 400 {
            "allow"
        } else {
            "deny"
        });
        r.reason = ctx
            .reject_reason
            .or(f.error)
            .map(std::borrow::Cow::Borrowed);
        p.audit.record(r);
    }
    if !p.access_log {
        return;
    }
    let client = ctx.client.map(|a| a.ip().to_string()).unwrap_or_default();
    tracing::info!(
        target: "access",
        request_id = %ctx.id,
        client = %client,
        method = %f.method,
        path = f.path,
        status = f.status,
        bytes_in = f.bytes_in,
        bytes_out = f.bytes_out,
        duration_ms = super::ms(ctx.started.elapsed()),
        upstream_ms = ctx.upstream_time.map(super::ms),
        http2 = f.http2,
        principal = ctx.identity.as_ref().map(|i| &*i.principal),
        error = f.error,
    );
}
