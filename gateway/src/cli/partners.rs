//! `mft-gateway partners ...`: trust-network connections (docs/trust-network.md).
//!
//! Like `keys`, it works on the store directly, with or without a running
//! gateway; a removed connection is refused at once because every
//! federation request looks its key up in the store.

use crate::store::partners::PartnerRecord;
use crate::store::Store;
use crate::trust::connections::{self, KeyInput};
use anyhow::Context;
use clap::Subcommand;
use mft_config::Config;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `partners` subcommands.
#[derive(Debug, Subcommand)]
pub enum PartnersCommand {
    /// Add a connection and print, once, the key to give the partner's admin.
    Add {
        /// Connection name: letters, digits, '-', '_', '.' (shown as partner:<name>).
        #[arg(long, value_name = "NAME")]
        name: String,
        /// The partner gateway's URL, https (port 443 unless given).
        #[arg(long, value_name = "URL")]
        url: String,
        /// One of the partner's e-mail domains (theirs, not ours); repeatable.
        #[arg(long = "email-domain", value_name = "DOMAIN", required = true)]
        email_domains: Vec<String>,
        /// Print one JSON line {"name":..,"key":..}.
        #[arg(long)]
        json: bool,
    },
    /// Store the key the partner generated for us (from a file, or stdin).
    SetKey {
        /// Connection name.
        #[arg(value_name = "NAME")]
        name: String,
        /// File holding the key; without it (and without --key-ref) stdin is read.
        #[arg(long, value_name = "FILE", conflicts_with = "key_ref")]
        key_file: Option<PathBuf>,
        /// Store a secret reference (env:NAME or file:PATH) instead of the key.
        #[arg(long, value_name = "REF")]
        key_ref: Option<String>,
    },
    /// List connections: name, URL, domains, status; never keys.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Call the partner and print `connected` or the reason; exit 1 if not connected.
    Test {
        /// Connection name.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Pin the connection to the partner's TLS client certificate (needs
    /// `[trust] client_auth = true`), or unpin it with --clear.
    Pin {
        /// Connection name.
        #[arg(value_name = "NAME")]
        name: String,
        /// SHA-256 of the certificate, hex (':' separators allowed).
        #[arg(long, value_name = "HEX", conflicts_with_all = ["client_cert", "clear"])]
        client_cert_sha256: Option<String>,
        /// The partner's certificate (PEM); its SHA-256 is pinned.
        #[arg(long, value_name = "FILE", conflicts_with = "clear")]
        client_cert: Option<PathBuf>,
        /// Remove the pin.
        #[arg(long)]
        clear: bool,
    },
    /// Set where the partner's uploads go (its inbox folder, default
    /// partners/<name>) and its optional daily quota; options not given
    /// keep their value.
    SetInbox {
        /// Connection name.
        #[arg(value_name = "NAME")]
        name: String,
        /// Inbox folder (`a/b`); the partner may upload there or below it only.
        #[arg(long, value_name = "FOLDER", conflicts_with = "default_folder")]
        folder: Option<String>,
        /// Back to the default inbox, partners/<name>.
        #[arg(long)]
        default_folder: bool,
        /// Bytes the partner may upload per UTC day (units as in the config: "10 GiB").
        #[arg(long, value_name = "SIZE", conflicts_with = "no_quota")]
        quota_bytes_per_day: Option<String>,
        /// Remove the quota.
        #[arg(long)]
        no_quota: bool,
    },
    /// List relay jobs (outbound deliveries to partners), newest first;
    /// `relays retry` re-queues failed ones.
    Relays {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// What to do with relays (none: list them).
        #[command(subcommand)]
        command: Option<RelaysCommand>,
    },
    /// Remove a connection; its key is refused at once. Exit 1 if absent.
    Remove {
        /// Connection name.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// `partners relays` subcommands.
#[derive(Debug, Subcommand)]
pub enum RelaysCommand {
    /// Re-queue failed relays: due now, attempts from zero, files already
    /// sent stay sent (as `POST /admin/v1/relays/{id}/{partner}/retry`).
    /// Exit 1 if no failed relay matched.
    Retry {
        /// Delivery id of the relay (`partners relays` lists them).
        #[arg(
            value_name = "DELIVERY_ID",
            required_unless_present = "all_failed",
            conflicts_with = "all_failed"
        )]
        delivery_id: Option<String>,
        /// Only the relay to this partner (default: every failed relay of the delivery).
        #[arg(value_name = "PARTNER", requires = "delivery_id")]
        partner: Option<String>,
        /// Every failed relay.
        #[arg(long)]
        all_failed: bool,
    },
}

/// Runs a `partners` command with the store and settings of `config`.
pub fn run(command: PartnersCommand, config: &Path) -> anyhow::Result<ExitCode> {
    crate::cli::with_store(config, async |store, cfg| {
        let stdout = std::io::stdout();
        execute(store, cfg, command, &mut stdout.lock()).await
    })
}

async fn execute(
    store: &Store,
    cfg: &Config,
    command: PartnersCommand,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match command {
        PartnersCommand::Add {
            name,
            url,
            email_domains,
            json,
        } => {
            let (record, token) = connections::add(store, cfg, &name, &url, &email_domains).await?;
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"name": record.name, "key": token, "key_id": record.inbound_key_id})
                )?;
            } else {
                writeln!(out, "added connection {:?} ({})", record.name, record.url)?;
                writeln!(out, "key for the partner (shown once; send it to their admin over a secure channel):")?;
                writeln!(out, "{token}")?;
                writeln!(
                    out,
                    "next: `mft-gateway partners set-key {} --key-file FILE` with the key they generated for you",
                    record.name
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        PartnersCommand::SetKey {
            name,
            key_file,
            key_ref,
        } => {
            let stored = match key_ref {
                Some(r) => connections::outbound_key(cfg, &name, KeyInput::Reference(&r))?,
                None => {
                    let text = match key_file {
                        Some(f) => std::fs::read_to_string(&f)
                            .with_context(|| format!("--key-file {}", f.display()))?,
                        None => {
                            let mut s = String::new();
                            std::io::stdin()
                                .read_to_string(&mut s)
                                .context("cannot read the key from stdin")?;
                            s
                        }
                    };
                    connections::outbound_key(cfg, &name, KeyInput::Key(&text))?
                }
            };
            if !store.set_partner_key(&name, &stored).await? {
                anyhow::bail!("no connection named {name:?}");
            }
            writeln!(
                out,
                "key stored for {name}; check with `mft-gateway partners test {name}`"
            )?;
            Ok(ExitCode::SUCCESS)
        }
        PartnersCommand::List { json } => {
            let list = store.list_partners().await?;
            if json {
                let v: Vec<_> = list.iter().map(PartnerRecord::to_json).collect();
                writeln!(out, "{}", serde_json::Value::from(v))?;
            } else {
                writeln!(out, "{:<20} {:<11} {:<40} DOMAINS", "NAME", "STATUS", "URL")?;
                for p in &list {
                    writeln!(
                        out,
                        "{:<20} {:<11} {:<40} {}",
                        p.name,
                        p.status(),
                        p.url,
                        p.email_domains.join(",")
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PartnersCommand::Test { name } => {
            let Some(partner) = store.get_partner(&name).await? else {
                anyhow::bail!("no connection named {name:?}");
            };
            match connections::test(cfg, &partner).await {
                Ok(report) => {
                    writeln!(
                        out,
                        "connected: {} ({}), clock skew {} s",
                        report.organization, partner.url, report.skew_secs
                    )?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    writeln!(out, "not connected: {e}")?;
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        PartnersCommand::Pin {
            name,
            client_cert_sha256,
            client_cert,
            clear,
        } => {
            let pin = match (client_cert_sha256, client_cert, clear) {
                (Some(hex), None, false) => {
                    Some(crate::store::partners::normalize_pin(&hex).ok_or_else(|| {
                        anyhow::anyhow!(
                            "--client-cert-sha256: 64 hex digits (':' separators allowed)"
                        )
                    })?)
                }
                (None, Some(file), false) => Some(certificate_sha256(&file)?),
                (None, None, true) => None,
                _ => anyhow::bail!("give one of --client-cert-sha256, --client-cert or --clear"),
            };
            if !store.set_partner_pin(&name, pin.as_deref()).await? {
                anyhow::bail!("no connection named {name:?}");
            }
            match pin {
                Some(p) => writeln!(out, "{name} pinned to client certificate sha256 {p}")?,
                None => writeln!(out, "{name} unpinned")?,
            }
            if !cfg.trust.client_auth {
                writeln!(
                    out,
                    "note: set [trust] client_auth = true, or no partner can present a certificate"
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        PartnersCommand::SetInbox {
            name,
            folder,
            default_folder,
            quota_bytes_per_day,
            no_quota,
        } => {
            let Some(partner) = store.get_partner(&name).await? else {
                anyhow::bail!("no connection named {name:?}");
            };
            let folder = match (folder, default_folder) {
                (Some(f), _) => Some(
                    mft_filters::validation::folder::validate_folder(&f)
                        .map_err(|e| anyhow::anyhow!("--folder {f:?}: {e}"))?,
                ),
                (None, true) => None,
                (None, false) => partner.inbox_folder.clone(),
            };
            let quota = match (quota_bytes_per_day, no_quota) {
                (Some(q), _) => Some(parse_quota(&q)?),
                (None, true) => None,
                (None, false) => partner.quota_bytes_per_day,
            };
            let inbox = mft_filters::trust::partner_inbox::inbox(&name, folder.as_deref())
                .map_err(|e| {
                    anyhow::anyhow!("{name:?} cannot name a folder ({e}): give --folder")
                })?;
            if !store
                .set_partner_inbox(&name, folder.as_deref(), quota)
                .await?
            {
                anyhow::bail!("no connection named {name:?}");
            }
            match quota {
                Some(q) => writeln!(
                    out,
                    "{name}: uploads go to {inbox:?}, at most {q} bytes per day"
                )?,
                None => writeln!(out, "{name}: uploads go to {inbox:?}, no daily quota")?,
            }
            Ok(ExitCode::SUCCESS)
        }
        PartnersCommand::Relays {
            command:
                Some(RelaysCommand::Retry {
                    delivery_id,
                    partner,
                    all_failed: _,
                }),
            json: _,
        } => {
            let failed: Vec<_> = store
                .list_relays()
                .await?
                .into_iter()
                .filter(|j| j.state == crate::store::relay::RelayState::Failed)
                .filter(|j| delivery_id.as_deref().is_none_or(|d| d == j.delivery_id))
                .filter(|j| partner.as_deref().is_none_or(|p| p == j.partner))
                .collect();
            let mut queued = 0;
            for j in &failed {
                if store.retry_failed_relay(&j.delivery_id, &j.partner).await? {
                    writeln!(out, "queued {} to {}", j.delivery_id, j.partner)?;
                    queued += 1;
                }
            }
            if queued == 0 {
                writeln!(out, "no failed relay matched")?;
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        PartnersCommand::Relays {
            json,
            command: None,
        } => {
            let jobs = store.list_relays().await?;
            if json {
                let v: Vec<_> = jobs
                    .iter()
                    .map(crate::store::relay::RelayJob::to_json)
                    .collect();
                writeln!(out, "{}", serde_json::Value::from(v))?;
            } else {
                writeln!(
                    out,
                    "{:<38} {:<16} {:<10} {:>8}  LAST ERROR",
                    "DELIVERY", "PARTNER", "STATE", "ATTEMPTS"
                )?;
                for j in &jobs {
                    writeln!(
                        out,
                        "{:<38} {:<16} {:<10} {:>8}  {}",
                        j.delivery_id,
                        j.partner,
                        j.state.as_str(),
                        j.attempts,
                        j.last_error.as_deref().unwrap_or("")
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PartnersCommand::Remove { name } => {
            if store.remove_partner(&name).await? {
                writeln!(out, "removed {name}")?;
                Ok(ExitCode::SUCCESS)
            } else {
                writeln!(out, "no connection named {name:?}")?;
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// A quota: bytes, or a size with a unit as in the config file.
fn parse_quota(text: &str) -> anyhow::Result<u64> {
    let bytes = mft_config::limits::parse_size(text)
        .map_err(|e| anyhow::anyhow!("--quota-bytes-per-day {text:?}: {e}"))?;
    anyhow::ensure!(bytes > 0, "--quota-bytes-per-day must be more than 0");
    Ok(bytes)
}

/// Lower-case hex SHA-256 of the first certificate in a PEM file.
pub(crate) fn certificate_sha256(path: &Path) -> anyhow::Result<String> {
    use rustls::pki_types::pem::PemObject;
    use sha2::Digest;
    let cert = rustls::pki_types::CertificateDer::from_pem_file(path)
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate: {e}", path.display()))?;
    Ok(hex::encode(sha2::Sha256::digest(cert.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::relay::RelayState;

    fn retry(delivery: Option<&str>, partner: Option<&str>, all_failed: bool) -> PartnersCommand {
        PartnersCommand::Relays {
            json: false,
            command: Some(RelaysCommand::Retry {
                delivery_id: delivery.map(str::to_string),
                partner: partner.map(str::to_string),
                all_failed,
            }),
        }
    }

    #[tokio::test]
    async fn relays_retry_requeues_failed_relays_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        let cfg = mft_config::load_str(
            "[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n[backend]\nurl = \"http://127.0.0.1:1\"\n",
            &dir.path().join("gateway.toml"),
        )
        .unwrap()
        .config;
        let job = |d: &str, p: &str| (d.to_string(), p.to_string(), vec![format!("x@{p}.example")]);
        store
            .queue_relays(
                &[job("d1", "beta"), job("d1", "gamma"), job("d2", "beta")],
                1,
            )
            .await
            .unwrap();
        for j in store
            .claim_due_relays(10, std::time::Duration::from_secs(60))
            .await
            .unwrap()
        {
            let state = if j.delivery_id == "d1" && j.partner == "gamma" {
                RelayState::Delivered
            } else {
                RelayState::Failed
            };
            store
                .relay_finish(&j, state, None, Some("refused"))
                .await
                .unwrap();
        }
        let state = |d: &'static str, p: &'static str| {
            let store = store.clone();
            async move { store.relay_job(d, p).await.unwrap().unwrap().state }
        };
        let mut out = Vec::new();
        let code = execute(&store, &cfg, retry(Some("d1"), None, false), &mut out)
            .await
            .unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(String::from_utf8_lossy(&out), "queued d1 to beta\n");
        assert_eq!(state("d1", "beta").await, RelayState::Queued);
        assert_eq!(
            state("d1", "gamma").await,
            RelayState::Delivered,
            "a delivered relay stays"
        );
        assert_eq!(state("d2", "beta").await, RelayState::Failed);
        let mut out = Vec::new();
        let code = execute(
            &store,
            &cfg,
            retry(Some("d1"), Some("gamma"), false),
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(code, ExitCode::FAILURE, "{}", String::from_utf8_lossy(&out));
        let mut out = Vec::new();
        let code = execute(&store, &cfg, retry(None, None, true), &mut out)
            .await
            .unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(String::from_utf8_lossy(&out), "queued d2 to beta\n");
        let again = store.relay_job("d2", "beta").await.unwrap().unwrap();
        assert_eq!((again.state, again.attempts), (RelayState::Queued, 0));
        let mut out = Vec::new();
        let code = execute(&store, &cfg, retry(None, None, true), &mut out)
            .await
            .unwrap();
        assert_eq!(code, ExitCode::FAILURE);
        store.close().await;
    }
}
