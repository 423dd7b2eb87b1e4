//! Header values of draft-ietf-httpapi-ratelimit-headers: structured-field
//! lists whose members are the policy name with parameters.

use super::{Limit, Scope};
use http::header::HeaderName;
use std::time::Duration;

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Whole seconds, rounded up: a client that waits this long is never early.
pub fn whole_seconds_up(d: Duration) -> u64 {
    let secs = d.as_secs();
    if d.subsec_nanos() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    }
}

/// `Retry-After` seconds for a refusal: rounded up and at least 1, since
/// "retry after 0 seconds" on a 429 would invite an immediate retry loop.
pub fn retry_after_secs(d: Duration) -> u64 {
    whole_seconds_up(d).max(1)
}

/// One `RateLimit-Policy` member: `"key";q=100;w=2`.
pub fn policy_item(scope: Scope, limit: &Limit) -> String {
    let mut s = String::with_capacity(24);
    write_policy_item(&mut s, scope, limit);
    s
}

/// Appends one `RateLimit-Policy` member to `out`. Written without
/// `format!`: it runs for every limit on every request.
pub fn write_policy_item(out: &mut String, scope: Scope, limit: &Limit) {
    let mut n = itoa::Buffer::new();
    out.push('"');
    out.push_str(scope.as_str());
    out.push_str("\";q=");
    out.push_str(n.format(limit.burst().get()));
    out.push_str(";w=");
    out.push_str(n.format(whole_seconds_up(limit.refill_time()).max(1)));
}

/// One `RateLimit` member: `"key";r=42;t=1`.
pub fn state_item(scope: Scope, remaining: u32, reset: Duration) -> String {
    let mut s = String::with_capacity(24);
    write_state_item(&mut s, scope, remaining, reset);
    s
}

/// Appends one `RateLimit` member to `out`.
pub fn write_state_item(out: &mut String, scope: Scope, remaining: u32, reset: Duration) {
    let mut n = itoa::Buffer::new();
    out.push('"');
    out.push_str(scope.as_str());
    out.push_str("\";r=");
    out.push_str(n.format(remaining));
    out.push_str(";t=");
    out.push_str(n.format(whole_seconds_up(reset)));
}
