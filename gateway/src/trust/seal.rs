//! Partners' keys at rest: AES-256-GCM under `[trust] encryption_key`, with
//! the connection name as associated data so a sealed key copied onto
//! another connection's row does not open.

use mft_config::secret::Secret;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use sha2::{Digest, Sha256};

/// Version byte of the sealed format: `1 || nonce (12) || ciphertext+tag`.
const VERSION: u8 = 1;

/// Why a key could not be sealed or opened. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// `[trust] encryption_key` is shorter than 32 bytes.
    #[error("trust.encryption_key must be at least 32 bytes (e.g. `openssl rand -base64 32`)")]
    WeakKey,
    /// The system random source failed.
    #[error("cannot read operating system randomness")]
    Random,
    /// Wrong encryption key, another connection's row, or corrupted bytes.
    #[error("the stored partner key cannot be decrypted (wrong trust.encryption_key?)")]
    Open,
}

/// Seals and opens partner keys.
pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    /// A sealer keyed by SHA-256 of the configured secret (any text of at
    /// least 32 bytes, or `base64:` of at least 32 bytes).
    pub fn new(secret: &Secret) -> Result<Sealer, SealError> {
        let bytes = mft_filters::signing::keys::hmac_secret_from_text(secret.expose())
            .map_err(|_| SealError::WeakKey)?;
        let digest = Sha256::digest(&bytes);
        let key = UnboundKey::new(&AES_256_GCM, &digest).map_err(|_| SealError::WeakKey)?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
        })
    }

    /// Encrypts `plaintext` for connection `name`.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decrypts what [`Sealer::seal`] produced for `name`.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<String, SealError> {
        let (version, rest) = sealed.split_first().ok_or(SealError::Open)?;
        if *version != VERSION || rest.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut buf)
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_bound_to_the_connection_name() {
        let s = Sealer::new(&Secret::new("x".repeat(32))).unwrap();
        let sealed = s.seal("acme", b"mgp_secret").unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"mgp_secret"));
        assert_eq!(s.open("acme", &sealed).unwrap(), "mgp_secret");
        assert!(s.open("other", &sealed).is_err());
        let other = Sealer::new(&Secret::new("y".repeat(32))).unwrap();
        assert!(other.open("acme", &sealed).is_err());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(s.open("acme", &tampered).is_err());
        assert!(Sealer::new(&Secret::new("short")).is_err());
    }
}
