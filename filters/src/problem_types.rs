//! Every problem type (RFC 9457 `type`) the gateway and the reference
//! backend answer with, in one place. Clients of ours (the gateway's backend
//! client, partner gateways, the bridges) match on these constants, never on
//! the `detail` text, which is for people and may change.

/// 401: no credential, or one that is not valid.
pub const UNAUTHENTICATED: &str = "urn:mft:problem:unauthenticated";
/// 403: the credential lacks the scope the route needs.
pub const INSUFFICIENT_SCOPE: &str = "urn:mft:problem:insufficient-scope";
/// 403: no scope grants this route.
pub const ROUTE_NOT_GRANTED: &str = "urn:mft:problem:route-not-granted";
/// 429: the brute-force defender banned the client.
pub const BANNED: &str = "urn:mft:problem:banned";
/// 429: over a rate limit.
pub const RATE_LIMITED: &str = "urn:mft:problem:rate-limited";
/// 503: the shared rate-limit state cannot be reached and the operator chose to refuse.
pub const RATE_LIMIT_UNAVAILABLE: &str = "urn:mft:problem:rate-limit-unavailable";
/// 503: the key store cannot be reached for a key not in the cache.
pub const AUTH_UNAVAILABLE: &str = "urn:mft:problem:auth-unavailable";
/// 403: a sender the key may not use.
pub const SENDER_NOT_ALLOWED: &str = "urn:mft:problem:sender-not-allowed";
/// 400: a body that does not match its `Content-Digest`.
pub const DIGEST_MISMATCH: &str = "urn:mft:problem:digest-mismatch";
/// 400: a `Content-Digest` that cannot be checked.
pub const INVALID_DIGEST: &str = "urn:mft:problem:invalid-digest";
/// 413: a body over its limit.
pub const BODY_TOO_LARGE: &str = "urn:mft:problem:body-too-large";
/// 408: a request body sent more slowly than `[limits] min_body_rate`.
pub const BODY_TOO_SLOW: &str = "urn:mft:problem:body-too-slow";
/// 414 or 431: request line or header fields over their limits.
pub const HEAD_TOO_LARGE: &str = "urn:mft:problem:request-head-too-large";
/// 400: a refused file or folder name (gateway).
pub const INVALID_NAME: &str = "urn:mft:problem:invalid-name";
/// 403: an upload outside the partner's inbox.
pub const FOLDER_NOT_ALLOWED: &str = "urn:mft:problem:folder-not-allowed";
/// 429: an upload past the partner's daily quota.
pub const QUOTA_EXCEEDED: &str = "urn:mft:problem:quota-exceeded";
/// 403: the partner has not yet set our key (federation; transient).
pub const PARTNER_PENDING: &str = "urn:mft:problem:partner-pending";
/// 403: a recipient outside the partner's e-mail domains (federation).
pub const DOMAIN_RULE: &str = "urn:mft:problem:domain-rule";
/// 400: a delivery that cannot be accepted (federation and backend).
pub const INVALID_DELIVERY: &str = "urn:mft:problem:invalid-delivery";
/// 400: a receipt that cannot be accepted (federation and backend).
pub const INVALID_RECEIPT: &str = "urn:mft:problem:invalid-receipt";
/// 400: a relay record the backend cannot accept.
pub const INVALID_RELAY: &str = "urn:mft:problem:invalid-relay";
/// 404: no such file.
pub const UNKNOWN_FILE: &str = "urn:mft:problem:unknown-file";
/// 404: no such relay (federation receipts).
pub const UNKNOWN_RELAY: &str = "urn:mft:problem:unknown-relay";
/// 503: the gateway's store cannot be reached (federation).
pub const STORE_UNAVAILABLE: &str = "urn:mft:problem:store-unavailable";
/// 502/503: the backend cannot be reached (federation).
pub const BACKEND_UNAVAILABLE: &str = "urn:mft:problem:backend-unavailable";
/// 400: a query parameter the backend cannot read.
pub const INVALID_PARAMETER: &str = "urn:mft:problem:invalid-parameter";
/// 409/422: an idempotency key reused with a different request (backend).
pub const IDEMPOTENCY_KEY_REUSED: &str = "urn:mft:problem:idempotency-key-reused";
/// 403: an endpoint only the gateway's signed requests may call (backend).
pub const GATEWAY_ONLY: &str = "urn:mft:problem:gateway-only";
/// 460: a tus chunk whose checksum does not match (backend).
pub const CHECKSUM_MISMATCH: &str = "urn:mft:problem:checksum-mismatch";
/// 404: no such route (backend).
pub const NOT_FOUND: &str = "urn:mft:problem:not-found";
/// 412: a tus version the backend does not speak.
pub const TUS_VERSION: &str = "urn:mft:problem:tus-version";
/// 400: a file name the backend refuses.
pub const INVALID_FILENAME: &str = "urn:mft:problem:invalid-filename";
/// 400: a folder name the backend refuses.
pub const INVALID_FOLDER: &str = "urn:mft:problem:invalid-folder";
/// 401: the backend refused the gateway's RFC 9421 signature.
pub const SIGNATURE: &str = "urn:mft:problem:signature";

/// 400: a message recipient the transport provider does not take
/// (`POST /admin/v1/messages`, docs/transports.md).
pub const INVALID_RECIPIENT: &str = "urn:mft:problem:invalid-recipient";

/// Every problem type above (documented in docs/; see the test).
pub const ALL: &[&str] = &[
    UNAUTHENTICATED,
    INSUFFICIENT_SCOPE,
    ROUTE_NOT_GRANTED,
    BANNED,
    RATE_LIMITED,
    RATE_LIMIT_UNAVAILABLE,
    AUTH_UNAVAILABLE,
    SENDER_NOT_ALLOWED,
    DIGEST_MISMATCH,
    INVALID_DIGEST,
    BODY_TOO_LARGE,
    BODY_TOO_SLOW,
    HEAD_TOO_LARGE,
    INVALID_NAME,
    FOLDER_NOT_ALLOWED,
    QUOTA_EXCEEDED,
    PARTNER_PENDING,
    DOMAIN_RULE,
    INVALID_DELIVERY,
    INVALID_RECEIPT,
    INVALID_RELAY,
    UNKNOWN_FILE,
    UNKNOWN_RELAY,
    STORE_UNAVAILABLE,
    BACKEND_UNAVAILABLE,
    INVALID_PARAMETER,
    IDEMPOTENCY_KEY_REUSED,
    GATEWAY_ONLY,
    CHECKSUM_MISMATCH,
    NOT_FOUND,
    TUS_VERSION,
    INVALID_FILENAME,
    INVALID_FOLDER,
    SIGNATURE,
    INVALID_RECIPIENT,
];

#[cfg(test)]
mod tests {
    use super::ALL;

    #[test]
    fn every_problem_type_is_documented_and_unique() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs");
        let mut docs = String::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md" || e == "yaml") {
                docs.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
        let missing: Vec<_> = ALL.iter().filter(|t| !docs.contains(**t)).collect();
        assert!(missing.is_empty(), "not in docs/: {missing:?}");
        let mut seen = std::collections::HashSet::new();
        assert!(ALL.iter().all(|t| seen.insert(*t)), "a type twice");
    }
}
