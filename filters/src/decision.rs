//! The outcome of a request filter: go on, or answer the client now.

use crate::problem::Problem;
use crate::problem_types as pt;
use crate::ratelimit::{self, Denial, Limit, Scope};
use http::header::{HeaderName, RETRY_AFTER, WWW_AUTHENTICATE};
use std::borrow::Cow;
use std::time::Duration;

/// The realm every `WWW-Authenticate` challenge names.
pub const REALM: &str = "mft-gateway";

/// `WWW-Authenticate` of a plain 401: [`REALM`] as a literal, so a refusal
/// copies one string instead of formatting it (a test keeps the two equal).
const CHALLENGE: &str = "Bearer realm=\"mft-gateway\"";

/// What a filter decided about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<T> {
    /// The request may go on; `T` is what the filter learned (an identity, a scope, ...).
    Continue(T),
    /// The request ends here with this answer.
    Reject(Rejection),
}

impl<T> Decision<T> {
    /// Whether the request may go on.
    pub fn is_continue(&self) -> bool {
        matches!(self, Decision::Continue(_))
    }

    /// Converts into a `Result`, so filters can be chained with `?`.
    pub fn into_result(self) -> Result<T, Rejection> {
        match self {
            Decision::Continue(t) => Ok(t),
            Decision::Reject(r) => Err(r),
        }
    }
}

impl<T> From<Result<T, Rejection>> for Decision<T> {
    fn from(r: Result<T, Rejection>) -> Self {
        match r {
            Ok(t) => Decision::Continue(t),
            Err(r) => Decision::Reject(r),
        }
    }
}

/// An answer that ends a request, split into what the client may see and what
/// only the audit log may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status code.
    pub status: u16,
    /// RFC 9457 problem type URI.
    pub problem_type: &'static str,
    /// Safe for the client: generic, never a secret or a reason that helps an
    /// attacker tell an unknown key from a wrong secret.
    /// Borrowed when it is one of our fixed texts: most refusals (every
    /// 401) then answer without allocating it.
    pub detail: Cow<'static, str>,
    /// Precise reason for the audit log (`unknown_key`, `revoked`, `expired`,
    /// `bad_secret`, `bad_signature`, `malformed_credential`,
    /// `missing_credential`, `missing_scope`, `banned`, ...). Never sent to the client.
    pub audit_reason: &'static str,
    /// Extra response headers; fixed values borrowed, as `detail`.
    pub headers: Vec<(HeaderName, Cow<'static, str>)>,
}

const GENERIC_401: &str = "missing or invalid credentials";

impl Rejection {
    /// Any refusal the named constructors below do not cover: `status` with
    /// `problem_type` (`"about:blank"` when the status says it all), a
    /// client-safe `detail` and the audit-only reason.
    pub fn new(
        status: u16,
        problem_type: &'static str,
        detail: impl Into<Cow<'static, str>>,
        audit_reason: &'static str,
    ) -> Self {
        Rejection {
            status,
            problem_type,
            detail: detail.into(),
            audit_reason,
            headers: Vec::new(),
        }
    }

    /// The same refusal with one more response header.
    pub fn with_header(mut self, name: HeaderName, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The same refusal with `Retry-After`: whole seconds, rounded up, at
    /// least 1 (a client told 0 would retry at once).
    pub fn retry_after(self, after: Duration) -> Self {
        let mut secs = after.as_secs();
        if after.subsec_nanos() > 0 || secs == 0 {
            secs = secs.saturating_add(1);
        }
        self.with_header(RETRY_AFTER, secs.to_string())
    }

    /// 401 with a plain `Bearer` challenge. Every authentication failure gets
    /// the same detail, so the response never tells which part was wrong.
    pub fn unauthenticated(audit_reason: &'static str) -> Self {
        Rejection::new(401, pt::UNAUTHENTICATED, GENERIC_401, audit_reason)
            .with_header(WWW_AUTHENTICATE, CHALLENGE)
    }

    /// 401 for a bearer token that was presented but is not valid (a JWT that
    /// failed verification). RFC 6750 §3.1 asks for `error="invalid_token"`
    /// then, while a request with no credential at all gets no error code, so
    /// use [`Rejection::unauthenticated`] for that case.
    pub fn invalid_token(audit_reason: &'static str) -> Self {
        Rejection {
            headers: vec![(
                WWW_AUTHENTICATE,
                format!("Bearer realm=\"{REALM}\", error=\"invalid_token\"").into(),
            )],
            ..Self::unauthenticated(audit_reason)
        }
    }

    /// 403 for a credential that lacks `scope`. Naming the scope helps an
    /// integrator fix their key and tells an attacker nothing the route does not.
    pub fn forbidden_scope(scope: &str) -> Self {
        let quoted = quote(scope);
        Rejection::new(
            403,
            pt::INSUFFICIENT_SCOPE,
            format!("this request needs the scope {quoted}"),
            "missing_scope",
        )
        .with_header(
            WWW_AUTHENTICATE,
            format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope={quoted}"),
        )
    }

    /// 403 for a route that no rule of the scope policy covers: deny by
    /// default, so a backend route added later is closed until a rule opens it.
    pub fn no_scope_for_route() -> Self {
        Rejection::new(
            403,
            pt::ROUTE_NOT_GRANTED,
            "no scope grants this route",
            "no_route_scope",
        )
    }

    /// 429 from the brute-force defender. `retry_after` is rounded up to whole
    /// seconds (at least 1), so a client that obeys it is never still banned.
    pub fn banned(retry_after: Duration) -> Self {
        Rejection::new(
            429,
            pt::BANNED,
            "too many failed attempts; try again later",
            "banned",
        )
        .retry_after(retry_after)
    }

    /// 429 for a request over the `scope` limit: `Retry-After` (whole
    /// seconds, rounded up, at least 1) and the `RateLimit-Policy` /
    /// `RateLimit` headers of the limit that refused it.
    pub fn too_many_requests(scope: Scope, limit: &Limit, denial: &Denial) -> Self {
        let retry_after = ratelimit::retry_after_secs(denial.retry_after);
        let who = match scope {
            Scope::Ip => "this client address",
            Scope::Key => "this credential",
        };
        Rejection::new(
            429,
            pt::RATE_LIMITED,
            format!("rate limit exceeded for {who}; retry after {retry_after} s"),
            "rate_limited",
        )
        .with_header(RETRY_AFTER, retry_after.to_string())
        .with_header(
            ratelimit::RATELIMIT_POLICY,
            ratelimit::policy_item(scope, limit),
        )
        .with_header(
            ratelimit::RATELIMIT,
            ratelimit::state_item(scope, 0, denial.reset),
        )
    }

    /// 503 when the cluster-wide rate-limit store is unreachable and the
    /// configured policy is to refuse (`on_redis_error = "deny"`).
    pub fn rate_limit_unavailable(retry_after: Duration) -> Self {
        Rejection::new(
            503,
            pt::RATE_LIMIT_UNAVAILABLE,
            "rate limiting is temporarily unavailable; retry shortly",
            "rate_limit_unavailable",
        )
        .with_header(
            RETRY_AFTER,
            ratelimit::retry_after_secs(retry_after).to_string(),
        )
    }

    /// The RFC 9457 body for this rejection.
    pub fn to_problem(&self) -> Problem {
        Problem::new(self.status, Some(self.detail.to_string())).with_type(self.problem_type)
    }
}

/// An RFC 9110 quoted-string, so a configured scope containing `"` or `\`
/// cannot break out of the header parameter.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        // Control characters would let a scope name split the header line.
        if !c.is_control() {
            out.push(c);
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_challenge_names_the_realm() {
        assert_eq!(CHALLENGE, format!("Bearer realm=\"{REALM}\""));
    }

    fn header<'a>(r: &'a Rejection, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    }

    #[test]
    fn unauthenticated_is_generic() {
        let a = Rejection::unauthenticated("unknown_key");
        let b = Rejection::unauthenticated("bad_secret");
        assert_eq!(a.status, 401);
        assert_eq!(a.detail, b.detail);
        assert_eq!(a.headers, b.headers);
        assert_eq!(
            header(&a, "www-authenticate"),
            Some("Bearer realm=\"mft-gateway\"")
        );
        assert_eq!(a.audit_reason, "unknown_key");
        assert_eq!(a.problem_type, pt::UNAUTHENTICATED);
    }

    #[test]
    fn invalid_token_adds_rfc6750_error() {
        let r = Rejection::invalid_token("expired");
        assert_eq!(r.status, 401);
        assert_eq!(r.detail, "missing or invalid credentials");
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer realm=\"mft-gateway\", error=\"invalid_token\"")
        );
    }

    #[test]
    fn forbidden_scope_names_the_scope() {
        let r = Rejection::forbidden_scope("files:write");
        assert_eq!(r.status, 403);
        assert_eq!(r.detail, "this request needs the scope \"files:write\"");
        assert_eq!(r.audit_reason, "missing_scope");
        assert_eq!(
            header(&r, "www-authenticate"),
            Some(
                "Bearer realm=\"mft-gateway\", error=\"insufficient_scope\", scope=\"files:write\""
            )
        );
    }

    #[test]
    fn scope_cannot_break_the_header() {
        let r = Rejection::forbidden_scope("a\"b\\c\r\nx");
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer realm=\"mft-gateway\", error=\"insufficient_scope\", scope=\"a\\\"b\\\\cx\"")
        );
    }

    #[test]
    fn banned_rounds_retry_after_up() {
        let r = Rejection::banned(Duration::from_millis(61_200));
        assert_eq!(r.status, 429);
        assert_eq!(header(&r, "retry-after"), Some("62"));
        assert_eq!(
            header(&Rejection::banned(Duration::ZERO), "retry-after"),
            Some("1")
        );
        assert_eq!(
            header(&Rejection::banned(Duration::from_secs(900)), "retry-after"),
            Some("900")
        );
    }

    #[test]
    fn too_many_requests_carries_retry_after_and_ratelimit_headers() {
        use std::num::NonZeroU32;
        let limit = Limit::new(
            NonZeroU32::new(1).unwrap(),
            Duration::from_secs(60),
            NonZeroU32::new(5).unwrap(),
        )
        .unwrap();
        let denial = Denial {
            retry_after: Duration::from_millis(59_001),
            reset: Duration::from_millis(299_001),
        };
        let r = Rejection::too_many_requests(Scope::Key, &limit, &denial);
        assert_eq!(r.status, 429);
        assert_eq!(r.audit_reason, "rate_limited");
        assert_eq!(r.problem_type, pt::RATE_LIMITED);
        assert_eq!(header(&r, "retry-after"), Some("60"));
        assert_eq!(header(&r, "ratelimit-policy"), Some("\"key\";q=5;w=300"));
        assert_eq!(header(&r, "ratelimit"), Some("\"key\";r=0;t=300"));
        assert!(r.detail.contains("retry after 60 s"), "{}", r.detail);
        let zero = Denial {
            retry_after: Duration::ZERO,
            reset: Duration::ZERO,
        };
        let r = Rejection::too_many_requests(Scope::Ip, &limit, &zero);
        assert_eq!(header(&r, "retry-after"), Some("1"));
        let r = Rejection::rate_limit_unavailable(Duration::from_millis(1));
        assert_eq!((r.status, header(&r, "retry-after")), (503, Some("1")));
    }

    #[test]
    fn problem_body_carries_type_and_detail() {
        let p = Rejection::no_scope_for_route().to_problem();
        assert_eq!(p.status, 403);
        assert_eq!(p.kind, pt::ROUTE_NOT_GRANTED);
        assert_eq!(p.detail.as_deref(), Some("no scope grants this route"));
    }

    #[test]
    fn decision_converts_to_result() {
        let d: Decision<u8> = Decision::Continue(1);
        assert!(d.is_continue());
        assert_eq!(d.into_result(), Ok(1));
        let d: Decision<u8> = Err(Rejection::banned(Duration::from_secs(1))).into();
        assert!(!d.is_continue());
    }
}
