//! A client's `Content-Digest` (RFC 9530): which digests it claims, so the
//! proxy can check them while the body streams.
//!
//! The field is a structured dictionary (`sha-256=:<base64>:, ...`). Only
//! `sha-256` and `sha-512` are checked; other algorithms are ignored, as
//! RFC 9530 §2 lets a recipient do, but a field that claims none of the two
//! is refused: the gateway signs the field toward the backend, and a signed
//! claim nobody checked would read as a checked one.

use crate::decision::Rejection;
use crate::problem_types as pt;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use thiserror::Error;

/// The digests a `Content-Digest` claims, of the algorithms we check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClaimedDigest {
    /// The `sha-256` member.
    pub sha256: Option<[u8; 32]>,
    /// The `sha-512` member.
    pub sha512: Option<[u8; 64]>,
}

/// Why a `Content-Digest` cannot be checked.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DigestFieldError {
    /// A member is not `name=:base64:` (parameters allowed).
    #[error("Content-Digest is not a dictionary of byte sequences")]
    Malformed,
    /// A sha-256 / sha-512 member has a bad base64 value or length.
    #[error("the {0} member of Content-Digest is not a {0} digest")]
    BadValue(&'static str),
    /// The same algorithm twice with different values.
    #[error("Content-Digest names {0} twice")]
    Duplicate(&'static str),
    /// Neither sha-256 nor sha-512.
    #[error("Content-Digest carries neither sha-256 nor sha-512")]
    NoSupportedAlgorithm,
}

impl DigestFieldError {
    /// The 400 answer.
    pub fn rejection(&self) -> Rejection {
        Rejection::new(
            400,
            pt::INVALID_DIGEST,
            format!("{self}; the gateway checks sha-256 and sha-512"),
            "invalid_content_digest",
        )
    }
}

/// The 400 answer to a body whose bytes do not match its `Content-Digest`.
pub fn mismatch() -> Rejection {
    Rejection::new(
        400,
        pt::DIGEST_MISMATCH,
        "the body does not match its Content-Digest",
        "content_digest_mismatch",
    )
}

/// Parses a `Content-Digest` value (all field lines joined by `, `).
pub fn parse(value: &str) -> Result<ClaimedDigest, DigestFieldError> {
    let mut claimed = ClaimedDigest::default();
    for member in value.split(',') {
        let member = member.trim_matches(|c| c == ' ' || c == '\t');
        if member.is_empty() {
            return Err(DigestFieldError::Malformed);
        }
        let (name, rest) = member.split_once('=').ok_or(DigestFieldError::Malformed)?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b))
        {
            return Err(DigestFieldError::Malformed);
        }
        // Parameters after the byte sequence carry nothing we check.
        let item = rest.split(';').next().unwrap_or("");
        let b64 = item
            .strip_prefix(':')
            .and_then(|s| s.strip_suffix(':'))
            .ok_or(DigestFieldError::Malformed)?;
        match name {
            "sha-256" => {
                let d = decode::<32>(b64).ok_or(DigestFieldError::BadValue("sha-256"))?;
                if claimed.sha256.replace(d).is_some_and(|old| old != d) {
                    return Err(DigestFieldError::Duplicate("sha-256"));
                }
            }
            "sha-512" => {
                let d = decode::<64>(b64).ok_or(DigestFieldError::BadValue("sha-512"))?;
                if claimed.sha512.replace(d).is_some_and(|old| old != d) {
                    return Err(DigestFieldError::Duplicate("sha-512"));
                }
            }
            _ => {}
        }
    }
    if claimed.sha256.is_none() && claimed.sha512.is_none() {
        return Err(DigestFieldError::NoSupportedAlgorithm);
    }
    Ok(claimed)
}

fn decode<const N: usize>(b64: &str) -> Option<[u8; N]> {
    STANDARD.decode(b64).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256, Sha512};

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    #[test]
    fn reads_sha256_and_sha512_and_ignores_others() {
        let s256: [u8; 32] = Sha256::digest(b"x").into();
        let s512: [u8; 64] = Sha512::digest(b"x").into();
        let v = format!(
            "md5=:AAAA:, sha-256=:{}:, sha-512=:{}:;p=1",
            b64(&s256),
            b64(&s512)
        );
        let c = parse(&v).unwrap();
        assert_eq!(c.sha256, Some(s256));
        assert_eq!(c.sha512, Some(s512));
        let only = parse(&format!("sha-512=:{}:", b64(&s512))).unwrap();
        assert_eq!(only.sha256, None);
    }

    #[test]
    fn refuses_what_cannot_be_checked() {
        assert_eq!(
            parse("md5=:AAAA:"),
            Err(DigestFieldError::NoSupportedAlgorithm)
        );
        assert_eq!(parse("sha-256=abc"), Err(DigestFieldError::Malformed));
        assert_eq!(parse("sha-256"), Err(DigestFieldError::Malformed));
        assert_eq!(parse(""), Err(DigestFieldError::Malformed));
        assert_eq!(
            parse("sha-256=:AAAA:"),
            Err(DigestFieldError::BadValue("sha-256"))
        );
        assert_eq!(
            parse("sha-512=:!!:"),
            Err(DigestFieldError::BadValue("sha-512"))
        );
        let a = b64(&[1u8; 32]);
        let b = b64(&[2u8; 32]);
        assert_eq!(
            parse(&format!("sha-256=:{a}:, sha-256=:{b}:")),
            Err(DigestFieldError::Duplicate("sha-256"))
        );
        assert_eq!(
            parse(&format!("SHA-256=:{a}:")),
            Err(DigestFieldError::Malformed)
        );
    }

    #[test]
    fn rejections_carry_their_problem_types() {
        assert_eq!(mismatch().problem_type, pt::DIGEST_MISMATCH);
        assert_eq!(
            DigestFieldError::Malformed.rejection().problem_type,
            pt::INVALID_DIGEST
        );
    }
}
