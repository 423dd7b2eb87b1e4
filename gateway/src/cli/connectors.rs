//! `mft-gateway connectors ...`: enrol and remove DMZ connectors.
//!
//! Works with or without a running gateway, like `keys`: it opens the same
//! store, and a running gateway closes a removed connector's connections
//! within seconds (it re-reads the store every two seconds).

use crate::store::connectors::ConnectorRecord;
use crate::store::Store;
use clap::Subcommand;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

/// `connectors` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConnectorsCommand {
    /// Enrol a connector and print its key (mgc_<id>_<secret>) once.
    ///
    /// Put the key where the connector's `key = "env:..."|"file:..."` finds it.
    Add {
        /// 1 to 64 letters, digits, '-', '_' or '.'.
        #[arg(value_name = "NAME")]
        name: String,
        /// Print one JSON line {"name":..,"key_id":..,"key":..}.
        #[arg(long)]
        json: bool,
        /// Pin it to a client certificate: SHA-256, hex (':' separators allowed).
        #[arg(long, value_name = "HEX", conflicts_with = "client_cert")]
        client_cert_sha256: Option<String>,
        /// Pin it to this client certificate (PEM).
        #[arg(long, value_name = "FILE")]
        client_cert: Option<PathBuf>,
    },
    /// Pin a connector to the client certificate it must present (its
    /// `client_cert` in connector.toml), or remove the pin. Its connections
    /// without that certificate are refused from the next attach on.
    Pin {
        /// The connector's name.
        #[arg(value_name = "NAME")]
        name: String,
        /// SHA-256 of the certificate, hex (':' separators allowed).
        #[arg(long, value_name = "HEX", conflicts_with_all = ["client_cert", "clear"])]
        client_cert_sha256: Option<String>,
        /// The connector's certificate (PEM); its SHA-256 is pinned.
        #[arg(long, value_name = "FILE", conflicts_with = "clear")]
        client_cert: Option<PathBuf>,
        /// Remove the pin.
        #[arg(long)]
        clear: bool,
    },
    /// List connectors: state, address, connections, last seen, bytes.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a connector: its key stops working and a running gateway
    /// closes its connections within 5 seconds. Exits 1 if there is none.
    Remove {
        /// The connector's name.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// Runs a `connectors` command against the store configured in `config`.
pub fn run(command: ConnectorsCommand, config: &Path) -> anyhow::Result<ExitCode> {
    crate::cli::with_store(config, async |store, _| {
        let stdout = std::io::stdout();
        execute(store, command, &mut stdout.lock(), SystemTime::now()).await
    })
}

/// Runs `command` against `store`, writing to `out`.
pub async fn execute(
    store: &Store,
    command: ConnectorsCommand,
    out: &mut dyn Write,
    now: SystemTime,
) -> anyhow::Result<ExitCode> {
    match command {
        ConnectorsCommand::Add {
            name,
            json,
            client_cert_sha256,
            client_cert,
        } => {
            let pin = pin_of(client_cert_sha256, client_cert)?;
            let (record, key) = store.add_connector(&name, pin.as_deref()).await?;
            if json {
                let line = serde_json::json!({
                    "name": record.name,
                    "key_id": record.key_id,
                    "key": key,
                });
                writeln!(out, "{line}")?;
            } else {
                writeln!(out, "Enrolled connector {}.", record.name)?;
                writeln!(out, "  key id: {}", record.key_id)?;
                writeln!(out, "  key:    {key}")?;
                writeln!(
                    out,
                    "The key is shown only now. Give it to the connector (key = \"file:...\" or \"env:...\")."
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ConnectorsCommand::List { json } => {
            let all = store.list_connectors().await?;
            if json {
                let list: Vec<serde_json::Value> = all.iter().map(|c| c.to_json(now)).collect();
                writeln!(out, "{}", serde_json::Value::from(list))?;
            } else {
                write_table(out, &all, now)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ConnectorsCommand::Pin {
            name,
            client_cert_sha256,
            client_cert,
            clear,
        } => {
            let pin = pin_of(client_cert_sha256, client_cert)?;
            if pin.is_none() && !clear {
                anyhow::bail!("give one of --client-cert-sha256, --client-cert or --clear");
            }
            if !store.set_connector_pin(&name, pin.as_deref()).await? {
                writeln!(out, "no connector named {name:?}")?;
                return Ok(ExitCode::FAILURE);
            }
            match pin {
                Some(p) => writeln!(out, "{name} pinned to client certificate sha256 {p}")?,
                None => writeln!(out, "{name} unpinned")?,
            }
            Ok(ExitCode::SUCCESS)
        }
        ConnectorsCommand::Remove { name } => {
            if store.remove_connector(&name).await? {
                writeln!(
                    out,
                    "Removed connector {name}; a running gateway disconnects it within 5 s."
                )?;
                Ok(ExitCode::SUCCESS)
            } else {
                writeln!(out, "no connector named {name:?}")?;
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// The pin `--client-cert-sha256` or `--client-cert` gives, if either.
fn pin_of(hex: Option<String>, file: Option<PathBuf>) -> anyhow::Result<Option<String>> {
    match (hex, file) {
        (Some(hex), _) => Ok(Some(
            crate::store::partners::normalize_pin(&hex).ok_or_else(|| {
                anyhow::anyhow!("--client-cert-sha256: 64 hex digits (':' separators allowed)")
            })?,
        )),
        (None, Some(file)) => Ok(Some(crate::cli::partners::certificate_sha256(&file)?)),
        (None, None) => Ok(None),
    }
}

fn write_table(
    out: &mut dyn Write,
    all: &[ConnectorRecord],
    now: SystemTime,
) -> std::io::Result<()> {
    if all.is_empty() {
        return writeln!(out, "no connectors (add one with `connectors add NAME`)");
    }
    writeln!(
        out,
        "{:<20} {:<13} {:<22} {:>5} {:<20} {:>14} {:>14}",
        "NAME", "STATE", "ADDRESS", "CONNS", "LAST SEEN", "BYTES OUT", "BYTES IN"
    )?;
    for c in all {
        let v = c.to_json(now);
        writeln!(
            out,
            "{:<20} {:<13} {:<22} {:>5} {:<20} {:>14} {:>14}",
            c.name,
            c.state(now),
            v["address"].as_str().unwrap_or("-"),
            v["connections"].as_u64().unwrap_or(0),
            v["last_seen_at"].as_str().unwrap_or("never"),
            c.bytes_out,
            c.bytes_in,
        )?;
    }
    Ok(())
}
