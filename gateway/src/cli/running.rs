//! What `reload` and `upgrade` share: both validate the file exactly as
//! `check` does (the same `file:line: key: message` lines, exit 1 on any
//! error) and then ask the running gateway through its admin listener,
//! which needs `[admin] token`; without one, the operator signals the
//! process instead (docs/operations.md).

use anyhow::Context;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// The running gateway's answer to `POST /admin/v1/{action}`.
pub(crate) struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

/// Validates `path`, then posts to `/admin/v1/{action}` of the gateway it
/// configures and waits up to `timeout`. `Err(code)`: the reason is
/// printed and the command ends with `code`. `signal` names the signal
/// that does the same without a token.
pub(crate) fn ask(
    path: &Path,
    action: &str,
    signal: &str,
    timeout: Duration,
) -> anyhow::Result<Result<Answer, ExitCode>> {
    let loaded = match mft_config::load(path) {
        Ok(l) => l,
        Err(e) => {
            for line in e.to_string().lines() {
                println!("FAIL  config: {line}");
            }
            return Ok(Err(ExitCode::FAILURE));
        }
    };
    println!("ok    config: {} is valid", path.display());
    for w in &loaded.warnings {
        println!("warn  config: {}", w.display_in(path));
    }
    let c = &loaded.config;
    let Some(token) = &c.admin.token else {
        println!(
            "FAIL  {action}: [admin] token is not set, so the admin API cannot be asked; send {signal} to the gateway process instead"
        );
        return Ok(Err(ExitCode::FAILURE));
    };
    // The running process's admin address first (data_dir/listeners.json):
    // a reload that moves `admin_listen`, or port 0 in it, means the
    // process must be asked at the address it has now.
    let mut targets: Vec<SocketAddr> = crate::listeners::running_admin(&c.server.data_dir)
        .map(local)
        .into_iter()
        .collect();
    let configured = local(c.server.admin_listen);
    if !targets.contains(&configured) && configured.port() != 0 {
        targets.push(configured);
    }
    if targets.is_empty() {
        println!(
            "FAIL  {action}: server.admin_listen has port 0 and no running gateway recorded its address in {}",
            crate::listeners::path(&c.server.data_dir).display()
        );
        return Ok(Err(ExitCode::FAILURE));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut url = String::new();
    let mut answer = None;
    for (i, target) in targets.iter().enumerate() {
        url = format!("http://{target}/admin/v1/{action}");
        let result = runtime.block_on(async {
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .no_proxy()
                .build()?;
            let response = client.post(&url).bearer_auth(token.expose()).send().await?;
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            Ok::<_, reqwest::Error>(Answer { status, body })
        });
        // Only a refused connection tries the next address: a request
        // that reached a gateway must not be sent twice.
        let refused = matches!(&result, Err(e) if e.is_connect());
        answer = Some(result);
        if !refused || i + 1 == targets.len() {
            break;
        }
    }
    let Some(answer) = answer else {
        return Ok(Err(ExitCode::FAILURE));
    };
    match answer {
        Ok(a) => Ok(Ok(a)),
        Err(e) => {
            println!(
                "FAIL  {action}: cannot reach the running gateway at {url}: {}",
                crate::error_chain::error_chain(&e)
            );
            Ok(Err(ExitCode::FAILURE))
        }
    }
}

/// The admin listener as seen from this host: a wildcard address is
/// reached through loopback.
pub(crate) fn local(addr: SocketAddr) -> SocketAddr {
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
