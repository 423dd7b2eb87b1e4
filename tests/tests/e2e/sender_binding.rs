//! Sender binding (issue "security findings": a delivery's sender must be
//! tied to the authenticated principal). A key created with
//! `--allowed-senders` cannot send `POST /api/v1/deliveries` as anyone else,
//! over HTTP/1.1 or h2, sized or chunked, however the JSON is dressed up;
//! nothing of a refused delivery reaches the backend. A key without a
//! binding behaves as before. The SMTP bridge holds a bound key to its
//! senders as well.

use futures_util::stream;
use mft_e2e::smtp::{start_smtp_gateway, swaks};
use mft_e2e::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BOUND: &str = "ops@ourcorp.example,*@billing.ourcorp.example";
const ADMIN_TOKEN: &str = "an admin token for the sender binding tests 0123";

struct Stack {
    certs: Certs,
    _backend: Backend,
    gateway: Gateway,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    dir: tempfile::TempDir,
}

async fn stack() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let token = dir.path().join("admin.token");
    std::fs::write(&token, ADMIN_TOKEN).unwrap();
    let tables = format!("[admin]\ntoken = \"file:{}\"\n", token.display());
    let gateway = start_gateway_with(dir.path(), &certs, &backend.url, "", &tables).await;
    Stack {
        dir,
        certs,
        _backend: backend,
        gateway,
    }
}

fn delivery(sender: &str, subject: &str) -> Value {
    json!({
        "sender": sender,
        "recipients": ["bob@ourcorp.example"],
        "subject": subject,
        "message": "hello",
    })
}

async fn post(
    c: &reqwest::Client,
    g: &Gateway,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let body: reqwest::Body = body.into();
    let len = body.as_bytes().map(<[u8]>::len);
    c.post(format!("{}/api/v1/deliveries", g.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("body of {len:?} bytes (None: streamed): {e:?}"))
}

/// The same body sent chunked (HTTP/1.1) or without a length (h2): small
/// bodies in 7-byte pieces (a sender split across reads), large ones in
/// 1 KiB pieces.
fn streamed(body: Vec<u8>) -> reqwest::Body {
    let piece = if body.len() > 4096 { 1024 } else { 7 };
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(piece).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(stream::iter(chunks))
}

async fn problem(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    p["type"].as_str().unwrap_or_default().to_string()
}

async fn subjects(s: &Stack) -> Vec<(String, String)> {
    let list: Value = s
        .gateway
        .client(&s.certs, Proto::Http1)
        .get(format!("{}/api/v1/deliveries", s.gateway.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["subject"].as_str().unwrap_or_default().to_string(),
                d["sender"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn keys(config: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin("mft-gateway"))
        .arg("keys")
        .args(args)
        .arg("--config")
        .arg(config)
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

/// The attack and the allowed cases on one engine, both protocols.
async fn bound_key_cannot_deliver_as_another_sender(s: &Stack) {
    let scopes = "deliveries:write,deliveries:read";
    let (bound_id, bound) = create_key_with(
        &s.gateway.config,
        "ops",
        scopes,
        &["--allowed-senders", BOUND],
    );
    let g = &s.gateway;
    for proto in [Proto::Http1, Proto::Http2] {
        let c = client_with_key(&s.certs, proto, &bound);
        let tag = format!("{proto:?}");
        // The attack: a bound key names another sender, sized and streamed.
        let evil = delivery("ceo@ourcorp.example", &format!("attack {tag}"));
        let bytes = serde_json::to_vec(&evil).unwrap();
        let r = post(&c, g, bytes.clone()).await;
        assert_eq!(
            problem(r, 403).await,
            "urn:mft:problem:sender-not-allowed",
            "{tag}"
        );
        let r = post(&c, g, streamed(bytes)).await;
        assert_eq!(
            problem(r, 403).await,
            "urn:mft:problem:sender-not-allowed",
            "{tag} streamed"
        );
        // Variants: a subdomain of an allowed domain, a look-alike domain,
        // a repeated field (the backend would refuse; so do we, whichever
        // comes last), no sender, not JSON.
        for (body, status) in [
            (
                serde_json::to_vec(&delivery("x@sub.billing.ourcorp.example", "attack sub"))
                    .unwrap(),
                403,
            ),
            (
                serde_json::to_vec(&delivery("ops@ourcorp.example.evil", "attack evil")).unwrap(),
                403,
            ),
            (
                br#"{"sender":"ops@ourcorp.example","sender":"ceo@ourcorp.example","recipients":["bob@ourcorp.example"],"subject":"attack dup"}"#.to_vec(),
                400,
            ),
            (
                br#"{"recipients":["bob@ourcorp.example"],"subject":"attack none"}"#.to_vec(),
                400,
            ),
            (b"sender=ceo@ourcorp.example".to_vec(), 400),
            (Vec::new(), 400),
        ] {
            let r = post(&c, g, body.clone()).await;
            assert_eq!(r.status(), status, "{tag}: {}", String::from_utf8_lossy(&body));
        }
        // Over the 64 KiB a bound delivery may have: 413, declared or streamed.
        let mut big = delivery("ops@ourcorp.example", "attack big");
        big["message"] = Value::String("x".repeat(70_000));
        let big = serde_json::to_vec(&big).unwrap();
        let r = post(&c, g, big.clone()).await;
        assert_eq!(problem(r, 413).await, "urn:mft:problem:body-too-large");
        let r = post(&c, g, streamed(big)).await;
        assert_eq!(r.status(), 413, "{tag} streamed big");

        // Its own senders pass: exact (any case, escaped), and the domain.
        let r = post(
            &c,
            g,
            serde_json::to_vec(&delivery("OPS@ourcorp.example", &format!("own {tag}"))).unwrap(),
        )
        .await;
        assert_eq!(r.status(), 201, "{tag}");
        let escaped = format!(
            r#"{{"sender":"ops\u0040ourcorp.example","recipients":["bob@ourcorp.example"],"subject":"escaped {tag}"}}"#
        );
        let r = post(&c, g, streamed(escaped.into_bytes())).await;
        assert_eq!(r.status(), 201, "{tag} streamed own");
        let r = post(
            &c,
            g,
            serde_json::to_vec(&delivery(
                "anna@billing.ourcorp.example",
                &format!("billing {tag}"),
            ))
            .unwrap(),
        )
        .await;
        assert_eq!(r.status(), 201, "{tag}");
        let created: Value = r.json().await.unwrap();
        assert_eq!(created["sender"], "anna@billing.ourcorp.example");

        // A key without a binding may name any sender, as before.
        let unbound = g.client(&s.certs, proto);
        let r = post(
            &unbound,
            g,
            serde_json::to_vec(&delivery("ceo@ourcorp.example", &format!("unbound {tag}")))
                .unwrap(),
        )
        .await;
        assert_eq!(r.status(), 201, "{tag}");
    }
    // Nothing of a refused delivery reached the backend.
    let stored = subjects(s).await;
    assert!(
        stored
            .iter()
            .all(|(subject, _)| !subject.starts_with("attack")),
        "{stored:?}"
    );
    assert_eq!(stored.len(), 8, "{stored:?}");
    // Audited with the reason.
    let audit = std::fs::read_to_string(s.dir.path().join("gateway-data/audit.jsonl")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains(&format!("key:{bound_id}")) && l.contains("sender_not_allowed")),
        "{audit}"
    );
    // The key lists its binding.
    let (ok, out) = keys(&g.config, &["list", "--json"]);
    assert!(ok, "{out}");
    let list: Value = serde_json::from_str(out.trim()).unwrap();
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == bound_id.as_str())
        .unwrap();
    assert_eq!(
        listed["allowed_senders"],
        json!(["ops@ourcorp.example", "*@billing.ourcorp.example"])
    );
}

/// Waits until `sender` gets `status` with `key` (a binding changed by the
/// CLI or the admin API reaches the running gateway within seconds).
async fn wait_status(s: &Stack, key: &str, sender: &str, status: u16) {
    let c = client_with_key(&s.certs, Proto::Http1, key);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = post(
            &c,
            &s.gateway,
            serde_json::to_vec(&delivery(sender, "rebound")).unwrap(),
        )
        .await;
        if r.status() == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sender}: still {} instead of {status}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_key_cannot_deliver_as_another_sender_and_nothing_reaches_the_backend() {
    let s = stack().await;
    bound_key_cannot_deliver_as_another_sender(&s).await;

    // The binding changes on a running gateway: by the CLI (account name
    // or key id) and by the admin API.
    let (id, key) = create_key_with(
        &s.gateway.config,
        "billing",
        "deliveries:write",
        &["--allowed-senders", "billing@ourcorp.example"],
    );
    wait_status(&s, &key, "ceo@ourcorp.example", 403).await;
    let (ok, out) = keys(&s.gateway.config, &["set-senders", "billing", "--any"]);
    assert!(ok, "{out}");
    wait_status(&s, &key, "ceo@ourcorp.example", 201).await;
    let (ok, out) = keys(
        &s.gateway.config,
        &["set-senders", &id, "ceo@ourcorp.example"],
    );
    assert!(ok, "{out}");
    wait_status(&s, &key, "billing@ourcorp.example", 403).await;
    let (ok, out) = keys(&s.gateway.config, &["set-senders", &id, "not-an-address"]);
    assert!(!ok, "{out}");
    let (ok, out) = keys(&s.gateway.config, &["set-senders", "nobody-here", "--any"]);
    assert!(!ok, "{out}");
    let admin = reqwest::Client::new();
    let r = admin
        .put(format!(
            "http://{}/admin/v1/keys/{id}/senders",
            s.gateway.admin
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"allowed_senders": ["*@ourcorp.example"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["allowed_senders"], json!(["*@ourcorp.example"]));
    wait_status(&s, &key, "billing@ourcorp.example", 201).await;
    let r = admin
        .put(format!(
            "http://{}/admin/v1/keys/{id}/senders",
            s.gateway.admin
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"allowed_senders": ["no address"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Created bound through the admin API.
    let r = admin
        .post(format!("http://{}/admin/v1/keys", s.gateway.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "api-made", "scopes": ["deliveries:write"], "allowed_senders": ["ops@ourcorp.example"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["allowed_senders"], json!(["ops@ourcorp.example"]));
    wait_status(&s, v["key"].as_str().unwrap(), "ceo@ourcorp.example", 403).await;
}

#[tokio::test]
async fn the_pingora_engine_holds_a_bound_key_to_its_senders_too() {
    use_engine("pingora");
    let s = stack().await;
    let scopes = "deliveries:write";
    let (_, bound) = create_key_with(
        &s.gateway.config,
        "ops",
        scopes,
        &["--allowed-senders", BOUND],
    );
    let c = client_with_key(&s.certs, Proto::Http1, &bound);
    let g = &s.gateway;
    let evil = serde_json::to_vec(&delivery("ceo@ourcorp.example", "attack pingora")).unwrap();
    let r = post(&c, g, evil.clone()).await;
    assert_eq!(problem(r, 403).await, "urn:mft:problem:sender-not-allowed");
    let r = post(&c, g, streamed(evil)).await;
    let status = r.status();
    assert_eq!(status, 403, "{}", r.text().await.unwrap_or_default());
    let r = post(&c, g, Vec::new()).await;
    assert_eq!(r.status(), 400);
    let own = serde_json::to_vec(&delivery("ops@ourcorp.example", "own pingora")).unwrap();
    let r = post(&c, g, own).await;
    assert_eq!(r.status(), 201);
    let stored = subjects(&s).await;
    assert_eq!(
        stored,
        vec![("own pingora".to_string(), "ops@ourcorp.example".to_string())]
    );
}

#[tokio::test]
async fn smtp_holds_a_bound_key_to_its_envelope_senders() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    // A bridge user bound to one sender, besides the helper's unbound user.
    let user = format!(
        "[[smtp.users]]\nname = \"billing\"\npassword_hash = \"{}\"\nallowed_senders = [\"billing@partner.example\"]\n",
        mft_e2e::smtp::BRIDGE_HASH
    );
    let smtp = start_smtp_gateway(dir.path(), &certs, &backend.url, &user).await;
    let (_, bound) = create_key_with(
        &smtp.gw.config,
        "ops",
        "deliveries:write,files:write",
        // Within the listener's allowed_sender_domains (ourcorp.example,
        // partner.example).
        &["--allowed-senders", "ops@ourcorp.example,*@partner.example"],
    );
    let port = smtp.smtp.port().to_string();
    let send_as = |user: &str, from: &str, key: &str| {
        swaks(&[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            user,
            "--auth-password",
            key,
            "--from",
            from,
            "--to",
            "bob@ourcorp.example",
            "--header",
            &format!("Subject: from {from}"),
            "--body",
            "hello",
        ])
    };
    let send = |from: &str, key: &str| send_as("svc", from, key);
    // The attack: another sender of an allowed domain with a bound key.
    let (ok, transcript) = send("ceo@ourcorp.example", &bound);
    assert!(!ok, "{transcript}");
    assert!(
        transcript.contains("550 5.7.1 Sender not allowed for this credential"),
        "{transcript}"
    );
    assert!(!transcript.contains("queued as"), "{transcript}");
    // Its own senders pass; an unbound key still sends as any allowed domain.
    let (ok, transcript) = send("anna@partner.example", &bound);
    assert!(ok, "{transcript}");
    let (ok, transcript) = send("ceo@ourcorp.example", &smtp.gw.key);
    assert!(ok, "{transcript}");
    // A bridge user's allowed_senders hold the same way.
    let password = mft_e2e::smtp::BRIDGE_PASSWORD;
    let (ok, transcript) = send_as("billing", "ceo@partner.example", password);
    assert!(!ok, "{transcript}");
    assert!(
        transcript.contains("550 5.7.1 Sender not allowed for this credential"),
        "{transcript}"
    );
    let (ok, transcript) = send_as("billing", "billing@partner.example", password);
    assert!(ok, "{transcript}");
    let d = mft_e2e::smtp::wait_delivery(
        &smtp.gw,
        &certs,
        "from anna@partner.example",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(d["sender"], "anna@partner.example");
    mft_e2e::smtp::wait_delivery(
        &smtp.gw,
        &certs,
        "from ceo@ourcorp.example",
        Duration::from_secs(60),
    )
    .await;
    let all = mft_e2e::smtp::deliveries(&smtp.gw, &certs).await;
    let from_ceo = all
        .iter()
        .filter(|d| d["sender"] == "ceo@ourcorp.example")
        .count();
    assert_eq!(from_ceo, 1, "only the unbound key's: {all:?}");
}
