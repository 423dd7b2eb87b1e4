//! `/federation/v1/` on the hyper engine: only an authenticated partner
//! within its rate limit gets past the gate, in this order: key and
//! signature (cheap, no state kept), the partner's rate limit, then the
//! nonce is remembered (so a flood cannot fill the replay cache). `GET ping`, deliveries and
//! receipts are answered here (signed); a file upload is proxied to the
//! backend's `/api/v1/files` as `partner:<name>`, its body checked against
//! the signed `Content-Digest` while it streams.
//!
//! Also the trust hooks both engines call from their logging phase.

use super::body_rate::{next_frame, RateFloor, Waited};
use super::ctx::RequestCtx;
use super::digest_guard::DigestGuard;
use super::service::{Exchange, HyperGateway, Stop};
use crate::trust::inbound::{Authenticated, InboundRequest};
use crate::trust::services::{Federation, LocalAnswer, LocalCall};
use crate::trust::wire;
use mft_filters::decision::Rejection;
use mft_filters::problem::Problem;
use std::sync::Arc;

/// Largest JSON body of a federation delivery or receipt.
const MAX_FEDERATION_JSON: u64 = 1024 * 1024;

/// What the gate decided and what the request asks for.
struct Gate {
    ok: Authenticated,
    principal: Arc<str>,
    authority: String,
    path: String,
    digest: Option<Option<[u8; 32]>>,
}

/// Serves a federation request.
pub async fn serve(
    gw: &HyperGateway,
    x: &mut Exchange,
) -> Result<http::Response<hyper::body::Incoming>, Stop> {
    let gate = authenticate(gw, x).await?;
    let limited =
        gw.p.rate_limiter
            .check_principal(
                &gate.principal,
                gw.p.trust.rate_limit,
                &mut x.ctx.rate_headers,
            )
            .await;
    limited.map_err(Stop::Reject)?;
    admit(gw, x, &gate)?;
    let (method, path) = (&x.head.method, gate.path.as_str());
    if method == http::Method::GET && path == wire::PING_PATH {
        return Err(ping(gw, x, &gate));
    }
    let local = crate::trust::federation_api::is_local_endpoint(path);
    if method != http::Method::POST || !(local || path == wire::FILES_PATH) {
        return Err(Stop::Problem(Problem::new(
            404,
            Some("no such federation endpoint on this gateway version".to_string()),
        )));
    }
    // A body is bound to the signature only through its digest.
    let Some(Some(expected)) = gate.digest else {
        return Err(Stop::Reject(Rejection::bad_request(
            "a federation request with a body needs a signed Content-Digest (sha-256)".to_string(),
            "missing_content_digest",
        )));
    };
    if local {
        return Err(local_call(gw, x, gate, expected).await);
    }
    upload(gw, x, &gate.ok.partner, gate.principal, expected).await
}

async fn authenticate(gw: &HyperGateway, x: &Exchange) -> Result<Gate, Stop> {
    let head = &x.head;
    let req = InboundRequest::from_head(
        &x.ctx.id,
        x.ctx.client.map(|a| a.ip()),
        &head.method,
        &head.uri,
        &head.headers,
        x.conn.client_cert_sha256.as_ref().map(|d| &d[..]),
    );
    let outcome = gw.p.federation.authenticate(&req).await;
    gw.p.metrics.auth(outcome.is_ok());
    let ok = outcome.map_err(Stop::Reject)?;
    let principal: Arc<str> = Arc::from(format!("partner:{}", ok.partner.name));
    Ok(Gate {
        principal,
        authority: req.authority.to_string(),
        path: req.path.to_string(),
        digest: req.content_digest.map(wire::sha256_of_digest),
        ok,
    })
}

/// The nonce, remembered only now that the partner is within its rate
/// limit (see [`crate::trust::inbound::PartnerGate::admit`]).
fn admit(gw: &HyperGateway, x: &Exchange, gate: &Gate) -> Result<(), Stop> {
    let req = InboundRequest {
        request_id: &x.ctx.id,
        client_ip: x.ctx.client.map(|a| a.ip()),
        method: x.head.method.as_str(),
        authority: &gate.authority,
        path: &gate.path,
        query: None,
        authorization: None,
        signature_input: None,
        signature: None,
        content_digest: None,
        partner_request_id: None,
        client_cert_sha256: None,
    };
    gw.p.federation.admit(&req, &gate.ok).map_err(Stop::Reject)
}

fn ping(gw: &HyperGateway, x: &Exchange, gate: &Gate) -> Stop {
    let req = InboundRequest {
        request_id: &x.ctx.id,
        client_ip: x.ctx.client.map(|a| a.ip()),
        method: "GET",
        authority: &gate.authority,
        path: &gate.path,
        query: None,
        authorization: None,
        signature_input: None,
        signature: None,
        content_digest: None,
        partner_request_id: None,
        client_cert_sha256: None,
    };
    match gw.p.federation.ping_answer(&req, &gate.ok) {
        Ok((body, headers)) => Stop::Json(200, body, headers),
        Err(e) => {
            tracing::error!(error = %e, "cannot sign the ping answer");
            Stop::Problem(Problem::new(500, None))
        }
    }
}

/// `POST /federation/v1/files`: on to the backend, streamed, into the
/// partner's inbox folder and within its daily quota.
async fn upload(
    gw: &HyperGateway,
    x: &mut Exchange,
    partner: &crate::store::partners::PartnerRecord,
    principal: Arc<str>,
    expected: [u8; 32],
) -> Result<http::Response<hyper::body::Incoming>, Stop> {
    if !x.head.headers.contains_key(http::header::CONTENT_LENGTH) {
        return Err(Stop::Reject(Rejection::new(
            411,
            "about:blank",
            "a federation file upload needs a Content-Length",
            "length_required",
        )));
    }
    x.ctx.identity = Some(crate::auth::Identity {
        principal,
        scopes: Arc::from(vec!["files:write".to_string()]),
        scopes_header: Arc::from("files:write"),
        rate_limit: None,
        senders: None,
    });
    x.head.uri = http::Uri::from_static(crate::backend_client::paths::FILES);
    x.ctx.body =
        gw.p.limits
            .check_request(&x.head.method, &x.head.uri, &x.head.headers)
            .map_err(Stop::Reject)?;
    let target =
        gw.p.federation
            .inboxes
            .admit(partner, &x.head.headers)
            .await
            .map_err(Stop::Reject)?;
    x.head.headers.insert("x-folder", target.folder);
    x.ctx.quota = target.reservation;
    gw.forward(x, Some(DigestGuard::new(expected))).await
}

/// `POST /federation/v1/deliveries` and `/receipts`: a small JSON body,
/// read whole (bounded), checked against its digest, handled on the
/// federation runtime, answered signed.
async fn local_call(gw: &HyperGateway, x: &mut Exchange, gate: Gate, expected: [u8; 32]) -> Stop {
    let Some(mut incoming) = x.body.take() else {
        return Stop::Problem(Problem::new(500, None));
    };
    let mut body = Vec::new();
    let mut meter = mft_filters::limits::BodyMeter::new(MAX_FEDERATION_JSON);
    let idle = gw.p.limits.body_idle_timeout;
    let mut floor = gw.p.limits.min_body_rate.map(RateFloor::new);
    loop {
        let frame = match next_frame(&mut incoming, idle, floor.as_mut()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Err(Waited::TooSlow(r)) => {
                x.error = Some("client_body_too_slow");
                x.body = Some(incoming);
                return Stop::Reject(r);
            }
            Ok(Some(Err(e))) => {
                tracing::debug!(request_id = %x.ctx.id, error = %e, "federation body failed");
                x.error = Some("client_body");
                return Stop::Problem(Problem::new(
                    400,
                    Some(super::rescue::detail_for(400).into()),
                ));
            }
            Err(Waited::Idle) => {
                x.error = Some("client_body_stalled");
                return Stop::Problem(Problem::new(
                    400,
                    Some(super::rescue::detail_for(400).into()),
                ));
            }
        };
        if let Ok(chunk) = frame.into_data() {
            if let Err(r) = meter.add(chunk.len()) {
                x.body = Some(incoming);
                return Stop::Reject(r);
            }
            body.extend_from_slice(&chunk);
        }
    }
    let call = LocalCall {
        ok: &gate.ok,
        authority: &gate.authority,
        path: &gate.path,
        request_id: &x.ctx.id,
        client_ip: x.ctx.client.map(|a| a.ip()),
        body,
        expected,
    };
    match gw.p.trust.answer_local(call).await {
        LocalAnswer::Signed(status, body, headers) => Stop::Json(status, body, headers),
        LocalAnswer::Refused(r) => Stop::Reject(r),
        LocalAnswer::Problem(p) => Stop::Problem(p),
    }
}

/// A partner upload the backend stored keeps its bytes counted against the
/// partner's daily quota; any other outcome gives them back (when the
/// request state is dropped). Both engines' logging phases call this.
pub fn settle_quota(ctx: &RequestCtx, status: u16, failed: bool) {
    if let Some(reservation) = ctx.quota.as_ref() {
        if (200..300).contains(&status) && !failed {
            reservation.keep();
        }
    }
}

/// Tells the trust network about a created delivery (the relay reads the
/// feed now) and about a complete download (a partner's file owes a
/// receipt). Both only start work elsewhere; nothing waits here.
pub fn trust_hooks(
    trust: &Federation,
    method: &http::Method,
    path: &str,
    status: u16,
    ctx: &RequestCtx,
) {
    let path = path.strip_suffix('/').unwrap_or(path);
    if status == 201
        && method == http::Method::POST
        && path == crate::backend_client::paths::DELIVERIES
    {
        trust.delivery_created();
    } else if status == 200 && method == http::Method::GET {
        let partner = ctx
            .identity
            .as_ref()
            .is_some_and(|i| i.principal.starts_with("partner:"));
        let file = path
            .strip_prefix(crate::backend_client::paths::FILES)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.strip_suffix("/content"))
            .filter(|id| !id.is_empty() && !id.contains('/'));
        if let (Some(id), false) = (file, partner) {
            let principal = ctx.identity.as_ref().map(|i| &*i.principal);
            trust.file_downloaded(id, principal);
        }
    }
}
