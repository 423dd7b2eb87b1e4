//! `mft-gateway keys ...`: manage service-account API keys.
//!
//! Works with or without a running gateway: it opens the same store (SQLite
//! under `server.data_dir` by default) and the gateway notices revocations
//! through the store's change log within seconds (see docs/keys.md).

use crate::store::{rfc3339, KeyRecord, Store};
use clap::Subcommand;
use mft_filters::auth::api_key;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key for a service account and print it once.
    ///
    /// The account is created if it does not exist. The key (mgw_<id>_<secret>)
    /// is shown only now: the store keeps a SHA-256 hash of the secret.
    Create {
        /// Service account name: letters, digits, '.', '_', '-'; at most 64 characters.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Comma-separated scopes, e.g. files:read,files:write (at least one).
        #[arg(long, value_name = "S1,S2", value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Days until the key expires (1 to 36500); without it the key never expires.
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=36500))]
        expires: Option<u32>,
        /// This account's own rate limit instead of [rate_limit] per_key,
        /// e.g. "10/s burst 20" (N/s, N/m or N/h, optional burst M).
        #[arg(long, value_name = "QUOTA", value_parser = parse_rate_limit)]
        rate_limit: Option<String>,
        /// Bind the key to these delivery senders: comma-separated addresses
        /// or *@domain, e.g. 'ops@ourcorp.example,*@billing.ourcorp.example'.
        /// A delivery with another sender is refused (403). Without it the
        /// key may name any sender.
        #[arg(long, value_name = "LIST", value_parser = parse_senders)]
        allowed_senders: Option<String>,
        /// Print one JSON line {"id":..,"key":..,"account":..,"scopes":[..],"expires_at":..,"rate_limit":..,"allowed_senders":..}.
        #[arg(long)]
        json: bool,
    },
    /// Bind keys to delivery senders, or unbind them with --any.
    ///
    /// TARGET is a key id, or a service account name (then every key of
    /// that account). Running gateways apply the change within seconds.
    /// Exits 1 if nothing matches.
    SetSenders {
        /// Key id, or service account name.
        #[arg(value_name = "ID|NAME")]
        target: String,
        /// Comma-separated addresses or *@domain (see `keys create`).
        #[arg(value_name = "LIST", value_parser = parse_senders, required_unless_present = "any")]
        allowed_senders: Option<String>,
        /// Remove the binding: the keys may name any sender again.
        #[arg(long, conflicts_with = "allowed_senders")]
        any: bool,
    },
    /// List API keys: id, account, scopes, times and status; never secrets.
    List {
        /// Print a JSON array of objects instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key; a running gateway refuses it within seconds.
    ///
    /// Exits 1 if no key has this id.
    Revoke {
        /// The key's id (16 hex digits, as shown by `keys list`).
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// Runs a `keys` command against the store configured in `config`.
pub fn run(command: KeysCommand, config: &Path) -> anyhow::Result<ExitCode> {
    crate::cli::with_store(config, async |store, _| {
        let stdout = std::io::stdout();
        run_command(store, command, &mut stdout.lock(), SystemTime::now()).await
    })
}

async fn run_command(
    store: &Store,
    command: KeysCommand,
    out: &mut dyn Write,
    now: SystemTime,
) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Create {
            name,
            scopes,
            expires,
            rate_limit,
            allowed_senders,
            json,
        } => {
            let scopes: Vec<String> = scopes.iter().map(|s| s.trim().to_string()).collect();
            let expires_in = expires.map(|days| Duration::from_secs(u64::from(days) * 86_400));
            let (record, token) = store
                .create_key_bound(
                    &name,
                    &scopes,
                    expires_in,
                    rate_limit.as_deref(),
                    allowed_senders.as_deref(),
                )
                .await?;
            if json {
                // Field order is part of the contract: id, then key.
                let line = format!(
                    "{{\"id\":{},\"key\":{},\"account\":{},\"scopes\":{},\"expires_at\":{},\"rate_limit\":{},\"allowed_senders\":{}}}",
                    serde_json::Value::from(record.id.as_str()),
                    serde_json::Value::from(token.as_str()),
                    serde_json::Value::from(record.account.as_str()),
                    serde_json::Value::from(record.scopes.clone()),
                    record
                        .expires_at
                        .map_or(serde_json::Value::Null, |t| rfc3339(t).into()),
                    record
                        .rate_limit
                        .as_deref()
                        .map_or(serde_json::Value::Null, Into::into),
                    record
                        .allowed_senders_list()
                        .map_or(serde_json::Value::Null, Into::into),
                );
                writeln!(out, "{line}")?;
            } else {
                let expiry = match record.expires_at {
                    Some(t) => format!("{} (in {} days)", rfc3339(t), expires.unwrap_or(0)),
                    None => "never".to_string(),
                };
                writeln!(
                    out,
                    "Created API key {} for service account {}.",
                    record.id, record.account
                )?;
                writeln!(out, "  id:       {}", record.id)?;
                writeln!(out, "  account:  {}", record.account)?;
                writeln!(out, "  scopes:   {}", record.scopes.join(" "))?;
                writeln!(out, "  expires:  {expiry}")?;
                if let Some(limit) = &record.rate_limit {
                    writeln!(out, "  limit:    {limit}")?;
                }
                if let Some(senders) = &record.allowed_senders {
                    writeln!(out, "  senders:  {senders}")?;
                }
                writeln!(out, "  key:      {token}")?;
                writeln!(out)?;
                writeln!(
                    out,
                    "Save the key now: it will NOT be shown again and cannot be recovered."
                )?;
                writeln!(
                    out,
                    "Send it as \"Authorization: Bearer <key>\" or \"X-API-Key: <key>\"."
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::List { json } => {
            let keys = store.list_keys().await?;
            if json {
                let list: Vec<serde_json::Value> = keys.iter().map(|k| k.to_json(now)).collect();
                writeln!(out, "{}", serde_json::Value::Array(list))?;
            } else if keys.is_empty() {
                writeln!(
                    out,
                    "No API keys. Create one with: mft-gateway keys create --name NAME --scopes S1,S2"
                )?;
            } else {
                write_table(out, &keys, now)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::SetSenders {
            target,
            allowed_senders,
            any,
        } => {
            let list = if any { None } else { allowed_senders };
            let target = key_id_of(&target);
            let ids: Vec<String> = match store.get_key(&target).await? {
                Some(k) => vec![k.id],
                None => store
                    .list_keys()
                    .await?
                    .into_iter()
                    .filter(|k| k.account == target)
                    .map(|k| k.id)
                    .collect(),
            };
            if ids.is_empty() {
                eprintln!(
                    "error: no API key with id {target:?} and no service account of that name (see: mft-gateway keys list)"
                );
                return Ok(ExitCode::FAILURE);
            }
            for id in &ids {
                store.set_allowed_senders(id, list.as_deref()).await?;
                match &list {
                    Some(l) => writeln!(out, "Key {id} may send deliveries only as: {l}")?,
                    None => writeln!(out, "Key {id} may send deliveries as any sender.")?,
                }
            }
            writeln!(out, "Running gateways apply this within seconds.")?;
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Revoke { id } => {
            let id = key_id_of(&id);
            let before = store.get_key(&id).await?;
            let Some(before) = before else {
                eprintln!("error: no API key with id {id:?} (see: mft-gateway keys list)");
                return Ok(ExitCode::FAILURE);
            };
            if let Some(at) = before.revoked_at {
                writeln!(out, "Key {id} was already revoked at {}.", rfc3339(at))?;
                return Ok(ExitCode::SUCCESS);
            }
            if !store.revoke_key(&id).await? {
                // Deleted between the two calls; nothing does that today.
                eprintln!("error: no API key with id {id:?}");
                return Ok(ExitCode::FAILURE);
            }
            writeln!(
                out,
                "Revoked key {id} of service account {}. Running gateways refuse it within seconds.",
                before.account
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Checks a `--rate-limit` value with the config file's quota syntax, so a
/// typo fails here and not silently at request time.
fn parse_rate_limit(text: &str) -> Result<String, String> {
    crate::ratelimit::parse_limit(text)?;
    Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Checks an allowed-senders list and returns its canonical form.
fn parse_senders(text: &str) -> Result<String, String> {
    crate::store::validate_senders(text).map_err(|e| e.to_string())
}

/// The id from an id, or from a whole key pasted by mistake (its secret is
/// neither printed nor kept).
fn key_id_of(arg: &str) -> String {
    let arg = arg.trim();
    if let Ok(parsed) = api_key::parse(arg) {
        return parsed.id.to_string();
    }
    match arg.strip_prefix(api_key::PREFIX) {
        Some(rest) if rest.len() > api_key::ID_LEN && rest.is_char_boundary(api_key::ID_LEN) => {
            rest[..api_key::ID_LEN].to_string()
        }
        Some(rest) => rest.to_string(),
        None => arg.to_string(),
    }
}

fn write_table(out: &mut dyn Write, keys: &[KeyRecord], now: SystemTime) -> std::io::Result<()> {
    let dash = || "-".to_string();
    let header = [
        "ID",
        "ACCOUNT",
        "SCOPES",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "STATUS",
        "SENDERS",
    ]
    .map(str::to_string);
    let rows: Vec<[String; 8]> = keys
        .iter()
        .map(|k| {
            [
                k.id.clone(),
                k.account.clone(),
                k.scopes.join(","),
                rfc3339(k.created_at),
                k.expires_at.map_or_else(|| "never".to_string(), rfc3339),
                k.last_used_at.map_or_else(dash, rfc3339),
                k.status(now).to_string(),
                k.allowed_senders
                    .clone()
                    .unwrap_or_else(|| "any".to_string()),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{line}")?;
    }
    writeln!(out, "(times in UTC)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_from_id_or_pasted_key() {
        let generated = api_key::generate(&[7u8; 40]);
        assert_eq!(key_id_of(&generated.token), generated.id);
        assert_eq!(key_id_of(&generated.id), generated.id);
        assert_eq!(key_id_of(&format!(" {} ", generated.id)), generated.id);
        assert_eq!(key_id_of("mgw_0123456789abcdef_broken"), "0123456789abcdef");
    }

    #[tokio::test]
    async fn table_and_json_never_show_the_secret_or_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        let (record, token) = store
            .create_key("ci-bot", &["files:read".to_string()], None)
            .await
            .unwrap();
        // The whole secret: base64url secrets contain '_', so cutting at the
        // last '_' could leave a fragment short enough to appear by chance.
        let secret = token
            .strip_prefix(&format!("mgw_{}_", record.id))
            .unwrap()
            .to_string();
        let hash_hex: String = record
            .secret_hash
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        for json in [false, true] {
            let mut out = Vec::new();
            let code = run_command(
                &store,
                KeysCommand::List { json },
                &mut out,
                SystemTime::now(),
            )
            .await
            .unwrap();
            assert_eq!(code, ExitCode::SUCCESS);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(&record.id), "{text}");
            assert!(text.contains("active"), "{text}");
            assert!(!text.contains(&secret), "secret leaked: {text}");
            assert!(!text.contains(&hash_hex), "hash leaked: {text}");
        }
    }

    #[tokio::test]
    async fn create_human_output_shows_key_once_with_warning() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        let mut out = Vec::new();
        let command = KeysCommand::Create {
            name: "ops".into(),
            scopes: vec!["files:read".into(), " files:write".into()],
            expires: Some(30),
            rate_limit: Some("10/s  burst 20".into()),
            allowed_senders: Some("ops@ourcorp.example".into()),
            json: false,
        };
        run_command(&store, command, &mut out, SystemTime::now())
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("mgw_").count(), 1, "{text}");
        assert!(text.contains("NOT be shown again"), "{text}");
        assert!(text.contains("files:read files:write"), "{text}");
        assert!(text.contains("(in 30 days)"), "{text}");
        assert!(text.contains("limit:    10/s  burst 20"), "{text}");
        assert!(text.contains("senders:  ops@ourcorp.example"), "{text}");
    }
}
