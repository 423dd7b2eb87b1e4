//! `mft-backend`: the reference MFT REST backend as a stand-alone server.

use clap::Parser;
use mft_backend::{serve, BackendConfig};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// The reference MFT REST backend: files, tus uploads, deliveries, transfers.
#[derive(Debug, Parser)]
#[command(name = "mft-backend", version, about)]
struct Cli {
    /// Address to listen on, for example 127.0.0.1:8080 (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Directory for file bytes and the SQLite metadata; created if missing.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Key for verifying the gateway's request signatures (env:NAME or file:PATH).
    /// Not implemented yet: giving it is an error, so nobody believes requests are verified.
    #[arg(long, value_name = "SECRET_REF")]
    signing_key: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.signing_key.is_some() {
        eprintln!("--signing-key: signature verification is not available in this build yet");
        return ExitCode::from(2);
    }
    tracing_subscriber::fmt()
        .pretty()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let listener = match tokio::net::TcpListener::bind(&cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mft-backend: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let shown = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| cli.listen.clone());
    let config = BackendConfig {
        data_dir: cli.data_dir,
    };
    // Announce once bound, before the database opens; clients poll
    // /healthz to learn when requests are answered.
    println!("mft-backend listening on http://{shown}");
    let _ = std::io::stdout().flush();

    match serve(listener, config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mft-backend stopped with an error");
            eprintln!("mft-backend: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl+C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl+C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
