//! `mft-gateway transports ...`: outbound transport providers
//! (docs/transports.md). Works on the store, with or without a running gateway.

use crate::store::Store;
use crate::transports::{self, OutboundMessage, SecretInput, TransportError};
use anyhow::Context;
use clap::Subcommand;
use mft_config::Config;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `transports` subcommands.
// Parsed once per process: the size of `Add` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum TransportsCommand {
    /// Add a provider: type smtp, sms (aspsms.com) or threema (Threema Gateway, end-to-end).
    Add {
        /// Provider name: letters, digits, '-', '_', '.'.
        #[arg(value_name = "NAME")]
        name: String,
        /// Provider type: smtp, sms, threema.
        #[arg(long = "type", value_name = "TYPE", default_value = "smtp")]
        kind: String,
        /// smtp: server host.
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// smtp: port (default: 587 starttls, 465 implicit, 25 none).
        #[arg(long, value_name = "PORT")]
        port: Option<u16>,
        /// smtp: TLS mode: starttls (required), implicit, or none (loopback only).
        #[arg(long, value_name = "MODE")]
        tls: Option<String>,
        /// smtp: extra CA certificates (PEM) trusted for this server.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// smtp: AUTH user name.
        #[arg(long, value_name = "USER")]
        username: Option<String>,
        /// File holding the secret (SMTP or aspsms password, Threema API secret): stored encrypted with [trust] encryption_key.
        #[arg(
            long,
            visible_alias = "secret-file",
            value_name = "FILE",
            conflicts_with = "password_ref"
        )]
        password_file: Option<PathBuf>,
        /// Keep the secret outside the store: env:NAME or file:PATH.
        #[arg(long, visible_alias = "secret-ref", value_name = "REF")]
        password_ref: Option<String>,
        /// smtp: From address, e.g. "MFT <mft@ourcorp.example>".
        #[arg(long, value_name = "ADDRESS")]
        from: Option<String>,
        /// smtp: Reply-To address.
        #[arg(long, value_name = "ADDRESS")]
        reply_to: Option<String>,
        /// smtp: EHLO name (default: this host's name).
        #[arg(long, value_name = "NAME")]
        ehlo_name: Option<String>,
        /// smtp: S/MIME certificate of the From address (PEM; chain after it).
        #[arg(long, value_name = "FILE", requires = "smime_key")]
        smime_cert: Option<PathBuf>,
        /// smtp: its private key (PEM, RSA or ECDSA P-256).
        #[arg(long, value_name = "FILE", requires = "smime_cert")]
        smime_key: Option<PathBuf>,
        /// smtp: S/MIME key, certificate and chain from one PKCS#12 file (instead of --smime-cert/--smime-key).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["smime_cert", "smime_key"])]
        smime_p12: Option<PathBuf>,
        /// smtp: the PKCS#12 file's password as a reference, env:NAME or file:PATH (none: no password).
        #[arg(long, value_name = "REF", requires = "smime_p12")]
        smime_p12_password: Option<String>,
        /// smtp: connect from this local address (an address of this host).
        #[arg(long, value_name = "IP")]
        source_address: Option<String>,
        /// Any type: at most this many messages, e.g. 2/s, 30/m, 500/h (optionally "burst N").
        #[arg(long, value_name = "RATE")]
        rate: Option<String>,
        /// sms: the aspsms user key.
        #[arg(long, value_name = "KEY")]
        userkey: Option<String>,
        /// sms: sender, a phone number (+41...) or up to 11 letters and digits.
        #[arg(long, value_name = "SENDER")]
        originator: Option<String>,
        /// threema: the gateway ID (*XXXXXXX).
        #[arg(long, value_name = "ID")]
        gateway_id: Option<String>,
        /// threema: file holding the gateway ID's private key (hex); stored encrypted.
        #[arg(long, value_name = "FILE")]
        private_key_file: Option<PathBuf>,
        /// sms, threema: API base URL (default: the provider's documented one).
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// sms, threema: warn when the balance is below this.
        #[arg(long, value_name = "CREDITS", requires_all = ["credit_warn_via", "credit_warn_to"])]
        credit_threshold: Option<f64>,
        /// sms, threema: the provider that carries the low-credit warning.
        #[arg(long, value_name = "PROVIDER")]
        credit_warn_via: Option<String>,
        /// sms, threema: the warning's recipient.
        #[arg(long, value_name = "ADDRESS")]
        credit_warn_to: Option<String>,
    },
    /// List providers: name, type, state, last use, used by, last error.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one provider's settings, state and users (never its secret).
    Show {
        /// Provider name.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Copy a provider under a new name, changing settings with --set.
    Copy {
        /// The provider to copy.
        #[arg(value_name = "FROM")]
        from: String,
        /// The new provider's name.
        #[arg(value_name = "TO")]
        to: String,
        /// Change a setting: KEY=VALUE (VALUE as JSON if it parses, else text; empty removes).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Send a real test message and print the provider's answer; exit 1 if it failed.
    Test {
        /// Provider name.
        #[arg(value_name = "NAME")]
        name: String,
        /// Recipient: e-mail address, phone number (+41...) or Threema ID.
        #[arg(long, value_name = "ADDRESS")]
        to: String,
    },
    /// Ask an sms or threema provider for its balance now; exit 1 if it failed.
    Credits {
        /// Provider name.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// sms: the delivery status of messages sent (references from `test` or the message's answer).
    Delivery {
        /// Provider name.
        #[arg(value_name = "NAME")]
        name: String,
        /// Transaction reference(s).
        #[arg(long = "reference", value_name = "REF", required = true)]
        references: Vec<String>,
    },
    /// Remove a provider. Exit 1 if absent.
    Remove {
        /// Provider name.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// Runs a `transports` command with the store and settings of `config`.
pub fn run(command: TransportsCommand, config: &Path) -> anyhow::Result<ExitCode> {
    crate::cli::with_store(config, async |store, cfg| {
        let stdout = std::io::stdout();
        execute(store, cfg, command, &mut stdout.lock()).await
    })
}

async fn execute(
    store: &Store,
    cfg: &Config,
    command: TransportsCommand,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match command {
        TransportsCommand::Add {
            name,
            kind,
            host,
            port,
            tls,
            ca_file,
            username,
            password_file,
            password_ref,
            from,
            reply_to,
            ehlo_name,
            smime_cert,
            smime_key,
            smime_p12,
            smime_p12_password,
            source_address,
            rate,
            userkey,
            originator,
            gateway_id,
            private_key_file,
            endpoint,
            credit_threshold,
            credit_warn_via,
            credit_warn_to,
        } => {
            let password = match &password_file {
                Some(f) => Some(
                    std::fs::read_to_string(f)
                        .with_context(|| format!("--password-file {}", f.display()))?
                        .trim_end_matches(['\r', '\n'])
                        .to_string(),
                ),
                None => None,
            };
            let private_key = match &private_key_file {
                Some(f) => Some(
                    std::fs::read_to_string(f)
                        .with_context(|| format!("--private-key-file {}", f.display()))?,
                ),
                None => None,
            };
            let secret = match (&password, &password_ref) {
                (Some(p), _) => SecretInput::Value(p),
                (None, Some(r)) => SecretInput::Reference(r),
                (None, None) => SecretInput::None,
            };
            let all = serde_json::json!({
                "host": host, "port": port, "tls": tls, "ca_file": ca_file,
                "username": username, "from": from, "reply_to": reply_to,
                "ehlo_name": ehlo_name, "smime_cert": smime_cert, "smime_key": smime_key,
                "userkey": userkey, "originator": originator,
                "gateway_id": gateway_id, "endpoint": endpoint,
                "credit_threshold": credit_threshold, "credit_warn_via": credit_warn_via,
                "credit_warn_to": credit_warn_to,
                "source_address": source_address, "rate": rate,
                "smime_p12": smime_p12, "smime_p12_password": smime_p12_password,
            });
            // Only the options given: a type's settings refuse the others by name.
            let settings: serde_json::Map<String, serde_json::Value> = all
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let record = transports::add(
                store,
                cfg,
                transports::NewTransport {
                    name: &name,
                    kind: &kind,
                    settings: serde_json::Value::Object(settings),
                    secret,
                    private_key: private_key.as_deref(),
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            writeln!(out, "added transport {} ({})", record.name, record.kind)?;
            writeln!(
                out,
                "next: `mft-gateway transports test {} --to ADDRESS`",
                record.name
            )?;
            Ok(ExitCode::SUCCESS)
        }
        TransportsCommand::List { json } => {
            let list = store.list_transports().await?;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|t| transports::describe(t, &list, cfg))
                    .collect();
                writeln!(out, "{}", serde_json::Value::from(v))?;
            } else {
                writeln!(
                    out,
                    "{:<20} {:<8} {:<10} {:<22} {:<24} LAST ERROR",
                    "NAME", "TYPE", "STATE", "LAST USE", "USED BY"
                )?;
                for t in &list {
                    let state = match transports::ready(t, cfg) {
                        Ok(()) => "ready".to_string(),
                        Err(why) => format!("not ready: {why}"),
                    };
                    let used = transports::used_by(&t.name, &list, cfg);
                    writeln!(
                        out,
                        "{:<20} {:<8} {:<10} {:<22} {:<24} {}",
                        t.name,
                        t.kind,
                        if state == "ready" {
                            "ready"
                        } else {
                            "NOT READY"
                        },
                        t.last_used_at
                            .map(crate::store::rfc3339)
                            .unwrap_or_else(|| "never".into()),
                        if used.is_empty() {
                            "-".to_string()
                        } else {
                            used.join("; ")
                        },
                        t.last_error.as_deref().unwrap_or("")
                    )?;
                    if state != "ready" {
                        writeln!(out, "    {state}")?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TransportsCommand::Copy { from, to, set } => {
            let mut changes = serde_json::Map::new();
            for kv in &set {
                let Some((k, v)) = kv.split_once('=') else {
                    anyhow::bail!("--set {kv:?}: KEY=VALUE");
                };
                let value = if v.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::from(v))
                };
                changes.insert(k.to_string(), value);
            }
            let record = transports::copy(store, cfg, &from, &to, changes)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            writeln!(
                out,
                "copied transport {from} to {} ({})",
                record.name, record.kind
            )?;
            Ok(ExitCode::SUCCESS)
        }
        TransportsCommand::Credits { name } => {
            let Some(t) = store.get_transport(&name).await? else {
                anyhow::bail!("no transport named {name:?}");
            };
            match transports::query_credits(&t, cfg).await {
                Ok(c) => {
                    store.transport_credits(&t.name, &c).await?;
                    writeln!(out, "credits: {c}")?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(TransportError::Invalid(e)) => anyhow::bail!("{e}"),
                Err(e) => {
                    writeln!(out, "no answer: {e}")?;
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        TransportsCommand::Delivery { name, references } => {
            let Some(t) = store.get_transport(&name).await? else {
                anyhow::bail!("no transport named {name:?}");
            };
            if t.kind != "sms" {
                anyhow::bail!("delivery status: only for type sms");
            }
            let secret = transports::secret_of(&t, cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
            match transports::sms::delivery(&t, secret.as_ref(), &references).await {
                Ok(list) => {
                    for (reference, status) in list {
                        writeln!(out, "{reference}: {status}")?;
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(TransportError::Invalid(e)) => anyhow::bail!("{e}"),
                Err(e) => {
                    writeln!(out, "no answer: {e}")?;
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        TransportsCommand::Show { name } => {
            let Some(t) = store.get_transport(&name).await? else {
                anyhow::bail!("no transport named {name:?}");
            };
            let list = store.list_transports().await?;
            writeln!(out, "{:#}", transports::describe(&t, &list, cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        TransportsCommand::Test { name, to } => {
            let Some(t) = store.get_transport(&name).await? else {
                anyhow::bail!("no transport named {name:?}");
            };
            let to = transports::normalize_address(&t.kind, &to)
                .map_err(|reason| anyhow::anyhow!("to {to:?}: {reason}"))?;
            let message = OutboundMessage {
                to: std::slice::from_ref(&to),
                subject: "mft-gateway transport test",
                text: &format!(
                    "This is a test message from mft-gateway ({}) through transport {name}.\n",
                    cfg.organization.name
                ),
                html: None,
                progress: None,
            };
            match transports::send(store, cfg, &t, &message).await {
                Ok(answer) => {
                    writeln!(out, "sent: {answer}")?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(TransportError::Invalid(e)) => anyhow::bail!("{e}"),
                Err(e) => {
                    writeln!(out, "not sent: {e}")?;
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        TransportsCommand::Remove { name } => {
            if store.remove_transport(&name).await? {
                writeln!(out, "removed {name}")?;
                Ok(ExitCode::SUCCESS)
            } else {
                writeln!(out, "no transport named {name:?}")?;
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
