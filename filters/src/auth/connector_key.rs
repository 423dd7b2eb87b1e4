//! DMZ connector keys: `mgc_<id>_<secret>`, one per connector. Same shape
//! and storage rules as service-account keys (the store keeps only the
//! SHA-256 of the secret, compared in constant time), a different prefix so
//! a connector key never authenticates an API call and an API key never
//! opens a connector connection.

use super::api_key::{self, GeneratedKey, KeyFormatError, ParsedKey, RANDOM_LEN};

/// Prefix of connector keys.
pub const PREFIX: &str = "mgc_";

/// A new connector key from caller-supplied randomness (the OS RNG).
pub fn generate(random: &[u8; RANDOM_LEN]) -> GeneratedKey {
    api_key::generate_with_prefix(PREFIX, random)
}

/// Splits a connector key into id and secret.
pub fn parse(token: &str) -> Result<ParsedKey<'_>, KeyFormatError> {
    api_key::parse_with_prefix(PREFIX, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_api_and_partner_keys_do_not_mix() {
        let k = generate(&[5; RANDOM_LEN]);
        assert!(k.token.starts_with("mgc_"));
        assert!(parse(&k.token).unwrap().verify(&k.secret_hash));
        assert_eq!(
            api_key::parse(&k.token).unwrap_err(),
            KeyFormatError::Prefix
        );
        let service = api_key::generate(&[5; RANDOM_LEN]);
        assert_eq!(parse(&service.token).unwrap_err(), KeyFormatError::Prefix);
        let partner = super::super::partner_key::generate(&[5; RANDOM_LEN]);
        assert_eq!(parse(&partner.token).unwrap_err(), KeyFormatError::Prefix);
    }

    #[test]
    fn a_wrong_secret_does_not_verify() {
        let k = generate(&[6; RANDOM_LEN]);
        let other = generate(&[7; RANDOM_LEN]);
        assert!(!parse(&other.token).unwrap().verify(&k.secret_hash));
    }
}
