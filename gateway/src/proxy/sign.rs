//! Signing every forwarded request (RFC 9421), the last thing done to the
//! upstream request header so the signature covers the final values.

use super::names;
use http::header::HeaderName;
use mft_config::model::{Backend, SigningAlgorithm};
use mft_filters::signing::keys::hmac_secret_from_text;
use mft_filters::signing::{RequestView, SignatureHeaders, Signer, SigningKey};
use pingora_core::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use std::time::SystemTime;

/// Fields covered when present, in this order (after the derived components).
static COVERED: [HeaderName; 5] = [
    names::X_REQUEST_ID,
    names::X_MFT_PRINCIPAL,
    names::X_MFT_SCOPES,
    http::header::CONTENT_LENGTH,
    names::CONTENT_DIGEST,
];

/// Other `x-mft-*` fields the gateway may set in the future are covered too,
/// up to this many, so the backend never trusts an unsigned identity header.
const MAX_EXTRA: usize = 4;

/// A signing key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("backend.signing_key ({algorithm}): {source}")]
pub struct KeyLoadError {
    algorithm: &'static str,
    source: mft_filters::signing::KeyError,
}

/// Signs upstream requests with the configured key; built once at startup.
#[derive(Debug)]
pub struct RequestSigner {
    signer: Signer,
}

/// Loads the signing key of `[backend]`; `Ok(None)` when none is configured.
pub fn signing_key(backend: &Backend) -> std::result::Result<Option<SigningKey>, KeyLoadError> {
    let Some(secret) = &backend.signing_key else {
        return Ok(None);
    };
    let id = backend.signing_key_id.as_deref();
    let err = |source| KeyLoadError {
        algorithm: backend.signing_algorithm.as_str(),
        source,
    };
    let key = match backend.signing_algorithm {
        SigningAlgorithm::HmacSha256 => {
            let bytes = hmac_secret_from_text(secret.expose()).map_err(err)?;
            SigningKey::hmac(&bytes, id).map_err(err)?
        }
        SigningAlgorithm::Ed25519 => {
            SigningKey::ed25519_from_pem(secret.expose(), id).map_err(err)?
        }
    };
    Ok(Some(key))
}

impl RequestSigner {
    /// The signer for `[backend]`, or `None` (with one warning) when no key is set.
    pub fn from_config(
        backend: &Backend,
    ) -> std::result::Result<Option<RequestSigner>, KeyLoadError> {
        let Some(key) = signing_key(backend)? else {
            tracing::warn!(
                "backend.signing_key is not set: requests to the backend are NOT signed, so the \
                 backend cannot tell gateway traffic from direct traffic"
            );
            return Ok(None);
        };
        tracing::info!(
            algorithm = key.algorithm().as_str(),
            key_id = key.id(),
            ttl_s = backend.signature_ttl.as_secs(),
            "signing requests to the backend (RFC 9421)"
        );
        Ok(Some(RequestSigner {
            signer: Signer::new(key, backend.signature_ttl),
        }))
    }

    /// Signs a request whose final header fields are `headers`: every
    /// [`COVERED`] field present and every other `x-mft-*` field, after the
    /// derived components. Shared by the proxy and the bridges' backend client
    /// so both send exactly the same kind of signature.
    pub fn sign_fields(
        &self,
        method: &str,
        authority: &str,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> std::result::Result<SignatureHeaders, FieldError> {
        let text = |name: &HeaderName| -> std::result::Result<Option<&str>, FieldError> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => v.to_str().map(Some).map_err(|_| FieldError::NotAscii),
            }
        };
        let mut fields: [(&str, &str); COVERED.len() + MAX_EXTRA] =
            [("", ""); COVERED.len() + MAX_EXTRA];
        let mut n = 0;
        for name in &COVERED {
            if let Some(v) = text(name)? {
                fields[n] = (name.as_str(), v);
                n += 1;
            }
        }
        for name in headers.keys() {
            if name.as_str().starts_with("x-mft-") && !COVERED.contains(name) {
                if n == fields.len() {
                    return Err(FieldError::TooMany);
                }
                if let Some(v) = text(name)? {
                    fields[n] = (name.as_str(), v);
                    n += 1;
                }
            }
        }
        let view = RequestView {
            method,
            authority,
            path,
            query,
            fields: &fields[..n],
        };
        self.signer
            .sign(&view, SystemTime::now())
            .map_err(FieldError::Sign)
    }

    /// The hyper engine's [`RequestSigner::sign`]: replaces any client-sent
    /// signature in `headers` with ours over the final fields.
    pub fn sign_map(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &mut http::HeaderMap,
    ) -> std::result::Result<(), FieldError> {
        // A client's own `Signature`/`Signature-Input` are not covered and
        // the inserts below replace every value of both: no removal first
        // (two header-map probes per request).
        let authority = match headers.get(http::header::HOST).map(|v| v.to_str()) {
            None => "",
            Some(Ok(a)) => a,
            Some(Err(_)) => return Err(FieldError::NotAscii),
        };
        let signed =
            self.sign_fields(method.as_str(), authority, uri.path(), uri.query(), headers)?;
        let value = |v: String| http::HeaderValue::try_from(v).map_err(|_| FieldError::NotAscii);
        headers.insert(names::SIGNATURE_INPUT, value(signed.signature_input)?);
        headers.insert(names::SIGNATURE, value(signed.signature)?);
        Ok(())
    }

    /// Replaces any client-sent signature with ours over the final header.
    pub fn sign(&self, upstream: &mut RequestHeader) -> Result<()> {
        // A client's own signature headers would confuse the backend's choice.
        upstream.remove_header("signature-input");
        upstream.remove_header("signature");
        let authority = match upstream.headers.get(http::header::HOST).map(|v| v.to_str()) {
            None => "",
            Some(Ok(a)) => a,
            Some(Err(_)) => return Err(not_ascii()),
        };
        let signed = self
            .sign_fields(
                upstream.method.as_str(),
                authority,
                upstream.uri.path(),
                upstream.uri.query(),
                &upstream.headers,
            )
            .map_err(|e| match e {
                // Only a client-sent Content-Digest can get here (the rest are
                // ours): the client's fault, so 400 rather than an unsigned request.
                FieldError::NotAscii => not_ascii(),
                FieldError::TooMany => {
                    Error::explain(ErrorType::InternalError, "too many x-mft-* headers to sign")
                }
                FieldError::Sign(e) => {
                    Error::because(ErrorType::InternalError, "cannot sign the request", e)
                }
            })?;
        upstream.insert_header("signature-input", signed.signature_input)?;
        upstream.insert_header("signature", signed.signature)?;
        Ok(())
    }
}

fn not_ascii() -> Box<Error> {
    Error::explain(
        ErrorType::HTTPStatus(400),
        "a header to be signed is not visible ASCII",
    )
}

/// Why header fields could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    /// A field to cover is not visible ASCII.
    #[error("a header to be signed is not visible ASCII")]
    NotAscii,
    /// More `x-mft-*` fields than the signature covers.
    #[error("too many x-mft-* headers to sign")]
    TooMany,
    /// The signer failed.
    #[error(transparent)]
    Sign(mft_filters::signing::SignError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use mft_filters::signing::{Verifier, VerifyError, VerifyPolicy};
    use std::time::Duration;

    fn signer() -> RequestSigner {
        RequestSigner {
            signer: Signer::new(
                SigningKey::hmac(&[9; 32], None).unwrap(),
                Duration::from_secs(30),
            ),
        }
    }

    fn upstream() -> RequestHeader {
        let mut h = RequestHeader::build(
            "POST",
            format!("{}?folder=in", crate::backend_client::paths::FILES).as_bytes(),
            None,
        )
        .unwrap();
        for (n, v) in [
            ("host", "Backend:8080"),
            ("x-request-id", "0192-1"),
            ("x-mft-principal", "key:abc"),
            ("x-mft-scopes", "files:write"),
            ("x-mft-origin", "smtp"),
            ("content-length", "5"),
            ("signature-input", "evil=(\"@method\");tag=\"mft-gateway\""),
            ("signature", "evil=:AAAA:"),
        ] {
            h.insert_header(n, v).unwrap();
        }
        h
    }

    fn verify(h: &RequestHeader) -> Result<(), VerifyError> {
        let fields: Vec<(&str, &str)> = h
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        let view = RequestView {
            method: h.method.as_str(),
            authority: h.headers["host"].to_str().unwrap(),
            path: h.uri.path(),
            query: h.uri.query(),
            fields: &fields,
        };
        let verifier = Verifier::new(
            vec![SigningKey::hmac(&[9; 32], None).unwrap().verifying_key()],
            VerifyPolicy::default(),
        )
        .unwrap();
        let text = |n: &str| h.headers.get(n).map(|v| v.to_str().unwrap());
        verifier
            .verify(
                &view,
                text("signature-input"),
                text("signature"),
                SystemTime::now(),
            )
            .map(drop)
    }

    #[test]
    fn replaces_client_signatures_and_covers_every_identity_header() {
        let mut h = upstream();
        signer().sign(&mut h).unwrap();
        assert_eq!(h.headers.get_all("signature").iter().count(), 1);
        let input = h.headers["signature-input"].to_str().unwrap();
        assert!(
            input.starts_with(
                "mft=(\"@method\" \"@authority\" \"@path\" \"@query\" \"x-request-id\" \
                 \"x-mft-principal\" \"x-mft-scopes\" \"content-length\" \"x-mft-origin\");"
            ),
            "{input}"
        );
        verify(&h).unwrap();
        h.insert_header("x-mft-scopes", "admin").unwrap();
        assert_eq!(verify(&h), Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_header_that_cannot_be_signed_is_an_error_not_an_unsigned_request() {
        let mut h = upstream();
        h.insert_header(
            "content-digest",
            http::HeaderValue::from_bytes(b"sha-256=:\xff:").unwrap(),
        )
        .unwrap();
        let err = signer().sign(&mut h).unwrap_err();
        assert_eq!(crate::proxy::rescue::status_for(&err), 400);
    }
}
