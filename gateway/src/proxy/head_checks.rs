//! Step 3 of the request path: the request head alone, before any lookup or
//! limiter. Sizes first (cheapest), then framing, credentials and the path,
//! so a request the backend could read differently never reaches the scope
//! check.

use super::limits::InputLimits;
use mft_filters::decision::Rejection;
use mft_filters::validation::request_head::{
    check_framing, check_path, check_single_credential, Framing,
};

/// Checks the head of a public request. `length_and_chunked` comes from the
/// connection (hyper drops `Content-Length` from the map when both are sent).
pub fn check(
    limits: &InputLimits,
    version: http::Version,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    length_and_chunked: bool,
) -> Result<(), Rejection> {
    limits.check_head(uri, headers)?;
    check_framing(Framing {
        http11: version == http::Version::HTTP_11,
        has_host: headers.contains_key(http::header::HOST),
        length_and_chunked: length_and_chunked
            || (headers.contains_key(http::header::CONTENT_LENGTH)
                && headers.contains_key(http::header::TRANSFER_ENCODING)),
    })?;
    check_single_credential(
        headers.get_all(super::names::X_API_KEY).iter().count(),
        headers.get_all(http::header::AUTHORIZATION).iter().count(),
    )?;
    check_path(uri.path())
}
