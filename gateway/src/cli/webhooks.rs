//! `mft-gateway webhooks ...`: webhook subscriptions (docs/webhooks.md).
//!
//! Like `partners`, it works on the store directly, with or without a
//! running gateway: a running gateway's worker sees a new subscription at
//! its next round and stops sending to a removed one at once.

use crate::store::webhooks::{WebhookRecord, WebhookState};
use crate::store::Store;
use crate::webhooks::subscriptions::{self, AddError};
use clap::Subcommand;
use mft_config::Config;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// `webhooks` subcommands.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Subscribe a URL to events; prints the signing secret (whsec_...) once.
    Add {
        /// Receiver URL, https (http only with --allow-private).
        #[arg(long, value_name = "URL")]
        url: String,
        /// Event types, comma separated: delivery.created, delivery.relayed,
        /// receipt.received, file.downloaded.
        #[arg(long, value_name = "EVENTS", required = true, value_delimiter = ',')]
        events: Vec<String>,
        /// Allow a target that resolves to loopback, private or link-local
        /// addresses (an internal receiver). Off by default (SSRF guard).
        #[arg(long)]
        allow_private: bool,
        /// Print one JSON line {"id":..,"secret":..,...}.
        #[arg(long)]
        json: bool,
    },
    /// List subscriptions: id, state, queued and delivered messages, last error.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a subscription and its queued messages. Exit 1 if absent.
    Remove {
        /// Subscription id (wh_...).
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Send a signed `webhook.test` message now and print the receiver's
    /// answer; exit 1 if it was not 2xx.
    Test {
        /// Subscription id (wh_...).
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// Runs a `webhooks` command with the store and settings of `config`.
pub fn run(command: WebhooksCommand, config: &Path) -> anyhow::Result<ExitCode> {
    crate::cli::with_store(config, async |store, cfg| {
        let stdout = std::io::stdout();
        execute(store, cfg, command, &mut stdout.lock()).await
    })
}

async fn execute(
    store: &Store,
    cfg: &Config,
    command: WebhooksCommand,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match command {
        WebhooksCommand::Add {
            url,
            events,
            allow_private,
            json,
        } => {
            let (record, secret) =
                match subscriptions::add(store, cfg, &url, &events, allow_private).await {
                    Ok(added) => added,
                    Err(AddError::Invalid(reason)) => anyhow::bail!("{reason}"),
                    Err(e) => return Err(e.into()),
                };
            if json {
                let mut v = record.to_json();
                v["secret"] = secret.into();
                writeln!(out, "{v}")?;
            } else {
                writeln!(
                    out,
                    "added webhook {} -> {} ({})",
                    record.id,
                    record.url,
                    record.events.join(",")
                )?;
                writeln!(
                    out,
                    "signing secret (shown once; give it to the receiver's operator):"
                )?;
                writeln!(out, "{secret}")?;
                writeln!(out, "next: `mft-gateway webhooks test {}`", record.id)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        WebhooksCommand::List { json } => {
            let list = store.list_webhooks().await?;
            if json {
                let v: Vec<_> = list.iter().map(WebhookRecord::to_json).collect();
                writeln!(out, "{}", serde_json::Value::from(v))?;
            } else {
                writeln!(
                    out,
                    "{:<20} {:<9} {:>6} {:>9}  {:<40} EVENTS / LAST ERROR",
                    "ID", "STATE", "QUEUED", "DELIVERED", "URL"
                )?;
                for w in &list {
                    writeln!(
                        out,
                        "{:<20} {:<9} {:>6} {:>9}  {:<40} {}",
                        w.id,
                        w.state.as_str(),
                        w.queued,
                        w.delivered,
                        w.url,
                        w.events.join(",")
                    )?;
                    if w.state == WebhookState::Disabled {
                        writeln!(
                            out,
                            "{:<20} disabled: {}",
                            "",
                            w.disabled_reason.as_deref().unwrap_or("")
                        )?;
                    } else if let Some(e) = &w.last_error {
                        writeln!(out, "{:<20} last error: {e}", "")?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        WebhooksCommand::Remove { id } => {
            if store.remove_webhook(&id).await? {
                writeln!(out, "removed {id}")?;
                Ok(ExitCode::SUCCESS)
            } else {
                writeln!(out, "no webhook {id:?}")?;
                Ok(ExitCode::FAILURE)
            }
        }
        WebhooksCommand::Test { id } => {
            let Some(record) = store.get_webhook(&id).await? else {
                anyhow::bail!("no webhook {id:?}");
            };
            match subscriptions::test(cfg, &record).await {
                Ok((msg_id, status)) => {
                    writeln!(
                        out,
                        "delivered: {} answered {status} ({msg_id})",
                        record.url
                    )?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    writeln!(out, "not delivered: {e}")?;
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
