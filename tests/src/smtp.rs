//! Helpers for the SMTP listener tests: a gateway with `[smtp]`, the Python
//! smtplib client (tests/py/smtp_send.py), swaks, and backend queries.

use crate::{ephemeral, Certs, Gateway};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Our organisation's domain in every SMTP test.
pub const DOMAIN: &str = "ourcorp.example";
/// Bridge user configured by [`smtp_tables`].
pub const BRIDGE_USER: &str = "scanner";
/// Its password.
pub const BRIDGE_PASSWORD: &str = "bridge-pass";
/// argon2id of [`BRIDGE_PASSWORD`].
pub const BRIDGE_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c210cGJyaWRnZXNhbHQ$R9WIk+J6ikCMQQZ1B0DJbNXTnXkQu3+ntYpml3lt7Xc";

/// A gateway with the SMTP listener.
pub struct SmtpGateway {
    /// The gateway.
    pub gw: Gateway,
    /// STARTTLS listener.
    pub smtp: SocketAddr,
    /// Implicit-TLS listener.
    pub smtps: SocketAddr,
}

/// `[organization]` and `[smtp]` tables; `extra` adds lines to `[smtp]`
/// (and replaces the loopback-only `allowed_client_networks` if it sets them).
pub fn smtp_tables(smtp: SocketAddr, smtps: SocketAddr, extra: &str) -> String {
    let networks = if extra.contains("allowed_client_networks") {
        ""
    } else {
        r#"allowed_client_networks = ["127.0.0.0/8", "::1/128"]"#
    };
    format!(
        r#"[organization]
name = "ourcorp"
email_domains = ["{DOMAIN}"]

[smtp]
listen = "{smtp}"
tls_listen = "{smtps}"
hostname = "mx.{DOMAIN}"
allowed_sender_domains = ["partner.example", "{DOMAIN}"]
{networks}
retry_max_interval = "2s"
{extra}

[[smtp.users]]
name = "{BRIDGE_USER}"
password_hash = "{BRIDGE_HASH}"
scopes = ["files:write", "deliveries:write"]
"#
    )
}

/// Starts a gateway (after `start_backend`, which writes the signing key)
/// with the SMTP listener; `extra` adds lines to `[smtp]`.
pub async fn start_smtp_gateway(
    dir: &Path,
    certs: &Certs,
    backend_url: &str,
    extra: &str,
) -> SmtpGateway {
    let gw = crate::start_gateway_with(
        dir,
        certs,
        backend_url,
        "",
        &smtp_tables(ephemeral(), ephemeral(), extra),
    )
    .await;
    let (smtp, smtps) = (gw.listeners.get("smtp"), gw.listeners.get("smtps"));
    SmtpGateway { gw, smtp, smtps }
}

/// Starts the gateway again with its existing config (same spool; the
/// listeners' ports are whatever the config names: the kernel's choice again).
pub async fn restart(dir: &Path, certs: &Certs, old: &SmtpGateway) -> SmtpGateway {
    let gw = old.gw.relaunch(dir, certs).await;
    let (smtp, smtps) = (gw.listeners.get("smtp"), gw.listeners.get("smtps"));
    SmtpGateway { gw, smtp, smtps }
}

/// Runs tests/py/smtp_send.py with `args`; returns its JSON report.
pub fn smtplib(args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/smtp_send.py");
    let out = Command::new(crate::python())
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "smtp_send.py failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The reply code of `step` in an [`smtplib`] report.
pub fn code(report: &serde_json::Value, step: &str) -> i64 {
    report[step][0]
        .as_i64()
        .unwrap_or_else(|| panic!("no step {step} in {report}"))
}

/// Runs swaks with `args`; returns (exit success, transcript).
pub fn swaks(args: &[&str]) -> (bool, String) {
    let out = Command::new("swaks")
        .args(args)
        .output()
        .expect("swaks is installed by scripts/setup --test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `GET /api/v1/deliveries` through the gateway (the backend only accepts
/// signed requests).
pub async fn deliveries(gw: &Gateway, certs: &Certs) -> Vec<serde_json::Value> {
    let r = gw
        .client(certs, crate::Proto::Http1)
        .get(format!("{}/api/v1/deliveries", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v["deliveries"].as_array().cloned().unwrap_or_default()
}

/// Deliveries whose subject is `subject`.
pub async fn deliveries_with_subject(
    gw: &Gateway,
    certs: &Certs,
    subject: &str,
) -> Vec<serde_json::Value> {
    deliveries(gw, certs)
        .await
        .into_iter()
        .filter(|d| d["subject"] == subject)
        .collect()
}

/// Polls until a delivery with `subject` exists (the spool worker is
/// asynchronous); panics after `limit`.
pub async fn wait_delivery(
    gw: &Gateway,
    certs: &Certs,
    subject: &str,
    limit: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(d) = deliveries_with_subject(gw, certs, subject).await.pop() {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "no delivery {subject:?} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /api/v1/files/{id}` through the gateway.
pub async fn file(gw: &Gateway, certs: &Certs, id: &str) -> serde_json::Value {
    let r = gw
        .client(certs, crate::Proto::Http1)
        .get(format!("{}/api/v1/files/{id}", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Polls the spool depth gauge until it reads `want`.
pub async fn wait_spool_depth(admin: SocketAddr, want: f64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let page = crate::metrics(admin).await;
        let depth = crate::metric(&page, "mft_smtp_spool_depth");
        if depth == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "spool depth {depth:?}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deterministic attachment content of `size` bytes and its SHA-256 (hex).
pub fn attachment(dir: &Path, name: &str, size: usize, seed: u64) -> (PathBuf, String) {
    use sha2::Digest;
    let content = crate::Content::new(size as u64, seed);
    let data = content.slice(0, size as u64 - 1);
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    (path, hex::encode(sha2::Sha256::digest(&data)))
}

/// A raw SMTP client for protocol details the real clients hide
/// (pipelined bytes around STARTTLS, dot-stuffing).
pub struct RawSmtp<S> {
    io: tokio::io::BufReader<S>,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> RawSmtp<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        RawSmtp {
            io: tokio::io::BufReader::new(stream),
        }
    }

    /// Sends `bytes` as they are.
    pub async fn send(&mut self, bytes: &str) {
        use tokio::io::AsyncWriteExt;
        self.io.get_mut().write_all(bytes.as_bytes()).await.unwrap();
        self.io.get_mut().flush().await.unwrap();
    }

    /// Reads one (possibly multi-line) reply; returns its lines.
    pub async fn reply(&mut self) -> Vec<String> {
        use tokio::io::AsyncBufReadExt;
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.io.read_line(&mut line))
                .await
                .expect("reply in time")
                .unwrap();
            assert!(n > 0, "connection closed after {lines:?}");
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// The stream (to upgrade it to TLS); unread buffered bytes are dropped.
    pub fn into_inner(self) -> S {
        self.io.into_inner()
    }
}

/// TLS client handshake on an SMTP connection after `220 Ready to start TLS`.
pub async fn starttls(
    certs: &Certs,
    tcp: tokio::net::TcpStream,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(certs.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}
