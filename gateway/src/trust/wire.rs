//! What federation requests and answers look like on the wire, shared by
//! both sides of a connection.
//!
//! Requests: `Authorization: Bearer mgp_...` plus an RFC 9421 signature
//! (hmac-sha256 with the key derived from the bearer key's secret, `keyid`
//! = the key's public id) over method, authority, path, query,
//! `x-request-id` and, with a body, `content-digest`. Answers: a signature
//! with the same key over the request's method, authority and path plus the
//! answer's `x-request-id`, `x-mft-request-nonce` (the request signature's
//! nonce, echoed) and `content-digest` of the answer.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mft_filters::signing::{
    RequestView, SignError, SignatureHeaders, Signer, SigningKey, Verified, Verifier, VerifyError,
    VerifyPolicy,
};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};

/// `GET` here answers who we are, signed.
pub const PING_PATH: &str = "/federation/v1/ping";

/// Header carrying the request nonce in an answer.
pub const REQUEST_NONCE: &str = "x-mft-request-nonce";

/// Validity of a federation signature.
pub const SIGNATURE_TTL: Duration = Duration::from_secs(60);

/// `sha-256=:<base64>:` (RFC 9530) of `body`.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)))
}

/// The `nonce` parameter of a `Signature-Input` value we produced.
pub fn nonce_of(signature_input: &str) -> Option<&str> {
    let start = signature_input.find(";nonce=\"")? + ";nonce=\"".len();
    let rest = &signature_input[start..];
    rest.find('"').map(|end| &rest[..end])
}

fn signer(key: &[u8; 32], key_id: &str) -> Result<Signer, SignError> {
    let key = SigningKey::hmac(key, Some(key_id)).map_err(|_| SignError::Random)?;
    Ok(Signer::new(key, SIGNATURE_TTL))
}

/// Signs a request.
pub fn sign_request(
    key: &[u8; 32],
    key_id: &str,
    view: &RequestView<'_>,
) -> Result<SignatureHeaders, SignError> {
    signer(key, key_id)?.sign(view, SystemTime::now())
}

/// Verifies a request or answer signature made with `key`.
pub fn verify(
    key: &[u8; 32],
    key_id: &str,
    skew: Duration,
    view: &RequestView<'_>,
    signature_input: Option<&str>,
    signature: Option<&str>,
) -> Result<Verified, VerifyError> {
    let verifying = mft_filters::signing::VerifyingKey::hmac(key, Some(key_id))
        .map_err(|_| VerifyError::Malformed("unusable partner key"))?;
    let verifier = Verifier::new(
        vec![verifying],
        VerifyPolicy {
            max_window: SIGNATURE_TTL * 2,
            clock_skew: skew,
        },
    )
    .map_err(|_| VerifyError::Malformed("unusable partner key"))?;
    verifier.verify(view, signature_input, signature, SystemTime::now())
}

/// The view an answer is signed over: the request's method, authority and
/// path, the echoed nonce and the answer's digest.
pub fn answer_view<'a>(
    method: &'a str,
    authority: &'a str,
    path: &'a str,
    fields: &'a [(&'a str, &'a str)],
) -> RequestView<'a> {
    RequestView {
        method,
        authority,
        path,
        query: None,
        fields,
    }
}

/// Signs an answer.
pub fn sign_answer(
    key: &[u8; 32],
    key_id: &str,
    view: &RequestView<'_>,
) -> Result<SignatureHeaders, SignError> {
    signer(key, key_id)?.sign(view, SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_and_tamper() {
        let key = [5u8; 32];
        let view = RequestView {
            method: "GET",
            authority: "partner.example:443",
            path: PING_PATH,
            query: None,
            fields: &[("x-request-id", "r1")],
        };
        let s = sign_request(&key, "abc", &view).unwrap();
        let nonce = nonce_of(&s.signature_input).unwrap();
        assert!(nonce.len() >= 16);
        let ok = verify(
            &key,
            "abc",
            Duration::from_secs(5),
            &view,
            Some(&s.signature_input),
            Some(&s.signature),
        )
        .unwrap();
        assert_eq!(ok.nonce, nonce);
        let other_path = RequestView {
            path: "/federation/v1/deliveries",
            ..view
        };
        assert!(verify(
            &key,
            "abc",
            Duration::from_secs(5),
            &other_path,
            Some(&s.signature_input),
            Some(&s.signature)
        )
        .is_err());
        assert!(verify(
            &[6u8; 32],
            "abc",
            Duration::from_secs(5),
            &view,
            Some(&s.signature_input),
            Some(&s.signature)
        )
        .is_err());
    }

    #[test]
    fn digest_is_rfc9530() {
        assert_eq!(
            content_digest(b"{\"hello\": \"world\"}\n"),
            "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
        );
    }
}
