//! Who may log in: `[[sftp.users]]` with public keys, an argon2id password
//! hash, or (opt-in per user) a service-account API key as the password.

use crate::auth::password;
use crate::auth::Authenticator;
use mft_config::sftp::{AuthorizedKeys, Permissions, SftpUser};
use mft_filters::auth::api_key;
use mft_filters::auth::scope::has_scope;
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
        let key_login = self.config.api_key_login && password.starts_with(api_key::PREFIX);
        // A user without a password hash costs a verification too, unless
        // the key check below does the work: timing tells nothing.
        if (!key_login || self.config.password_hash.is_some())
            && password::verify_blocking(self.config.password_hash.clone(), password).await
        {
            return PasswordCheck::Accepted;
        }
        if key_login {
            let key = match auth.authenticate_api_key(password, client_ip, "SFTP").await {
                Ok(key) => key,
                Err(_) => return PasswordCheck::KeyRefused,
            };
            if !self.key_bound(&key.id, &key.account) {
                return PasswordCheck::KeyNotBound(format!("key:{}", key.id));
            }
            let identity = key.identity();
            let mut rights = Rights::of_key(self.config.permissions, &identity.scopes);
            rights.senders = identity.senders.clone();
            if rights.permissions == Permissions::default() {
                return PasswordCheck::KeyWithoutRights(format!("key:{}", key.id));
            }
            return PasswordCheck::Key(KeyLogin {
                credential: format!("key:{}", key.id),
                rights,
            });
        }
        PasswordCheck::Wrong
    }

    /// Whether the key `id` of service account `account` may log in as
    /// this user: listed in `api_key_ids`, or, without that list, a key of
    /// the account with the user's own name. Any other key, whatever its
    /// scopes, is someone else's.
    fn key_bound(&self, id: &str, account: &str) -> bool {
        if self.config.api_key_ids.is_empty() {
            account == self.config.name
        } else {
            self.config.api_key_ids.iter().any(|k| k == id)
        }
    }

    /// What a login with the user's own key or password may do.
    pub fn own_rights(&self) -> Rights {
        Rights {
            permissions: self.config.permissions,
            scopes: "files:read files:write".to_string(),
            senders: None,
        }
    }
}

/// What a session may do, and the scopes its backend calls carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rights {
    /// The user's permissions, narrowed to the credential's.
    pub permissions: Permissions,
    /// Space-separated scopes sent with the backend calls.
    pub scopes: String,
    /// A sender-bound key's allowed senders: the user's on_upload delivery
    /// is made only if its sender is among them.
    pub senders: Option<std::sync::Arc<mft_filters::auth::senders::SenderBinding>>,
}

impl Rights {
    /// The user's permissions intersected with what the key's scopes allow
    /// over HTTPS: reading and listing need `files:read`; uploading,
    /// deleting and making folders need `files:write`.
    pub fn of_key(user: Permissions, scopes: &[String]) -> Rights {
        let read = has_scope(scopes, "files:read");
        let write = has_scope(scopes, "files:write");
        let permissions = Permissions {
            upload: user.upload && write,
            download: user.download && read,
            list: user.list && read,
            delete: user.delete && write,
        };
        let granted: Vec<&str> = [("files:read", read), ("files:write", write)]
            .into_iter()
            .filter_map(|(s, ok)| ok.then_some(s))
            .collect();
        Rights {
            permissions,
            scopes: granted.join(" "),
            senders: None,
        }
    }
}

/// A login with an API key bound to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLogin {
    /// `key:<id>`, audited beside the user.
    pub credential: String,
    /// The narrowed rights.
    pub rights: Rights,
}

/// The outcome of a password login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The password hash matched.
    Accepted,
    /// An API key bound to the user, with the rights it gives.
    Key(KeyLogin),
    /// Neither matched.
    Wrong,
    /// An API key was refused; the authenticator already audited it and
    /// told the defender.
    KeyRefused,
    /// A valid API key, but not one of this user's (`key:<id>`).
    KeyNotBound(String),
    /// A key of this user whose scopes allow none of the user's permissions.
    KeyWithoutRights(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rights_are_the_intersection() {
        let all = Permissions {
            upload: true,
            download: true,
            list: true,
            delete: true,
        };
        let write_only = Rights::of_key(all, &["files:write".to_string()]);
        assert_eq!(
            write_only.permissions,
            Permissions {
                upload: true,
                delete: true,
                ..Permissions::default()
            }
        );
        assert_eq!(write_only.scopes, "files:write");
        let deliveries = Rights::of_key(all, &["deliveries:write".to_string()]);
        assert_eq!(deliveries.permissions, Permissions::default());
        let upload_user = Permissions {
            upload: true,
            ..Permissions::default()
        };
        let both = Rights::of_key(upload_user, &["files:read".into(), "files:write".into()]);
        assert_eq!(both.permissions, upload_user);
    }
}
