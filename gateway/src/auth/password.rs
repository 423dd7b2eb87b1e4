//! Bridge users' passwords (SFTP, SMTP AUTH): argon2id hashes, verified
//! off the runtime's worker threads, and the same cost for a name that
//! does not exist, so response times do not tell which users exist.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use std::sync::OnceLock;

/// Whether `password` matches the PHC string `phc` (argon2 compares in
/// constant time itself). An unusable hash matches nothing.
pub fn verify(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "unusable password hash");
            false
        }
    }
}

/// Verifies on a blocking thread. `None` (no such user, or a user without
/// a password) costs one verification all the same and is `false`.
pub async fn verify_blocking(phc: Option<String>, password: &str) -> bool {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify(&phc, &password),
        None => {
            let _ = verify(decoy(), &password);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// An argon2id PHC string for `password`, with the default parameters
/// (those of every hash verified here, so the decoy costs the same).
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| argon2::password_hash::Error::Crypto)?;
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// A hash of a random password, made once.
fn decoy() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let mut secret = [0u8; 32];
        let _ = getrandom::fill(&mut secret);
        hash(&hex::encode(secret)).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let phc = hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify(&phc, "correct horse"));
        assert!(!verify(&phc, "correct horsf"));
        assert!(!verify("not a hash", "x"));
    }

    #[tokio::test]
    async fn a_missing_user_never_matches() {
        let phc = hash("pw").unwrap();
        assert!(verify_blocking(Some(phc), "pw").await);
        assert!(!verify_blocking(None, "pw").await);
        assert!(!verify_blocking(None, "").await);
    }
}
