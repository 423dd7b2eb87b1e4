//! The trust network: 1:1 connections between organisations' gateways.
//!
//! Each connection has two keys, one per direction (`mgp_<id>_<secret>`):
//! the one we generated for the partner (stored hashed, see
//! [`crate::store::partners`]) and the one they generated for us (sealed at
//! rest, [`seal`]). A federation request carries the key as a bearer
//! credential and an RFC 9421 signature made with an HMAC key derived from
//! it ([`wire`]); the answer is signed with the same derived key and echoes
//! the request's nonce, so the caller knows the answer is fresh and comes
//! from the holder of that connection.

pub mod connections;
pub mod directory;
pub mod federation_api;
pub mod inbound;
pub mod inbox;
pub mod metrics;
pub mod outbound;
pub mod partner_client;
pub mod receipts;
pub mod relay;
pub mod seal;
pub mod services;

// Pure wire formats, in mft-filters so the fuzz targets build without the
// gateway (docs/reliability.md).
pub use mft_filters::trust::{messages, wire};

/// How relays and receipts retry: from `relay_retry_base`, doubling up to
/// `relay_retry_max`, for as long as it takes.
pub fn retry_policy(trust: &mft_config::trust::Trust) -> crate::backend_client::RetryPolicy {
    crate::backend_client::RetryPolicy {
        attempts: u32::MAX,
        base: trust.relay_retry_base,
        max: trust.relay_retry_max,
    }
}

/// The audit record of an outbound federation outcome (a relay, a receipt)
/// for `partner`, keyed by the relay id.
pub fn outbound_audit(
    event: &'static str,
    relay_id: &str,
    partner: &str,
    path: &str,
    decision: &'static str,
    reason: Option<&str>,
) -> crate::audit::AuditRecord {
    let mut r = crate::audit::AuditRecord::new(event);
    r.request_id = Some(relay_id.to_string());
    r.principal = Some(format!("partner:{partner}"));
    r.path = Some(path.to_string());
    r.decision = Some(decision);
    r.reason = reason.map(|s| s.chars().take(300).collect());
    r
}
