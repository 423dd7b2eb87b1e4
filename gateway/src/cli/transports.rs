//! `mft-gateway transports ...`: outbound transport providers
//! (docs/transports.md). Works on the store, with or without a running gateway.

use crate::store::transports::TransportRecord;
use crate::store::KeyStore;
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
    /// Add a provider (type smtp).
    Add {
        /// Provider name: letters, digits, '-', '_', '.'.
        #[arg(value_name = "NAME")]
        name: String,
        /// Provider type.
        #[arg(long = "type", value_name = "TYPE", default_value = "smtp")]
        kind: String,
        /// SMTP server host.
        #[arg(long, value_name = "HOST")]
        host: String,
        /// Port (default: 587 starttls, 465 implicit, 25 none).
        #[arg(long, value_name = "PORT")]
        port: Option<u16>,
        /// TLS mode: starttls (required), implicit, or none (loopback only).
        #[arg(long, value_name = "MODE", default_value = "starttls")]
        tls: String,
        /// Extra CA certificates (PEM) trusted for this server.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// AUTH user name.
        #[arg(long, value_name = "USER")]
        username: Option<String>,
        /// File holding the password: stored encrypted with [trust] encryption_key.
        #[arg(long, value_name = "FILE", conflicts_with = "password_ref")]
        password_file: Option<PathBuf>,
        /// Keep the password outside the store: env:NAME or file:PATH.
        #[arg(long, value_name = "REF")]
        password_ref: Option<String>,
        /// From address, e.g. "MFT <mft@ourcorp.example>".
        #[arg(long, value_name = "ADDRESS")]
        from: String,
        /// Reply-To address.
        #[arg(long, value_name = "ADDRESS")]
        reply_to: Option<String>,
        /// EHLO name (default: this host's name).
        #[arg(long, value_name = "NAME")]
        ehlo_name: Option<String>,
    },
    /// List providers: name, type, last use, last error.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one provider's settings (never its secret).
    Show {
        /// Provider name.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Send a real test message and print the provider's answer; exit 1 if it failed.
    Test {
        /// Provider name.
        #[arg(value_name = "NAME")]
        name: String,
        /// Recipient.
        #[arg(long, value_name = "ADDRESS")]
        to: String,
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
    store: &KeyStore,
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
            let secret = match (&password, &password_ref) {
                (Some(p), _) => SecretInput::Value(p),
                (None, Some(r)) => SecretInput::Reference(r),
                (None, None) => SecretInput::None,
            };
            let settings = serde_json::json!({
                "host": host, "port": port, "tls": tls, "ca_file": ca_file,
                "username": username, "from": from, "reply_to": reply_to,
                "ehlo_name": ehlo_name,
            });
            let record = transports::add(store, cfg, &name, &kind, settings, secret)
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
                let v: Vec<_> = list.iter().map(TransportRecord::to_json).collect();
                writeln!(out, "{}", serde_json::Value::from(v))?;
            } else {
                writeln!(
                    out,
                    "{:<20} {:<8} {:<22} LAST ERROR",
                    "NAME", "TYPE", "LAST USE"
                )?;
                for t in &list {
                    writeln!(
                        out,
                        "{:<20} {:<8} {:<22} {}",
                        t.name,
                        t.kind,
                        t.last_used_at
                            .map(crate::store::rfc3339)
                            .unwrap_or_else(|| "never".into()),
                        t.last_error.as_deref().unwrap_or("")
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TransportsCommand::Show { name } => {
            let Some(t) = store.get_transport(&name).await? else {
                anyhow::bail!("no transport named {name:?}");
            };
            writeln!(out, "{:#}", t.to_json())?;
            Ok(ExitCode::SUCCESS)
        }
        TransportsCommand::Test { name, to } => {
            let Some(t) = store.get_transport(&name).await? else {
                anyhow::bail!("no transport named {name:?}");
            };
            let message = OutboundMessage {
                to: std::slice::from_ref(&to),
                subject: "mft-gateway transport test",
                text: &format!(
                    "This is a test message from mft-gateway ({}) through transport {name}.\n",
                    cfg.organization.name
                ),
                html: None,
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
