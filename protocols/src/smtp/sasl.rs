//! SASL responses of SMTP AUTH (PLAIN, RFC 4616; LOGIN): base64 lines
//! decoded into a user name and password. Checking them is the gateway's.

use base64::Engine;

/// A user name and password from AUTH PLAIN or LOGIN.
pub struct Credentials {
    /// Authentication identity.
    pub user: String,
    /// The secret; dropped right after the check.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Decodes one base64 SASL response (`=` is the empty response).
pub fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text == "=" {
        return Some(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Decodes `authzid NUL authcid NUL passwd` (RFC 4616).
pub fn decode_plain(response: &[u8]) -> Option<Credentials> {
    let mut parts = response.split(|b| *b == 0);
    let _authzid = parts.next()?;
    let user = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let password = std::str::from_utf8(parts.next()?).ok()?.to_string();
    if parts.next().is_some() || password.is_empty() {
        return None;
    }
    Some(Credentials { user, password })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_response() {
        let c = decode_plain(b"\0user\0secret").unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("user", "secret"));
        let c = decode_plain(b"admin\0user\0pw").unwrap();
        assert_eq!(c.user, "user");
        assert!(decode_plain(b"\0user").is_none());
        assert!(decode_plain(b"\0user\0").is_none());
        assert!(!format!("{c:?}").contains("pw"));
        assert_eq!(decode_b64("AHVzZXIAc2VjcmV0").unwrap(), b"\0user\0secret");
        assert_eq!(decode_b64("=").unwrap(), b"");
        assert!(decode_b64("***").is_none());
    }
}
