//! Command-line interface (the CLI contract in docs/architecture.md).

mod admins;
mod audit;
mod backup;
mod check;
mod connectors;
#[cfg(feature = "demo")]
mod demo;
mod keys;
mod partners;
mod reload;
pub(crate) mod running;
mod sftp;
mod signing;
mod transports;
mod upgrade;
mod webhooks;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Edge gateway for managed file transfer.
#[derive(Debug, Parser)]
#[command(name = "mft-gateway", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: HTTPS proxy in front of the MFT backend.
    Run {
        /// Config file.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Validate the config, then test every connection; one line per check, exit 1 if any fails.
    Check {
        /// Config file.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
        /// Only what needs no other server: config, certificate and key,
        /// data_dir, signing key, a local key store, SFTP host keys (the
        /// service's ExecStartPre: a backend that is down must not keep the
        /// gateway from starting).
        #[arg(long)]
        offline: bool,
    },
    /// Validate the config like `check`, then apply it to the running
    /// gateway (`POST /admin/v1/reload`; without an admin token send SIGHUP).
    Reload {
        /// Config file (the one the gateway runs with).
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Replace the running gateway by the binary now on disk without
    /// refusing a connection: the new process takes over the listening
    /// sockets, the old one drains (`POST /admin/v1/upgrade`; without an
    /// admin token send SIGUSR2).
    Upgrade {
        /// Config file (the one the gateway runs with).
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Gateway + embedded reference backend + self-signed certificate; prints curl commands.
    Demo {
        /// Directory for the demo's config, certificates and data (kept between runs).
        #[arg(long, default_value = "mft-demo")]
        dir: PathBuf,
        /// Public HTTPS address of the demo gateway.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: std::net::SocketAddr,
    },
    /// Manage service-account API keys (works with or without a running gateway).
    Keys {
        /// What to do with keys.
        #[command(subcommand)]
        command: keys::KeysCommand,
        /// Config file: the key store is auth.store, or SQLite in server.data_dir.
        #[arg(long, short, global = true, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Trust-network connections to partner organisations' gateways.
    Partners {
        /// What to do with connections.
        #[command(subcommand)]
        command: partners::PartnersCommand,
        /// Config file: the store is auth.store, or SQLite in server.data_dir.
        #[arg(long, short, global = true, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Console administrators: add (password from stdin), list, remove, reset-totp.
    Admins {
        /// What to do with administrators.
        #[command(subcommand)]
        command: admins::AdminsCommand,
        /// Config file: the store is auth.store, or SQLite in server.data_dir.
        #[arg(long, short, global = true, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// DMZ connectors: enrol (prints the key once), list, remove.
    Connectors {
        /// What to do with connectors.
        #[command(subcommand)]
        command: connectors::ConnectorsCommand,
        /// Config file: the store is auth.store, or SQLite in server.data_dir.
        #[arg(long, short, global = true, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Outbound transport providers (smtp): add, list, show, test, remove.
    Transports {
        /// What to do with providers.
        #[command(subcommand)]
        command: Box<transports::TransportsCommand>,
        /// Config file: the store is auth.store, or SQLite in server.data_dir.
        #[arg(long, short, global = true, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Webhook subscriptions: add (prints the signing secret once), list, remove, test.
    Webhooks {
        /// What to do with subscriptions.
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
        /// Config file: the store is auth.store, or SQLite in server.data_dir.
        #[arg(long, short, global = true, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// The LAN side of DMZ mode: dial out to the gateway and carry its
    /// requests to the backend.
    Connector {
        /// The connector's config file.
        #[arg(long, short, default_value = "connector.toml")]
        config: PathBuf,
        /// Check the config, the gateway (TLS, key) and the backend, then exit.
        #[arg(long)]
        check: bool,
    },
    /// Manage the key that signs requests toward the backend (RFC 9421).
    SigningKey {
        /// What to do.
        #[command(subcommand)]
        command: signing::SigningKeyCommand,
    },
    /// The audit trail: `audit verify [FILES]` checks its hash chain.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: audit::AuditCommand,
        /// Config file: the trail is audit.file and its rotated predecessors.
        #[arg(long, short, global = true, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Copy the key store, the audit trail, SFTP host keys and ACME state
    /// out of data_dir, consistently, while the gateway runs.
    Backup {
        /// Config file of the gateway to back up.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
        /// New (or empty) directory for the copy.
        #[arg(long)]
        out: PathBuf,
    },
    /// SFTP bridge helpers (`sftp hash-password`).
    Sftp {
        /// What to do.
        #[command(subcommand)]
        command: sftp::SftpCommand,
    },
}

/// Runs the chosen command.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { config } => {
            let loaded = load_config(&config)?;
            crate::telemetry::init(&loaded.config.logging);
            for w in &loaded.warnings {
                tracing::warn!("{}", w.display_in(&config));
            }
            crate::server::run(loaded.config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config, offline } => Ok(check::run(&config, offline)),
        Command::Reload { config } => reload::run(&config),
        Command::Upgrade { config } => upgrade::run(&config),
        #[cfg(feature = "demo")]
        Command::Demo { dir, listen } => {
            demo::run(&dir, listen)?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } => anyhow::bail!(
            "this build has no demo: it was built without the `demo` cargo feature \
             (the reference backend); rebuild with default features"
        ),
        Command::Keys { command, config } => keys::run(command, &config),
        Command::Partners { command, config } => partners::run(command, &config),
        Command::Admins { command, config } => admins::run(command, &config),
        Command::Connectors { command, config } => connectors::run(command, &config),
        Command::Webhooks { command, config } => webhooks::run(command, &config),
        Command::Transports { command, config } => transports::run(*command, &config),
        Command::Connector { config, check } => crate::connector::lan::run(&config, check),
        Command::SigningKey { command } => signing::run(command),
        Command::Sftp { command } => sftp::run(command),
        Command::Audit { command, config } => audit::run(command, &config),
        Command::Backup { config, out } => backup::run(&config, &out),
    }
}

/// Loads a config file, turning every problem into one readable error.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<mft_config::Loaded> {
    mft_config::load(path).with_context(|| format!("invalid configuration {}", path.display()))
}

/// The setup the store commands share: loads `config` (its warnings to
/// stderr), opens the key store it names on a private current-thread
/// runtime, runs `work` with both, and closes the store.
pub fn with_store<T>(
    config: &std::path::Path,
    work: impl AsyncFnOnce(&crate::store::Store, &mft_config::Config) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let loaded = load_config(config)?;
    for w in &loaded.warnings {
        eprintln!("warning: {}", w.display_in(config));
    }
    let cfg = loaded.config;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // `[auth] store = "postgres://..."`; `None` = SQLite under data_dir.
        let store_url = cfg.auth.store.as_ref().map(|s| s.expose());
        let store = crate::store::Store::open(store_url, &cfg.server.data_dir).await?;
        let result = work(&store, &cfg).await;
        store.close().await;
        result
    })
}
