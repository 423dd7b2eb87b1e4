//! The config file as the admin console shows it: every secret replaced.
//!
//! Which values are secrets is not guessed from names alone: the converter
//! records each key it resolves as a secret reference ([`crate::convert`]),
//! and those are redacted, plus (for keys the converter never reached
//! because an earlier one was wrong) every key whose name says secret and
//! every URL carrying a password. A secret reference (`env:NAME`,
//! `file:PATH`) is shown as written: it names where the secret is, not the
//! secret; the environment variable or file itself is never read out.

use crate::error::{ConfigError, Issue};
use std::path::Path;

/// What a redacted value reads as.
pub const REDACTED: &str = "<redacted>";

/// Key names that hold secrets wherever they appear.
const SECRET_NAMES: &[&str] = &[
    "token",
    "password",
    "password_hash",
    "secret",
    "client_secret",
    "refresh_token",
    "encryption_key",
    "signing_key",
    "private_key",
    "secret_ref",
];

/// `text` (the config file at `path`) as TOML with every secret replaced
/// by [`REDACTED`] (comments and layout are not kept). An unparseable file
/// is an error naming line and key, like [`crate::load_str`].
pub fn redacted(text: &str, path: &Path) -> Result<String, ConfigError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| {
        let index = crate::locate::SpanIndex::new(text);
        let line = e.span().map(|s| index.line_of(s.start));
        ConfigError::Invalid {
            path: path.to_path_buf(),
            issues: vec![Issue {
                key: String::new(),
                line,
                message: e.message().trim().to_string(),
            }],
        }
    })?;
    let secrets = secret_keys(text, path);
    redact_table(&mut table, "", &secrets);
    toml::to_string_pretty(&table).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        issues: vec![Issue {
            key: String::new(),
            line: None,
            message: format!("cannot render the redacted config: {e}"),
        }],
    })
}

/// The keys the converter reads as secret references (`imap[0].password`).
fn secret_keys(text: &str, path: &Path) -> Vec<String> {
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let index = crate::locate::SpanIndex::new(text);
    let Ok(parsed) = toml::from_str::<crate::file::FileConfig>(text) else {
        return Vec::new();
    };
    let mut ctx = crate::convert::Ctx::new(base, &index);
    let _ = crate::convert::convert(parsed, path, &mut ctx);
    ctx.secret_keys
}

fn is_secret(full: &str, name: &str, secrets: &[String]) -> bool {
    secrets.iter().any(|s| s == full) || SECRET_NAMES.contains(&name)
}

fn redact_string(value: &str) -> String {
    if value.starts_with("env:") || value.starts_with("file:") {
        value.to_string()
    } else {
        REDACTED.to_string()
    }
}

fn url_with_password(value: &str) -> bool {
    url::Url::parse(value).is_ok_and(|u| u.password().is_some())
}

fn redact_value(value: &mut toml::Value, full: &str, name: &str, secrets: &[String]) {
    let secret = is_secret(full, name, secrets);
    match value {
        toml::Value::String(s) if secret || url_with_password(s) => *s = redact_string(s),
        toml::Value::String(_) => {}
        toml::Value::Table(t) => redact_table(t, full, secrets),
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let element = format!("{full}[{i}]");
                match item {
                    toml::Value::Table(t) => redact_table(t, &element, secrets),
                    toml::Value::String(s) if secret || url_with_password(s) => {
                        *s = redact_string(s);
                    }
                    _ => {}
                }
            }
        }
        // A secret is a string; anything else under a secret's name is
        // replaced too rather than shown.
        other if secret => *other = toml::Value::String(REDACTED.to_string()),
        _ => {}
    }
}

fn redact_table(table: &mut toml::Table, prefix: &str, secrets: &[String]) {
    for (name, value) in table.iter_mut() {
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        redact_value(value, &full, name, secrets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_references_kept() {
        let dir = std::env::temp_dir();
        let text = r#"
[server]
https_listen = "127.0.0.1:0"
[admin]
token = "a-literal-admin-token-0123456789"
[auth]
store = "postgres://gw:hunter2@db.example/gw"
[backend]
url = "http://127.0.0.1:1"
signing_key = "env:SOME_SIGNING_KEY"
[[imap]]
name = "ops"
host = "mail.example"
username = "ops"
password = "mailbox-password-in-clear"
"#;
        let out = redacted(text, &dir.join("gateway.toml")).unwrap();
        for secret in [
            "a-literal-admin-token-0123456789",
            "hunter2",
            "mailbox-password-in-clear",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("env:SOME_SIGNING_KEY"), "{out}");
        assert!(out.contains("mail.example"), "{out}");
        assert!(out.contains(REDACTED), "{out}");
    }

    #[test]
    fn a_broken_file_names_its_line() {
        let e = redacted("[server]\nhttps_listen = \n", Path::new("/tmp/g.toml")).unwrap_err();
        assert!(e.to_string().starts_with("g.toml:2"), "{e}");
    }
}
