//! Is this attach request from an enrolled connector? The key is looked up
//! by its public id and its secret's SHA-256 compared in constant time; the
//! key itself never reaches a log line, an error or the audit trail.

use crate::runtime::ServiceRuntime;
use crate::store::connectors::ConnectorRecord;
use crate::store::Store;
use mft_filters::auth::connector_key;
use thiserror::Error;

/// Why an attach request is refused. The connector is told only the
/// status; the audit trail gets [`Refusal::reason`].
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    #[error("no connector key presented")]
    Missing,
    /// Not an `mgc_` key.
    #[error("malformed connector key")]
    Malformed,
    /// No connector with that key id (never enrolled, or removed).
    #[error("unknown connector key")]
    Unknown,
    /// Right id, wrong secret.
    #[error("wrong connector key")]
    Wrong,
    /// The key is right, but the connector is pinned to a client
    /// certificate it did not present (another one, or none).
    #[error("client certificate does not match the connector's pin")]
    Certificate,
    /// The store could not be asked.
    #[error("key store unavailable")]
    Store,
}

impl Refusal {
    /// The audit reason and metrics label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing_key",
            Refusal::Malformed => "malformed_key",
            Refusal::Unknown => "unknown_key",
            Refusal::Wrong => "wrong_key",
            Refusal::Certificate => "certificate",
            Refusal::Store => "store_unavailable",
        }
    }

    /// The status the connector gets.
    pub fn status(self) -> u16 {
        match self {
            Refusal::Store => 503,
            Refusal::Certificate => 403,
            _ => 401,
        }
    }
}

/// The key from an `Authorization: Bearer` header value.
pub fn bearer(headers: &http::HeaderMap) -> Result<&str, Refusal> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(Refusal::Missing)?;
    let text = value.to_str().map_err(|_| Refusal::Malformed)?;
    let (scheme, token) = text.split_once(' ').ok_or(Refusal::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::Malformed);
    }
    Ok(token.trim())
}

/// Checks `token` against the store (on the control plane, where the
/// store's pool lives), then the client certificate's SHA-256 (`presented`,
/// lower-case hex) against the connector's pin, if it has one.
pub async fn verify(
    store: &Store,
    control: &ServiceRuntime,
    token: &str,
    presented: Option<&str>,
) -> Result<ConnectorRecord, Refusal> {
    let parsed = connector_key::parse(token).map_err(|_| Refusal::Malformed)?;
    let id = parsed.id.to_string();
    let store = store.clone();
    let record = control
        .run(async move { store.connector_by_key_id(&id).await })
        .await
        .map_err(|_| Refusal::Store)?
        .map_err(|_| Refusal::Store)?
        .ok_or(Refusal::Unknown)?;
    if !parsed.verify(&record.key_hash) {
        return Err(Refusal::Wrong);
    }
    if pin_matches(record.client_cert_sha256.as_deref(), presented) {
        Ok(record)
    } else {
        Err(Refusal::Certificate)
    }
}

/// No pin: any certificate or none. A pin: exactly that certificate
/// (compared in constant time, like the partners' pins).
pub fn pin_matches(pin: Option<&str>, presented: Option<&str>) -> bool {
    match (pin, presented) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(pin), Some(got)) => {
            subtle::ConstantTimeEq::ct_eq(pin.as_bytes(), got.as_bytes()).into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn bearer_takes_only_the_bearer_scheme() {
        assert_eq!(bearer(&headers("Bearer mgc_x")), Ok("mgc_x"));
        assert_eq!(bearer(&headers("bearer  mgc_x ")), Ok("mgc_x"));
        assert_eq!(bearer(&headers("Basic abc")), Err(Refusal::Malformed));
        assert_eq!(bearer(&http::HeaderMap::new()), Err(Refusal::Missing));
    }

    #[test]
    fn refusals_never_say_which_part_was_wrong_to_the_connector() {
        for r in [
            Refusal::Missing,
            Refusal::Malformed,
            Refusal::Unknown,
            Refusal::Wrong,
        ] {
            assert_eq!(r.status(), 401);
        }
        assert_eq!(Refusal::Store.status(), 503);
        assert_eq!(Refusal::Certificate.status(), 403);
        assert_eq!(Refusal::Certificate.reason(), "certificate");
    }

    #[test]
    fn a_pin_wants_exactly_its_certificate() {
        let pin = "ab".repeat(32);
        assert!(pin_matches(None, None));
        assert!(pin_matches(None, Some(&pin)));
        assert!(pin_matches(Some(&pin), Some(&pin)));
        assert!(!pin_matches(Some(&pin), None));
        assert!(!pin_matches(Some(&pin), Some(&"cd".repeat(32))));
    }
}
