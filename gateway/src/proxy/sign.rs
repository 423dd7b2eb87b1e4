//! Signing every forwarded request (RFC 9421), the last thing done to the
//! upstream request header so the signature covers the final values.

use mft_config::model::{Backend, SigningAlgorithm};
use mft_filters::signing::keys::hmac_secret_from_text;
use mft_filters::signing::{RequestView, Signer, SigningKey};
use pingora_core::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use std::time::SystemTime;

/// Fields covered when present, in this order (after the derived components).
const COVERED: [&str; 5] = [
    "x-request-id",
    "x-mft-principal",
    "x-mft-scopes",
    "content-length",
    "content-digest",
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

    /// Replaces any client-sent signature with ours over the final header.
    pub fn sign(&self, upstream: &mut RequestHeader) -> Result<()> {
        // A client's own signature headers would confuse the backend's choice.
        upstream.remove_header("signature-input");
        upstream.remove_header("signature");
        let headers = &upstream.headers;
        let text = |name: &str| -> Result<Option<&str>> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => v.to_str().map(Some).map_err(|_| {
                    Error::explain(
                        ErrorType::InvalidHTTPHeader,
                        "a header to be signed is not visible ASCII",
                    )
                }),
            }
        };
        let mut fields: [(&str, &str); COVERED.len() + MAX_EXTRA] =
            [("", ""); COVERED.len() + MAX_EXTRA];
        let mut n = 0;
        for name in COVERED {
            if let Some(v) = text(name)? {
                fields[n] = (name, v);
                n += 1;
            }
        }
        for name in headers.keys() {
            let name = name.as_str();
            if name.starts_with("x-mft-") && !COVERED.contains(&name) {
                if n == fields.len() {
                    return Err(Error::explain(
                        ErrorType::InternalError,
                        "too many x-mft-* headers to sign",
                    ));
                }
                if let Some(v) = text(name)? {
                    fields[n] = (name, v);
                    n += 1;
                }
            }
        }
        let authority = text("host")?.unwrap_or("");
        let view = RequestView {
            method: upstream.method.as_str(),
            authority,
            path: upstream.uri.path(),
            query: upstream.uri.query(),
            fields: &fields[..n],
        };
        let signed = self
            .signer
            .sign(&view, SystemTime::now())
            .map_err(|e| Error::because(ErrorType::InternalError, "cannot sign the request", e))?;
        upstream.insert_header("signature-input", signed.signature_input)?;
        upstream.insert_header("signature", signed.signature)?;
        Ok(())
    }
}
