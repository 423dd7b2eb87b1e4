//! Finding the one credential a request carries.
//!
//! Accepted: `Authorization: Bearer <token>` (RFC 6750) or `X-API-Key: <key>`.
//! The token is classified by its shape, whichever header carried it: a JWT
//! is three base64url segments whose first decodes to a JSON object; anything
//! else is an API key candidate for [`super::api_key::parse`].

use crate::decision::Rejection;
use thiserror::Error;

/// Longest credential accepted. Real API keys are 64 bytes and access tokens
/// a few KiB; the cap keeps an attacker from making the JWT path decode and
/// parse megabytes before the signature check fails.
pub const MAX_CREDENTIAL_LEN: usize = 8 * 1024;

/// A credential as found in the request, borrowed from the header value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// Something that is not JWT-shaped: an API key candidate.
    ApiKey(&'a str),
    /// A JWT-shaped bearer token (OAuth2/OIDC access token).
    Jwt(&'a str),
}

impl Credential<'_> {
    /// The raw token, whatever its kind.
    pub fn token(&self) -> &str {
        match self {
            Credential::ApiKey(t) | Credential::Jwt(t) => t,
        }
    }
}

// Both variants hold a secret; logging a request's credential must not leak it.
impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
            Credential::Jwt(_) => f.write_str("Jwt(<redacted>)"),
        }
    }
}

/// Why the credential headers were refused. All of them are a 401 to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CredentialError {
    /// A header value is not UTF-8 (or not visible ASCII).
    #[error("credential header is not visible ASCII")]
    NotAscii,
    /// A header is present but empty.
    #[error("credential header is empty")]
    Empty,
    /// `Authorization` uses a scheme other than `Bearer` (for example `Basic`).
    #[error("authorization scheme is not Bearer")]
    UnsupportedScheme,
    /// `Bearer` without exactly one token of RFC 6750 `b64token` characters.
    #[error("bearer credential is malformed")]
    MalformedBearer,
    /// `X-API-Key` holds characters no key can contain.
    #[error("api key header is malformed")]
    MalformedApiKey,
    /// Longer than [`MAX_CREDENTIAL_LEN`].
    #[error("credential is too long")]
    TooLong,
    /// `Authorization` and `X-API-Key` both present with different values.
    #[error("request carries two different credentials")]
    Conflicting,
}

impl CredentialError {
    /// Reason for the audit log.
    pub fn audit_reason(&self) -> &'static str {
        match self {
            CredentialError::UnsupportedScheme => "unsupported_scheme",
            CredentialError::Conflicting => "conflicting_credentials",
            _ => "malformed_credential",
        }
    }

    /// The 401 to answer with.
    pub fn rejection(&self) -> Rejection {
        Rejection::unauthenticated(self.audit_reason())
    }
}

/// Extracts the credential from the raw `Authorization` and `X-API-Key`
/// header values. `Ok(None)` means the request carries no credential at all;
/// the caller answers that with `Rejection::unauthenticated("missing_credential")`
/// unless the route is public.
///
/// Two different credentials are refused rather than one preferred, because
/// whichever one we picked, a component behind us might pick the other.
pub fn extract<'a>(
    authorization: Option<&'a [u8]>,
    x_api_key: Option<&'a [u8]>,
) -> Result<Option<Credential<'a>>, CredentialError> {
    let bearer = authorization.map(parse_authorization).transpose()?;
    let api_key = x_api_key.map(parse_api_key_header).transpose()?;
    let token = match (bearer, api_key) {
        (None, None) => return Ok(None),
        (Some(a), Some(b)) if a != b => return Err(CredentialError::Conflicting),
        (Some(t), _) | (None, Some(t)) => t,
    };
    Ok(Some(classify(token)))
}

fn classify(token: &str) -> Credential<'_> {
    if is_jwt_shaped(token) {
        Credential::Jwt(token)
    } else {
        Credential::ApiKey(token)
    }
}

/// Three base64url segments, the first starting with `eyJ` (base64 of `{"`),
/// so it decodes to a JSON object. The signature segment may be empty: an
/// unsigned (`alg: none`) token is still a JWT, and the verifier reports it
/// precisely instead of the API-key parser calling it malformed.
pub fn is_jwt_shaped(token: &str) -> bool {
    // API keys, the common case, never start so: skip the split.
    if !token.starts_with("eyJ") {
        return false;
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    header.starts_with("eyJ")
        && !payload.is_empty()
        && [header, payload, signature]
            .iter()
            .all(|s| s.bytes().all(is_base64url_byte))
}

fn is_base64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The bytes RFC 6750 allows in a `b64token` (before its `=` padding), as
/// a table: every request's credential is checked byte by byte.
static B64TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        i += 1;
    }
    t
};

/// RFC 6750 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| B64TOKEN[usize::from(b)])
}

fn visible_ascii(raw: &[u8]) -> Result<&str, CredentialError> {
    if raw.is_empty() {
        return Err(CredentialError::Empty);
    }
    if raw.len() > MAX_CREDENTIAL_LEN + "Bearer ".len() {
        return Err(CredentialError::TooLong);
    }
    // Only SP and visible ASCII: tabs, obs-text and controls have no place in
    // a bearer token, and rejecting them here keeps later parsers simple.
    if !raw.iter().all(|&b| b == b' ' || b.is_ascii_graphic()) {
        return Err(CredentialError::NotAscii);
    }
    std::str::from_utf8(raw).map_err(|_| CredentialError::NotAscii)
}

fn parse_authorization(raw: &[u8]) -> Result<&str, CredentialError> {
    let value = visible_ascii(raw)?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(CredentialError::UnsupportedScheme);
    }
    // RFC 9110 allows 1*SP between scheme and credentials; anything after the
    // token (a second token, auth-params) is not a bearer credential.
    let token = rest.trim_start_matches(' ');
    if token.is_empty() || token.contains(' ') || !is_b64token(token) {
        return Err(CredentialError::MalformedBearer);
    }
    if token.len() > MAX_CREDENTIAL_LEN {
        return Err(CredentialError::TooLong);
    }
    Ok(token)
}

fn parse_api_key_header(raw: &[u8]) -> Result<&str, CredentialError> {
    let value = visible_ascii(raw)?;
    if value.len() > MAX_CREDENTIAL_LEN {
        return Err(CredentialError::TooLong);
    }
    if !is_b64token(value) {
        return Err(CredentialError::MalformedApiKey);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "mgw_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";

    fn ex<'a>(
        a: Option<&'a str>,
        k: Option<&'a str>,
    ) -> Result<Option<Credential<'a>>, CredentialError> {
        extract(a.map(str::as_bytes), k.map(str::as_bytes))
    }

    #[test]
    fn none_is_ok_none() {
        assert_eq!(ex(None, None), Ok(None));
    }

    #[test]
    fn bearer_api_key_and_jwt() {
        assert_eq!(
            ex(Some(&format!("Bearer {KEY}")), None),
            Ok(Some(Credential::ApiKey(KEY)))
        );
        assert_eq!(
            ex(Some(&format!("Bearer {JWT}")), None),
            Ok(Some(Credential::Jwt(JWT)))
        );
    }

    #[test]
    fn scheme_is_case_insensitive_and_allows_several_spaces() {
        for h in [
            format!("bearer {KEY}"),
            format!("BEARER {KEY}"),
            format!("Bearer   {KEY}"),
        ] {
            assert_eq!(ex(Some(&h), None), Ok(Some(Credential::ApiKey(KEY))), "{h}");
        }
    }

    #[test]
    fn x_api_key_alone() {
        assert_eq!(ex(None, Some(KEY)), Ok(Some(Credential::ApiKey(KEY))));
        // Classified by shape, not by header.
        assert_eq!(ex(None, Some(JWT)), Ok(Some(Credential::Jwt(JWT))));
    }

    #[test]
    fn both_headers_same_value_is_fine_different_is_not() {
        assert_eq!(
            ex(Some(&format!("Bearer {KEY}")), Some(KEY)),
            Ok(Some(Credential::ApiKey(KEY)))
        );
        assert_eq!(
            ex(Some(&format!("Bearer {KEY}")), Some("other")),
            Err(CredentialError::Conflicting)
        );
    }

    #[test]
    fn refuses_other_schemes() {
        assert_eq!(
            ex(Some("Basic dXNlcjpwYXNz"), None),
            Err(CredentialError::UnsupportedScheme)
        );
        assert_eq!(ex(Some(KEY), None), Err(CredentialError::UnsupportedScheme));
        assert_eq!(
            ex(Some("Bearerx abc"), None),
            Err(CredentialError::UnsupportedScheme)
        );
    }

    #[test]
    fn refuses_malformed_bearer() {
        for h in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a ",
            "Bearer a,b",
            "Bearer =abc",
            "Bearer a\"b",
        ] {
            assert_eq!(
                ex(Some(h), None),
                Err(CredentialError::MalformedBearer),
                "{h:?}"
            );
        }
        assert_eq!(
            ex(Some("Bearer abc=="), None),
            Ok(Some(Credential::ApiKey("abc==")))
        );
    }

    #[test]
    fn refuses_empty_non_ascii_and_controls() {
        assert_eq!(ex(Some(""), None), Err(CredentialError::Empty));
        assert_eq!(ex(None, Some("")), Err(CredentialError::Empty));
        assert_eq!(
            extract(Some(b"Bearer \xff\xfe"), None),
            Err(CredentialError::NotAscii)
        );
        assert_eq!(
            ex(Some("Bearer\tabc"), None),
            Err(CredentialError::NotAscii)
        );
        assert_eq!(ex(None, Some("ké")), Err(CredentialError::NotAscii));
        assert_eq!(ex(None, Some("a b")), Err(CredentialError::MalformedApiKey));
    }

    #[test]
    fn refuses_oversized() {
        let long = "a".repeat(MAX_CREDENTIAL_LEN + 1);
        assert_eq!(ex(None, Some(&long)), Err(CredentialError::TooLong));
        assert_eq!(
            ex(Some(&format!("Bearer {long}")), None),
            Err(CredentialError::TooLong)
        );
    }

    #[test]
    fn jwt_shape() {
        assert!(is_jwt_shaped(JWT));
        assert!(is_jwt_shaped("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0."));
        assert!(!is_jwt_shaped("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0"));
        assert!(!is_jwt_shaped("abc.def.ghi"));
        assert!(!is_jwt_shaped("eyJ.a.b.c"));
        assert!(!is_jwt_shaped("eyJ..b"));
        assert!(!is_jwt_shaped("eyJa+b.c.d"));
        assert!(!is_jwt_shaped(KEY));
    }

    #[test]
    fn audit_reasons_and_debug_hide_the_secret() {
        assert_eq!(
            CredentialError::UnsupportedScheme.rejection().audit_reason,
            "unsupported_scheme"
        );
        assert_eq!(CredentialError::Empty.rejection().status, 401);
        assert_eq!(
            format!("{:?}", Credential::ApiKey(KEY)),
            "ApiKey(<redacted>)"
        );
    }
}
