//! Header names the request path touches on every request, as constants.
//!
//! A `&str` name given to a `HeaderMap` is parsed and validated on every
//! call (about 500 instructions for a custom name, measured with callgrind);
//! a `HeaderName` constant is compared as it is.

use http::header::HeaderName;

/// `X-API-Key`: a credential, never forwarded.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// `X-Request-Id`: ours, on the upstream request and every response.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-MFT-Principal`: the authenticated identity, for the backend.
pub const X_MFT_PRINCIPAL: HeaderName = HeaderName::from_static("x-mft-principal");
/// `X-MFT-Scopes`: the identity's scopes, for the backend.
pub const X_MFT_SCOPES: HeaderName = HeaderName::from_static("x-mft-scopes");
/// `Signature-Input` (RFC 9421).
pub const SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
/// `Signature` (RFC 9421).
pub const SIGNATURE: HeaderName = HeaderName::from_static("signature");
/// `Content-Digest` (RFC 9530).
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");
/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers):
/// the filters' own, which refusals carry too.
pub use mft_filters::ratelimit::{RATELIMIT, RATELIMIT_POLICY};
/// `X-Filename`: an upload's name.
pub const X_FILENAME: HeaderName = HeaderName::from_static("x-filename");
/// `X-Folder`: an upload's folder.
pub const X_FOLDER: HeaderName = HeaderName::from_static("x-folder");
/// `Upload-Metadata` (tus).
pub const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
