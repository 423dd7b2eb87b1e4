//! The console's bridges, transport providers and configuration screens in
//! a real browser (tests/py/console_screens.py: Debian's headless Chromium
//! through Selenium, TOTP from pyotp), one test per screen, each with real
//! peers: an OpenSSH `sftp` session, swaks on the SMTP bridge, a mailbox
//! whose server refuses the connection, aiosmtpd behind a transport. Each
//! also checks on the server that a viewer's change and a change without
//! the CSRF token are refused.
//! Set `MFT_CONSOLE_SCREENSHOTS=docs/console` to refresh the screenshots.

use super::console::{admins, setup_with, ADMIN_TOKEN, ALICE_PW, BOB_PW};
use mft_e2e::*;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// What the browser script reported.
struct Browser {
    alice: (String, String),
    bob: (String, String),
    result: serde_json::Value,
}

fn add_admins(config: &Path) {
    let (code, out) = admins(config, &["add", "alice"], Some(&format!("{ALICE_PW}\n")));
    assert_eq!(code, 0, "{out}");
    let (code, out) = admins(
        config,
        &["add", "bob", "--role", "viewer"],
        Some(&format!("{BOB_PW}\n")),
    );
    assert_eq!(code, 0, "{out}");
}

/// Runs console_screens.py for `screen` against the admin listener.
async fn drive(screen: &str, admin: std::net::SocketAddr, arg: &str) -> Browser {
    let shots = std::env::var("MFT_CONSOLE_SCREENSHOTS").unwrap_or_else(|_| "-".to_string());
    if shots != "-" {
        std::fs::create_dir_all(&shots).unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/console_screens.py");
    let mut child = tokio::process::Command::new(python())
        .arg(&script)
        .args([
            screen,
            &format!("http://{admin}"),
            &shots,
            ALICE_PW,
            BOB_PW,
            arg,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the test venv's python (scripts/setup --test)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut alice, mut bob) = (None, None);
    loop {
        let line = tokio::time::timeout(Duration::from_secs(240), lines.next_line())
            .await
            .expect("the browser script answers within 4 minutes")
            .unwrap()
            .expect("the browser script ended without a RESULT line");
        let words: Vec<&str> = line.split(' ').collect();
        match words[0] {
            "VIEWER" => bob = Some((words[1].to_string(), words[2].to_string())),
            "ADMIN" => alice = Some((words[1].to_string(), words[2].to_string())),
            "RESULT" => {
                let result: serde_json::Value = serde_json::from_str(&line[7..]).unwrap();
                assert!(result.get("error").is_none(), "browser: {result:#}");
                let _ = child.wait().await;
                return Browser {
                    alice: alice.expect("alice signed in"),
                    bob: bob.expect("bob signed in"),
                    result,
                };
            }
            _ => {}
        }
    }
}

/// A change with bob's (viewer) session and one with alice's session but
/// without the CSRF token: both `403`, nothing done.
async fn changes_refused(
    admin: std::net::SocketAddr,
    b: &Browser,
    path: &str,
    body: serde_json::Value,
) {
    let http = reqwest::Client::new();
    let url = format!("http://{admin}{path}");
    let r = http
        .post(&url)
        .header("Cookie", format!("mft_console={}", b.bob.0))
        .header("X-CSRF-Token", &b.bob.1)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a viewer's POST {path}");
    let detail: serde_json::Value = r.json().await.unwrap();
    assert!(
        detail["detail"].as_str().unwrap_or("").contains("viewer"),
        "{detail}"
    );
    let r = http
        .post(&url)
        .header("Cookie", format!("mft_console={}", b.alice.0))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "POST {path} without the CSRF token");
    let detail: serde_json::Value = r.json().await.unwrap();
    assert!(
        detail["detail"].as_str().unwrap_or("").contains("CSRF"),
        "{detail}"
    );
    // The viewer reads the same screens' data.
    let r = http
        .get(format!("http://{admin}/admin/v1/bridges"))
        .header("Cookie", format!("mft_console={}", b.bob.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a viewer reads");
}

fn common(b: &Browser) {
    assert_eq!(
        b.result["nav_rows_1280"], 1,
        "the navigation fits one row at 1280 px: {}",
        b.result
    );
    assert_eq!(
        b.result["nav_fits_at_200"], true,
        "at 200 % zoom the navigation wraps instead of overflowing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_bridges_screen_shows_smtp_mailboxes_and_sftp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    // A mailbox whose server is not there: the poller's error shows.
    let closed = refused();
    let closed_port = closed.addr.port();
    std::fs::write(path.join("mailbox.password"), "mailbox-password\n").unwrap();
    let tables = format!(
        r#"
[[sftp.users]]
name = "alice"
authorized_keys = ["{{KEY}}"]
folder = "partners/alice"

[[sftp.users]]
name = "batch-job"
api_key_login = true
folder = "jobs"

[smtp]
listen = "{smtp}"
hostname = "mx.ourcorp.example"
allowed_client_networks = ["127.0.0.0/8"]

[[imap]]
name = "ops"
host = "127.0.0.1"
port = {closed_port}
tls = "starttls"
username = "ops"
password = "file:{pw}"
command_timeout = "2s"

{sealed}"#,
        smtp = ephemeral(),
        pw = path.join("mailbox.password").display(),
        sealed = sealed_admin_tables(path, ADMIN_TOKEN, ""),
    );
    let env = mft_e2e::sftp::start(path, &tables, "").await;
    let smtp = env.gateway.listeners.get("smtp");
    add_admins(&env.gateway.config);

    // One SFTP session held open by the real OpenSSH client.
    let mut session = std::process::Command::new("sftp")
        .args(["-b", "-", "-i"])
        .arg(&env.key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentityAgent=none",
            "-P",
            &env.sftp.port().to_string(),
            "alice@127.0.0.1",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // One SMTP session (EHLO, QUIT) from swaks.
    let (_, transcript) = mft_e2e::smtp::swaks(&[
        "--server",
        &smtp.to_string(),
        "--to",
        "ops@ourcorp.example",
        "--quit-after",
        "EHLO",
    ]);
    assert!(transcript.contains("250"), "{transcript}");

    let b = drive("bridges", env.gateway.admin, "").await;
    let _ = session.kill();
    let _ = session.wait();
    let r = &b.result;
    assert!(
        r["mailbox_state"].as_str().unwrap().starts_with("failing"),
        "{r:#}"
    );
    assert!(
        !r["mailbox_error"].as_str().unwrap().is_empty(),
        "the poller's error is shown: {r:#}"
    );
    assert_eq!(r["sftp_open"], "1", "{r:#}");
    let users = r["sftp_users"].to_string();
    assert!(
        users.contains("public key") && users.contains("api key"),
        "{users}"
    );
    assert!(
        r["sftp_summary"]
            .as_str()
            .unwrap()
            .contains(&env.sftp.to_string()),
        "{r:#}"
    );
    assert!(
        r["smtp_summary"]
            .as_str()
            .unwrap()
            .contains("spool depth 0"),
        "{r:#}"
    );
    assert_eq!(r["smtp_accepted"], "1", "{r:#}");
    assert_eq!(r["german_heading"], "Brücken");
    let page = r["page"].as_str().unwrap();
    assert!(
        !page.contains("mailbox-password"),
        "no secret on the page: {page}"
    );
    common(&b);
    // The bridges API has no change to refuse; the config validation is
    // the screen family's change that needs the role and token.
    changes_refused(
        env.gateway.admin,
        &b,
        "/admin/v1/config/validate",
        serde_json::json!({"config": ""}),
    )
    .await;
}

/// An SFTP user added on the bridges screen (keyboard only: Tab through
/// the form, Enter) logs in with OpenSSH `sftp` at once and uploads; a
/// viewer's add and an add without the CSRF token are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_adds_an_sftp_user_who_then_logs_in_with_sftp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    // No [[sftp.users]] at all: every user comes from the console.
    let tables = sealed_admin_tables(path, ADMIN_TOKEN, "");
    let env = mft_e2e::sftp::start(path, &tables, "").await;
    add_admins(&env.gateway.config);
    let acme_key = path.join("acme_key");
    let acme_public = mft_e2e::sftp::keygen(&acme_key);

    let b = drive("sftp-users", env.gateway.admin, &acme_public).await;
    let r = &b.result;
    let row = r["row"].as_str().unwrap();
    assert!(
        row.contains("acme") && row.contains("partners/acme"),
        "{r:#}"
    );
    assert!(r["message"].as_str().unwrap().contains("acme"), "{r:#}");
    assert_eq!(r["german_legend"], "Neuer SFTP-Benutzer", "{r:#}");
    assert_eq!(
        r["keys_filled"], true,
        "the key reached its field by keyboard"
    );
    assert_eq!(r["removable"], true, "a stored user has a remove button");
    assert!(
        !r["page"].as_str().unwrap().contains("AAAA"),
        "no key on the page"
    );

    // The user the browser added logs in with the real sftp client.
    std::fs::write(path.join("hello.txt"), b"added in the console").unwrap();
    mft_e2e::sftp::ok(&env.batch_with_key("acme", &acme_key, "put hello.txt\nls\n"));
    let stored = env
        .file("partners/acme", "hello.txt")
        .await
        .expect("the upload reached the backend");
    assert_eq!(stored["size"], 20);
    common(&b);
    changes_refused(
        env.gateway.admin,
        &b,
        "/admin/v1/sftp/users",
        serde_json::json!({"name": "mallory", "password": "mallory's password", "folder": "m"}),
    )
    .await;
    // Neither refusal stored a user.
    let out = env.batch_with_password("mallory", "mallory's password", "ls\n");
    assert!(!out.status.success());
    let list: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/admin/v1/sftp/users", env.gateway.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme"], "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_transports_screen_tests_a_provider() {
    let s = setup_with("").await;
    add_admins(&s.gw.config);
    let smtp = free_addr();
    let log = s.path.join("smtp.jsonl");
    let _server = super::transports::start_smtp(&s.path, &s.certs, smtp, &log);
    let pw = s.path.join("smtp.password");
    std::fs::write(&pw, format!("{}\n", super::transports::SMTP_PASSWORD)).unwrap();
    let port = smtp.port().to_string();
    let (code, out, err) = super::transports::transports(
        &s.gw.config,
        &[
            "add",
            "mail",
            "--type",
            "smtp",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--tls",
            "starttls",
            "--username",
            super::transports::SMTP_USER,
            "--from",
            "MFT Gateway <mft@acme.example>",
            "--ca-file",
            s.certs.ca.to_str().unwrap(),
            "--password-file",
            pw.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");

    let b = drive("transports", s.gw.admin, "carol@beta.example").await;
    let r = &b.result;
    assert_eq!(r["state"], "ready", "{r:#}");
    assert!(r["row"].as_str().unwrap().contains("smtp"), "{r:#}");
    assert!(
        !r["row"]
            .as_str()
            .unwrap()
            .contains(super::transports::SMTP_PASSWORD),
        "{r:#}"
    );
    let shown = r["test_result"].as_str().unwrap();
    assert!(shown.starts_with("sent: 250"), "{shown}");
    let got = super::transports::received(&log);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(
        got[0]["rcpt_tos"],
        serde_json::json!(["carol@beta.example"])
    );
    common(&b);
    changes_refused(
        s.gw.admin,
        &b,
        "/admin/v1/transports/mail/test",
        serde_json::json!({"to": "carol@beta.example"}),
    )
    .await;
    assert_eq!(
        super::transports::received(&log).len(),
        1,
        "the refused tests sent nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_configuration_screen_redacts_validates_and_reloads() {
    // A secret written in clear (a warning, but it runs) must not show.
    let closed = refused();
    let closed_port = closed.addr.port();
    let literal = "pop3-literal-password-4711";
    let s = setup_with(&format!(
        "[[pop3]]\nname = \"legacy\"\nhost = \"127.0.0.1\"\nport = {closed_port}\n\
         tls = \"starttls\"\nusername = \"u\"\npassword = \"{literal}\"\n"
    ))
    .await;
    add_admins(&s.gw.config);
    let config = s.gw.config.to_str().unwrap().to_string();
    let b = drive("config", s.gw.admin, &config).await;
    let r = &b.result;
    let shown = r["shown"].as_str().unwrap();
    assert!(!shown.contains(literal), "{shown}");
    assert!(!shown.contains(ADMIN_TOKEN), "{shown}");
    assert!(
        !shown.contains("0123456789abcdef0123456789abcdef"),
        "no file: target's content: {shown}"
    );
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(
        shown.contains("file:") && shown.contains("admin.token"),
        "references are shown as written: {shown}"
    );
    assert!(shown.contains("legacy"), "{shown}");
    assert_eq!(r["source"], config.as_str());
    assert_eq!(r["drift_hidden"], true, "{r:#}");
    let lines: Vec<&str> = r["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("gateway.toml:2: server.https_listen: ")),
        "check's file:line: key: message lines: {lines:?}"
    );
    assert!(r["valid_head"].as_str().unwrap().starts_with("Valid"));
    assert!(
        r["reload"].as_str().unwrap().starts_with("Reloaded."),
        "{r:#}"
    );
    common(&b);
    for (path, body) in [
        (
            "/admin/v1/config/validate",
            serde_json::json!({"config": "[server]\n"}),
        ),
        ("/admin/v1/reload", serde_json::json!({})),
    ] {
        changes_refused(s.gw.admin, &b, path, body).await;
    }
    // The same checks for the token-holder: the API answers with `check`'s lines.
    let http = reqwest::Client::new();
    let v: serde_json::Value = http
        .post(format!("http://{}/admin/v1/config/validate", s.gw.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"config": "[server]\nhttps_listen = 5\n"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["valid"], false, "{v}");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("gateway.toml:2"),
        "{v}"
    );
    let r = http
        .post(format!("http://{}/admin/v1/config/validate", s.gw.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"toml": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "an unknown field is a 400 problem");
}
