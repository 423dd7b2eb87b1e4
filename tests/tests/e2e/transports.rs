//! Outbound transports: an `smtp` provider made with the real CLI sends into
//! a real SMTP server (PyPI aiosmtpd, tests/py/smtp_server.py) that requires
//! STARTTLS and AUTH.

use mft_e2e::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SMTP_USER: &str = "mft-sender";
const SMTP_PASSWORD: &str = "s3cret-smtp-password-4711";

fn transports(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("mft-gateway"))
        .arg("transports")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn start_smtp(dir: &Path, certs: &Certs, addr: SocketAddr, log: &Path) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/smtp_server.py");
    let port = addr.port().to_string();
    let mut proc = Proc::spawn(
        "aiosmtpd",
        &python(),
        &[
            script.to_str().unwrap(),
            "--port",
            &port,
            "--cert",
            certs.cert.to_str().unwrap(),
            "--key",
            certs.key.to_str().unwrap(),
            "--user",
            SMTP_USER,
            "--password",
            SMTP_PASSWORD,
            "--log",
            log.to_str().unwrap(),
        ],
        dir,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !proc.stdout().contains("ready") {
        proc.assert_running();
        assert!(
            Instant::now() < deadline,
            "aiosmtpd not ready: {}",
            proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proc
}

fn received(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn smtp_provider_sends_through_starttls_and_auth_into_aiosmtpd() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().to_path_buf();
    let certs = make_certs(&path);
    let backend = start_backend(&path).await;
    std::fs::write(path.join("trust.key"), "0123456789abcdef0123456789abcdef\n").unwrap();
    let tables = format!(
        "[organization]\nname = \"acme\"\nemail_domains = [\"acme.example\"]\n\n\
         [trust]\nencryption_key = \"file:{}\"\n",
        path.join("trust.key").display()
    );
    let gateway = start_gateway_with(&path, &certs, &backend.url, "", &tables).await;
    let config = &gateway.config;
    let smtp = free_addr();
    let log = path.join("smtp.jsonl");
    let _server = start_smtp(&path, &certs, smtp, &log);
    std::fs::write(path.join("smtp.password"), format!("{SMTP_PASSWORD}\n")).unwrap();
    std::fs::write(path.join("wrong.password"), "not-the-password\n").unwrap();
    let port = smtp.port().to_string();
    let ca = certs.ca.to_str().unwrap();
    let add = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "add",
            name,
            "--type",
            "smtp",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--tls",
            "starttls",
            "--username",
            SMTP_USER,
            "--from",
            "MFT Gateway <mft@acme.example>",
        ];
        args.extend_from_slice(extra);
        transports(config, &args)
    };

    let pw = path.join("smtp.password");
    let (code, out, err) = add(
        "mail",
        &["--ca-file", ca, "--password-file", pw.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = transports(config, &["test", "mail", "--to", "bob@beta.example"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("sent: 250"), "{out}");
    assert!(
        out.contains("queued by aiosmtpd"),
        "the server's own answer: {out}"
    );
    let got = received(&log);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["rcpt_tos"], serde_json::json!(["bob@beta.example"]));
    assert_eq!(got[0]["mail_from"], "mft@acme.example");
    assert_eq!(got[0]["login"], SMTP_USER);
    assert_eq!(got[0]["tls"], true);
    let data = got[0]["data"].as_str().unwrap();
    assert!(
        data.contains("Subject: mft-gateway transport test"),
        "{data}"
    );
    assert!(data.contains("through transport mail"), "{data}");

    // The server's certificate is checked: without the test CA it fails.
    let (code, out, err) = add("mail-noca", &["--password-file", pw.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = transports(config, &["test", "mail-noca", "--to", "bob@beta.example"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("not sent:"), "{out}");
    assert!(out.to_lowercase().contains("certificate"), "{out}");

    // A wrong password: the server's refusal is reported.
    let wrong = path.join("wrong.password");
    let (code, _, err) = add(
        "mail-wrong",
        &["--ca-file", ca, "--password-file", wrong.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = transports(config, &["test", "mail-wrong", "--to", "bob@beta.example"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("535"), "authentication refused: {out}");
    assert_eq!(received(&log).len(), 1, "nothing else arrived");

    // Plain text only toward loopback.
    let (code, _, err) = transports(
        config,
        &[
            "add",
            "relay",
            "--host",
            "smtp.example",
            "--tls",
            "none",
            "--from",
            "mft@acme.example",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("loopback"), "{err}");

    // list / show: state, never the password.
    let (code, out, _) = transports(config, &["list", "--json"]);
    assert_eq!(code, 0);
    let list: Vec<Value> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(list.len(), 3);
    let mail = list.iter().find(|t| t["name"] == "mail").unwrap();
    assert!(mail["last_used_at"].is_string(), "{mail}");
    assert!(mail["last_error"].is_null(), "{mail}");
    assert_eq!(mail["secret"], "stored encrypted");
    let wrong = list.iter().find(|t| t["name"] == "mail-wrong").unwrap();
    assert!(
        wrong["last_error"].as_str().unwrap().contains("535"),
        "{wrong}"
    );
    let (code, out, _) = transports(config, &["show", "mail"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("\"host\": \"127.0.0.1\"") && !out.contains(SMTP_PASSWORD),
        "{out}"
    );
    let db = std::fs::read(path.join("gateway-data/keys.sqlite")).unwrap();
    let wal = std::fs::read(path.join("gateway-data/keys.sqlite-wal")).unwrap_or_default();
    let needle = SMTP_PASSWORD.as_bytes();
    assert!(!db.windows(needle.len()).any(|w| w == needle));
    assert!(!wal.windows(needle.len()).any(|w| w == needle));

    let (code, _, _) = transports(config, &["remove", "mail-noca"]);
    assert_eq!(code, 0);
    let (code, _, _) = transports(config, &["remove", "mail-noca"]);
    assert_eq!(code, 1);
    drop(gateway);
}

const ADMIN_TOKEN: &str = "transports-admin-token-0123456789abcdef";

async fn message(admin: SocketAddr, id: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("http://{admin}/admin/v1/messages/{id}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn wait_message(admin: SocketAddr, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    // After a restart the admin listener may open a moment after HTTPS.
    while std::net::TcpStream::connect(admin).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "admin listener never opened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let m = message(admin, id).await;
        if done(&m) {
            return m;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn queued_messages_survive_sigkill_and_are_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().to_path_buf();
    let certs = make_certs(&path);
    let _backend = start_backend(&path).await;
    std::fs::write(path.join("trust.key"), "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::write(path.join("admin.token"), ADMIN_TOKEN).unwrap();
    let tables = format!(
        "[organization]\nname = \"acme\"\nemail_domains = [\"acme.example\"]\n\n\
         [trust]\nencryption_key = \"file:{}\"\n\
         relay_poll_interval = \"200ms\"\nrelay_retry_base = \"200ms\"\nrelay_retry_max = \"1s\"\n\n\
         [admin]\ntoken = \"file:{}\"\n",
        path.join("trust.key").display(),
        path.join("admin.token").display()
    );
    let gateway = start_gateway_with(&path, &certs, &_backend.url, "", &tables).await;
    let smtp = free_addr();
    std::fs::write(path.join("smtp.password"), SMTP_PASSWORD).unwrap();
    let port = smtp.port().to_string();
    let (code, out, err) = transports(
        &gateway.config,
        &[
            "add",
            "mail",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--ca-file",
            certs.ca.to_str().unwrap(),
            "--username",
            SMTP_USER,
            "--password-file",
            path.join("smtp.password").to_str().unwrap(),
            "--from",
            "mft@acme.example",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");

    let api = reqwest::Client::new();
    let url = format!("http://{}/admin/v1/messages", gateway.admin);
    let post = |body: Value| api.post(&url).bearer_auth(ADMIN_TOKEN).json(&body).send();
    // Bad input: 400 problem+json, nothing queued.
    for bad in [
        serde_json::json!({"provider": "nope", "to": "bob@beta.example", "subject": "s", "text": "t"}),
        serde_json::json!({"provider": "mail", "to": "not an address", "subject": "s", "text": "t"}),
        serde_json::json!({"provider": "mail", "type": "smtp", "to": "bob@beta.example", "subject": "s", "text": "t"}),
        serde_json::json!({"provider": "mail", "to": [], "subject": "s", "text": "t"}),
        serde_json::json!({"provider": "mail", "to": "bob@beta.example", "subject": "a\r\nBcc: x@y.example", "text": "t"}),
        serde_json::json!({"provider": "mail", "subject": "s"}),
    ] {
        let r = post(bad.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    let r = post(
        serde_json::json!({"provider": "mail", "to": "bob@beta.example",
                                    "subject": "first", "text": "one"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    let first: Value = r.json().await.unwrap();
    let first = first["id"].as_str().unwrap().to_string();
    let r = post(
        serde_json::json!({"type": "smtp", "to": ["carl@beta.example", "dora@beta.example"],
                                    "subject": "second", "text": "two", "html": "<p>two</p>"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    let second: Value = r.json().await.unwrap();
    let second = second["id"].as_str().unwrap().to_string();
    // The server is not there yet: attempts fail and are retried.
    let m = wait_message(gateway.admin, &first, |m| m["attempts"].as_u64() >= Some(1)).await;
    assert_eq!(m["state"], "queued", "{m}");
    assert!(m["answer"].is_string(), "{m}");

    let Gateway {
        mut proc,
        key,
        addr,
        admin,
        config,
        ..
    } = gateway;
    proc.signal("KILL");
    proc.wait_exit(Duration::from_secs(10)).expect("killed");
    let log = path.join("smtp.jsonl");
    let _server = start_smtp(&path, &certs, smtp, &log);
    let _gateway = launch_gateway(&path, &certs, config, addr, admin, key).await;
    for id in [&first, &second] {
        let m = wait_message(admin, id, |m| m["state"] == "sent").await;
        assert!(
            m["answer"].as_str().unwrap().contains("queued by aiosmtpd"),
            "{m}"
        );
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = received(&log);
    assert_eq!(got.len(), 2, "each message once: {got:#?}");
    let data: Vec<&str> = got.iter().map(|g| g["data"].as_str().unwrap()).collect();
    assert!(
        data.iter().any(|d| d.contains("Subject: first")),
        "{data:?}"
    );
    let second_mail = got
        .iter()
        .find(|g| g["data"].as_str().unwrap().contains("Subject: second"))
        .unwrap();
    assert_eq!(
        second_mail["rcpt_tos"],
        serde_json::json!(["carl@beta.example", "dora@beta.example"])
    );
    assert!(second_mail["data"].as_str().unwrap().contains("text/html"));
    let r = api
        .get(format!("{url}/msg_unknown"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
