//! Facts about the caller that the gateway passes in headers.
//!
//! The gateway strips client-sent `X-MFT-*` headers and sets its own, so the
//! backend records them as given. Values are bounded and must be printable so
//! that nothing odd ends up in the database or the log.

use axum::http::HeaderMap;

/// Longest header value recorded.
const MAX_VALUE_BYTES: usize = 256;

/// Origin recorded when the request did not come through a bridge.
pub const DEFAULT_ORIGIN: &str = "api";

/// The principal the gateway names itself with on its own calls. Requests
/// it proxies carry the client's `key:`/`jwt:`/`partner:` principal instead.
pub const GATEWAY_PRINCIPAL: &str = "gateway";

/// The authenticated principal (`key:<id>`, `jwt:<sub>`, `partner:<name>`), if any.
pub fn principal(headers: &HeaderMap) -> Option<String> {
    printable(headers, "x-mft-principal")
}

/// Whether the gateway itself made the request (not a client it proxied).
pub fn is_gateway(headers: &HeaderMap) -> bool {
    principal(headers).as_deref() == Some(GATEWAY_PRINCIPAL)
}

/// Where a delivery came from (`api`, `smtp`, `imap:<name>`, ...); `api` by default.
pub fn origin(headers: &HeaderMap) -> String {
    printable(headers, "x-mft-origin").unwrap_or_else(|| DEFAULT_ORIGIN.to_string())
}

/// Whether the body is declared as JSON (`application/json` or `*/*+json`).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == "application/json" || v.ends_with("+json"))
}

/// Parses a JSON request body describing a `what` (415 unless declared JSON, 400 if malformed).
pub fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<T, crate::problem::ApiError> {
    if !is_json(headers) {
        return Err(crate::problem::ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send the {what} as application/json"),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| crate::problem::ApiError::bad_request(format!("invalid {what} JSON: {e}")))
}

fn printable(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    if value.is_empty() || value.len() > MAX_VALUE_BYTES || value.chars().any(char::is_control) {
        return None;
    }
    Some(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn origin_defaults_to_api_and_principal_to_none() {
        let mut h = HeaderMap::new();
        assert_eq!(origin(&h), "api");
        assert_eq!(principal(&h), None);
        h.insert("x-mft-origin", HeaderValue::from_static("imap:sales"));
        h.insert("x-mft-principal", HeaderValue::from_static("key:abc"));
        assert_eq!(origin(&h), "imap:sales");
        assert_eq!(principal(&h).as_deref(), Some("key:abc"));
    }

    #[test]
    fn only_the_exact_gateway_principal_is_the_gateway() {
        let mut h = HeaderMap::new();
        assert!(!is_gateway(&h));
        for other in ["key:gateway", "partner:gateway", "Gateway", "gateway2"] {
            h.insert("x-mft-principal", HeaderValue::from_static(other));
            assert!(!is_gateway(&h), "{other}");
        }
        h.insert("x-mft-principal", HeaderValue::from_static("gateway"));
        assert!(is_gateway(&h));
    }
}
