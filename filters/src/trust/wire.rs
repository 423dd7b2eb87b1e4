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

use crate::signing::{
    RequestView, SignError, SignatureHeaders, Signer, SigningKey, Verified, Verifier, VerifyError,
    VerifyPolicy,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};

/// `GET` here answers who we are, signed.
pub const PING_PATH: &str = "/federation/v1/ping";

/// `POST` here streams one file of a relayed delivery (raw body,
/// `Content-Digest` required); proxied to the backend's `/api/v1/files`.
pub const FILES_PATH: &str = "/federation/v1/files";

/// `POST` here creates the delivery of files sent before (JSON).
pub const DELIVERIES_PATH: &str = "/federation/v1/deliveries";

/// `POST` here reports the first download of a relayed file (JSON).
pub const RECEIPTS_PATH: &str = "/federation/v1/receipts";

/// Header carrying the request nonce in an answer.
pub const REQUEST_NONCE: &str = "x-mft-request-nonce";

/// Validity of a federation signature.
pub const SIGNATURE_TTL: Duration = Duration::from_secs(60);

/// `sha-256=:<base64>:` (RFC 9530) of `body`.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)))
}

/// `sha-256=:<base64>:` for a digest known as lower-case hex (a stored
/// file's SHA-256); `None` if `hex` is not 32 bytes of hex.
pub fn content_digest_of_hex(hex: &str) -> Option<String> {
    let raw = hex::decode(hex).ok().filter(|b| b.len() == 32)?;
    Some(format!("sha-256=:{}:", STANDARD.encode(raw)))
}

/// The SHA-256 in a `Content-Digest` value, if it has one (other
/// algorithms are ignored: we only accept sha-256).
pub fn sha256_of_digest(value: &str) -> Option<[u8; 32]> {
    value.split(',').find_map(|item| {
        let (alg, rest) = item.trim().split_once('=')?;
        if !alg.trim().eq_ignore_ascii_case("sha-256") {
            return None;
        }
        let b64 = rest.trim().strip_prefix(':')?.strip_suffix(':')?;
        STANDARD.decode(b64).ok()?.try_into().ok()
    })
}

/// The headers of an answer that its signature check needs.
#[derive(Debug, Default)]
pub struct AnswerHeaders {
    /// `X-Request-Id`.
    pub request_id: String,
    /// `X-MFT-Request-Nonce`: our request's nonce, echoed.
    pub echoed_nonce: Option<String>,
    /// `Signature-Input`.
    pub signature_input: Option<String>,
    /// `Signature`.
    pub signature: Option<String>,
}

impl AnswerHeaders {
    /// Reads them from an answer's header map.
    pub fn of(headers: &http::HeaderMap) -> AnswerHeaders {
        let text = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        AnswerHeaders {
            request_id: text("x-request-id").unwrap_or_default(),
            echoed_nonce: text(REQUEST_NONCE),
            signature_input: text("signature-input"),
            signature: text("signature"),
        }
    }
}

/// Our request an answer must belong to.
pub struct AnswerCheck<'a> {
    /// The request's method, as signed.
    pub method: &'a str,
    /// The request's authority, as signed.
    pub authority: &'a str,
    /// The request's path, as signed.
    pub path: &'a str,
    /// The nonce of our request's signature.
    pub nonce: &'a str,
}

/// Checks that an answer echoes our nonce and is signed with the
/// connection's key over its body.
pub fn verify_answer(
    key: &[u8; 32],
    key_id: &str,
    skew: Duration,
    check: &AnswerCheck<'_>,
    answer: &AnswerHeaders,
    body: &[u8],
) -> Result<(), String> {
    if answer.echoed_nonce.as_deref() != Some(check.nonce) {
        return Err("the request nonce is not echoed".into());
    }
    let digest = content_digest(body);
    let fields = [
        ("x-request-id", answer.request_id.as_str()),
        (REQUEST_NONCE, check.nonce),
        ("content-digest", digest.as_str()),
    ];
    let view = answer_view(check.method, check.authority, check.path, &fields);
    verify(
        key,
        key_id,
        skew,
        &view,
        answer.signature_input.as_deref(),
        answer.signature.as_deref(),
    )
    .map(drop)
    .map_err(|e| e.to_string())
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
    let verifying = crate::signing::VerifyingKey::hmac(key, Some(key_id))
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
    fn digest_from_hex_and_back() {
        let hex = "44aff4ab2d7c3250525675a08f0cfa9591168cffe51791c5f5bbc417c15a6c38";
        let d = content_digest_of_hex(hex).unwrap();
        assert_eq!(d, "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:");
        assert_eq!(hex::encode(sha256_of_digest(&d).unwrap()), hex);
        assert_eq!(
            hex::encode(sha256_of_digest(&format!("md5=:AAAA:, {d}")).unwrap()),
            hex
        );
        assert!(sha256_of_digest("sha-512=:AAAA:").is_none());
        assert!(content_digest_of_hex("abc").is_none());
    }

    #[test]
    fn digest_is_rfc9530() {
        assert_eq!(
            content_digest(b"{\"hello\": \"world\"}\n"),
            "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
        );
    }
}
