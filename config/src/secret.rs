//! Secret references: `env:NAME`, `file:PATH`, or (discouraged) a literal.

use std::fmt;
use std::path::Path;

/// A resolved secret. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value that is already a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How a reference was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    /// `env:NAME`
    Env,
    /// `file:PATH`
    File,
    /// The value itself, in clear in the config file.
    Literal,
}

/// Resolves a secret reference; relative `file:` paths are taken from `base`.
///
/// Errors never contain the secret, only the reference.
pub fn resolve(reference: &str, base: &Path) -> Result<(Secret, SecretSource), String> {
    if let Some(name) = reference.strip_prefix("env:") {
        let value = std::env::var(name)
            .map_err(|_| format!("environment variable {name} is not set (or not UTF-8)"))?;
        if value.is_empty() {
            return Err(format!("environment variable {name} is empty"));
        }
        Ok((Secret(value), SecretSource::Env))
    } else if let Some(path) = reference.strip_prefix("file:") {
        let full = base.join(path);
        let value = std::fs::read_to_string(&full)
            .map_err(|e| format!("cannot read secret file {}: {e}", full.display()))?;
        // Files written by `echo` end in a newline that is not part of the secret.
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        if value.is_empty() {
            return Err(format!("secret file {} is empty", full.display()));
        }
        Ok((Secret(value), SecretSource::File))
    } else if reference.is_empty() {
        Err("empty secret".to_string())
    } else {
        Ok((Secret(reference.to_string()), SecretSource::Literal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
    }

    #[test]
    fn resolves_file_and_trims_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), "s3cret\n").unwrap();
        let (s, src) = resolve("file:k", dir.path()).unwrap();
        assert_eq!((s.expose(), src), ("s3cret", SecretSource::File));
    }

    #[test]
    fn missing_env_names_the_variable_only() {
        let err = resolve("env:MFT_TEST_SURELY_UNSET_VAR", Path::new(".")).unwrap_err();
        assert!(err.contains("MFT_TEST_SURELY_UNSET_VAR"));
    }

    #[test]
    fn literal_is_reported_as_such() {
        let (_, src) = resolve("plain", Path::new(".")).unwrap();
        assert_eq!(src, SecretSource::Literal);
    }
}
