//! The admin listener: health now; metrics and the admin API arrive with
//! their issues. Bound to loopback by default and never meant to be public.

use async_trait::async_trait;
use mft_filters::problem::{Problem, CONTENT_TYPE};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

/// Serves `/healthz` on the admin address.
pub struct AdminApp;

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let (status, content_type, body) = match session.req_header().uri.path() {
            "/healthz" => (200, "application/json", br#"{"status":"ok"}"#.to_vec()),
            _ => (404, CONTENT_TYPE, Problem::new(404, None).to_json()),
        };
        let mut response = http::Response::new(body);
        *response.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::NOT_FOUND);
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        response
    }
}
