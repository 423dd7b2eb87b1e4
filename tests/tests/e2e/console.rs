//! The admin console in a real browser (Debian's headless Chromium driven
//! by Selenium, tests/py/console_browser.py; TOTP codes from pyotp): enrol,
//! sign in, create a key and use it with curl, revoke it and see it
//! refused, the viewer role and the CSRF token enforced on the server.
//! Set `MFT_CONSOLE_SCREENSHOTS=docs/console` to refresh the screenshots.

use mft_e2e::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub const ADMIN_TOKEN: &str = "console-admin-token-0123456789abcdef";
pub const ALICE_PW: &str = "alice's long password";
pub const BOB_PW: &str = "bob's long password!";

pub fn admins(config: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String) {
    use std::io::Write;
    record_secret("admin token", ADMIN_TOKEN);
    for pw in [ALICE_PW, BOB_PW] {
        record_secret("console password", pw);
    }
    let mut child = std::process::Command::new(bin("mft-gateway"))
        .arg("admins")
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `curl` with `key` against the gateway's file list; the HTTP status.
fn curl_status(gw: &Gateway, certs: &Certs, key: &str) -> u16 {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&certs.ca)
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .arg(format!("{}/api/v1/files", gw.base))
        .output()
        .expect("curl installed");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn audit_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("gateway-data/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn audit_has(dir: &Path, pred: impl Fn(&serde_json::Value) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if audit_lines(dir).iter().any(&pred) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub struct Console {
    pub path: PathBuf,
    pub certs: Certs,
    pub gw: Gateway,
    _backend: Backend,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    _dir: tempfile::TempDir,
}

async fn setup() -> Console {
    setup_with("").await
}

pub async fn setup_with(extra: &str) -> Console {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let certs = make_certs(&path);
    let backend = start_backend(&path).await;
    let ca_file = format!("ca_file = \"{}\"", certs.ca.display());
    let tables = format!(
        "{}\n{}\n{extra}",
        mft_e2e::outbox::ORGANIZATION,
        sealed_admin_tables(&path, ADMIN_TOKEN, &ca_file)
    );
    let gw = start_gateway_with(&path, &certs, &backend.url, "", &tables).await;
    Console {
        _dir: dir,
        path,
        certs,
        gw,
        _backend: backend,
    }
}

#[tokio::test]
async fn console_in_a_real_browser() {
    let s = setup().await;
    let config = s.gw.config.clone();
    let (code, out) = admins(&config, &["add", "alice"], Some(&format!("{ALICE_PW}\n")));
    assert_eq!(code, 0, "{out}");
    let (code, out) = admins(
        &config,
        &["add", "bob", "--role", "viewer"],
        Some(&format!("{BOB_PW}\n")),
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = admins(&config, &["add", "carol"], Some("short\n"));
    assert_eq!(code, 1, "a short password is refused: {out}");
    let (code, out) = admins(&config, &["add", "alice"], Some(&format!("{ALICE_PW}\n")));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("exists already"), "{out}");
    // A partner for the trust-network screen; nothing listens at its URL.
    let out = std::process::Command::new(bin("mft-gateway"))
        .args([
            "partners",
            "add",
            "--name",
            "beta",
            "--url",
            "https://127.0.0.1:9",
        ])
        .args(["--email-domain", "beta.example", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let admin_base = format!("http://{}", s.gw.admin);
    let shots = std::env::var("MFT_CONSOLE_SCREENSHOTS").unwrap_or_else(|_| "-".to_string());
    if shots != "-" {
        std::fs::create_dir_all(&shots).unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/console_browser.py");
    // The webhook receiver (Standard Webhooks reference implementation)
    // starts once the browser has added the webhook and shown its secret.
    let hook_addr = free_addr();
    let hook_log = s.path.join("hooks.jsonl");
    let mut browser = tokio::process::Command::new(python())
        .arg(&script)
        .args([
            admin_base.as_str(),
            shots.as_str(),
            ALICE_PW,
            BOB_PW,
            &format!("http://{hook_addr}/hook"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the test venv's python (scripts/setup --test)");
    let mut stdin = browser.stdin.take().unwrap();
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut next = async || -> Vec<String> {
        let line = tokio::time::timeout(Duration::from_secs(180), lines.next_line())
            .await
            .expect("the browser script answers within 3 minutes")
            .unwrap()
            .unwrap_or_default();
        line.split(' ').map(str::to_string).collect()
    };
    let admin_http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // alice is signed in in the browser and created a key there.
    let mut words = next().await;
    if words[0] == "RESULT" {
        panic!("browser: {}", words[1..].join(" "));
    }
    assert_eq!(words[0], "ADMIN", "{words:?}");
    let (alice_cookie, alice_csrf) = (words[1].clone(), words[2].clone());
    words = next().await;
    assert_eq!(words[0], "KEY", "{words:?}");
    let (key_id, key) = (words[1].clone(), words[2].clone());
    assert!(key.starts_with(&format!("mgw_{key_id}_")), "{key}");
    assert_eq!(curl_status(&s.gw, &s.certs, &key), 200, "the new key works");

    // The session reaches /admin/v1 too: reads freely, changes only with
    // the CSRF token.
    let cookie = format!("mft_console={alice_cookie}");
    let keys_url = format!("{admin_base}/admin/v1/keys");
    let r = admin_http
        .get(&keys_url)
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'self'"));
    let new_key = serde_json::json!({"name": "sneaky", "scopes": ["files:read"]});
    let r = admin_http
        .post(&keys_url)
        .header("Cookie", &cookie)
        .json(&new_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no CSRF token");
    let r = admin_http
        .post(&keys_url)
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", "0".repeat(64))
        .json(&new_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "wrong CSRF token");
    let r = admin_http
        .post(&keys_url)
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &alice_csrf)
        .json(&new_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "with the token");
    let sneaky: serde_json::Value = r.json().await.unwrap();
    assert!(
        audit_has(&s.path, |r| r["principal"] == "console:alice"
            && r["reason"]
                == format!("create {}", sneaky["id"].as_str().unwrap_or("")))
        .await,
        "changes through the console are audited with the admin's name"
    );
    // The bearer token works as before.
    let r = admin_http
        .get(&keys_url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = admin_http.get(&keys_url).send().await.unwrap();
    assert_eq!(r.status(), 401, "neither token nor session");

    stdin.write_all(b"go\n").await.unwrap();
    words = next().await;
    assert_eq!(words, vec!["REVOKED".to_string(), key_id.clone()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = curl_status(&s.gw, &s.certs, &key);
    while status != 401 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        status = curl_status(&s.gw, &s.certs, &key);
    }
    assert_eq!(status, 401, "the key revoked in the browser is refused");

    words = next().await;
    if words[0] == "RESULT" {
        panic!("browser: {}", words[1..].join(" "));
    }
    assert_eq!(words[0], "WEBHOOK", "{words:?}");
    assert!(words[1].starts_with("whsec_"), "{words:?}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/webhook_receiver.py");
    let port = hook_addr.port().to_string();
    let mut proc = Proc::spawn(
        "receiver",
        &python(),
        &[
            script.to_str().unwrap(),
            "--port",
            &port,
            "--secret",
            &words[1],
            "--log",
            hook_log.to_str().unwrap(),
        ],
        &s.path,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !proc.stdout().contains("ready") {
        proc.assert_running();
        assert!(Instant::now() < deadline, "receiver not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let receiver = proc;
    stdin.write_all(b"go\n").await.unwrap();

    // The viewer: reads, but a revoke is refused by the server.
    words = next().await;
    if words[0] == "RESULT" {
        panic!("browser: {}", words[1..].join(" "));
    }
    assert_eq!(words[0], "VIEWER", "{words:?}");
    let bob_cookie = format!("mft_console={}", words[1]);
    let bob_csrf = words[2].clone();
    let e2e_id = &s.gw.key[4..20];
    let r = admin_http
        .get(&keys_url)
        .header("Cookie", &bob_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a viewer reads");
    let r = admin_http
        .delete(format!("{keys_url}/{e2e_id}"))
        .header("Cookie", &bob_cookie)
        .header("X-CSRF-Token", &bob_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a viewer cannot revoke");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("viewer"),
        "{body}"
    );
    assert_eq!(curl_status(&s.gw, &s.certs, &s.gw.key), 200, "still active");
    // Nor reload the config (admin role only).
    let r = admin_http
        .post(format!("http://{}/admin/v1/reload", s.gw.admin))
        .header("Cookie", &bob_cookie)
        .header("X-CSRF-Token", &bob_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a viewer cannot reload");
    // Nor retry a relay, nor add a partner (the trust network screen's changes).
    let r = admin_http
        .post(format!("{admin_base}/admin/v1/relays/d1/beta/retry"))
        .header("Cookie", &bob_cookie)
        .header("X-CSRF-Token", &bob_csrf)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a viewer cannot retry a relay");
    let r = admin_http
        .post(format!("{admin_base}/admin/v1/partners"))
        .header("Cookie", &bob_cookie)
        .header("X-CSRF-Token", &bob_csrf)
        .json(&serde_json::json!({"name": "gamma", "url": "https://127.0.0.1:9", "email_domains": ["gamma.example"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a viewer cannot add a partner");

    let result = loop {
        let w = next().await;
        if w[0] == "RESULT" || w[0].is_empty() {
            break w[1..].join(" ");
        }
    };
    let v: serde_json::Value = serde_json::from_str(&result).unwrap_or_default();
    assert!(v.get("error").is_none(), "browser: {result}");
    assert_eq!(v["recovery_codes"], 10, "{result}");
    assert_eq!(v["cookie_http_only"], true, "{result}");
    assert_eq!(v["cookie_same_site"], "Strict", "{result}");
    assert!(
        v["wrong_password_message"]
            .as_str()
            .unwrap_or("")
            .contains("wrong"),
        "{result}"
    );
    assert!(
        v["wrong_code_message"]
            .as_str()
            .unwrap_or("")
            .contains("wrong"),
        "{result}"
    );
    assert!(
        v["recovery_code_reused_message"]
            .as_str()
            .unwrap_or("")
            .contains("wrong"),
        "{result}"
    );
    assert!(
        v["code_replay_message"]
            .as_str()
            .unwrap_or("")
            .contains("wrong"),
        "a TOTP code works once: {result}"
    );
    assert_eq!(v["create_without_csrf"], 403, "{result}");
    assert_eq!(v["sign_out_without_csrf"], 403, "{result}");
    assert_eq!(v["german_heading"], "API-Schlüssel", "{result}");
    assert_eq!(v["partners"], serde_json::json!(["beta"]), "{result}");
    assert!(
        v["partner_test"]
            .as_str()
            .unwrap_or("")
            .contains("not connected"),
        "{result}"
    );
    assert!(
        v["swagger_operations"].as_u64().unwrap_or(0) >= 20,
        "Swagger UI shows the operations: {result}"
    );
    assert_eq!(
        v["swagger_title"]
            .as_str()
            .map(|t| t.starts_with("mft-gateway admin API")),
        Some(true),
        "{result}"
    );
    assert_eq!(v["swagger_list_keys"], "200", "{result}");
    assert_eq!(
        v["swagger_test_partner"], "200",
        "a POST from Swagger UI carries the CSRF token: {result}"
    );
    assert_eq!(v["csp_violations"], serde_json::json!([]), "{result}");
    assert_eq!(v["overview_charts"], 4, "{result}");
    assert_eq!(v["overview_health"]["backend:backend"], "up", "{result}");
    assert_eq!(
        v["overview_health"]["certificate:default"], "ok",
        "{result}"
    );
    assert!(v["overview_health"]["partner:beta"].is_string(), "{result}");
    let rows = v["audit_rows"].as_array().cloned().unwrap_or_default();
    assert!(!rows.is_empty(), "{result}");
    for row in &rows {
        // time, event, principal, client ip, request, status, decision, reason
        assert_eq!(row[1], "console", "{row}");
        assert_eq!(row[6], "deny", "{row}");
    }
    assert!(
        rows.iter().any(|r| r[2] == "alice"),
        "alice's failed sign-in is listed: {result}"
    );
    let export = v["audit_export"].as_str().unwrap_or("");
    assert_eq!(export.lines().count(), rows.len(), "{export}");
    for line in export.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["decision"], "deny", "{line}");
    }
    assert!(
        v["webhook_test"]
            .as_str()
            .unwrap_or("")
            .starts_with("delivered (2"),
        "{result}"
    );
    let hooks: Vec<serde_json::Value> = std::fs::read_to_string(&hook_log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["verified"], true, "{hooks:?}");
    drop(receiver);
    assert_eq!(v["viewer_revoke_buttons"], 0, "{result}");
    assert_eq!(v["viewer_key_form_hidden"], true, "{result}");
    assert_eq!(v["viewer_role"], "viewer", "{result}");
    let _ = browser.wait().await;

    // The overview's numbers: the curl calls above are in the request
    // rate, with their bytes and a p99 (sampled every 10 s).
    let overview_url = format!("{admin_base}/admin/v1/overview");
    let deadline = Instant::now() + Duration::from_secs(30);
    let busy = loop {
        let o: serde_json::Value = admin_http
            .get(&overview_url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let busy = o["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["requests_per_s"].as_f64().unwrap_or(0.0) > 0.0)
            .cloned();
        if let Some(p) = busy {
            assert_eq!(o["interval_s"], 10);
            break p;
        }
        assert!(Instant::now() < deadline, "no traffic in the overview: {o}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(busy["bytes_out_per_s"].as_f64().unwrap() > 0.0, "{busy}");
    assert!(busy["p99_ms"].as_f64().unwrap() > 0.0, "{busy}");
    let r = admin_http
        .post(&overview_url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405, "the overview is read-only");

    // The audit trail through the API: paged, filtered, bad filters a 400.
    let audit_url = format!("{admin_base}/admin/v1/audit");
    let page: serde_json::Value = admin_http
        .get(format!("{audit_url}?limit=2"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page["more"], true, "{page}");
    assert!(
        page["records"][0]["time"].as_str().unwrap()
            >= page["records"][1]["time"].as_str().unwrap(),
        "newest first: {page}"
    );
    let key_page: serde_json::Value = admin_http
        .get(format!("{audit_url}?principal=console:alice&event=key"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reasons: Vec<&str> = key_page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("create ")),
        "{key_page}"
    );
    for bad in ["client_ip=nope", "since=yesterday", "limit=0", "colour=red"] {
        let r = admin_http
            .get(format!("{audit_url}?{bad}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{bad}"
        );
    }

    // Failed sign-ins went to the audit trail; nothing secret did.
    assert!(
        audit_has(&s.path, |r| r["event"] == "console"
            && r["decision"] == "deny"
            && r["principal"] == "alice")
        .await
    );
    let trail = std::fs::read_to_string(s.path.join("gateway-data/audit.jsonl")).unwrap();
    assert!(!trail.contains(ALICE_PW) && !trail.contains(&key) && !trail.contains(&alice_cookie));

    // The CLI sees the enrolments; reset-totp ends bob's session.
    let (code, out) = admins(&config, &["list", "--json"], None);
    assert_eq!(code, 0, "{out}");
    let list: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(list[0]["name"], "alice");
    assert_eq!(list[0]["totp"], "enrolled");
    assert_eq!(list[0]["recovery_codes_left"], 8, "two used: {list}");
    assert_eq!(list[1]["role"], "viewer");
    assert_eq!(admins(&config, &["reset-totp", "bob"], None).0, 0);
    let r = admin_http
        .get(&keys_url)
        .header("Cookie", &bob_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "reset-totp ends the sessions");
    assert_eq!(admins(&config, &["remove", "bob"], None).0, 0);
    assert_eq!(admins(&config, &["remove", "bob"], None).0, 1);
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_behind_the_token() {
    let s = setup().await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/admin/v1/openapi.json", s.gw.admin);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let r = http
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    // The public copy in docs/ is what the gateway serves (refresh it with
    // MFT_UPDATE_OPENAPI=1 when the admin API changes).
    let public = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi-admin.json");
    if std::env::var_os("MFT_UPDATE_OPENAPI").is_some() {
        let pretty = serde_json::to_string_pretty(&doc).unwrap() + "\n";
        std::fs::write(&public, pretty).unwrap();
    }
    let copy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&public).unwrap_or_default())
            .unwrap_or_default();
    assert!(
        copy == doc,
        "docs/openapi-admin.json differs from the served document: \
         MFT_UPDATE_OPENAPI=1 cargo nextest run -p mft-e2e --test e2e openapi"
    );
    // Swagger UI needs a complete session; the page says where to sign in.
    for page in ["/console/api/", "/admin/docs"] {
        let r = http
            .get(format!("http://{}{page}", s.gw.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{page}");
        assert!(r.text().await.unwrap().contains("href=\"/console/\""));
    }
    for (asset, kind) in [
        ("/console/api/swagger-ui-bundle.js", "text/javascript"),
        ("/console/api/swagger-ui.css", "text/css"),
        ("/console/api/api.js", "text/javascript"),
    ] {
        let r = http
            .get(format!("http://{}{asset}", s.gw.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert!(r.bytes().await.unwrap().len() > 500, "{asset}");
    }
    let file = s.path.join("openapi.json");
    std::fs::write(&file, &text).unwrap();
    let out = std::process::Command::new(python())
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             validate(json.load(open(sys.argv[1])))\n\
             print('valid')",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("valid"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every documented operation is routed (answers neither 404 nor 405).
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path
                .replace("{id}", "0123456789abcdef")
                .replace("{name}", "nobody");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut request = http.request(m, format!("http://{}{concrete}", s.gw.admin));
            // With the token, the upgrade would really start a new gateway
            // process that outlives the test: the 401 shows it is routed.
            if path != "/admin/v1/upgrade" {
                request = request.bearer_auth(ADMIN_TOKEN);
            }
            let r = request
                .header("Content-Type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert!(
                status != 405 && !body.contains("no such endpoint"),
                "{method} {path}: {status} {body}"
            );
        }
    }
}

#[tokio::test]
async fn console_pages_are_embedded_with_a_strict_csp() {
    let s = setup().await;
    let http = reqwest::Client::new();
    for (page, kind) in [
        ("/console/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let r = http
            .get(format!("http://{}{page}", s.gw.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{page}");
        let h = r.headers();
        assert!(h["content-type"].to_str().unwrap().starts_with(kind));
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        // The SVG namespace is a name, not something loaded.
        let body = r
            .text()
            .await
            .unwrap()
            .replace("\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "no CDN: {page}"
        );
        assert!(!body.contains("<script>"), "no inline script: {page}");
    }
    // Sign-in needs a JSON body (no cross-site form posts) and answers
    // wrong credentials with one generic 401.
    let sign_in = format!("http://{}/console/api/sign-in", s.gw.admin);
    let r = http
        .post(&sign_in)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("name=a&password=b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = http
        .post(&sign_in)
        .json(&serde_json::json!({"name": "nobody", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let r = http
        .post(&sign_in)
        .json(&serde_json::json!({"name": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "bad input is a 4xx");
    let r = http
        .get(format!("http://{}/console/api/me", s.gw.admin))
        .header("Cookie", "mft_console=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn failed_sign_ins_feed_the_defender() {
    let s = setup_with("[defender]\nthreshold = 3\n").await;
    let (code, out) = admins(
        &s.gw.config,
        &["add", "alice"],
        Some(&format!("{ALICE_PW}\n")),
    );
    assert_eq!(code, 0, "{out}");
    let http = reqwest::Client::new();
    let sign_in = format!("http://{}/console/api/sign-in", s.gw.admin);
    let attempt = |password: &str| {
        http.post(&sign_in)
            .json(&serde_json::json!({"name": "alice", "password": password}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(attempt("wrong password!").await.unwrap().status(), 401);
    }
    // Banned: even the right password is not checked.
    let r = attempt(ALICE_PW).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(
        audit_has(&s.path, |r| r["event"] == "ban"
            && r["reason"].as_str().unwrap_or("").starts_with("console"))
        .await
    );
}

/// The trust-network workflow in two organisations' consoles: add the
/// partner with its e-mail domain, copy our key for them, paste theirs,
/// "test connection" says connected on both sides; a relay that failed
/// while the connection was half made is retried from the relay queue and
/// delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_organisations_connect_in_their_consoles() {
    use super::trust::{two_orgs_with, Org};
    // A relay gives up after 1 s, so the half-made connection fails one.
    let (a, b) = two_orgs_with("relay_max_age = \"1s\"").await;
    let pw = "a long console password";
    for (org, name) in [(&a, "alice"), (&b, "bruno")] {
        let (code, out) = admins(
            &org.gateway.config,
            &["add", name],
            Some(&format!("{pw}\n")),
        );
        assert_eq!(code, 0, "{out}");
    }
    let a_base = format!("http://{}", a.gateway.admin);
    // Another host name for B: cookies are per host, not per port.
    let b_base = format!("http://localhost:{}", b.gateway.admin.port());
    let shots = std::env::var("MFT_CONSOLE_SCREENSHOTS").unwrap_or_else(|_| "-".to_string());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/console_trust.py");
    let mut browser = tokio::process::Command::new(python())
        .arg(&script)
        .args([
            a_base.as_str(),
            b_base.as_str(),
            &format!("https://{}", a.gateway.addr),
            &format!("https://{}", b.gateway.addr),
            pw,
            shots.as_str(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the test venv's python (scripts/setup --test)");
    let mut stdin = browser.stdin.take().unwrap();
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut next = async || -> String {
        tokio::time::timeout(Duration::from_secs(180), lines.next_line())
            .await
            .expect("the browser script answers within 3 minutes")
            .unwrap()
            .unwrap_or_default()
    };
    let line = next().await;
    assert_eq!(line, "HALF", "{line}");

    // A delivery from A to B's domain while B has not stored A's key: the
    // relay fails for good (B answers "pending", past relay_max_age).
    let api = a.gateway.client(&a.certs, Proto::Http1);
    let file: serde_json::Value = api
        .post(format!("{}/api/v1/files", a.gateway.base))
        .header("x-filename", "figures.csv")
        .body("q1,q2\n1,2\n")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = api
        .post(format!("{}/api/v1/deliveries", a.gateway.base))
        .json(&serde_json::json!({
            "sender": "alice@acme.example",
            "recipients": ["bob@beta.example"],
            "subject": "figures",
            "message": "attached",
            "files": [file["id"]],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let delivery: serde_json::Value = r.json().await.unwrap();
    let relays = |org: &Org| {
        let url = format!("http://{}/admin/v1/relays", org.gateway.admin);
        async move {
            let v: serde_json::Value = reqwest::Client::new()
                .get(url)
                .bearer_auth(super::trust::ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["relays"].as_array().cloned().unwrap_or_default()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = relays(&a).await;
        if list.iter().any(|j| j["state"] == "failed") {
            assert_eq!(list[0]["delivery_id"], delivery["id"], "{list:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no failed relay: {list:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A retry of something that did not fail is a 404, not a 5xx.
    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/admin/v1/relays/no-such-delivery/beta/retry",
            a.gateway.admin
        ))
        .bearer_auth(super::trust::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    stdin.write_all(b"go\n").await.unwrap();

    // Once the browser saw the relay delivered, bob downloads the file at
    // B: B's gateway sends A the signed receipt, and A's relay queue shows it.
    let line = loop {
        let line = next().await;
        if line == "DELIVERED" || line.starts_with("RESULT ") || line.is_empty() {
            break line;
        }
    };
    assert_eq!(line, "DELIVERED", "{line}");
    let b_api = b.gateway.client(&b.certs, Proto::Http1);
    let got: serde_json::Value = b_api
        .get(format!("{}/api/v1/deliveries", b.gateway.base))
        .query(&[("recipient", "bob@beta.example")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b_file = got["deliveries"][0]["files"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{got}"))
        .to_string();
    let r = b_api
        .get(format!("{}/api/v1/files/{b_file}/content", b.gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"q1,q2\n1,2\n");
    stdin.write_all(b"go\n").await.unwrap();

    let result = loop {
        let line = next().await;
        if let Some(rest) = line.strip_prefix("RESULT ") {
            break rest.to_string();
        }
        assert!(!line.is_empty(), "the browser script ended early");
    };
    let _ = browser.wait().await;
    let v: serde_json::Value = serde_json::from_str(&result).unwrap_or_default();
    assert!(v.get("error").is_none(), "browser: {result}");
    assert!(
        v["half_test"]
            .as_str()
            .unwrap_or("")
            .starts_with("not connected"),
        "{result}"
    );
    assert_eq!(v["b_test"], "connected", "{result}");
    assert_eq!(v["a_test"], "connected", "{result}");
    assert_eq!(v["failed_relays"], 1, "{result}");
    assert_eq!(
        v["relay_states"],
        serde_json::json!(["delivered"]),
        "{result}"
    );
    assert_eq!(
        v["receipts_before"],
        serde_json::json!(["none yet"]),
        "{result}"
    );
    assert_eq!(
        v["receipts_after"],
        serde_json::json!(["1 of 1 files confirmed"]),
        "{result}"
    );
    let list = relays(&a).await;
    assert_eq!(list[0]["state"], "delivered", "{list:?}");
    assert_eq!(
        list[0]["receipts"].as_array().map(Vec::len),
        Some(1),
        "{list:?}"
    );
    assert_eq!(list[0]["receipts"][0]["file_id"], file["id"], "{list:?}");
    assert!(
        audit_has(&a.path, |r| r["event"] == "relay"
            && r["principal"] == "console:alice"
            && r["reason"].as_str().unwrap_or("").starts_with("retry "))
        .await,
        "the retry is audited with the admin's name"
    );
}
