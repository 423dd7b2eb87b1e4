//! `mft-gateway reload --config FILE`: validate the file exactly as `check`
//! does (same `file:line: key: message` lines, exit 1 on any error), then
//! ask the running gateway to apply it through `POST /admin/v1/reload` on
//! its admin listener (so the answer says what changed, what needs a
//! restart, or why nothing changed). Needs `[admin] token`; without one,
//! send the process SIGHUP instead (docs/operations.md).

use anyhow::Context;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Runs the command.
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let loaded = match mft_config::load(path) {
        Ok(l) => l,
        Err(e) => {
            for line in e.to_string().lines() {
                println!("FAIL  config: {line}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("ok    config: {} is valid", path.display());
    for w in &loaded.warnings {
        println!("warn  config: {}", w.display_in(path));
    }
    let c = &loaded.config;
    let Some(token) = &c.admin.token else {
        println!(
            "FAIL  reload: [admin] token is not set, so the admin API cannot be asked; send SIGHUP to the gateway process instead"
        );
        return Ok(ExitCode::FAILURE);
    };
    let url = format!("http://{}/admin/v1/reload", local(c.server.admin_listen));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let answer = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .no_proxy()
            .build()?;
        let response = client.post(&url).bearer_auth(token.expose()).send().await?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((status, body))
    });
    let (status, body) = match answer {
        Ok(a) => a,
        Err(e) => {
            println!(
                "FAIL  reload: cannot reach the running gateway at {url}: {}",
                crate::error_chain::error_chain(&e)
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let strings = |key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    if status != 200 {
        let detail = body["detail"].as_str().unwrap_or("refused");
        println!("FAIL  reload: the running gateway answered {status}: {detail}");
        for line in strings("errors") {
            println!("FAIL  config: {line}");
        }
        return Ok(ExitCode::FAILURE);
    }
    let served = body["config"].as_str().unwrap_or_default();
    if !same_file(Path::new(served), path) {
        println!(
            "warn  reload: the running gateway reloaded its own file {served}, not {}",
            path.display()
        );
    }
    let changed = strings("changed");
    println!(
        "ok    reload: applied{}",
        if changed.is_empty() {
            " (nothing changed)".to_string()
        } else {
            format!(": {}", changed.join(", "))
        }
    );
    for section in strings("needs_restart") {
        println!("warn  reload: {section} changed but takes effect only after a restart");
    }
    Ok(ExitCode::SUCCESS)
}

/// The admin listener as seen from this host: a wildcard address is
/// reached through loopback.
fn local(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
