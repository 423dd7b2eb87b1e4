//! Who may log in: `[[sftp.users]]` with public keys, an argon2id password
//! hash, or (opt-in per user) a service-account API key as the password.

use crate::auth::{AuthRequest, Authenticator};
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use mft_config::sftp::{AuthorizedKeys, SftpUser};
use mft_filters::decision::Decision;
use russh::keys::ssh_key::{public::KeyData, AuthorizedKeys as KeysParser};
use std::net::IpAddr;
use std::sync::Arc;

/// A user with their keys parsed and their root folder validated.
pub struct User {
    /// The configured user.
    pub config: SftpUser,
    /// Canonical backend folder of the user's root.
    pub root: String,
    keys: Vec<KeyData>,
}

/// Why the user table cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// An `authorized_keys` file cannot be read or parsed.
    #[error("sftp.users {user}: authorized_keys: {reason}")]
    Keys {
        /// User name.
        user: String,
        /// What is wrong.
        reason: String,
    },
    /// The folder fails the HTTP folder validation.
    #[error("sftp.users {user}: folder {folder:?}: {reason}")]
    Folder {
        /// User name.
        user: String,
        /// Configured folder.
        folder: String,
        /// What is wrong.
        reason: String,
    },
}

impl User {
    /// Parses the user's keys and validates the folder.
    pub fn new(config: SftpUser) -> Result<User, UsersError> {
        let root =
            mft_filters::validation::folder::validate_folder(&config.folder).map_err(|e| {
                UsersError::Folder {
                    user: config.name.clone(),
                    folder: config.folder.clone(),
                    reason: e.to_string(),
                }
            })?;
        let bad = |reason: String| UsersError::Keys {
            user: config.name.clone(),
            reason,
        };
        let text = match &config.authorized_keys {
            None => String::new(),
            Some(AuthorizedKeys::Path(p)) => {
                std::fs::read_to_string(p).map_err(|e| bad(format!("{}: {e}", p.display())))?
            }
            Some(AuthorizedKeys::Inline(lines)) => lines.join("\n"),
        };
        let mut keys = Vec::new();
        for entry in KeysParser::new(&text) {
            let entry = entry.map_err(|e| bad(e.to_string()))?;
            keys.push(entry.public_key().key_data().clone());
        }
        Ok(User { config, root, keys })
    }

    /// Whether `key` is one of the user's.
    pub fn accepts_key(&self, key: &KeyData) -> bool {
        self.keys.iter().any(|k| k == key)
    }

    /// Checks a password: the argon2id hash (on a blocking thread: it costs
    /// tens of milliseconds by design), then, if allowed, an API key.
    pub async fn check_password(
        self: &Arc<Self>,
        password: &str,
        auth: &Authenticator,
        client_ip: Option<IpAddr>,
    ) -> PasswordCheck {
        if let Some(hash) = self.config.password_hash.clone() {
            let pw = password.to_string();
            let ok = tokio::task::spawn_blocking(move || verify_hash(&hash, &pw))
                .await
                .unwrap_or(false);
            if ok {
                return PasswordCheck::Accepted;
            }
        }
        if self.config.api_key_login && password.starts_with("mgw_") {
            let bearer = format!("Bearer {password}");
            let request_id = uuid::Uuid::now_v7().to_string();
            // Uploading files is what an SFTP login does, so the key needs
            // the scope of POST /api/v1/files.
            let req = AuthRequest {
                request_id: &request_id,
                method: "POST",
                path: "/api/v1/files",
                client_ip,
                authorization: Some(bearer.as_bytes()),
                x_api_key: None,
            };
            return match auth.authorize(&req).await {
                Decision::Continue(_) => PasswordCheck::Accepted,
                Decision::Reject(_) => PasswordCheck::KeyRefused,
            };
        }
        PasswordCheck::Wrong
    }
}

/// The outcome of a password login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The hash or the API key matched.
    Accepted,
    /// Neither matched.
    Wrong,
    /// An API key was refused; the authenticator already audited it and
    /// told the defender.
    KeyRefused,
}

/// Verifies `password` against a PHC string in constant time (argon2 does
/// the comparison itself).
pub fn verify_hash(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "unusable sftp password hash");
            false
        }
    }
}

/// An argon2id PHC string for `password` (the CLI's hash-password).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| argon2::password_hash::Error::Crypto)?;
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_hash(&phc, "correct horse"));
        assert!(!verify_hash(&phc, "correct horsf"));
        assert!(!verify_hash("not a hash", "x"));
    }
}
