//! Service-account API keys: `mgw_<id>_<secret>`.
//!
//! - `<id>`: 16 lowercase hex characters, 64 random bits. Public: it names the
//!   key in logs, `keys list` and `X-MFT-Principal`, and the key store looks
//!   the key up by it.
//! - `<secret>`: 43 base64url characters without padding, 256 random bits.
//!   Shown once at creation; the key store keeps only [`hash_secret`] of it.
//!
//! # Why a fast hash is right here
//!
//! Passwords need a slow KDF (Argon2, scrypt) because people pick them from a
//! small space that an attacker who steals the hashes can enumerate. These
//! secrets are 256 uniformly random bits chosen by the gateway, so even with
//! the stored hashes in hand, inverting one SHA-256 means searching 2^256
//! inputs: no work factor makes that any more infeasible. A slow KDF would only
//! burn tens of milliseconds of CPU on every authenticated request (and hand an
//! attacker a cheap way to load the gateway with bogus keys). The comparison
//! is constant-time so response timing does not leak how much of a hash matched.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Every key starts with this.
pub const PREFIX: &str = "mgw_";
/// Length of the hex id.
pub const ID_LEN: usize = 16;
/// Length of the base64url secret (32 bytes, no padding).
pub const SECRET_LEN: usize = 43;
/// Length of a whole key.
pub const TOKEN_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN;
/// Random bytes [`generate`] needs: 8 for the id, 32 for the secret.
pub const RANDOM_LEN: usize = 40;

/// A freshly generated key.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    /// The public id.
    pub id: String,
    /// The whole `mgw_...` string, to show the operator once and never store.
    pub token: String,
    /// SHA-256 of the secret part, the only thing the key store keeps.
    pub secret_hash: [u8; 32],
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Builds a key from caller-supplied randomness (the OS RNG in production):
/// the first 8 bytes become the id, the last 32 the secret.
pub fn generate(random: &[u8; RANDOM_LEN]) -> GeneratedKey {
    generate_with_prefix(PREFIX, random)
}

/// [`generate`] with another four-character prefix (partner keys use `mgp_`).
pub(crate) fn generate_with_prefix(prefix: &str, random: &[u8; RANDOM_LEN]) -> GeneratedKey {
    debug_assert_eq!(prefix.len(), PREFIX.len());
    let (id_bytes, secret_bytes) = random.split_at(8);
    let id = to_hex(id_bytes);
    let secret = URL_SAFE_NO_PAD.encode(secret_bytes);
    let secret_hash = hash_secret(&secret);
    let token = format!("{prefix}{id}_{secret}");
    GeneratedKey {
        id,
        token,
        secret_hash,
    }
}

/// SHA-256 of the secret's text (the 43 base64url characters, not the
/// decoded bytes). See the module docs for why SHA-256 and not a slow KDF.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A key split into its parts. `Debug` never prints the secret.
#[derive(Clone, Copy)]
pub struct ParsedKey<'a> {
    /// The public id, to look the key up.
    pub id: &'a str,
    secret: &'a str,
}

impl std::fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl ParsedKey<'_> {
    /// Whether the secret hashes to `stored_hash`, compared in constant time.
    pub fn verify(&self, stored_hash: &[u8; 32]) -> bool {
        hash_secret(self.secret).ct_eq(stored_hash).into()
    }

    /// A 32-byte key derived from the secret for `label` (HMAC-SHA256 keyed
    /// with the secret), so one shared key can also sign without the
    /// signature key being the bearer credential itself.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.secret.as_bytes());
        let tag = ring::hmac::sign(&key, label.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// The principal forwarded to the backend (`key:<id>`).
    pub fn principal(&self) -> String {
        format!("key:{}", self.id)
    }
}

/// Why a string is not an API key. The caller answers every variant with the
/// same 401 (audit reason `malformed_credential`); the variants are for tests
/// and debugging, and never contain the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyFormatError {
    /// Not exactly [`TOKEN_LEN`] ASCII characters.
    #[error("api key has the wrong length")]
    Length,
    /// Does not start with `mgw_`.
    #[error("api key lacks the mgw_ prefix")]
    Prefix,
    /// The id is not 16 lowercase hex characters.
    #[error("api key id is not 16 lowercase hex characters")]
    Id,
    /// No `_` between id and secret.
    #[error("api key lacks the separator after the id")]
    Separator,
    /// The secret is not the canonical base64url encoding of 32 bytes.
    #[error("api key secret is malformed")]
    Secret,
}

impl KeyFormatError {
    /// Reason for the audit log.
    pub fn audit_reason(&self) -> &'static str {
        "malformed_credential"
    }
}

/// Splits a key into id and secret, accepting exactly what [`generate`] produces.
///
/// The secret alphabet includes `_`, so the key is cut at fixed offsets rather
/// than split on `_`.
pub fn parse(token: &str) -> Result<ParsedKey<'_>, KeyFormatError> {
    parse_with_prefix(PREFIX, token)
}

/// [`parse`] for keys with another prefix.
pub(crate) fn parse_with_prefix<'a>(
    prefix: &str,
    token: &'a str,
) -> Result<ParsedKey<'a>, KeyFormatError> {
    if token.len() != TOKEN_LEN || !token.is_ascii() {
        return Err(KeyFormatError::Length);
    }
    let rest = token.strip_prefix(prefix).ok_or(KeyFormatError::Prefix)?;
    let (id, rest) = rest.split_at_checked(ID_LEN).ok_or(KeyFormatError::Id)?;
    if !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(KeyFormatError::Id);
    }
    let secret = rest.strip_prefix('_').ok_or(KeyFormatError::Separator)?;
    if !is_canonical_secret(secret) {
        return Err(KeyFormatError::Secret);
    }
    Ok(ParsedKey { id, secret })
}

/// 43 base64url characters encode 258 bits for 256 bits of data, so the last
/// character's two low bits must be zero. Requiring that keeps one key from
/// having several spellings that all verify.
fn is_canonical_secret(secret: &str) -> bool {
    let bytes = secret.as_bytes();
    if bytes.len() != SECRET_LEN {
        return false;
    }
    let mut last = 0;
    for &b in bytes {
        match base64url_value(b) {
            Some(v) => last = v,
            None => return false,
        }
    }
    last & 0b11 == 0
}

fn base64url_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(seed: u8) -> [u8; RANDOM_LEN] {
        let mut r = [0u8; RANDOM_LEN];
        for (i, b) in r.iter_mut().enumerate() {
            *b = seed
                .wrapping_mul(31)
                .wrapping_add(i as u8)
                .wrapping_mul(167);
        }
        r
    }

    #[test]
    fn generate_has_the_documented_shape() {
        let k = generate(&random(7));
        assert_eq!(k.token.len(), TOKEN_LEN);
        assert!(k.token.starts_with("mgw_"));
        assert_eq!(k.id.len(), 16);
        assert_eq!(&k.token[4..20], k.id);
        assert_eq!(&k.token[20..21], "_");
        assert_eq!(k.id, to_hex(&random(7)[..8]));
    }

    #[test]
    fn round_trip_verifies() {
        for seed in 0..=255u8 {
            let k = generate(&random(seed));
            let parsed = parse(&k.token).expect("generated keys parse");
            assert_eq!(parsed.id, k.id);
            assert!(parsed.verify(&k.secret_hash));
        }
    }

    #[test]
    fn known_vector() {
        let k = generate(&[0u8; RANDOM_LEN]);
        assert_eq!(
            k.token,
            "mgw_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        );
        // SHA-256("A" * 43)
        let expected = Sha256::digest("A".repeat(43).as_bytes());
        assert_eq!(k.secret_hash.as_slice(), expected.as_slice());
    }

    #[test]
    fn wrong_secret_or_hash_fails() {
        let a = generate(&random(1));
        let b = generate(&random(2));
        assert!(!parse(&a.token).unwrap().verify(&b.secret_hash));
        let mut flipped = a.secret_hash;
        flipped[31] ^= 1;
        assert!(!parse(&a.token).unwrap().verify(&flipped));
    }

    #[test]
    fn parse_is_strict() {
        let good = generate(&random(3)).token;
        let cases: Vec<(String, KeyFormatError)> = vec![
            (String::new(), KeyFormatError::Length),
            (good[..63].to_string(), KeyFormatError::Length),
            (format!("{good}A"), KeyFormatError::Length),
            (format!("xgw_{}", &good[4..]), KeyFormatError::Prefix),
            (format!("MGW_{}", &good[4..]), KeyFormatError::Prefix),
            (
                format!("mgw_0123456789ABCDEF{}", &good[20..]),
                KeyFormatError::Id,
            ),
            (
                format!("mgw_0123456789abcdeg{}", &good[20..]),
                KeyFormatError::Id,
            ),
            (
                format!("{}-{}", &good[..20], &good[21..]),
                KeyFormatError::Separator,
            ),
            (
                format!("{}+{}", &good[..21], &good[22..]),
                KeyFormatError::Secret,
            ),
            (
                format!("{}={}", &good[..21], &good[22..]),
                KeyFormatError::Secret,
            ),
            // Same length but a multi-byte character.
            (
                format!("{}é{}", &good[..21], &good[23..]),
                KeyFormatError::Length,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(&input).map(|_| ()), Err(want), "{input:?}");
        }
    }

    #[test]
    fn refuses_non_canonical_trailing_bits() {
        let zero = "mgw_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(parse(zero).is_ok());
        // 'B' = 1: a low bit set in the padding bits of the last character.
        let alias = "mgw_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB";
        assert_eq!(parse(alias).map(|_| ()), Err(KeyFormatError::Secret));
        let e = "mgw_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE";
        assert!(parse(e).is_ok());
    }

    #[test]
    fn secret_may_contain_underscores() {
        let mut r = [0xffu8; RANDOM_LEN];
        r[..8].copy_from_slice(&[0xab; 8]);
        let k = generate(&r);
        assert!(k.token[21..].contains('_'));
        assert!(parse(&k.token).unwrap().verify(&k.secret_hash));
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let k = generate(&random(9));
        let secret = &k.token[21..];
        let parsed = parse(&k.token).unwrap();
        let dbg = format!("{parsed:?} {k:?}");
        assert!(!dbg.contains(secret), "{dbg}");
        assert!(dbg.contains(&k.id));
        assert_eq!(parsed.principal(), format!("key:{}", k.id));
    }
}
