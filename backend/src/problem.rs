//! Request-level errors as RFC 9457 problem details.
//!
//! Handlers return [`ApiError`]; [`finish_problems`] runs around every route
//! so that the `request_id` member is filled in one place and so that the
//! framework's own error responses (405, extractor rejections, 416 from the
//! file server) leave as `application/problem+json` too.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mft_filters::problem::{Problem, CONTENT_TYPE};
use mft_filters::problem_types as pt;
use serde::Serialize;

/// Largest framework error body read back to become a problem `detail`.
const MAX_PLAIN_ERROR_BODY: usize = 4096;

/// A failed request, rendered as problem details. Boxed so that
/// `Result<_, ApiError>` stays one pointer wide on the happy path.
#[derive(Debug, Clone)]
pub struct ApiError(Box<Inner>);

#[derive(Debug, Clone)]
struct Inner {
    problem: Problem,
    field: Option<String>,
    headers: HeaderMap,
}

/// The body: the shared [`Problem`] plus this backend's `field` extension
/// member, which names the offending request field for 400/422 answers.
#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(flatten)]
    problem: &'a Problem,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// A problem with `status` and a human-readable `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        let mut problem = Problem::new(status.as_u16(), Some(detail.into()));
        if problem.title == "Error" {
            // The shared table lacks a few statuses this backend uses (423, 507).
            if let Some(reason) = status.canonical_reason() {
                problem.title = reason.to_string();
            }
        }
        ApiError(Box::new(Inner {
            problem,
            field: None,
            headers: HeaderMap::new(),
        }))
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404: nothing with that id.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no {what} with id {id:?}"))
            .with_type(pt::NOT_FOUND)
    }

    /// 500: something on our side failed; the detail stays generic because
    /// the cause (paths, SQL) is for the log, not the caller.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the backend could not complete the request; see its log",
        )
    }

    /// Sets the problem type URI.
    pub fn with_type(mut self, kind: &str) -> Self {
        self.0.problem.kind = kind.to_string();
        self
    }

    /// Names the request field that is wrong (`recipients[1]`, `X-Filename`).
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.0.field = Some(field.into());
        self
    }

    /// Adds a response header (for example `Allow` or `Tus-Version`).
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.0.headers.insert(name, value);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn body(&self) -> Vec<u8> {
        let body = ProblemBody {
            problem: &self.0.problem,
            field: self.0.field.as_deref(),
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| self.0.problem.to_json())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.0.problem.status, self.0.problem.title)?;
        if let Some(detail) = &self.0.problem.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "database operation failed");
        ApiError::internal()
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull {
            tracing::error!(error = %e, "data directory is full");
            return ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "the backend's disk is full",
            );
        }
        tracing::error!(error = %e, "file operation failed");
        ApiError::internal()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.body()).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response.headers_mut().extend(self.0.headers.clone());
        response.extensions_mut().insert(self);
        response
    }
}

/// Fallback for unknown routes.
pub async fn not_found_route(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

/// Middleware: adds `request_id` to problems and turns any other error
/// response into a problem.
pub async fn finish_problems(req: Request, next: Next) -> Response {
    let request_id = request_id(req.headers());
    let response = next.run(req).await;
    if !response.status().is_client_error() && !response.status().is_server_error() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let error = match parts.extensions.remove::<ApiError>() {
        Some(error) => {
            if request_id.is_none() {
                return Response::from_parts(parts, body);
            }
            error
        }
        None => {
            // A framework response: keep its status and headers (Allow,
            // Content-Range), and its short plain-text reason as the detail.
            let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR_BODY)
                .await
                .ok()
                .and_then(|b| String::from_utf8(b.to_vec()).ok())
                .filter(|s| !s.trim().is_empty());
            let status = parts.status;
            let detail = text.unwrap_or_else(|| default_detail(status).to_string());
            ApiError::new(status, detail)
        }
    };
    let mut error = error;
    if let Some(id) = request_id {
        error.0.problem.request_id = Some(id);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Response::from_parts(parts, Body::from(error.body()))
}

fn default_detail(status: StatusCode) -> &'static str {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed on this resource; see Allow",
        StatusCode::RANGE_NOT_SATISFIABLE => "the requested range is outside the file",
        StatusCode::PRECONDITION_FAILED => "a precondition header did not match",
        StatusCode::NOT_FOUND => "not found",
        _ => "request failed",
    }
}

/// The caller's `X-Request-Id`, if it is printable.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 200)
        .map(str::to_string)
}
