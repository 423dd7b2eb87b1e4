//! One log line per request, tagged with the gateway's request id so an
//! operator can follow a request across both processes.

use crate::problem::request_id;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::Instrument;

/// Middleware: logs method, path, status and duration inside a span.
pub async fn log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = tracing::field::Empty,
    );
    if let Some(id) = request_id(req.headers()) {
        span.record("request_id", id.as_str());
    }
    async move {
        let response = next.run(req).await;
        let status = response.status().as_u16();
        let ms = started.elapsed().as_millis() as u64;
        if response.status().is_server_error() {
            tracing::warn!(status, ms, "request failed");
        } else {
            tracing::info!(status, ms, "request");
        }
        response
    }
    .instrument(span)
    .await
}
