//! tus 1.0.0 wire details: version and extension headers, `Upload-Metadata`
//! and `Upload-Checksum` parsing.

use crate::problem::ApiError;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use mft_filters::problem_types as pt;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The only protocol version spoken.
pub const VERSION: &str = "1.0.0";
/// Extensions implemented.
pub const EXTENSIONS: &str = "creation,creation-defer-length,checksum,termination";
/// Checksum algorithms accepted in `Upload-Checksum`.
pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256";
/// Largest `Upload-Length` accepted (1 TiB).
pub const MAX_SIZE: u64 = 1 << 40;
/// Media type of PATCH bodies.
pub const PATCH_CONTENT_TYPE: &str = "application/offset+octet-stream";

/// Header names used by tus.
pub mod headers {
    use axum::http::HeaderName;

    /// `Tus-Resumable`
    pub const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
    /// `Tus-Version`
    pub const TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");
    /// `Tus-Extension`
    pub const TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
    /// `Tus-Max-Size`
    pub const TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
    /// `Tus-Checksum-Algorithm`
    pub const TUS_CHECKSUM_ALGORITHM: HeaderName =
        HeaderName::from_static("tus-checksum-algorithm");
    /// `Upload-Offset`
    pub const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
    /// `Upload-Length`
    pub const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
    /// `Upload-Defer-Length`
    pub const UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");
    /// `Upload-Metadata`
    pub const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
    /// `Upload-Checksum`
    pub const UPLOAD_CHECKSUM: HeaderName = HeaderName::from_static("upload-checksum");
    /// `X-File-Id`: this backend's addition, the stored file of a finished upload.
    pub const X_FILE_ID: HeaderName = HeaderName::from_static("x-file-id");
}

/// Middleware for the uploads routes: refuses requests for another protocol
/// version (412) and stamps `Tus-Resumable` on every answer, errors included.
pub async fn enforce_version(req: Request, next: Next) -> Response {
    let speaks_ours = req
        .headers()
        .get(&headers::TUS_RESUMABLE)
        .is_some_and(|v| v.as_bytes() == VERSION.as_bytes());
    let mut resp = if req.method() == Method::OPTIONS || speaks_ours {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            format!("this endpoint speaks tus; send Tus-Resumable: {VERSION}"),
        )
        .with_type(pt::TUS_VERSION)
        .with_header(headers::TUS_VERSION, HeaderValue::from_static(VERSION))
        .into_response()
    };
    resp.headers_mut()
        .insert(headers::TUS_RESUMABLE, HeaderValue::from_static(VERSION));
    resp
}

/// Decoded `Upload-Metadata`: keys to values (`None` for a key without value).
pub type Metadata = mft_filters::validation::upload_names::TusMetadata;

/// Parses `key base64value,key2,key3 base64value` with the gateway's parser.
pub fn parse_metadata(raw: &str) -> Result<Metadata, ApiError> {
    mft_filters::validation::upload_names::parse_tus_metadata(raw).map_err(|e| {
        ApiError::bad_request(format!("Upload-Metadata: {e}")).with_field("Upload-Metadata")
    })
}

/// A metadata value as UTF-8 text; `None` if the key is absent.
pub fn metadata_text(meta: &Metadata, key: &str) -> Result<Option<String>, ApiError> {
    match meta.get(key) {
        None => Ok(None),
        Some(None) => Ok(Some(String::new())),
        Some(Some(bytes)) => String::from_utf8(bytes.clone()).map(Some).map_err(|_| {
            ApiError::bad_request(format!("Upload-Metadata: {key} is not UTF-8"))
                .with_field("Upload-Metadata")
        }),
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(s)
        .or_else(|_| STANDARD_NO_PAD.decode(s))
        .ok()
}

/// A digest being computed over one PATCH body, and the value it must match.
pub struct ChunkChecksum {
    hasher: ChunkHasher,
    expected: Vec<u8>,
}

enum ChunkHasher {
    Sha1(Sha1),
    Sha256(Sha256),
}

impl ChunkChecksum {
    /// Parses `Upload-Checksum: <algorithm> <base64 digest>`, if present.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let Some(value) = headers.get(&headers::UPLOAD_CHECKSUM) else {
            return Ok(None);
        };
        let bad = |detail: &str| {
            ApiError::bad_request(format!("Upload-Checksum: {detail}"))
                .with_field("Upload-Checksum")
        };
        let text = value.to_str().map_err(|_| bad("not ASCII"))?;
        let (algorithm, encoded) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("expected \"<algorithm> <base64 digest>\""))?;
        let expected = decode_base64(encoded.trim()).ok_or_else(|| bad("digest is not base64"))?;
        let hasher = match algorithm.to_ascii_lowercase().as_str() {
            "sha1" => ChunkHasher::Sha1(Sha1::new()),
            "sha256" => ChunkHasher::Sha256(Sha256::new()),
            _ => {
                return Err(bad(&format!(
                    "unsupported algorithm {algorithm:?}; use one of {CHECKSUM_ALGORITHMS}"
                )))
            }
        };
        Ok(Some(ChunkChecksum { hasher, expected }))
    }

    /// Feeds body bytes.
    pub fn update(&mut self, chunk: &[u8]) {
        match &mut self.hasher {
            ChunkHasher::Sha1(h) => h.update(chunk),
            ChunkHasher::Sha256(h) => h.update(chunk),
        }
    }

    /// Whether the bytes fed match the declared digest.
    pub fn matches(self) -> bool {
        let actual = match self.hasher {
            ChunkHasher::Sha1(h) => h.finalize().to_vec(),
            ChunkHasher::Sha256(h) => h.finalize().to_vec(),
        };
        actual == self.expected
    }
}

/// A non-negative integer header, 400 naming it when malformed.
pub fn number_header(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!("{name} must be a non-negative integer"))
                    .with_field(name.as_str())
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metadata_pairs_and_bare_keys() {
        let m =
            parse_metadata("filename cmVwb3J0LnBkZg==,is_confidential, folder aW4vYm94").unwrap();
        assert_eq!(
            metadata_text(&m, "filename").unwrap().as_deref(),
            Some("report.pdf")
        );
        assert_eq!(
            metadata_text(&m, "folder").unwrap().as_deref(),
            Some("in/box")
        );
        assert_eq!(m.get("is_confidential"), Some(&None));
        assert_eq!(metadata_text(&m, "missing").unwrap(), None);
    }

    #[test]
    fn refuses_bad_metadata() {
        assert!(parse_metadata("filename !!!").is_err());
        assert!(parse_metadata("a YQ==,a Yg==").is_err());
        assert!(parse_metadata("a YQ== extra").is_err());
    }

    #[test]
    fn checksum_matches_only_the_declared_digest() {
        let mut h = HeaderMap::new();
        // sha1("abc")
        h.insert(
            headers::UPLOAD_CHECKSUM,
            HeaderValue::from_static("sha1 qZk+NkcGgWq6PiVxeFDCbJzQ2J0="),
        );
        let mut c = ChunkChecksum::from_headers(&h).unwrap().unwrap();
        c.update(b"ab");
        c.update(b"c");
        assert!(c.matches());
        let mut c = ChunkChecksum::from_headers(&h).unwrap().unwrap();
        c.update(b"abd");
        assert!(!c.matches());
        h.insert(
            headers::UPLOAD_CHECKSUM,
            HeaderValue::from_static("md5 AAAA"),
        );
        assert!(ChunkChecksum::from_headers(&h).is_err());
    }
}
