//! The HTTPS request path (docs/architecture.md).
//!
//! The hyper engine, one step per file in the order a request meets them:
//! [`listener`] (accept loop) → [`accept`] (connection cap, TLS, h1/h2) →
//! [`service`] running
//! [`head_checks`] → [`routes`] → [`identity`] (or [`federation`]) →
//! [`limits`] → [`sign`] → [`forward`] (bodies through [`body`]) →
//! [`respond`]. Shared by both engines: [`ctx`], [`limits`],
//! the multipart guard (`mft_protocols::multipart`), [`digest_guard`],
//! [`sign`].
//!
//! [`pingora`]: the previous engine, pingora's `ProxyHttp` phases
//! (`http_engine = "pingora"`, kept for one release), with [`upstream`] and
//! [`rescue`].

pub mod accept;
pub mod backend_path;
pub mod body;
pub mod body_rate;
pub mod ctx;
pub mod digest_guard;
pub mod federation;
pub mod forward;
pub mod head_checks;
pub mod identity;
pub mod limits;
pub mod lingering_close;
pub mod listener;
pub mod names;
pub mod pingora;
pub mod pool;
pub mod rescue;
pub mod respond;
pub mod routes;
pub mod sender_binding;
pub mod service;
pub mod sign;
pub mod upstream;

use crate::audit::AuditLog;
use crate::auth::Authenticator;
use crate::drain::InFlight;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use http::header::HeaderName;
use limits::InputLimits;
use std::sync::Arc;
use upstream::Upstream;

pub use pingora::GatewayProxy;

/// Request headers the client may not pass to the backend: credentials are
/// ours to check and never forwarded; the rest we set ourselves.
pub(crate) static STRIPPED: [HeaderName; 6] = [
    http::header::AUTHORIZATION,
    names::X_API_KEY,
    names::X_REQUEST_ID,
    http::header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
];

/// Everything the proxy phases need.
pub struct ProxyParts {
    /// The backend as a pingora peer; `None` in DMZ mode, where the gateway
    /// never dials the backend (only the hyper engine carries it).
    pub upstream: Option<Upstream>,
    /// The decision chain.
    pub auth: Arc<Authenticator>,
    /// The audit trail.
    pub audit: AuditLog,
    /// In-flight counter for graceful shutdown.
    pub in_flight: InFlight,
    /// Whether to write access lines.
    pub access_log: bool,
    /// HTTP/1.1 keep-alive in seconds.
    pub keepalive_secs: u64,
    /// Request size limits and upload-name checks.
    pub limits: InputLimits,
    /// Per-IP and per-principal rate limits.
    pub rate_limiter: Arc<RateLimiter>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// RFC 9421 signing toward the backend; `None` forwards unsigned.
    pub signer: Option<Arc<sign::RequestSigner>>,
    /// Trust-partner authentication for `/federation/v1/`.
    pub federation: Arc<crate::trust::inbound::PartnerGate>,
    /// Relay, receipts and the federation endpoints answered here.
    pub trust: Arc<crate::trust::services::Federation>,
    /// `Strict-Transport-Security` for every answer (`[server.hsts]`).
    pub hsts: Option<http::HeaderValue>,
}

/// `Forwarded: for=...;proto=https;host=...` (RFC 7239); IPv6 needs quotes and brackets.
pub(crate) fn forwarded_value(client: Option<std::net::SocketAddr>, host: Option<&str>) -> String {
    let mut v = String::with_capacity(48 + host.map_or(0, str::len));
    match client {
        // Written by hand: `format!` with an address's `Display` costs
        // more than the rest of this function on every request.
        Some(std::net::SocketAddr::V4(a)) => {
            v.push_str("for=");
            let mut digits = itoa::Buffer::new();
            for (i, octet) in a.ip().octets().iter().enumerate() {
                if i > 0 {
                    v.push('.');
                }
                v.push_str(digits.format(*octet));
            }
        }
        Some(std::net::SocketAddr::V6(a)) => {
            use std::fmt::Write;
            // Writing to a String cannot fail.
            let _ = write!(v, "for=\"[{}]\"", a.ip());
        }
        None => v.push_str("for=unknown"),
    }
    v.push_str(";proto=https");
    if let Some(h) = host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"')) {
        v.push_str(";host=\"");
        v.push_str(h);
        v.push('"');
    }
    v
}

/// Whether the client's field `name` stays at the gateway: [`STRIPPED`],
/// hop-by-hop, or one the client may not send.
pub(crate) fn never_forwarded(name: &HeaderName) -> bool {
    // [`STRIPPED`] as one match on the text, like `is_hop_by_hop` (the
    // two `x-forwarded-*` entries are the prefix rule's); tested equal.
    matches!(
        name.as_str(),
        "authorization" | "x-api-key" | "x-request-id" | "forwarded"
    ) || forward::is_hop_by_hop(name)
        || client_may_not_send(name)
}

/// Header fields a client may not pre-set beyond [`STRIPPED`]: the
/// identity fields are the gateway's, and `X-Forwarded-Host` and friends
/// would let a client tell the backend a story the signature does not
/// vouch for.
pub(crate) fn client_may_not_send(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("x-mft-") || n.starts_with("x-forwarded-")
}

/// The host the client addressed: the URI's authority (h2, absolute form)
/// or its `Host` field, for `Forwarded: host=`.
pub(crate) fn original_host(uri: &http::Uri, headers: &http::HeaderMap) -> Option<String> {
    uri.authority().map(|a| a.as_str().to_string()).or_else(|| {
        headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
    })
}

/// Milliseconds with microsecond precision, for log lines a human reads.
pub(crate) fn ms(d: std::time::Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_matches_equal_the_lists() {
        let listed = |n: &HeaderName| STRIPPED.contains(n) || forward::HOP_BY_HOP.contains(n);
        let mut names: Vec<HeaderName> = STRIPPED.to_vec();
        names.extend(forward::HOP_BY_HOP.iter().cloned());
        for other in [
            "host",
            "accept",
            "content-length",
            "content-type",
            "x-mft-scopes",
            "x-forwarded-host",
            "x-api-keys",
            "t",
            "tea",
            "upgrade-insecure-requests",
            "content-digest",
            "user-agent",
        ] {
            names.push(HeaderName::from_static(other));
        }
        for n in &names {
            assert_eq!(
                never_forwarded(n),
                listed(n) || client_may_not_send(n),
                "{n}"
            );
            assert_eq!(
                forward::is_hop_by_hop(n),
                forward::HOP_BY_HOP.contains(n),
                "{n}"
            );
        }
    }

    #[test]
    fn forwarded_quotes_ipv6_and_host() {
        let v4 = "10.1.2.3:5000".parse().ok();
        assert_eq!(
            forwarded_value(v4, Some("gw.example:8443")),
            "for=10.1.2.3;proto=https;host=\"gw.example:8443\""
        );
        let v6 = "[2001:db8::1]:5000".parse().ok();
        assert_eq!(
            forwarded_value(v6, None),
            "for=\"[2001:db8::1]\";proto=https"
        );
        assert_eq!(
            forwarded_value(None, Some("bad\"host")),
            "for=unknown;proto=https"
        );
    }
}
