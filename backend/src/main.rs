//! `mft-backend`: the reference MFT REST backend as a stand-alone server.

use clap::Parser;
use mft_backend::{serve, BackendConfig, Verifier, VerifyPolicy, VerifyingKey};
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
    /// The gateway's signing key (env:NAME or file:PATH): an HMAC secret
    /// (`base64:...` or text), or with --signing-algorithm ed25519 the
    /// gateway's private key PEM. Repeat it during a key rotation: every key
    /// given is accepted. With any key, unsigned requests get 401.
    #[arg(long, value_name = "SECRET_REF")]
    signing_key: Vec<String>,
    /// How to read --signing-key.
    #[arg(long, value_name = "ALG", default_value = "hmac-sha256", value_parser = ["hmac-sha256", "ed25519"])]
    signing_algorithm: String,
    /// An Ed25519 public key to accept signatures from (SPKI PEM or 32 bytes
    /// base64; file:PATH, env:NAME or the value). Repeatable.
    #[arg(long, value_name = "REF")]
    verify_key: Vec<String>,
    /// Longest validity (`expires - created`) a signature may claim; nonces
    /// are remembered this long to refuse replays.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    signature_max_age: std::time::Duration,
}

/// The verifier for the key flags; `None` without any key.
fn verifier(cli: &Cli) -> Result<Option<Verifier>, String> {
    use mft_filters::signing::keys::hmac_secret_from_text;
    use mft_filters::signing::SigningKey;
    let base = std::path::Path::new(".");
    let resolve = |flag: &str, reference: &str| {
        let (secret, source) = mft_config::secret::resolve(reference, base)
            .map_err(|e| format!("{flag} {reference}: {e}"))?;
        if source == mft_config::secret::SecretSource::Literal && flag == "--signing-key" {
            eprintln!(
                "mft-backend: warning: {flag} is given in clear and visible in the process list; use env:NAME or file:PATH"
            );
        }
        Ok::<_, String>(secret)
    };
    let mut keys = Vec::new();
    for reference in &cli.signing_key {
        let secret = resolve("--signing-key", reference)?;
        let bad = |e: mft_filters::signing::KeyError| format!("--signing-key {reference}: {e}");
        let key = if cli.signing_algorithm == "ed25519" {
            SigningKey::ed25519_from_pem(secret.expose(), None)
                .map_err(bad)?
                .verifying_key()
        } else {
            let bytes = hmac_secret_from_text(secret.expose()).map_err(bad)?;
            VerifyingKey::hmac(&bytes, None).map_err(bad)?
        };
        keys.push(key);
    }
    for reference in &cli.verify_key {
        let text = resolve("--verify-key", reference)?;
        keys.push(
            VerifyingKey::ed25519_public(text.expose(), None)
                .map_err(|e| format!("--verify-key {reference}: {e}"))?,
        );
    }
    if keys.is_empty() {
        return Ok(None);
    }
    let mut ids = std::collections::HashSet::new();
    for key in &keys {
        if !ids.insert(key.id().to_string()) {
            return Err(format!("key id {} is given twice", key.id()));
        }
    }
    let policy = VerifyPolicy {
        max_window: cli.signature_max_age,
        ..VerifyPolicy::default()
    };
    Verifier::new(keys, policy)
        .map(Some)
        .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Keys are read before anything starts, so a bad one creates nothing.
    let signatures = match verifier(&cli) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("mft-backend: {e}");
            return ExitCode::from(2);
        }
    };
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
        signatures,
    };
    // Announce once bound, before the database opens; clients poll
    // /healthz to learn when requests are answered.
    println!("mft-backend listening on http://{shown}");
    let _ = std::io::stdout().flush();
    if let Ok(addr) = listener.local_addr() {
        if let Err(e) = record_listener(&config.data_dir, addr) {
            eprintln!(
                "mft-backend: cannot write {}: {e}",
                config.data_dir.join(LISTENERS_FILE).display()
            );
            return ExitCode::FAILURE;
        }
    }

    match serve(listener, config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mft-backend stopped with an error");
            eprintln!("mft-backend: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the backend records its address, in the gateway's format
/// (docs/operations.md, "Where the gateway listens").
const LISTENERS_FILE: &str = "listeners.json";

/// Writes `data_dir/listeners.json` atomically: with `--listen` port 0
/// the kernel chose the port, and this is how scripts and tests learn it.
fn record_listener(data_dir: &std::path::Path, addr: std::net::SocketAddr) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let pid = std::process::id();
    let record = serde_json::json!({ "pid": pid, "listeners": { "http": addr.to_string() } });
    let tmp = data_dir.join(format!("{LISTENERS_FILE}.{pid}.tmp"));
    std::fs::write(&tmp, format!("{record:#}\n"))?;
    std::fs::rename(&tmp, data_dir.join(LISTENERS_FILE))
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
