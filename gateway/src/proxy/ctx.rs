//! Per-request state carried across the proxy phases.

use super::limits::BodyWatch;
use super::routes::Route;
use crate::auth::Identity;
use crate::drain::InFlightGuard;
use crate::ratelimit::RateHeaders;
use mft_filters::decision::Rejection;
use std::time::{Duration, Instant};

/// State of one request.
pub struct RequestCtx {
    /// Our request id (UUID v7: sortable by time), sent to the backend and the client.
    pub id: String,
    /// When the request header was read.
    pub started: Instant,
    /// What serves this request.
    pub route: Route,
    /// When we asked for an upstream connection.
    pub upstream_started: Option<Instant>,
    /// Time from asking for an upstream connection to its response header.
    pub upstream_time: Option<Duration>,
    /// Who is calling, once authenticated.
    pub identity: Option<Identity>,
    /// The client's address, read once per request in `request_filter`.
    pub client: Option<std::net::SocketAddr>,
    /// What to watch while the request body streams.
    pub body: BodyWatch,
    /// The signed `Content-Digest` a federation upload must match.
    pub digest: Option<super::digest_guard::DigestGuard>,
    /// A sender-bound key's delivery, held until its sender is checked
    /// (pingora engine; the hyper engine reads it ahead instead).
    pub sender: Option<super::sender_binding::SenderGuard>,
    /// A partner upload's bytes counted against its daily quota, kept once
    /// the backend stored the file, given back otherwise.
    pub quota: Option<crate::trust::inbox::Reservation>,
    /// Why the body was refused mid-stream, answered by `fail_to_proxy`.
    pub body_rejection: Option<Rejection>,
    /// `RateLimit-Policy` / `RateLimit` of the limits this request passed.
    pub rate_headers: RateHeaders,
    /// Why an authenticated request was refused after authentication (e.g.
    /// `rate_limited`), for its audit record.
    pub reject_reason: Option<&'static str>,
    /// Keeps the request counted for graceful shutdown.
    pub _in_flight: InFlightGuard,
}
