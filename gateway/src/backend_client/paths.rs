//! Every backend path the gateway names (docs/backend-api.md), in one
//! place: the endpoint methods build their calls from these, and the proxy
//! classifies client requests with the same constants.

/// Prefix of the versioned API.
pub const API: &str = "/api/v1";
/// `POST` (upload) and `GET` (list) files.
pub const FILES: &str = "/api/v1/files";
/// tus creation; an upload's own URL is below it.
pub const UPLOADS: &str = "/api/v1/uploads";
/// `POST` (create) and `GET` (feed) deliveries.
pub const DELIVERIES: &str = "/api/v1/deliveries";
/// Liveness.
pub const HEALTH: &str = "/healthz";

/// `/api/v1/files/{id}`.
pub fn file(id: &str) -> String {
    format!("{FILES}/{id}")
}

/// `/api/v1/files/{id}/content`.
pub fn file_content(id: &str) -> String {
    format!("{FILES}/{id}/content")
}

/// `/api/v1/deliveries/{id}`.
pub fn delivery(id: &str) -> String {
    format!("{DELIVERIES}/{id}")
}

/// `/api/v1/deliveries/{id}/relay`.
pub fn delivery_relay(id: &str) -> String {
    format!("{DELIVERIES}/{id}/relay")
}

/// `/api/v1/deliveries/{id}/receipts`.
pub fn delivery_receipts(id: &str) -> String {
    format!("{DELIVERIES}/{id}/receipts")
}

/// Whether `location` is a tus upload URL of ours (`/api/v1/uploads/{id}`).
pub fn is_upload_url(location: &str) -> bool {
    location
        .strip_prefix(UPLOADS)
        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
}

/// The idempotency key of file `index` of the work keyed `key` (a spooled
/// message, an SFTP upload, a relayed delivery): files and the delivery that
/// names them are retried under related keys, so each is created once.
pub fn file_idempotency_key(key: &str, index: usize) -> String {
    format!("{key}:file:{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_keys() {
        assert_eq!(file("a1"), "/api/v1/files/a1");
        assert_eq!(file_content("a1"), "/api/v1/files/a1/content");
        assert_eq!(delivery_relay("d"), "/api/v1/deliveries/d/relay");
        assert_eq!(delivery_receipts("d"), "/api/v1/deliveries/d/receipts");
        assert!(is_upload_url("/api/v1/uploads/x"));
        assert!(!is_upload_url("/api/v1/uploads/"));
        assert!(!is_upload_url("/api/v1/uploadsx"));
        assert!(!is_upload_url("https://elsewhere/api/v1/uploads/x"));
        assert_eq!(file_idempotency_key("m1", 2), "m1:file:2");
    }
}
