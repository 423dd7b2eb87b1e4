//! RFC 9421 HTTP Message Signatures between the gateway and the backend.
//!
//! The gateway signs every request it forwards ([`Signer`]); the backend
//! verifies it ([`Verifier`]) and refuses replays ([`ReplayCache`]). Both
//! sides build the same signature base ([`base`]) from a [`RequestView`], so
//! what the gateway covers is exactly what the backend checks. No I/O here:
//! time comes in as an argument, keys as bytes or PEM text.
//!
//! What is covered, and why (docs/signing.md has the operator's view):
//! `@method`, `@authority`, `@path`, `@query` bind the signature to one
//! operation on one backend; `x-request-id` makes every base unique;
//! `x-mft-principal` / `x-mft-scopes` (and any other `x-mft-*` field) carry
//! the identity the backend trusts; `content-length` / `content-digest`
//! bind the body's size or digest when the request has them.

pub mod base;
pub mod keys;
pub mod params;
pub mod replay;
pub mod sign;
pub mod verify;

pub use keys::{KeyError, SigningKey, VerifyingKey};
pub use params::SignParams;
pub use replay::ReplayCache;
pub use sign::{SignError, SignatureHeaders, Signer};
pub use verify::{Verified, Verifier, VerifyError, VerifyPolicy};

/// The label of the gateway's signature in `Signature-Input` / `Signature`.
pub const LABEL: &str = "mft";

/// The `tag` parameter the gateway signs and the verifier requires: it ties a
/// signature to this application, so one made with the same key for some
/// other purpose is not accepted here.
pub const TAG: &str = "mft-gateway";

/// Default validity of a gateway signature (`expires - created`).
pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// A signature algorithm from the RFC 9421 registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `hmac-sha256`: a shared secret.
    HmacSha256,
    /// `ed25519`: the backend holds only the public key.
    Ed25519,
}

impl Algorithm {
    /// The registry name, as in the `alg` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    /// Parses a registry name; `None` for any algorithm we do not support.
    pub fn parse(name: &str) -> Option<Algorithm> {
        match name {
            "hmac-sha256" => Some(Algorithm::HmacSha256),
            "ed25519" => Some(Algorithm::Ed25519),
            _ => None,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parts of a request that signatures can cover, as they go on the wire.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Method, upper case as sent.
    pub method: &'a str,
    /// The `Host` the backend sees (`host[:port]`); compared lower-cased.
    pub authority: &'a str,
    /// The path exactly as in the request target (`/` if empty).
    pub path: &'a str,
    /// The query without `?`; `None` when the target has none.
    pub query: Option<&'a str>,
    /// Header fields as `(lower-case name, value)`. The signer covers every
    /// entry in this order; the verifier looks fields up here and joins
    /// repeated names with `", "` (RFC 9421 §2.1).
    pub fields: &'a [(&'a str, &'a str)],
}

/// Whole seconds since the Unix epoch (0 before it).
pub fn unix_seconds(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod rfc9421_vectors;
