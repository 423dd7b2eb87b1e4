//! `mft-gateway connector --check`: the config, then the gateway (reachable,
//! certificate trusted, key accepted) and the backend as seen from here;
//! one line per check, exit 1 if any fails.

use super::dial::DialError;
use super::Parts;
use std::path::Path;
use std::process::ExitCode;

/// Runs every check.
pub fn run(path: &Path) -> ExitCode {
    let loaded = match mft_config::connector::load_lan(path) {
        Ok(l) => l,
        Err(e) => {
            for line in e.to_string().lines() {
                println!("FAIL  config: {line}");
            }
            return ExitCode::FAILURE;
        }
    };
    println!("ok    config: {} is valid", path.display());
    for w in &loaded.warnings {
        println!("warn  config: {}", w.display_in(path));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("FAIL  runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let parts = match Parts::new(&loaded.config) {
        Ok(p) => p,
        Err(e) => {
            println!("FAIL  config: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    let gateway = parts.dialer.target().to_string();
    match runtime.block_on(parts.dialer.dial()) {
        Ok(attached) => println!(
            "ok    gateway: {gateway} reachable, certificate trusted, key accepted (link {})",
            attached.mode.as_str()
        ),
        Err(e) => {
            failed = true;
            let what = match e {
                DialError::Unreachable { .. } => "gateway unreachable",
                DialError::Untrusted(_) => "gateway certificate not trusted",
                DialError::KeyRefused => "connector key refused",
                DialError::CertificateRefused => "client certificate refused",
                _ => "gateway",
            };
            println!("FAIL  {what}: {e}");
        }
    }
    let backend = parts.backend.authority.clone();
    match runtime.block_on(parts.backend.health()) {
        Ok(status) if (200..300).contains(&status) => {
            println!("ok    backend: {backend} answered /healthz with {status}")
        }
        Ok(status) => {
            failed = true;
            println!("FAIL  backend: {backend} answered /healthz with {status}");
        }
        Err(e) => {
            failed = true;
            println!("FAIL  backend unreachable from the connector: {backend}: {e}");
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
