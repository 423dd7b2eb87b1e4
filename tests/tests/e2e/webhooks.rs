//! Webhooks: the real gateway and backend, subscriptions made with the
//! real CLI and admin API, and a receiver (tests/py/webhook_receiver.py)
//! that verifies every delivery with PyPI `standardwebhooks`, the Standard
//! Webhooks reference implementation.

use mft_e2e::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "webhook-admin-token-0123456789abcdef";

struct Setup {
    path: PathBuf,
    certs: Certs,
    _backend: Backend,
    gateway: Gateway,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    _dir: tempfile::TempDir,
}

/// Backend + gateway with a sealing key, fast retries and an admin token.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (certs, backend, gateway) = mft_e2e::outbox::start(&path, ADMIN_TOKEN, "").await;
    Setup {
        _dir: dir,
        path,
        certs,
        _backend: backend,
        gateway,
    }
}

/// `mft-gateway webhooks ARGS --config ...`: (exit code, stdout, stderr).
fn webhooks(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("mft-gateway"))
        .arg("webhooks")
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

/// Adds a subscription to `http://ADDR/hook`; returns (id, secret).
fn add(config: &Path, addr: SocketAddr, events: &str) -> (String, String) {
    let url = format!("http://{addr}/hook");
    let (code, out, err) = webhooks(
        config,
        &[
            "add",
            "--url",
            &url,
            "--events",
            events,
            "--allow-private",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let secret = v["secret"].as_str().unwrap().to_string();
    record_secret("webhook secret", &secret);
    assert!(secret.starts_with("whsec_"), "{v}");
    (v["id"].as_str().unwrap().to_string(), secret)
}

fn list(config: &Path) -> Vec<Value> {
    let (code, out, err) = webhooks(config, &["list", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str::<Vec<Value>>(out.trim()).unwrap()
}

/// The Python receiver on `addr`, logging to `log`; stopped when dropped.
struct Receiver {
    _proc: Proc,
}

fn start_receiver(
    dir: &Path,
    addr: SocketAddr,
    secret: &str,
    log: &Path,
    fail_first: u32,
) -> Receiver {
    start_receiver_with(
        dir,
        addr,
        secret,
        log,
        &["--fail-first", &fail_first.to_string()],
    )
}

/// [`start_receiver`] with the receiver's options `args`.
fn start_receiver_with(
    dir: &Path,
    addr: SocketAddr,
    secret: &str,
    log: &Path,
    args: &[&str],
) -> Receiver {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/webhook_receiver.py");
    let port = addr.port().to_string();
    let mut all = vec![
        script.to_str().unwrap(),
        "--port",
        &port,
        "--secret",
        secret,
        "--log",
        log.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let mut proc = Proc::spawn("receiver", &python(), &all, dir);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !proc.stdout().contains("ready") {
        proc.assert_running();
        assert!(
            Instant::now() < deadline,
            "receiver not ready: {}",
            proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Receiver { _proc: proc }
}

fn entries(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until `done` holds for the receiver's log, at most `limit`.
async fn wait_log(log: &Path, limit: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let e = entries(log);
        if done(&e) {
            return e;
        }
        assert!(
            start.elapsed() < limit,
            "gave up waiting; the receiver logged {e:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn deliver(s: &Setup, subject: &str) -> String {
    let r = s
        .gateway
        .client(&s.certs, Proto::Http1)
        .post(format!("{}/api/v1/deliveries", s.gateway.base))
        .json(&json!({
            "sender": "alice@acme.example",
            "recipients": ["bob@acme.example"],
            "subject": subject,
            "message": "hello",
            "files": [],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// Delivery id → every logged request for its `delivery.created` event.
fn by_delivery(entries: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in entries {
        if e["type"] == "delivery.created" {
            let id = e["data"]["delivery_id"].as_str().unwrap().to_string();
            out.entry(id).or_default().push(e.clone());
        }
    }
    out
}

fn delivered(entries: &[Value], ids: &[String]) -> bool {
    let got = by_delivery(entries);
    ids.iter().all(|id| {
        got.get(id)
            .is_some_and(|v| v.iter().any(|e| e["status"] == 204))
    })
}

#[tokio::test]
async fn receiver_down_for_a_while_gets_every_event_verified_with_stable_ids() {
    let s = setup().await;
    let config = &s.gateway.config;
    let addr = free_addr();
    let (id, secret) = add(config, addr, "delivery.created,file.downloaded");
    let log = s.path.join("received.jsonl");

    // Up, failing each message's first attempt: the retry must carry the
    // same webhook-id (and verify again).
    let receiver = start_receiver(&s.path, addr, &secret, &log, 1);
    let first = deliver(&s, "first").await;
    wait_log(&log, Duration::from_secs(30), |e| {
        delivered(e, std::slice::from_ref(&first))
    })
    .await;

    // `webhooks test` sends a signed webhook.test at once.
    let (code, out, err) = webhooks(config, &["test", &id]);
    assert_eq!(code, 1, "the receiver fails a first attempt: {out}{err}");
    assert!(
        out.contains("not delivered: the receiver answered 500"),
        "{out}"
    );
    let (code, out, err) = webhooks(config, &["test", &id]);
    assert_eq!(code, 1, "a new test message has a new id: {out}{err}");
    drop(receiver);

    // Down: the events wait in the outbox, retried with backoff.
    let mut ids = vec![first.clone()];
    for i in 0..3 {
        ids.push(deliver(&s, &format!("while down {i}")).await);
    }
    let start = Instant::now();
    loop {
        let l = list(config);
        let w = l.iter().find(|w| w["id"] == id.as_str()).unwrap();
        if w["queued"] == 3
            && w["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("no answer"))
        {
            assert_eq!(w["state"], "enabled");
            assert!(w["failing_since"].is_string(), "{w}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never failed while down: {w}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several attempts against a closed port.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Back up: every event arrives, none lost.
    let _receiver = start_receiver(&s.path, addr, &secret, &log, 1);
    let e = wait_log(&log, Duration::from_secs(30), |e| delivered(e, &ids)).await;
    assert!(
        e.iter().all(|x| x["verified"] == true),
        "every request verifies with standardwebhooks: {e:#?}"
    );
    let got = by_delivery(&e);
    assert_eq!(
        got.keys().cloned().collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect::<BTreeSet<_>>(),
        "exactly the deliveries made, none lost, none invented"
    );
    for (delivery, attempts) in &got {
        let webhook_ids: BTreeSet<&str> = attempts
            .iter()
            .map(|a| a["webhook_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            webhook_ids.len(),
            1,
            "{delivery}: one webhook-id for every attempt: {attempts:#?}"
        );
        assert!(
            attempts.len() >= 2,
            "{delivery}: retried after the 500: {attempts:#?}"
        );
        assert_eq!(attempts[0]["status"], 500);
        let subject = attempts[0]["data"]["subject"].as_str().unwrap_or("");
        assert!(
            subject == "first" || subject.starts_with("while down"),
            "{subject}"
        );
    }
    // Different events have different ids.
    let all_ids: BTreeSet<&str> = got
        .values()
        .map(|a| a[0]["webhook_id"].as_str().unwrap())
        .collect();
    assert_eq!(all_ids.len(), ids.len());
    let tests: Vec<&Value> = e.iter().filter(|x| x["type"] == "webhook.test").collect();
    assert_eq!(tests.len(), 2, "{tests:#?}");
    assert_ne!(tests[0]["webhook_id"], tests[1]["webhook_id"]);

    let start = Instant::now();
    loop {
        let l = list(config);
        let w = l.iter().find(|w| w["id"] == id.as_str()).unwrap().clone();
        if w["queued"] == 0 {
            assert_eq!(w["delivered"], 4, "{w}");
            assert!(w["failing_since"].is_null(), "{w}");
            assert!(w["last_success_at"].is_string(), "{w}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{w}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A download is a file.downloaded event, with who downloaded it.
    let api = s.gateway.client(&s.certs, Proto::Http1);
    let r = api
        .post(format!("{}/api/v1/files", s.gateway.base))
        .header("x-filename", "report.txt")
        .body("figures")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let file: Value = r.json().await.unwrap();
    let file_id = file["id"].as_str().unwrap().to_string();
    let r = api
        .get(format!("{}/api/v1/files/{file_id}/content", s.gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "figures");
    let e = wait_log(&log, Duration::from_secs(30), |e| {
        e.iter()
            .any(|x| x["type"] == "file.downloaded" && x["status"] == 204)
    })
    .await;
    let d = e.iter().find(|x| x["type"] == "file.downloaded").unwrap();
    assert_eq!(d["data"]["file_id"], file_id.as_str());
    assert!(
        d["data"]["principal"].as_str().unwrap().starts_with("key:"),
        "{d}"
    );

    // The secret never reaches the gateway's logs.
    assert!(!s.gateway.proc.stderr().contains(&secret));
    assert!(!s.gateway.proc.stdout().contains(&secret));
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let s = setup().await;
    let config = &s.gateway.config;
    let addr = free_addr();
    for url in [
        format!("http://{addr}/hook"),
        format!("https://{addr}/hook"),
        format!("https://localhost:{}/hook", addr.port()),
        "https://169.254.169.254/latest/meta-data".to_string(),
        "https://[::1]/hook".to_string(),
    ] {
        let (code, out, err) = webhooks(
            config,
            &["add", "--url", &url, "--events", "delivery.created"],
        );
        assert_ne!(code, 0, "{url} must be refused: {out}{err}");
        assert!(
            err.contains("--allow-private") || err.contains("https"),
            "{url}: {err}"
        );
    }
    let (_, _, err) = webhooks(
        config,
        &[
            "add",
            "--url",
            &format!("https://{addr}/hook"),
            "--events",
            "delivery.created",
        ],
    );
    assert!(err.contains("loopback") && err.contains("SSRF"), "{err}");
    assert!(list(config).is_empty(), "nothing was stored");

    // Unknown events are refused too.
    let (code, _, err) = webhooks(
        config,
        &[
            "add",
            "--url",
            &format!("http://{addr}/hook"),
            "--events",
            "delivery.deleted",
            "--allow-private",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("unknown event"), "{err}");

    // The admin API: same rules, problem+json.
    let admin = reqwest::Client::new();
    let base = format!("http://{}/admin/v1/webhooks", s.gateway.admin);
    let r = admin
        .post(&base)
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"url": format!("https://127.0.0.1:{}/hook", addr.port()), "events": ["delivery.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("loopback"), "{p}");
    let r = admin
        .post(&base)
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"url": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Allowed explicitly: stored, listed, the secret shown once.
    let r = admin
        .post(&base)
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"url": format!("http://127.0.0.1:{}/hook", addr.port()),
                      "events": ["delivery.created", "delivery.relayed"], "allow_private": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let added: Value = r.json().await.unwrap();
    let id = added["id"].as_str().unwrap().to_string();
    let secret = added["secret"].as_str().unwrap().to_string();
    record_secret("webhook secret", &secret);
    assert!(secret.starts_with("whsec_"));
    let r = admin
        .get(&base)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let listed = r.text().await.unwrap();
    assert!(
        listed.contains(&id) && !listed.contains(&secret),
        "{listed}"
    );
    let (code, out, _) = webhooks(config, &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id) && !out.contains(&secret), "{out}");
    // The store keeps it sealed, never in clear.
    let db = std::fs::read(s.path.join("gateway-data/keys.sqlite")).unwrap();
    let wal = std::fs::read(s.path.join("gateway-data/keys.sqlite-wal")).unwrap_or_default();
    let needle = secret.as_bytes();
    assert!(!db.windows(needle.len()).any(|w| w == needle));
    assert!(!wal.windows(needle.len()).any(|w| w == needle));

    let r = admin
        .delete(format!("{base}/{id}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = admin
        .delete(format!("{base}/{id}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = admin.get(&base).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(list(config).is_empty());
}

#[tokio::test]
async fn sigkill_with_events_queued_delivers_each_after_restart() {
    let s = setup().await;
    let config = s.gateway.config.clone();
    let addr = free_addr();
    let (id, secret) = add(&config, addr, "delivery.created");
    let log = s.path.join("received.jsonl");

    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(deliver(&s, &format!("queued {i}")).await);
    }
    // All three in the outbox, the receiver not there yet.
    let start = Instant::now();
    loop {
        let l = list(&config);
        if l[0]["queued"] == 3 && l[0]["last_error"].is_string() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{l:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Setup {
        _dir,
        path,
        certs,
        _backend,
        gateway,
    } = s;
    let Gateway {
        mut proc,
        key,
        addr: https,
        admin,
        config,
        ..
    } = gateway;
    proc.signal("KILL");
    proc.wait_exit(Duration::from_secs(10)).expect("killed");

    let _receiver = start_receiver(&path, addr, &secret, &log, 0);
    // Nothing is sent while the gateway is down (it exited above, so no
    // time needs to pass for this to hold).
    assert!(entries(&log).is_empty());
    let _gateway = launch_gateway(&path, &certs, config.clone(), https, admin, key).await;
    // A message the kill caught mid-send waits for its 60 s lease first.
    let e = wait_log(&log, Duration::from_secs(90), |e| delivered(e, &ids)).await;
    assert!(e.iter().all(|x| x["verified"] == true), "{e:#?}");
    let got = by_delivery(&e);
    assert_eq!(got.len(), 3);
    for (delivery, attempts) in &got {
        assert_eq!(attempts.len(), 1, "{delivery} sent once: {attempts:#?}");
    }
    let start = Instant::now();
    loop {
        let l = list(&config);
        if l[0]["queued"] == 0 {
            assert_eq!(l[0]["delivered"], 3);
            assert_eq!(l[0]["id"], id.as_str());
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{l:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn relays_and_receipts_become_webhook_events() {
    use super::trust::two_orgs;
    use super::trust_relay::connect;
    let (a, b) = two_orgs().await;
    connect(&a, &b);
    let addr = free_addr();
    let (_, secret) = add(&a.gateway.config, addr, "delivery.relayed,receipt.received");
    let log = a.path.join("received.jsonl");
    let _receiver = start_receiver(&a.path, addr, &secret, &log, 0);

    let api_a = a.gateway.client(&a.certs, Proto::Http1);
    let r = api_a
        .post(format!("{}/api/v1/files", a.gateway.base))
        .header("x-filename", "figures.csv")
        .body("1,2,3\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let file: Value = r.json().await.unwrap();
    let file_id = file["id"].as_str().unwrap().to_string();
    let r = api_a
        .post(format!("{}/api/v1/deliveries", a.gateway.base))
        .json(&json!({
            "sender": "anna@acme.example",
            "recipients": ["bob@beta.example"],
            "subject": "figures",
            "message": "",
            "files": [file_id],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let delivery: Value = r.json().await.unwrap();
    let delivery_id = delivery["id"].as_str().unwrap().to_string();

    let e = wait_log(&log, Duration::from_secs(60), |e| {
        e.iter().any(|x| x["type"] == "delivery.relayed")
    })
    .await;
    let relayed = e.iter().find(|x| x["type"] == "delivery.relayed").unwrap();
    assert_eq!(relayed["verified"], true, "{relayed}");
    assert_eq!(relayed["data"]["delivery_id"], delivery_id.as_str());
    assert_eq!(relayed["data"]["partner"], "beta");
    assert_eq!(relayed["data"]["recipients"], json!(["bob@beta.example"]));
    let remote = relayed["data"]["remote_delivery_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Bob downloads at B: A receives the receipt and tells the receiver.
    let api_b = b.gateway.client(&b.certs, Proto::Http1);
    let r = api_b
        .get(format!("{}/api/v1/deliveries/{remote}", b.gateway.base))
        .send()
        .await
        .unwrap();
    let at_b: Value = r.json().await.unwrap();
    let b_file = at_b["files"][0].as_str().unwrap().to_string();
    let r = api_b
        .get(format!("{}/api/v1/files/{b_file}/content", b.gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "1,2,3\n");
    let e = wait_log(&log, Duration::from_secs(60), |e| {
        e.iter().any(|x| x["type"] == "receipt.received")
    })
    .await;
    let receipt = e.iter().find(|x| x["type"] == "receipt.received").unwrap();
    assert_eq!(receipt["verified"], true, "{receipt}");
    assert_eq!(receipt["data"]["delivery_id"], delivery_id.as_str());
    assert_eq!(receipt["data"]["file_id"], file_id.as_str());
    assert_eq!(receipt["data"]["partner"], "beta");
    // Not subscribed: no delivery.created, no file.downloaded.
    assert!(e
        .iter()
        .all(|x| x["type"] == "delivery.relayed" || x["type"] == "receipt.received"));
}

#[tokio::test]
async fn sigterm_mid_send_releases_the_lease_so_the_restart_sends_at_once() {
    let s = setup().await;
    let Setup {
        _dir,
        path,
        certs,
        _backend,
        gateway,
    } = s;
    let Gateway {
        mut proc,
        key,
        addr: https,
        admin,
        config,
        ..
    } = gateway;
    // A short drain: the send below never ends by itself.
    proc.signal("TERM");
    proc.wait_exit(Duration::from_secs(20))
        .expect("idle gateway exits");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(r#"shutdown_timeout = "20s""#, r#"shutdown_timeout = "1s""#);
    std::fs::write(&config, text).unwrap();
    let gw = launch_gateway(&path, &certs, config.clone(), https, admin, key.clone()).await;
    let addr = free_addr();
    let (_, secret) = add(&config, addr, "delivery.created");
    let log = path.join("received.jsonl");
    let _receiver = start_receiver_with(&path, addr, &secret, &log, &["--hang-first", "1"]);
    let s = Setup {
        _dir,
        path: path.clone(),
        certs,
        _backend,
        gateway: gw,
    };
    let id = deliver(&s, "caught mid-send").await;
    wait_log(&log, Duration::from_secs(30), |e| {
        e.iter().any(|x| x["status"] == "hung")
    })
    .await;
    let Setup {
        _dir,
        certs,
        _backend,
        mut gateway,
        ..
    } = s;
    gateway.proc.signal("TERM");
    let status = gateway
        .proc
        .wait_exit(Duration::from_secs(15))
        .expect("the drain gives up on the send after shutdown_timeout");
    assert!(status.success(), "{status}");
    let stderr = gateway.proc.stderr();
    assert!(
        stderr.contains("webhook send abandoned, lease released"),
        "{stderr}"
    );

    // The lease (60 s) was given back: the restart sends it at once.
    let started = Instant::now();
    let _gw = launch_gateway(&path, &certs, config, https, admin, key).await;
    let e = wait_log(&log, Duration::from_secs(20), |e| {
        delivered(e, std::slice::from_ref(&id))
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(20));
    let attempts = &by_delivery(&e)[&id];
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(attempts[0]["webhook_id"], attempts[1]["webhook_id"]);
    assert_eq!(attempts[1]["status"], 204);
    // Before `s` takes the directory with it: the secrets scan keeps
    // each process's output from there when the process is dropped.
    drop(_receiver);
    drop(proc);
}

/// `[retention] finished`: a delivered message is history, deleted by the
/// sweep once older than the retention and counted in
/// `mft_store_pruned_rows_total`; a message still queued (its receiver
/// down) stays, however old.
#[tokio::test]
async fn delivered_messages_older_than_the_retention_are_pruned_queued_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (certs, _backend, gateway) =
        mft_e2e::outbox::start(&path, ADMIN_TOKEN, "[retention]\nfinished = \"8s\"\n").await;
    let s = Setup {
        path,
        certs,
        _backend,
        gateway,
        _dir: dir,
    };
    let config = &s.gateway.config;
    let addr = free_addr();
    let (id, secret) = add(config, addr, "delivery.created");
    let log = s.path.join("received.jsonl");
    let receiver = start_receiver(&s.path, addr, &secret, &log, 0);
    let first = deliver(&s, "kept for a while").await;
    wait_log(&log, Duration::from_secs(30), |e| {
        delivered(e, std::slice::from_ref(&first))
    })
    .await;
    let counts = |config: &Path| {
        let l = list(config);
        let w = l.iter().find(|w| w["id"] == id.as_str()).unwrap().clone();
        (
            w["delivered"].as_u64().unwrap(),
            w["queued"].as_u64().unwrap(),
        )
    };
    // Within its retention the delivered message is still on record.
    assert_eq!(counts(config), (1, 0));

    // The receiver goes away: the next event waits in the outbox.
    drop(receiver);
    deliver(&s, "waits").await;
    let started = Instant::now();
    loop {
        let (delivered, queued) = counts(config);
        if delivered == 0 {
            assert_eq!(queued, 1, "the queued message was pruned");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the delivered message outlived its retention: {:?}",
            counts(config)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = metrics(s.gateway.admin).await;
    assert_eq!(
        metric(
            &page,
            "mft_store_pruned_rows_total{table=\"webhook_messages\"}"
        ),
        Some(1.0),
        "{page}"
    );
}
