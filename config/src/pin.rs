//! Certificate pins: the SHA-256 of a server's end-entity certificate
//! (DER), the safe way to trust one self-signed server without a private CA.

/// The pin as 64 lower-case hex digits, from hex with optional `:`
/// separators (as `openssl x509 -fingerprint -sha256` prints it); `None`
/// when it is not a SHA-256.
pub fn parse_pin_sha256(text: &str) -> Option<String> {
    let hex: String = text.trim().chars().filter(|c| *c != ':').collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// What a config error says about a malformed pin.
pub const PIN_EXPECTED: &str =
    "expected 64 hex digits (':' separators allowed), the SHA-256 of the server's certificate (DER)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_with_and_without_separators() {
        let plain = "AB".repeat(32);
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(parse_pin_sha256(&plain), Some("ab".repeat(32)));
        assert_eq!(parse_pin_sha256(&colons), Some("ab".repeat(32)));
        assert_eq!(parse_pin_sha256(" ab "), None);
        assert_eq!(parse_pin_sha256(&"zz".repeat(32)), None);
        assert_eq!(
            parse_pin_sha256(&"ab".repeat(20)),
            None,
            "a SHA-1 is no pin"
        );
    }
}
