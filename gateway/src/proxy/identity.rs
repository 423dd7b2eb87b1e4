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
    let request = AuthRequest::from_head(
        &ctx.id,
        ctx.client.map(|a| a.ip()),
        &head.method,
        &head.uri,
        &head.headers,
    );
    let decision = p.auth.authorize(&request).await;
    p.metrics.auth(decision.is_continue());
    decision
}
