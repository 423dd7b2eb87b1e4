//! The defaults docs/configuration.md documents are the constants the
//! config crate uses (`mft_config::defaults`), and every constant of the
//! table is documented.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed unwrap is a failed run

use mft_config::defaults::{Value, TABLE};
use std::collections::BTreeMap;
use std::time::Duration;

/// `section.key` -> the default cell, for every row of every key table
/// under a `[section]` heading whose default is one code span.
fn documented() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut section: Option<String> = None;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("## ") || line.starts_with("### ") {
            // "## `[server]`", "### `[[auth.jwt]]` trusted ...", "## `[[imap]]` and `[[pop3]]` ..."
            section = line
                .split('`')
                .nth(1)
                .filter(|s| s.starts_with('['))
                .map(|s| s.trim_matches(|c| c == '[' || c == ']').to_string());
            continue;
        }
        let Some(section) = &section else { continue };
        if !line.starts_with("| `") {
            continue;
        }
        let cells = split_row(line);
        if cells.len() < 4 {
            continue;
        }
        let Some(key) = cells[0].split('`').nth(1) else {
            continue;
        };
        let default = cells[2].trim();
        let one_span = default.len() >= 2
            && default.starts_with('`')
            && default.ends_with('`')
            && default.matches('`').count() == 2;
        if one_span {
            out.insert(
                format!("{section}.{key}"),
                default.trim_matches('`').to_string(),
            );
        }
    }
    out
}

/// Cells of a Markdown table row; `\|` inside a cell is not a separator.
fn split_row(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut chars = line.trim().trim_start_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                if let Some(cell) = cells.last_mut() {
                    cell.push('|');
                }
            }
            '|' => cells.push(String::new()),
            c => {
                if let Some(cell) = cells.last_mut() {
                    cell.push(c);
                }
            }
        }
    }
    cells
}

/// Documented defaults that name another setting rather than a value.
const REFERENCES: &[&str] = &["trust.rate_limit", "sftp.host_key"];

fn unquote(text: &str) -> Option<&str> {
    text.strip_prefix('"')?.strip_suffix('"')
}

fn matches(value: &Value, doc: &str) -> Result<(), String> {
    match value {
        Value::Duration(d) => {
            let text = unquote(doc).ok_or("a duration is documented quoted")?;
            let parsed: Duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
            (parsed == *d)
                .then_some(())
                .ok_or(format!("documented {parsed:?}, constant {d:?}"))
        }
        Value::Int(n) => {
            let parsed: u64 = doc.replace('_', "").parse().map_err(|_| "not a number")?;
            (parsed == *n)
                .then_some(())
                .ok_or(format!("documented {parsed}, constant {n}"))
        }
        Value::Size(n) => {
            let text = unquote(doc).unwrap_or(doc);
            let parsed = mft_config::limits::parse_size(text)?;
            (parsed == *n)
                .then_some(())
                .ok_or(format!("documented {parsed} bytes, constant {n}"))
        }
        Value::Bool(b) => {
            let parsed: bool = doc.parse().map_err(|_| "not true/false")?;
            (parsed == *b)
                .then_some(())
                .ok_or(format!("documented {parsed}, constant {b}"))
        }
        Value::Str(s) => {
            let text = unquote(doc).ok_or("a string is documented quoted")?;
            (text == *s)
                .then_some(())
                .ok_or(format!("documented {text:?}, constant {s:?}"))
        }
        Value::List(items) => {
            let parsed: toml::Value = toml::from_str(&format!("v = {doc}"))
                .map_err(|e| format!("not a TOML list: {e}"))?;
            let parsed: Vec<&str> = parsed
                .get("v")
                .and_then(toml::Value::as_array)
                .ok_or("not a list")?
                .iter()
                .map(|v| v.as_str().unwrap_or("?"))
                .collect();
            (parsed == *items)
                .then_some(())
                .ok_or(format!("documented {parsed:?}, constant {items:?}"))
        }
    }
}

#[test]
fn documented_defaults_equal_the_constants() {
    let docs = documented();
    assert!(docs.len() > 50, "the parser found only {docs:?}");
    let table: BTreeMap<&str, &Value> = TABLE.iter().map(|(k, v)| (*k, v)).collect();
    let mut problems = Vec::new();
    for (key, doc) in &docs {
        if REFERENCES.contains(&key.as_str()) {
            continue;
        }
        match table.get(key.as_str()) {
            None => problems.push(format!(
                "{key}: documented default `{doc}` has no constant in mft_config::defaults::TABLE"
            )),
            Some(value) => {
                if let Err(e) = matches(value, doc) {
                    problems.push(format!("{key}: `{doc}`: {e}"));
                }
            }
        }
    }
    for key in table.keys() {
        if !docs.contains_key(*key) {
            problems.push(format!(
                "{key}: in defaults::TABLE but docs/configuration.md documents no literal default for it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_changed_default_would_be_caught() {
    // The comparison itself must be able to fail.
    assert!(matches(&Value::Duration(Duration::from_secs(10)), "\"10s\"").is_ok());
    assert!(matches(&Value::Duration(Duration::from_secs(10)), "\"11s\"").is_err());
    assert!(matches(&Value::Size(35 << 20), "\"35 MiB\"").is_ok());
    assert!(matches(&Value::Size(32 * 1024), "32 KiB").is_ok());
    assert!(matches(&Value::Size(32 * 1024), "33 KiB").is_err());
    assert!(matches(&Value::List(&["RS256"]), "[\"RS256\"]").is_ok());
    assert!(matches(&Value::List(&["RS256"]), "[]").is_err());
    assert!(matches(&Value::Str("hyper"), "\"pingora\"").is_err());
    assert!(matches(&Value::Int(128), "128").is_ok());
    assert!(matches(&Value::Int(100_000), "100000").is_ok());
    assert!(matches(&Value::Bool(true), "false").is_err());
}

#[test]
fn a_minimal_config_gets_the_documented_defaults() {
    // The constants are what the loader uses, not only what the table says.
    use mft_config::defaults as d;
    let text = "[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n[backend]\nurl = \"http://127.0.0.1:8080\"\n";
    let c = mft_config::load_str(text, std::path::Path::new("/etc/mft/gateway.toml"))
        .unwrap()
        .config;
    assert_eq!(c.server.https_listen.to_string(), d::server::HTTPS_LISTEN);
    assert_eq!(c.server.admin_listen.to_string(), d::server::ADMIN_LISTEN);
    assert_eq!(
        c.server.tls_handshake_timeout,
        d::server::TLS_HANDSHAKE_TIMEOUT
    );
    assert_eq!(c.server.shutdown_timeout, d::server::SHUTDOWN_TIMEOUT);
    assert_eq!(c.backend.pool_size, d::backend::POOL_SIZE);
    assert_eq!(c.backend.retry_base, d::backend::RETRY_BASE);
    assert_eq!(c.backend.signature_ttl, d::backend::SIGNATURE_TTL);
    assert_eq!(c.defender.ban_time, d::defender::BAN_TIME);
    assert_eq!(c.audit.keep, d::audit::KEEP);
    assert_eq!(c.limits.max_header_bytes, d::limits::MAX_HEADER_BYTES);
    assert_eq!(c.limits.min_body_rate, Some(d::limits::MIN_BODY_RATE));
    assert_eq!(
        c.limits.min_body_rate_window,
        d::limits::MIN_BODY_RATE_WINDOW
    );
    assert_eq!(c.trust.relay_max_age, d::trust::RELAY_MAX_AGE);
    assert_eq!(c.rate_limit.redis_timeout, d::rate_limit::REDIS_TIMEOUT);
}

#[test]
fn zero_disables_the_body_rate_floor_and_the_spool_floor() {
    let text = "[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n[backend]\nurl = \"http://127.0.0.1:8080\"\n[limits]\nmin_body_rate = 0\nmin_body_rate_window = \"5s\"\n[organization]\nname = \"o\"\nemail_domains = [\"o.example\"]\n[smtp]\nlisten = \"127.0.0.1:2525\"\nspool_min_free = \"0\"\n";
    let c = mft_config::load_str(text, std::path::Path::new("/etc/mft/gateway.toml"))
        .unwrap()
        .config;
    assert_eq!(c.limits.min_body_rate, None);
    assert_eq!(
        c.limits.min_body_rate_window,
        std::time::Duration::from_secs(5)
    );
    assert_eq!(c.smtp.unwrap().spool_min_free, None);
    let bad = text.replace("spool_min_free = \"0\"", "spool_min_free = \"lots\"");
    assert!(mft_config::load_str(&bad, std::path::Path::new("/etc/mft/gateway.toml")).is_err());
}
