//! Outbound transports: an `smtp` provider made with the real CLI sends into
//! a real SMTP server (PyPI aiosmtpd, tests/py/smtp_server.py) that requires
//! STARTTLS and AUTH.

use mft_e2e::outbox;
use mft_e2e::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const SMTP_USER: &str = "mft-sender";
pub const SMTP_PASSWORD: &str = "s3cret-smtp-password-4711";

pub fn transports(config: &Path, args: &[&str]) -> (i32, String, String) {
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

pub fn start_smtp(dir: &Path, certs: &Certs, addr: SocketAddr, log: &Path) -> Proc {
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

pub fn received(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `transports add NAME` of an `smtp` provider for the aiosmtpd at `smtp`
/// (certificate from `certs`' CA, password in `dir/smtp.password`) sending
/// as `from`; `extra` arguments appended.
pub fn add_smtp(
    config: &Path,
    dir: &Path,
    certs: &Certs,
    smtp: SocketAddr,
    name: &str,
    from: &str,
    extra: &[&str],
) -> (i32, String, String) {
    let port = smtp.port().to_string();
    let password = dir.join("smtp.password");
    let mut args = vec![
        "add",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--ca-file",
        certs.ca.to_str().unwrap(),
        "--username",
        SMTP_USER,
        "--password-file",
        password.to_str().unwrap(),
        "--from",
        from,
    ];
    args.extend_from_slice(extra);
    transports(config, &args)
}

#[tokio::test]
async fn smtp_provider_sends_through_starttls_and_auth_into_aiosmtpd() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().to_path_buf();
    let (certs, _backend, gateway) = outbox::start(&path, ADMIN_TOKEN, "").await;
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
    let (certs, _backend, gateway) = outbox::start(&path, ADMIN_TOKEN, "").await;
    let smtp = free_addr();
    std::fs::write(path.join("smtp.password"), SMTP_PASSWORD).unwrap();
    let (code, out, err) = add_smtp(
        &gateway.config,
        &path,
        &certs,
        smtp,
        "mail",
        "mft@acme.example",
        &[],
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

const ASPSMS_USER: &str = "ASPUSERKEY01";
const ASPSMS_PASSWORD: &str = "aspsms-password-0815-secret";
const THREEMA_ID: &str = "*MFTGW01";
const THREEMA_SECRET: &str = "threema-api-secret-4711";
/// The gateway ID's private key, and the recipient's.
const THREEMA_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const ECHO_KEY: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn start_standin(dir: &Path, addr: SocketAddr, log: &Path) -> Proc {
    start_standin_with(dir, addr, log, &[])
}

/// The stand-in with `extra` arguments (more `--recipient`s, `--fail-*`).
fn start_standin_with(dir: &Path, addr: SocketAddr, log: &Path, extra: &[&str]) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/provider_standin.py");
    let port = addr.port().to_string();
    let recipient = format!("ECHOECHO:{ECHO_KEY}");
    let mut args = vec![
        script.to_str().unwrap(),
        "--port",
        &port,
        "--log",
        log.to_str().unwrap(),
        "--aspsms-user",
        ASPSMS_USER,
        "--aspsms-password",
        ASPSMS_PASSWORD,
        "--aspsms-credits",
        "5",
        "--threema-id",
        THREEMA_ID,
        "--threema-secret",
        THREEMA_SECRET,
        "--threema-gateway-key",
        THREEMA_KEY,
        "--threema-credits",
        "1234",
        "--recipient",
        &recipient,
    ];
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn("provider-standin", &python(), &args, dir);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !proc.stdout().contains("ready") {
        proc.assert_running();
        assert!(
            Instant::now() < deadline,
            "stand-in not ready: {}",
            proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proc
}

/// The stand-in's log lines of `api` (`aspsms`, `threema`) matching `f`.
fn standin_log(log: &Path, f: impl Fn(&Value) -> bool) -> Vec<Value> {
    received(log).into_iter().filter(|v| f(v)).collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sms_and_threema_providers_admin_api_and_credit_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().to_path_buf();
    let (certs, backend, gateway) = outbox::start(
        &path,
        ADMIN_TOKEN,
        "[[notify]]\nevent = \"credit_low\"\nprovider = \"threema\"\nto = [\"ECHOECHO\"]\nperiod = \"1h\"\n",
    )
    .await;
    let config = gateway.config.clone();
    let standin = free_addr();
    let log = path.join("standin.jsonl");
    let _standin = start_standin(&path, standin, &log);
    let endpoint = format!("http://{standin}/");
    let api = reqwest::Client::new();
    let admin = gateway.admin;
    let url = |rest: &str| format!("http://{admin}/admin/v1/{rest}");

    // threema through the admin API: the secrets go in and never come out.
    let r = api
        .post(url("transports"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({
            "name": "threema", "type": "threema",
            "settings": {"gateway_id": THREEMA_ID, "endpoint": endpoint},
            "secret": THREEMA_SECRET, "private_key": format!("private:{THREEMA_KEY}"),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body = r.text().await.unwrap();
    assert!(
        !body.contains(THREEMA_SECRET) && !body.contains(THREEMA_KEY),
        "{body}"
    );
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["state"], "ready", "{created}");
    // Bad input: 400 problem+json.
    for bad in [
        serde_json::json!({"name": "t2", "type": "threema", "settings": {"gateway_id": "NOSTAR1"}, "secret": "x", "private_key": THREEMA_KEY}),
        serde_json::json!({"name": "t2", "type": "threema", "settings": {"gateway_id": THREEMA_ID}, "secret": "x"}),
        serde_json::json!({"name": "t2", "type": "threema", "settings": {"gateway_id": THREEMA_ID, "endpoint": "http://example.com/"}, "secret": "x", "private_key": THREEMA_KEY}),
        serde_json::json!({"name": "t2", "type": "fax", "settings": {}}),
        serde_json::json!({"name": "threema", "type": "threema", "settings": {"gateway_id": THREEMA_ID}, "secret": "x", "private_key": THREEMA_KEY}),
    ] {
        let r = api
            .post(url("transports"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }

    // sms through the CLI, with a credit threshold warned through threema.
    std::fs::write(path.join("aspsms.pw"), format!("{ASPSMS_PASSWORD}\n")).unwrap();
    let (code, out, err) = transports(
        &config,
        &[
            "add",
            "sms",
            "--type",
            "sms",
            "--userkey",
            ASPSMS_USER,
            "--originator",
            "ACME",
            "--endpoint",
            &endpoint,
            "--secret-file",
            path.join("aspsms.pw").to_str().unwrap(),
            "--credit-threshold",
            "100",
            "--credit-warn-via",
            "threema",
            "--credit-warn-to",
            "ECHOECHO",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");

    // Test messages: the stand-ins see what the documentation describes.
    let (code, out, err) = transports(&config, &["test", "sms", "--to", "+41791234567"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("sent: OK; reference "), "{out}");
    let reference = out.trim().rsplit(' ').next().unwrap().to_string();
    let sent = standin_log(&log, |v| v["method"] == "SendSimpleTextSMS");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["body"]["UserName"], ASPSMS_USER);
    assert_eq!(sent[0]["body"]["Originator"], "ACME");
    assert_eq!(
        sent[0]["body"]["Recipients"],
        serde_json::json!([format!("+41791234567:{reference}")])
    );
    assert!(sent[0]["body"]["MessageText"]
        .as_str()
        .unwrap()
        .contains("through transport sms"));
    let (code, out, _) = transports(&config, &["delivery", "sms", "--reference", &reference]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), format!("{reference}: Delivered"));
    let (code, out, _) = transports(&config, &["test", "sms", "--to", "0791234567"]);
    assert_ne!(code, 0, "a number without +: {out}");

    let (code, out, err) = transports(&config, &["test", "threema", "--to", "ECHOECHO"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("sent: message id ECHOECHO: "), "{out}");
    let boxes = standin_log(&log, |v| v["path"] == "/send_e2e");
    assert_eq!(boxes.len(), 1, "{boxes:?}");
    assert_eq!(boxes[0]["type"], 1, "{:?}", boxes[0]);
    assert_eq!(boxes[0]["padding_ok"], true, "{:?}", boxes[0]);
    assert!(boxes[0]["text"]
        .as_str()
        .unwrap()
        .contains("through transport threema"));
    let (code, out, err) = transports(&config, &["test", "threema", "--to", "NOBODY00"]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("no such Threema ID"), "{out}{err}");
    let (code, out, _) = transports(&config, &["credits", "threema"]);
    assert_eq!((code, out.trim()), (0, "credits: 1234"));

    // copy: the secrets are sealed again for the new name and work.
    let (code, out, err) = transports(&config, &["copy", "threema", "threema2"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = transports(&config, &["test", "threema2", "--to", "ECHOECHO"]);
    assert_eq!(code, 0, "{out}{err}");
    let r = api
        .post(url("transports/sms/copy"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"name": "sms-b", "settings": {"originator": "BETA", "credit_threshold": null, "credit_warn_via": null, "credit_warn_to": null}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let copied: Value = r.json().await.unwrap();
    assert_eq!(copied["settings"]["originator"], "BETA");
    let r = api
        .post(url("transports/sms-b/test"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"to": "+41790000000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tested: Value = r.json().await.unwrap();
    assert_eq!(tested["sent"], true, "{tested}");

    // sms recipients: refused unless in international format (a clear
    // 400 naming the recipient), normalized as aspsms documents them.
    for (bad, why) in [
        ("079 123 45 67", "national number"),
        ("41791234567", "neither + nor 00"),
        ("+41791234567:99", "transaction reference"),
        ("+41 79 ABC", "other characters"),
    ] {
        let r = api
            .post(url("messages"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({"provider": "sms", "to": ["+41790000001", bad], "subject": "", "text": "never sent"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "urn:mft:problem:invalid-recipient", "{p}");
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(bad) && detail.contains(why), "{bad}: {p}");
    }
    let r = api
        .post(url("messages"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"provider": "sms", "to": ["0041 79 555 00 11", "+41 (79) 555-00-11", "+1 415 555 0100"], "subject": "", "text": "normalized numbers"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_for("the normalized sms sent", || {
        !standin_log(&log, |v| v["body"]["MessageText"] == "normalized numbers").is_empty()
    })
    .await;
    let sent = standin_log(&log, |v| v["body"]["MessageText"] == "normalized numbers");
    let numbers: Vec<&str> = sent[0]["body"]["Recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().split(':').next().unwrap())
        .collect();
    assert_eq!(numbers, ["+41795550011", "+14155550100"], "{sent:?}");
    assert!(
        standin_log(&log, |v| v["body"]["MessageText"] == "never sent").is_empty(),
        "nothing of a refused message was queued"
    );

    // A provider whose secret reference no longer resolves is not ready.
    std::fs::write(path.join("gone.pw"), "x\n").unwrap();
    let gone = format!("file:{}", path.join("gone.pw").display());
    let (code, out, err) = transports(
        &config,
        &[
            "add",
            "sms-gone",
            "--type",
            "sms",
            "--userkey",
            ASPSMS_USER,
            "--originator",
            "ACME",
            "--endpoint",
            &endpoint,
            "--secret-ref",
            &gone,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    std::fs::remove_file(path.join("gone.pw")).unwrap();

    // list: state and used by, in the CLI and the admin API.
    let r = api
        .get(url("transports"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for secret in [THREEMA_SECRET, THREEMA_KEY, ASPSMS_PASSWORD] {
        assert!(!text.contains(secret), "{text}");
    }
    let list: Value = serde_json::from_str(&text).unwrap();
    let by_name = |n: &str| {
        list["transports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by_name("threema")["used_by"],
        serde_json::json!(["transport sms: credit warnings", "notify[0] (credit_low)"])
    );
    assert_eq!(by_name("sms")["state"], "ready");
    assert_eq!(by_name("sms-gone")["state"], "not ready");
    assert!(
        by_name("sms-gone")["not_ready_reason"]
            .as_str()
            .unwrap()
            .contains("gone.pw"),
        "{}",
        by_name("sms-gone")
    );
    let (code, out, _) = transports(&config, &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains("transport sms: credit warnings"), "{out}");
    assert!(out.contains("NOT READY"), "{out}");
    let r = api
        .get(url("transports/nope"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = api
        .delete(url("transports/sms-gone"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // An API key with messages:send may queue messages, and nothing else.
    let (_, sender) = create_key(&config, "notifier", "messages:send");
    let (_, other) = create_key(&config, "reader", "files:read");
    let msg = serde_json::json!({"provider": "threema", "to": "ECHOECHO", "subject": "", "text": "from the backend"});
    let r = api
        .post(url("messages"))
        .bearer_auth(&sender)
        .json(&msg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let queued: Value = r.json().await.unwrap();
    let id = queued["id"].as_str().unwrap().to_string();
    let r = api
        .get(url(&format!("messages/{id}")))
        .bearer_auth(&sender)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (key, path) in [
        (&sender, "transports"),
        (&other, "messages/x"),
        (&sender, "keys"),
    ] {
        let r = api.get(url(path)).bearer_auth(key).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    wait_for("the backend's message sent", || {
        !standin_log(&log, |v| v["text"] == "from the backend").is_empty()
    })
    .await;

    // Restart: the credit check at start finds sms below its threshold and
    // warns once through threema; the next start, within the day, does not.
    let Gateway {
        mut proc,
        key,
        addr,
        admin,
        config,
        ..
    } = gateway;
    proc.signal("TERM");
    proc.wait_exit(Duration::from_secs(30)).expect("stopped");
    let warned = |log: &Path| {
        standin_log(log, |v| {
            v["text"]
                .as_str()
                .is_some_and(|t| t.contains("mft-gateway: transport sms credit low"))
        })
        .len()
    };
    // The [[notify]] rule for credit_low, once per hour.
    let notified = |log: &Path| {
        standin_log(log, |v| {
            v["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("mft-gateway (acme): transport sms credit low"))
        })
        .len()
    };
    let audit_path = path.join("gateway-data/audit.jsonl");
    let audited = |what: &str| {
        std::fs::read_to_string(&audit_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"transport_credits\"") && l.contains(what))
            .count()
    };
    let gateway = launch_gateway(&path, &certs, config.clone(), addr, admin, key.clone()).await;
    wait_for("one credit warning", || warned(&log) == 1).await;
    wait_for("one notification", || notified(&log) == 1).await;
    let w = standin_log(&log, |v| {
        v["text"].as_str().is_some_and(|t| t.contains("credit low"))
    });
    assert!(
        w[0]["text"].as_str().unwrap().contains("5 credits left"),
        "{w:?}"
    );
    wait_for("the check audited", || audited("warning queued") == 1).await;
    let metrics = api
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mft_transport_credits{provider=\"sms\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mft_transport_credits{provider=\"threema\"} 1234"),
        "{metrics}"
    );
    let Gateway { mut proc, .. } = gateway;
    proc.signal("TERM");
    proc.wait_exit(Duration::from_secs(30)).expect("stopped");
    let _gateway = launch_gateway(&path, &certs, config, addr, admin, key).await;
    wait_for("the second check audited", || {
        audited("warned already today") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(warned(&log), 1, "exactly one warning in a day");
    assert_eq!(
        notified(&log),
        1,
        "one notification per period, across restarts"
    );
    let audit_text = std::fs::read_to_string(&audit_path).unwrap();
    assert!(
        audit_text.contains("notify[0] credit_low: queued as msg_"),
        "{audit_text}"
    );
    let audit = std::fs::read_to_string(&audit_path).unwrap();
    for secret in [THREEMA_SECRET, THREEMA_KEY, ASPSMS_PASSWORD] {
        assert!(!audit.contains(secret));
    }
    drop(backend);
}

fn openssl(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A test CA and a leaf for `email` signed by it (`kind`: `rsa:2048` or
/// `ec`), as `<name>.crt` / `<name>.key` in `dir`.
fn smime_cert(dir: &Path, name: &str, email: &str, kind: &str) {
    if !dir.join("smime-ca.crt").exists() {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "smime-ca.key",
                "-out",
                "smime-ca.crt",
                "-days",
                "30",
                "-subj",
                "/CN=Test S-MIME CA",
            ],
        );
    }
    let mut newkey = vec!["-newkey", kind];
    if kind == "ec" {
        newkey.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]);
    }
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let crt = format!("{name}.crt");
    let mut args = vec!["req", "-new"];
    args.extend(newkey);
    args.extend([
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=MFT Gateway",
    ]);
    openssl(dir, &args);
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName=email:{email}\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=emailProtection\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "smime-ca.crt",
            "-CAkey",
            "smime-ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "30",
            "-extfile",
            &ext,
        ],
    );
}

/// `openssl cms -verify` of a received message against the test CA.
fn cms_verify(dir: &Path, data: &str) -> (bool, String) {
    let file = dir.join("received.eml");
    std::fs::write(&file, data).unwrap();
    let out = Command::new("openssl")
        .args(["cms", "-verify", "-in"])
        .arg(&file)
        .args(["-CAfile", "smime-ca.crt", "-purpose", "smimesign"])
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn smtp_smime_signed_messages_verify_with_openssl_cms() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().to_path_buf();
    let (certs, _backend, gateway) = outbox::start(&path, ADMIN_TOKEN, "").await;
    let config = &gateway.config;
    let smtp = free_addr();
    let log = path.join("smtp.jsonl");
    let _server = start_smtp(&path, &certs, smtp, &log);
    std::fs::write(path.join("smtp.password"), format!("{SMTP_PASSWORD}\n")).unwrap();
    smime_cert(&path, "rsa", "mft@acme.example", "rsa:2048");
    smime_cert(&path, "ec", "mft@acme.example", "ec");
    smime_cert(&path, "other", "someone@acme.example", "ec");
    let add = |name: &str, cert: &str, key: &str| {
        add_smtp(
            config,
            &path,
            &certs,
            smtp,
            name,
            "MFT Gateway <mft@acme.example>",
            &[
                "--smime-cert",
                path.join(cert).to_str().unwrap(),
                "--smime-key",
                path.join(key).to_str().unwrap(),
            ],
        )
    };
    // Refused: a certificate for another address, a key of another certificate.
    let (code, _, err) = add("wrong", "other.crt", "other.key");
    assert_ne!(code, 0);
    assert!(err.contains("wrong address"), "{err}");
    let (code, _, err) = add("mismatch", "rsa.crt", "ec.key");
    assert_ne!(code, 0);
    assert!(err.contains("key mismatch"), "{err}");

    for (i, kind) in ["rsa", "ec"].iter().enumerate() {
        let name = format!("signed-{kind}");
        let (code, out, err) = add(&name, &format!("{kind}.crt"), &format!("{kind}.key"));
        assert_eq!(code, 0, "{out}{err}");
        let (code, out, _) = transports(config, &["show", &name]);
        assert_eq!(code, 0);
        let shown: Value = serde_json::from_str(&out).unwrap();
        assert!(
            shown["smime"]
                .as_str()
                .unwrap()
                .starts_with("certificate ready for mft@acme.example"),
            "{shown}"
        );
        assert_eq!(shown["state"], "ready");
        let (code, out, err) = transports(config, &["test", &name, "--to", "bob@beta.example"]);
        assert_eq!(code, 0, "{out}{err}");
        let got = received(&log);
        assert_eq!(got.len(), i + 1);
        let data = got[i]["data"].as_str().unwrap().to_string();
        assert!(data.contains("multipart/signed"), "{data}");
        assert!(data.contains("micalg=\"sha-256\""), "{data}");
        let (ok, why) = cms_verify(&path, &data);
        assert!(ok, "{kind}: {why}\n{data}");
        assert!(why.contains("through transport"), "the signed text: {why}");
        // One byte changed in the signed text: no longer verifies.
        let tampered = data.replacen("through transport", "through transpOrt", 1);
        assert_ne!(tampered, data);
        let (ok, why) = cms_verify(&path, &tampered);
        assert!(!ok, "a changed byte must fail: {why}");
    }

    // The same identity from a PKCS#12 file made by `openssl pkcs12
    // -export` (key, certificate and CA), its password from a file.
    std::fs::write(path.join("p12.pw"), "p12-secret-0815\n").unwrap();
    openssl(
        &path,
        &[
            "pkcs12",
            "-export",
            "-in",
            "rsa.crt",
            "-inkey",
            "rsa.key",
            "-certfile",
            "smime-ca.crt",
            "-out",
            "rsa.p12",
            "-passout",
            "pass:p12-secret-0815",
        ],
    );
    let add_p12 = |name: &str, password: &str| {
        add_smtp(
            config,
            &path,
            &certs,
            smtp,
            name,
            "MFT Gateway <mft@acme.example>",
            &[
                "--smime-p12",
                path.join("rsa.p12").to_str().unwrap(),
                "--smime-p12-password",
                password,
            ],
        )
    };
    std::fs::write(path.join("wrong.pw"), "not-it\n").unwrap();
    let wrong = format!("file:{}", path.join("wrong.pw").display());
    let (code, _, err) = add_p12("p12-wrong", &wrong);
    assert_ne!(code, 0);
    assert!(err.contains("wrong password"), "{err}");
    let right = format!("file:{}", path.join("p12.pw").display());
    let (code, out, err) = add_p12("signed-p12", &right);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = transports(config, &["show", "signed-p12"]);
    assert_eq!(code, 0);
    assert!(!out.contains("p12-secret-0815"), "{out}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert!(
        shown["smime"]
            .as_str()
            .unwrap()
            .starts_with("certificate ready for mft@acme.example"),
        "{shown}"
    );
    let (code, out, err) = transports(config, &["test", "signed-p12", "--to", "bob@beta.example"]);
    assert_eq!(code, 0, "{out}{err}");
    let got = received(&log);
    let data = got.last().unwrap()["data"].as_str().unwrap().to_string();
    assert!(data.contains("multipart/signed"), "{data}");
    let (ok, why) = cms_verify(&path, &data);
    assert!(ok, "p12: {why}\n{data}");
    let (ok, _) = cms_verify(
        &path,
        &data.replacen("through transport", "through transpOrt", 1),
    );
    assert!(!ok, "a changed byte must fail");

    // `mft-gateway check` names the certificate's state.
    let check = |config: &Path| {
        let out = Command::new(bin("mft-gateway"))
            .args(["check", "--config"])
            .arg(config)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = check(config);
    assert!(
        out.contains(
            "ok    transport signed-ec: ready (smtp; certificate ready for mft@acme.example"
        ),
        "{out}"
    );

    // The certificate file gone: not ready, and why.
    std::fs::remove_file(path.join("ec.crt")).unwrap();
    let out = check(config);
    assert!(
        out.contains("FAIL  transport signed-ec: not ready: S/MIME: smime_cert"),
        "{out}"
    );
    let (code, out, _) = transports(config, &["list", "--json"]);
    assert_eq!(code, 0);
    let list: Vec<Value> = serde_json::from_str(out.trim()).unwrap();
    let ec = list.iter().find(|t| t["name"] == "signed-ec").unwrap();
    assert_eq!(ec["state"], "not ready", "{ec}");
    assert!(
        ec["not_ready_reason"].as_str().unwrap().contains("ec.crt"),
        "{ec}"
    );
    drop(gateway);
}

/// A second Threema recipient, refused by the stand-in while a file exists.
const SECOND_ID: &str = "SECOND01";
const SECOND_KEY: &str = "3333333333333333333333333333333333333333333333333333333333333333";

#[tokio::test]
async fn threema_to_several_recipients_reaches_each_once_across_retries_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().to_path_buf();
    let queue = outbox::Queue {
        retry_max: "500ms",
        ..outbox::FAST
    };
    let (certs, backend, gateway) = outbox::start_queue(&path, ADMIN_TOKEN, &queue, "").await;
    let standin = free_addr();
    let log = path.join("standin.jsonl");
    let hold = path.join("second-refused");
    std::fs::write(&hold, "").unwrap();
    let second = format!("{SECOND_ID}:{SECOND_KEY}");
    let _standin = start_standin_with(
        &path,
        standin,
        &log,
        &[
            "--recipient",
            &second,
            "--fail-recipient",
            SECOND_ID,
            "--fail-while",
            hold.to_str().unwrap(),
        ],
    );
    let api = reqwest::Client::new();
    let admin = gateway.admin;
    let r = api
        .post(format!("http://{admin}/admin/v1/transports"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({
            "name": "threema", "type": "threema",
            "settings": {"gateway_id": THREEMA_ID, "endpoint": format!("http://{standin}/")},
            "secret": THREEMA_SECRET, "private_key": THREEMA_KEY,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = api
        .post(format!("http://{admin}/admin/v1/messages"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &serde_json::json!({"provider": "threema", "to": ["ECHOECHO", SECOND_ID],
                                  "subject": "", "text": "for both of you"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let queued: Value = r.json().await.unwrap();
    let id = queued["id"].as_str().unwrap().to_string();
    let boxes = |to: &str| {
        standin_log(&log, |v| {
            v["path"] == "/send_e2e" && v["to"] == to && v["text"] == "for both of you"
        })
        .len()
    };
    let refusals = || standin_log(&log, |v| v["path"] == "/send_e2e_refused").len();

    // The second recipient is refused: retried, the first is not sent again.
    wait_for("three refusals", || refusals() >= 3).await;
    let m = message(admin, &id).await;
    assert_eq!(m["state"], "queued", "{m}");
    assert_eq!(boxes("ECHOECHO"), 1, "the first recipient once");

    // A crash with the message half sent: the restart does not resend it.
    let Gateway {
        mut proc,
        key,
        addr,
        config,
        ..
    } = gateway;
    proc.signal("KILL");
    proc.wait_exit(Duration::from_secs(10)).expect("killed");
    let before = refusals();
    let _gateway = launch_gateway(&path, &certs, config, addr, admin, key).await;
    wait_for("refusals after the restart", || refusals() >= before + 2).await;
    assert_eq!(boxes("ECHOECHO"), 1, "the first recipient still once");

    std::fs::remove_file(&hold).unwrap();
    let m = wait_message(admin, &id, |m| m["state"] == "sent").await;
    let answer = m["answer"].as_str().unwrap();
    assert!(
        answer.contains("ECHOECHO: ") && answer.contains(&format!("{SECOND_ID}: ")),
        "{m}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(boxes("ECHOECHO"), 1, "{:?}", received(&log));
    assert_eq!(boxes(SECOND_ID), 1, "{:?}", received(&log));
    drop(backend);
}

#[tokio::test]
async fn smtp_provider_sends_from_its_source_address_at_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().to_path_buf();
    let queue = outbox::Queue {
        poll: "100ms",
        ..outbox::FAST
    };
    let (certs, backend, gateway) = outbox::start_queue(&path, ADMIN_TOKEN, &queue, "").await;
    let config = &gateway.config;
    let smtp = free_addr();
    let log = path.join("smtp.jsonl");
    let _server = start_smtp(&path, &certs, smtp, &log);
    std::fs::write(path.join("smtp.password"), SMTP_PASSWORD).unwrap();
    let add = |name: &str, extra: &[&str]| {
        add_smtp(config, &path, &certs, smtp, name, "mft@acme.example", extra)
    };
    // Refused: an address that is not this host's, a rate that does not parse.
    let (code, _, err) = add("elsewhere", &["--source-address", "192.0.2.1"]);
    assert_ne!(code, 0);
    assert!(err.contains("not an address of this host"), "{err}");
    let (code, _, err) = add("too-fast", &["--rate", "fast"]);
    assert_ne!(code, 0);
    assert!(err.contains("rate:"), "{err}");
    let (code, out, err) = add(
        "mail",
        &["--source-address", "127.0.0.2", "--rate", "2/s burst 1"],
    );
    assert_eq!(code, 0, "{out}{err}");

    // The server sees the connection come from the source address.
    let (code, out, err) = transports(config, &["test", "mail", "--to", "bob@beta.example"]);
    assert_eq!(code, 0, "{out}{err}");
    let got = received(&log);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["peer"], "127.0.0.2", "{:?}", got[0]);
    assert_eq!(got[0]["tls"], true);
    let (code, out, _) = transports(config, &["show", "mail"]);
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["settings"]["source_address"], "127.0.0.2", "{shown}");
    assert_eq!(shown["settings"]["rate"], "2/s burst 1", "{shown}");

    // Six messages queued at once leave at most two per second, every one
    // of them, each in one attempt (waiting for the rate is no attempt).
    let api = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..6 {
        let r = api
            .post(format!("http://{}/admin/v1/messages", gateway.admin))
            .bearer_auth(ADMIN_TOKEN)
            .json(
                &serde_json::json!({"provider": "mail", "to": "bob@beta.example",
                                      "subject": format!("paced {i}"), "text": "t"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let m = wait_message(gateway.admin, id, |m| m["state"] == "sent").await;
        assert_eq!(m["attempts"], 1, "{m}");
    }
    let mut times: Vec<f64> = received(&log)
        .iter()
        .filter(|g| g["data"].as_str().unwrap().contains("Subject: paced "))
        .map(|g| {
            assert_eq!(g["peer"], "127.0.0.2");
            g["time"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(times.len(), 6, "each message once");
    times.sort_by(f64::total_cmp);
    // GCRA at 2/s with a burst of 1: one every 0.5 s at the earliest, so
    // three span at least 1 s; the margins allow for the time each SMTP
    // conversation takes (the receiver notes the end of DATA).
    for three in times.windows(3) {
        assert!(three[2] - three[0] > 0.6, "{times:?}");
    }
    assert!(times[5] - times[0] > 2.0, "{times:?}");
    drop(backend);
}

/// The messages aiosmtpd got whose subject contains `what`.
fn notified_about(log: &Path, what: &str) -> Vec<Value> {
    received(log)
        .into_iter()
        .filter(|g| {
            g["data"].as_str().is_some_and(|d| {
                d.lines()
                    .any(|l| l.starts_with("Subject: ") && l.contains(what))
            })
        })
        .collect()
}

#[tokio::test]
async fn notify_rules_report_a_stale_mailbox_an_expiring_certificate_a_ban_storm_and_a_growing_spool(
) {
    use mft_e2e::smtp::{smtp_tables, smtplib, wait_spool_depth};
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().to_path_buf();
    std::fs::write(path.join("imap.pw"), "imap-password\n").unwrap();
    let (smtp_in, smtps_in) = (free_addr(), free_addr());
    // A mailbox whose server is not there: no poll ever succeeds.
    let nobody = free_addr();
    // The SMTP bridge's organisation (ourcorp), not the outbound tests' acme.
    let tables = format!(
        "{}\n{}\n\
         [defender]\nthreshold = 1\n\n\
         [[imap]]\nname = \"inbox\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"u\"\n\
         password = \"file:{}\"\npoll_secs = 1\n",
        smtp_tables(smtp_in, smtps_in, ""),
        outbox::sealed_tables(&path, ADMIN_TOKEN, &outbox::FAST),
        nobody.port(),
        path.join("imap.pw").display(),
    );
    let (certs, mut backend, gateway) = outbox::start_tables(&path, &tables).await;
    let smtp = free_addr();
    let log = path.join("smtp.jsonl");
    let _server = start_smtp(&path, &certs, smtp, &log);
    std::fs::write(path.join("smtp.password"), SMTP_PASSWORD).unwrap();
    let (code, out, err) = add_smtp(
        &gateway.config,
        &path,
        &certs,
        smtp,
        "mail",
        "mft@ourcorp.example",
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");

    // The rules, from the next start on (the provider exists by then).
    let Gateway {
        mut proc,
        key,
        addr,
        admin,
        config,
        ..
    } = gateway;
    proc.signal("TERM");
    proc.wait_exit(Duration::from_secs(30)).expect("stopped");
    let rule = |event: &str, extra: &str| {
        format!("\n[[notify]]\nevent = \"{event}\"\nprovider = \"mail\"\nto = [\"ops@ourcorp.example\"]\nperiod = \"1h\"\n{extra}\n")
    };
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&rule("mailbox_stale", "stale_after = \"2s\""));
    // The test certificate (rcgen's default validity) ends in 4096.
    text.push_str(&rule(
        "certificate_expiring",
        "expires_within = \"1000000d\"",
    ));
    text.push_str(&rule("ban_storm", "bans = 3\nwindow = \"1m\""));
    text.push_str(&rule(
        "spool_growing",
        "spool_depth = 2\ngrowing_for = \"1h\"",
    ));
    std::fs::write(&config, text).unwrap();
    let gateway = launch_gateway(&path, &certs, config, addr, admin, key).await;

    wait_for("the stale mailbox reported", || {
        !notified_about(&log, "mailbox imap:inbox not polled for 2s").is_empty()
    })
    .await;
    let start = Instant::now();
    while notified_about(&log, "TLS certificate").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no certificate notice: {:#?}",
            received(&log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stale = notified_about(&log, "mailbox imap:inbox");
    assert_eq!(
        stale[0]["rcpt_tos"],
        serde_json::json!(["ops@ourcorp.example"])
    );
    assert!(
        stale[0]["data"]
            .as_str()
            .unwrap()
            .contains("no successful poll since the gateway started"),
        "{stale:?}"
    );
    let cert = notified_about(&log, "TLS certificate");
    assert!(
        cert[0]["data"].as_str().unwrap().contains(" expires on "),
        "{cert:?}"
    );
    assert!(
        notified_about(&log, "clients banned").is_empty()
            && notified_about(&log, "SMTP spool").is_empty(),
        "nothing else happened yet"
    );

    // Three clients banned (the defender bans at the first failure).
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let client = reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .add_root_certificate(reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        let r = client
            .get(format!("{}/api/v1/files", gateway.base))
            .bearer_auth("mgw_0000000000000000_notakeynotakeynotakeynotakeynotakey")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{ip}");
    }
    wait_for("the ban storm reported", || {
        !notified_about(&log, "3 clients banned within 1m").is_empty()
    })
    .await;

    // The backend goes away while mail keeps coming: the spool grows.
    backend.proc.signal("KILL");
    backend.proc.wait_exit(Duration::from_secs(10)).unwrap();
    let smtp_port = smtp_in.port().to_string();
    let ca = certs.ca.display().to_string();
    for i in 0..2 {
        let subject = format!("held {i}");
        let r = smtplib(&[
            "--port",
            &smtp_port,
            "--starttls",
            "--cafile",
            &ca,
            "--user",
            "any",
            "--password",
            &gateway.key,
            "--subject",
            &subject,
            "--to",
            "bob@ourcorp.example",
        ]);
        assert_eq!(mft_e2e::smtp::code(&r, "data"), 250, "{r}");
    }
    wait_spool_depth(gateway.admin, 2.0, Duration::from_secs(30)).await;
    wait_for("the spool reported", || {
        !notified_about(&log, "SMTP spool holds 2 messages").is_empty()
    })
    .await;

    // Each once in its period, though every condition still holds; each
    // audited with the message it queued.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for what in [
        "mailbox imap:inbox",
        "TLS certificate",
        "clients banned",
        "SMTP spool",
    ] {
        assert_eq!(notified_about(&log, what).len(), 1, "{what}");
    }
    let audit = std::fs::read_to_string(path.join("gateway-data/audit.jsonl")).unwrap();
    for (i, event) in [
        "mailbox_stale",
        "certificate_expiring",
        "ban_storm",
        "spool_growing",
    ]
    .iter()
    .enumerate()
    {
        let wanted = format!("notify[{i}] {event}: queued as msg_");
        assert_eq!(
            audit.lines().filter(|l| l.contains(&wanted)).count(),
            1,
            "{wanted}"
        );
    }
    let (code, out, _) = transports(&gateway.config, &["list", "--json"]);
    assert_eq!(code, 0);
    let list: Vec<Value> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        list[0]["used_by"],
        serde_json::json!([
            "notify[0] (mailbox_stale)",
            "notify[1] (certificate_expiring)",
            "notify[2] (ban_storm)",
            "notify[3] (spool_growing)"
        ])
    );
    drop(backend);
}
