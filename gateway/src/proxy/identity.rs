//! Step 4 of the hyper engine: who is calling and may they do this
//! (API key or JWT, scope for the route, defender ban).

use super::ctx::RequestCtx;
use super::ProxyParts;
use crate::auth::{AuthRequest, Identity};
use mft_filters::decision::Decision;

/// Authenticates and authorizes an `/api/v1/` request, counted in metrics.
pub async fn authorize(
    p: &ProxyParts,
    ctx: &RequestCtx,
    head: &http::request::Parts,
) -> Decision<Identity> {
    let request = AuthRequest {
        request_id: &ctx.id,
        method: head.method.as_str(),
        path: head.uri.path(),
        client_ip: ctx.client.map(|a| a.ip()),
        authorization: head
            .headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
        x_api_key: head.headers.get("x-api-key").map(|v| v.as_bytes()),
    };
    let decision = p.auth.authorize(&request).await;
    p.metrics.auth(decision.is_continue());
    decision
}
