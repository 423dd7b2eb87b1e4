//! Header values of draft-ietf-httpapi-ratelimit-headers: structured-field
//! lists whose members are the policy name with parameters.

use super::{Limit, Scope};
use std::fmt::Write;
use std::time::Duration;

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
    // Infallible: writing to a String.
    let _ = write!(
        s,
        "\"{}\";q={};w={}",
        scope.as_str(),
        limit.burst(),
        whole_seconds_up(limit.refill_time()).max(1)
    );
    s
}

/// One `RateLimit` member: `"key";r=42;t=1`.
pub fn state_item(scope: Scope, remaining: u32, reset: Duration) -> String {
    let mut s = String::with_capacity(24);
    let _ = write!(
        s,
        "\"{}\";r={};t={}",
        scope.as_str(),
        remaining,
        whole_seconds_up(reset)
    );
    s
}
