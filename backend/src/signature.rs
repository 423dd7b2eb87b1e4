//! Refusing requests that did not come through the gateway: every request
//! but `/healthz` must carry a valid RFC 9421 signature from a key we hold,
//! used once (docs/signing.md).

use crate::problem::ApiError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mft_filters::clock::{Clock, SystemClock};
use mft_filters::problem_types as pt;
use mft_filters::signing::{unix_seconds, ReplayCache, RequestView, Verifier, VerifyError};
use std::sync::{Arc, Mutex};

/// Live nonces remembered at most; at the 300 s default window this allows
/// over 3,000 signed requests per second before the cache refuses (fail closed).
const REPLAY_CAPACITY: usize = 1_000_000;

/// The verifier and the nonces it has seen.
pub(crate) struct SignatureGuard {
    verifier: Verifier,
    replay: Mutex<ReplayCache>,
    clock: Arc<dyn Clock>,
}

impl SignatureGuard {
    pub(crate) fn new(verifier: Verifier) -> Arc<SignatureGuard> {
        Arc::new(SignatureGuard {
            verifier,
            replay: Mutex::new(ReplayCache::new(REPLAY_CAPACITY)),
            clock: Arc::new(SystemClock),
        })
    }

    fn check(&self, req: &Request) -> Result<(), VerifyError> {
        let headers = req.headers();
        let mut fields: Vec<(&str, &str)> = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            match value.to_str() {
                Ok(v) => fields.push((name.as_str(), v)),
                // The signer refuses such values, so no valid signature covers one.
                Err(_) if name.as_str().starts_with("x-mft-") => {
                    return Err(VerifyError::Malformed(
                        "an x-mft-* header is not visible ASCII",
                    ))
                }
                Err(_) => {}
            }
        }
        // Several field lines would be merged dictionaries (RFC 9421 §4); the
        // gateway sends one of each, so anything else is refused, not merged.
        for name in ["signature-input", "signature"] {
            if headers.get_all(name).iter().nth(1).is_some() {
                return Err(VerifyError::Malformed(
                    "repeated Signature-Input or Signature header",
                ));
            }
        }
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let authority = text("host")
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        let view = RequestView {
            method: req.method().as_str(),
            authority,
            path: req.uri().path(),
            query: req.uri().query(),
            fields: &fields,
        };
        let now = self.clock.now();
        let verified =
            self.verifier
                .verify(&view, text("signature-input"), text("signature"), now)?;
        let forget_after = verified
            .expires
            .saturating_add(self.verifier.policy().clock_skew.as_secs());
        // A poisoned lock still holds a consistent map (inserts are single calls).
        let mut replay = self.replay.lock().unwrap_or_else(|e| e.into_inner());
        replay.check_and_insert(&verified.nonce, forget_after, unix_seconds(now))?;
        drop(replay);
        tracing::debug!(key_id = %verified.key_id, "signature verified");
        Ok(())
    }
}

/// Middleware: 401 problem+json unless the request is signed (health stays open).
pub(crate) async fn require(
    State(guard): State<Arc<SignatureGuard>>,
    req: Request,
    next: Next,
) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    match guard.check(&req) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            // The access-log span around this already names method and path.
            tracing::warn!(reason = %e, "request refused: signature");
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!("request signature refused: {e}"),
            )
            .with_type(pt::SIGNATURE)
            .into_response()
        }
    }
}
