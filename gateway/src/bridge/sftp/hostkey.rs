//! The SSH host key: ed25519, generated at first start and kept (0600), so
//! clients' `known_hosts` entries stay valid across restarts.

use russh::keys::ssh_key::{private::Ed25519Keypair, HashAlg, LineEnding};
use russh::keys::PrivateKey;
use std::path::{Path, PathBuf};

/// Why a host key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    /// Reading, creating or writing the key file failed.
    #[error("host key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not an unencrypted OpenSSH private key.
    #[error("host key {path}: {reason}")]
    Format {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Default path of the ed25519 host key under `data_dir`.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("sftp_host_ed25519_key")
}

/// Loads the key at `path`; creates one there first if the file does not exist.
pub fn load_or_generate(path: &Path) -> Result<PrivateKey, HostKeyError> {
    let io = |source| HostKeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(_) => load(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| io(std::io::Error::other(e.to_string())))?;
            let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| HostKeyError::Format {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            write_private(path, text.as_bytes()).map_err(io)?;
            tracing::info!(path = %path.display(), fingerprint = %fingerprint(&key),
                "generated the SFTP host key");
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// Loads an existing key (the optional RSA key, or a kept ed25519 one).
pub fn load(path: &Path) -> Result<PrivateKey, HostKeyError> {
    russh::keys::load_secret_key(path, None).map_err(|e| HostKeyError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// `SHA256:<base64>`, as `ssh-keygen -lf` and clients show it.
pub fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

/// Creates the file readable by its owner only, never replacing one.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = default_path(dir.path());
        let first = load_or_generate(&path).unwrap();
        let again = load_or_generate(&path).unwrap();
        assert_eq!(fingerprint(&first), fingerprint(&again));
        assert!(fingerprint(&first).starts_with("SHA256:"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
