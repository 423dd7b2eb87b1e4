//! Adding an SFTP user at run time (admin API, console, `mft-gateway sftp
//! users add`): the request as given, checked and turned into what the
//! store keeps. One place for the rules, so the API and the CLI agree.

use crate::store::sftp_users::{parse_permissions, valid_name, NewSftpUser};
use mft_config::defaults::sftp as D;
use mft_config::Config;
use russh::keys::ssh_key::AuthorizedKeys as KeysParser;
use serde::Deserialize;

/// Shortest password accepted for a user added at run time (as for
/// console administrators).
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Most public keys one user may have.
pub const MAX_KEYS: usize = 32;

/// `POST /admin/v1/sftp/users` (and the CLI's flags): a password and/or
/// public keys, plus what `[[sftp.users]]` sets.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AddUser {
    /// Login name.
    pub name: String,
    /// The password in clear; stored as its argon2id hash.
    #[serde(default)]
    pub password: Option<String>,
    /// Or an argon2id PHC string made elsewhere (`sftp hash-password`).
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Public keys, OpenSSH `authorized_keys` lines.
    #[serde(default)]
    pub authorized_keys: Vec<String>,
    /// Root folder in the backend (`""` for the root).
    pub folder: String,
    /// `upload`, `download`, `list`, `delete`; absent: the config default.
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    /// Concurrent sessions; absent: the config default.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Recipients of a delivery made per completed upload.
    #[serde(default)]
    pub deliver_to: Vec<String>,
}

/// Why a user cannot be added.
#[derive(Debug, thiserror::Error)]
pub enum AddUserError {
    /// The request itself is wrong (400).
    #[error("{0}")]
    Invalid(String),
    /// The name is a `[[sftp.users]]` of the config file (409).
    #[error("sftp user {0:?} is defined in the config file ([[sftp.users]])")]
    InConfig(String),
    /// argon2 failed (no randomness).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

impl std::fmt::Debug for AddUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddUser")
            .field("name", &self.name)
            .field("folder", &self.folder)
            .finish_non_exhaustive()
    }
}

/// Whether `name` is a `[[sftp.users]]` of `config`.
pub fn in_config(config: &Config, name: &str) -> bool {
    config
        .sftp
        .as_ref()
        .is_some_and(|s| s.users.iter().any(|u| u.name == name))
}

/// Checks `req` against the rules and `config`, parses its keys and hashes
/// its password. Hashing costs tens of milliseconds by design: call this
/// off the async runtime's worker threads (`spawn_blocking`).
pub fn prepare(req: AddUser, config: &Config) -> Result<NewSftpUser, AddUserError> {
    let bad = AddUserError::Invalid;
    if !valid_name(&req.name) {
        return Err(bad(
            "name: 1 to 64 letters, digits, '-', '_' or '.'".to_string()
        ));
    }
    if in_config(config, &req.name) {
        return Err(AddUserError::InConfig(req.name));
    }
    let folder = mft_filters::validation::folder::validate_folder(&req.folder)
        .map_err(|e| bad(format!("folder {:?}: {e}", req.folder)))?;
    let authorized_keys = parse_keys(&req.authorized_keys).map_err(bad)?;
    let password_hash = match (req.password, req.password_hash) {
        (Some(_), Some(_)) => {
            return Err(bad("give password or password_hash, not both".to_string()))
        }
        (Some(pw), None) => {
            if pw.chars().count() < MIN_PASSWORD_CHARS {
                return Err(bad(format!(
                    "password: at least {MIN_PASSWORD_CHARS} characters"
                )));
            }
            Some(crate::auth::password::hash(&pw).map_err(|e| AddUserError::Hash(e.to_string()))?)
        }
        (None, Some(h)) => {
            if argon2::PasswordHash::new(&h).is_err() || !h.starts_with("$argon2id$") {
                return Err(bad(
                    "password_hash: expected an argon2id PHC string (mft-gateway sftp hash-password)"
                        .to_string(),
                ));
            }
            Some(h)
        }
        (None, None) => None,
    };
    if password_hash.is_none() && authorized_keys.is_empty() {
        return Err(bad(
            "no way to log in: give a password or at least one public key".to_string(),
        ));
    }
    let words = req
        .permissions
        .unwrap_or_else(|| D::USER_PERMISSIONS.iter().map(|s| s.to_string()).collect());
    let permissions = parse_permissions(words.iter().map(String::as_str)).map_err(|w| {
        bad(format!(
            "unknown permission {w:?}; expected upload, download, list, delete"
        ))
    })?;
    let max_connections = req.max_connections.unwrap_or(D::USER_MAX_CONNECTIONS);
    if max_connections == 0 {
        return Err(bad("max_connections must be at least 1".to_string()));
    }
    for r in &req.deliver_to {
        if r.contains(char::is_whitespace)
            || mft_filters::trust::domain_rules::domain_of(r).is_none()
        {
            return Err(bad(format!("deliver_to: {r:?} is not an e-mail address")));
        }
    }
    Ok(NewSftpUser {
        name: req.name,
        password_hash,
        authorized_keys,
        folder,
        permissions,
        max_connections,
        deliver_to: req.deliver_to,
    })
}

/// Each non-empty, non-comment line parsed as an OpenSSH public key and
/// written back in the canonical `type base64 comment` form (options such
/// as `from=` are refused: the bridge would not honour them).
pub fn parse_keys(lines: &[String]) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    for line in lines.iter().flat_map(|l| l.lines()) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut entries = KeysParser::new(line);
        let entry = match entries.next() {
            Some(Ok(entry)) => entry,
            Some(Err(e)) => return Err(format!("public key: {e}")),
            None => continue,
        };
        if !entry.config_opts().is_empty() {
            return Err(
                "public key: authorized_keys options (from=, command=, ...) are not supported"
                    .to_string(),
            );
        }
        let text = entry
            .public_key()
            .to_openssh()
            .map_err(|e| format!("public key: {e}"))?;
        keys.push(text);
        if keys.len() > MAX_KEYS {
            return Err(format!("at most {MAX_KEYS} public keys"));
        }
    }
    Ok(keys)
}

/// `SHA256:...` of each key line (what `ssh-keygen -lf` prints), for lists.
pub fn fingerprints(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| russh::keys::ssh_key::PublicKey::from_openssh(l).ok())
        .map(|k| k.fingerprint(russh::keys::HashAlg::Sha256).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl e2e";

    fn config(users: &str) -> Config {
        let text = format!(
            "[server]\ntls_cert = \"c.pem\"\ntls_key = \"c.key\"\n[backend]\nurl = \"http://127.0.0.1:8080\"\n\
             [sftp]\nlisten = \"127.0.0.1:2222\"\n{users}"
        );
        mft_config::load_str(&text, std::path::Path::new("/etc/mft/gateway.toml"))
            .unwrap()
            .config
    }

    fn req(name: &str) -> AddUser {
        AddUser {
            name: name.to_string(),
            folder: "partners/x/".to_string(),
            ..AddUser::default()
        }
    }

    #[test]
    fn keys_are_parsed_and_written_back_canonically() {
        let cfg = config("");
        let mut r = req("acme");
        r.authorized_keys = vec![format!("  {KEY}  \n# a comment\n")];
        let u = prepare(r, &cfg).unwrap();
        assert_eq!(u.authorized_keys, [KEY]);
        assert_eq!(u.folder, "partners/x");
        assert!(u.password_hash.is_none());
        assert!(u.permissions.upload && u.permissions.list && !u.permissions.delete);
        assert_eq!(fingerprints(&u.authorized_keys).len(), 1);
        assert!(fingerprints(&u.authorized_keys)[0].starts_with("SHA256:"));
    }

    #[test]
    fn a_password_is_hashed_never_kept() {
        let cfg = config("");
        let mut r = req("acme");
        r.password = Some("correct horse battery".to_string());
        let u = prepare(r, &cfg).unwrap();
        let hash = u.password_hash.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains("correct horse"));
        assert!(crate::auth::password::verify(
            &hash,
            "correct horse battery"
        ));
    }

    #[test]
    fn refusals_say_why() {
        let cfg = config(
            "[[sftp.users]]\nname = \"alice\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"\nfolder = \"a\"\n",
        );
        let err = |r: AddUser| prepare(r, &cfg).unwrap_err().to_string();
        let mut r = req("alice");
        r.authorized_keys = vec![KEY.to_string()];
        assert!(matches!(prepare(r, &cfg), Err(AddUserError::InConfig(_))));
        assert!(err(req("bob")).contains("no way to log in"));
        assert!(err(req("../x")).contains("name"));
        let mut r = req("bob");
        r.password = Some("short".into());
        assert!(err(r).contains("at least"));
        let mut r = req("bob");
        r.authorized_keys = vec!["ssh-ed25519 not-base64".into()];
        assert!(err(r).contains("public key"));
        let mut r = req("bob");
        r.authorized_keys = vec![format!("from=\"10.0.0.1\" {KEY}")];
        assert!(err(r).contains("options"));
        let mut r = req("bob");
        r.authorized_keys = vec![KEY.into()];
        r.folder = "a/../b".into();
        assert!(err(r).contains("folder"));
        let mut r = req("bob");
        r.authorized_keys = vec![KEY.into()];
        r.permissions = Some(vec!["fly".into()]);
        assert!(err(r).contains("fly"));
        let mut r = req("bob");
        r.password_hash = Some("plain".into());
        assert!(err(r).contains("argon2id"));
        let mut r = req("bob");
        r.authorized_keys = vec![KEY.into()];
        r.deliver_to = vec!["nobody".into()];
        assert!(err(r).contains("deliver_to"));
    }
}
