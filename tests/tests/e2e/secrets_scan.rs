//! No secret in any log, audit file or spool (issue 21): drives the flows
//! that carry secrets (API keys as Bearer and X-API-Key, a wrong secret for
//! a real key id, SMTP AUTH with a bridge password and with an API key, the
//! admin token, a webhook signing secret and a partner key created through
//! the CLI), then scans every file the gateway wrote.

use mft_e2e::smtp::*;
use mft_e2e::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn cli_json(config: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin("mft-gateway"))
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

#[tokio::test]
async fn no_secret_reaches_a_log_the_audit_trail_or_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let admin_token = "adm-0123456789abcdef0123456789abcdef-secret";
    std::fs::write(dir.path().join("admin.token"), admin_token).unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let sealing_key = "seal-0123456789abcdef0123456789abcdef";
    std::fs::write(dir.path().join("trust.key"), sealing_key).unwrap();
    let tables = format!(
        "[admin]\ntoken = \"file:admin.token\"\n\n[trust]\nencryption_key = \"file:trust.key\"\n\n{}",
        smtp_tables(ephemeral(), ephemeral(), "")
    );
    let gw = start_gateway_with(dir.path(), &certs, &backend.url, "", &tables).await;
    let (smtp, smtps) = (gw.listeners.get("smtp"), gw.listeners.get("smtps"));
    let s = SmtpGateway { gw, smtp, smtps };
    let key = s.gw.key.clone();
    let key_secret_part = key_secret(&key).to_string();
    // An internal receiver where nothing listens: the signed sends fail and are retried.
    let nowhere = refused();
    let hook_url = format!("http://{}/in", nowhere.addr);
    let webhook = cli_json(
        &s.gw.config,
        &[
            "webhooks",
            "add",
            "--url",
            &hook_url,
            "--allow-private",
            "--events",
            "delivery.created",
        ],
    );
    let webhook_secret = webhook["secret"].as_str().unwrap().to_string();
    let partner = cli_json(
        &s.gw.config,
        &[
            "partners",
            "add",
            "--name",
            "beta",
            "--url",
            "https://gw.beta.example",
            "--email-domain",
            "beta.example",
        ],
    );
    let partner_key = partner["key"].as_str().unwrap().to_string();

    // API key both ways, and a wrong secret for the real key id.
    let url = format!("{}/api/v1/files", s.gw.base);
    let c = client(&certs, Proto::Http1);
    let r = c.get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(&url).header("X-API-Key", &key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let wrong = format!("{}{}", &key[..key.len() - 6], "zzzzzz");
    let r = c.get(&url).bearer_auth(&wrong).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A partner key on the federation route and the public API.
    let r = c.get(&url).bearer_auth(&partner_key).send().await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    // The admin token, right and wrong.
    let admin = reqwest::Client::new();
    let r = admin
        .get(format!("http://{}/admin/v1/keys", s.gw.admin))
        .bearer_auth(admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = admin
        .get(format!("http://{}/admin/v1/keys", s.gw.admin))
        .bearer_auth(format!("{admin_token}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // SMTP AUTH with the bridge password and with the API key; a message
    // spooled and delivered.
    let ca = certs.ca.display().to_string();
    let port = s.smtps.port().to_string();
    for (user, password) in [(BRIDGE_USER, BRIDGE_PASSWORD), ("any", key.as_str())] {
        let r = smtplib(&[
            "--port",
            &port,
            "--ssl",
            "--cafile",
            &ca,
            "--user",
            user,
            "--password",
            password,
            "--to",
            "carol@ourcorp.example",
            "--subject",
            &format!("scan-{user}"),
        ]);
        assert_eq!(code(&r, "data"), 250, "{r}");
    }
    let r = smtplib(&[
        "--port",
        &port,
        "--ssl",
        "--cafile",
        &ca,
        "--user",
        BRIDGE_USER,
        "--password",
        "not-the-bridge-pass",
        "--to",
        "carol@ourcorp.example",
    ]);
    assert_eq!(code(&r, "auth"), 535, "{r}");
    wait_delivery(&s.gw, &certs, "scan-scanner", Duration::from_secs(30)).await;
    wait_delivery(&s.gw, &certs, "scan-any", Duration::from_secs(30)).await;

    let mut gw = s.gw;
    gw.proc.signal("TERM");
    assert!(gw.proc.wait_exit(Duration::from_secs(30)).is_some());

    let mut files = Vec::new();
    files_under(&dir.path().join("gateway-data"), &mut files);
    for name in ["gateway.stdout", "gateway.stderr"] {
        files.push(dir.path().join(name));
    }
    let audit = dir.path().join("gateway-data/audit.jsonl");
    assert!(files.contains(&audit), "{files:?}");
    let audit_text = std::fs::read_to_string(&audit).unwrap();
    assert!(
        audit_text.contains("\"event\":\"auth\""),
        "the scan saw the refusals: {audit_text}"
    );
    for (what, secret) in [
        ("admin token", admin_token),
        ("trust encryption key", sealing_key),
        ("webhook secret", webhook_secret.as_str()),
        ("partner key", partner_key.as_str()),
    ] {
        record_secret(what, secret);
    }
    let secrets = [
        ("API key secret", key_secret_part.as_str()),
        ("wrong secret", &wrong[wrong.len() - 20..]),
        ("admin token", admin_token),
        ("bridge password", BRIDGE_PASSWORD),
        ("wrong bridge password", "not-the-bridge-pass"),
        ("webhook secret", webhook_secret.as_str()),
        ("partner key", partner_key.as_str()),
        ("sealing key", sealing_key),
    ];
    let mut scanned = 0;
    for f in &files {
        // The key store holds hashes and sealed secrets: scanned too.
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        scanned += 1;
        for (what, secret) in &secrets {
            assert!(secret.len() >= 8, "{what} too short to scan for");
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{what} found in {}", f.display());
        }
    }
    assert!(scanned >= 4, "{files:?}");
}
