//! Trust-partner keys: `mgp_<id>_<secret>`, one per connection and
//! direction. Same shape and storage rules as service-account keys (only the
//! SHA-256 of the secret is kept), a different prefix so a partner key can
//! never be mistaken for a service account's and the other way round.
//!
//! Besides authenticating as a bearer credential, the key's secret yields a
//! separate HMAC key ([`ParsedKey::derive`] with [`SIGNING_LABEL`]) for the
//! RFC 9421 signatures of federation requests and answers. The receiving
//! side stores that derived key, never the secret: a leaked database lets
//! nobody present the bearer credential.

use super::api_key::{self, GeneratedKey, KeyFormatError, ParsedKey, RANDOM_LEN};

/// Prefix of partner keys.
pub const PREFIX: &str = "mgp_";

/// Label of the signing key derived from a partner key's secret.
pub const SIGNING_LABEL: &str = "mft-federation-signing-v1";

/// A new partner key from caller-supplied randomness (the OS RNG).
pub fn generate(random: &[u8; RANDOM_LEN]) -> GeneratedKey {
    api_key::generate_with_prefix(PREFIX, random)
}

/// Splits a partner key into id and secret.
pub fn parse(token: &str) -> Result<ParsedKey<'_>, KeyFormatError> {
    api_key::parse_with_prefix(PREFIX, token)
}

/// The HMAC key both sides sign federation messages with.
pub fn signing_key(key: &ParsedKey<'_>) -> [u8; 32] {
    key.derive(SIGNING_LABEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partner_and_service_keys_do_not_mix() {
        let k = generate(&[7; RANDOM_LEN]);
        assert!(k.token.starts_with("mgp_"));
        let parsed = parse(&k.token).unwrap();
        assert!(parsed.verify(&k.secret_hash));
        assert_eq!(
            api_key::parse(&k.token).unwrap_err(),
            KeyFormatError::Prefix
        );
        let service = api_key::generate(&[7; RANDOM_LEN]);
        assert_eq!(parse(&service.token).unwrap_err(), KeyFormatError::Prefix);
    }

    #[test]
    fn signing_key_is_stable_and_not_the_secret_hash() {
        let k = generate(&[9; RANDOM_LEN]);
        let p = parse(&k.token).unwrap();
        assert_eq!(signing_key(&p), signing_key(&parse(&k.token).unwrap()));
        assert_ne!(signing_key(&p), k.secret_hash);
        let other = generate(&[8; RANDOM_LEN]);
        assert_ne!(signing_key(&p), signing_key(&parse(&other.token).unwrap()));
    }
}
