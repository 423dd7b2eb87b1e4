//! Durable SFTP on_upload deliveries (issue 22, "one delivery path"): an
//! upload over the real OpenSSH `sftp` completes while the backend answers
//! its delivery requests with 503; the job is in the store, retried in the
//! background, survives a SIGKILL of the gateway, and once the backend is
//! back the restarted gateway makes the delivery exactly once.

use mft_e2e::sftp::{self, ok};
use mft_e2e::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BOB: &str = r#"
[[sftp.users]]
name = "bob"
authorized_keys = ["{KEY}"]
folder = "partners/bob"
permissions = ["upload", "list"]
[sftp.users.on_upload]
deliver_to = ["ops@ourcorp.example"]
"#;

/// What the backend's delivery endpoint request line starts with.
const CREATE_DELIVERY: &[u8] = b"POST /api/v1/deliveries HTTP/1.1";

/// A TCP proxy in front of the reference backend. While `down`, every
/// request to create a delivery is answered 503 and its connection closed
/// (the backend unavailable for deliveries; uploads and reads still pass);
/// otherwise it is passed on and counted.
struct Gate {
    url: String,
    down: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    passed: Arc<AtomicU64>,
}

fn gate(to: SocketAddr) -> Gate {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", std_listener.local_addr().unwrap());
    let down = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let passed = Arc::new(AtomicU64::new(0));
    let (d, r, p) = (down.clone(), refused.clone(), passed.clone());
    tokio::spawn(async move {
        let l = tokio::net::TcpListener::from_std(std_listener).unwrap();
        while let Ok((client, _)) = l.accept().await {
            tokio::spawn(pipe(client, to, d.clone(), r.clone(), p.clone()));
        }
    });
    Gate {
        url,
        down,
        refused,
        passed,
    }
}

async fn pipe(
    mut client: TcpStream,
    to: SocketAddr,
    down: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    passed: Arc<AtomicU64>,
) {
    let Ok(mut server) = TcpStream::connect(to).await else {
        return;
    };
    let mut cb = vec![0u8; 64 * 1024];
    let mut sb = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            r = client.read(&mut cb) => {
                let n = match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                // A request on an idle keep-alive connection starts a read.
                if cb[..n].starts_with(CREATE_DELIVERY) {
                    if down.load(Ordering::SeqCst) {
                        refused.fetch_add(1, Ordering::SeqCst);
                        let body = r#"{"type":"about:blank","title":"Service Unavailable","status":503}"#;
                        let answer = format!(
                            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = client.write_all(answer.as_bytes()).await;
                        let _ = client.shutdown().await;
                        return;
                    }
                    passed.fetch_add(1, Ordering::SeqCst);
                }
                if server.write_all(&cb[..n]).await.is_err() {
                    return;
                }
            }
            r = server.read(&mut sb) => {
                let n = match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if client.write_all(&sb[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// `mft-gateway sftp deliveries list --json` (the gateway running or not).
fn jobs(config: &std::path::Path) -> Vec<Value> {
    let out = std::process::Command::new(bin("mft-gateway"))
        .args(["sftp", "deliveries", "list", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

fn audit_deliveries(config: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(data_dir_of(config).join("audit.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "sftp_delivery")
        .collect()
}

async fn sftp_deliveries(env: &sftp::SftpEnv) -> Vec<Value> {
    let client = env.gateway.client(&env.certs, Proto::Http1);
    let v: Value = client
        .get(format!("{}/api/v1/deliveries", env.gateway.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d["origin"] == "sftp:bob")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_delivery_outlives_a_backend_outage_and_a_killed_gateway_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = None;
    let mut env = sftp::start_with(dir.path(), BOB, "", |config| {
        let text = std::fs::read_to_string(config).unwrap();
        let table: toml::Table = text.parse().unwrap();
        let backend = table["backend"]["url"].as_str().unwrap().to_string();
        let addr: SocketAddr = backend.trim_start_matches("http://").parse().unwrap();
        let g = gate(addr);
        let replace = (
            format!("url = \"{backend}\""),
            format!("url = \"{}\"", g.url),
        );
        proxy = Some(g);
        vec![replace]
    })
    .await;
    let gate = proxy.expect("the gate runs");
    let config = env.gateway.config.clone();

    // The backend refuses deliveries: the upload itself completes, its
    // delivery is queued (the close waited for the first attempt).
    gate.down.store(true, Ordering::SeqCst);
    std::fs::write(dir.path().join("inv.pdf"), b"%PDF-1.7 invoice").unwrap();
    ok(&env.batch("bob", "put inv.pdf\n"));
    let stored = env
        .file("partners/bob", "inv.pdf")
        .await
        .expect("the file is stored");
    assert!(gate.refused.load(Ordering::SeqCst) >= 1);
    let first = jobs(&config);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["state"], "queued");
    assert_eq!(first[0]["file_id"], stored["id"]);
    assert_eq!(
        first[0]["idempotency_key"],
        format!("sftp:bob:{}", stored["id"].as_str().unwrap())
    );
    eventually(
        Duration::from_secs(10),
        "the first attempt audited as a retry",
        || async {
            audit_deliveries(&config)
                .iter()
                .any(|r| r["decision"] == "retry" && r["path"] == "/inv.pdf")
        },
    )
    .await;
    // The worker retries in the background.
    eventually(Duration::from_secs(30), "a background retry", || async {
        jobs(&config)[0]["attempts"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    assert!(sftp_deliveries(&env).await.is_empty());

    // Killed while the delivery is pending: nothing in memory survives.
    env.gateway.proc.signal("KILL");
    assert!(env
        .gateway
        .proc
        .wait_exit(Duration::from_secs(10))
        .is_some());
    let pending = jobs(&config);
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["state"], "queued", "{pending:?}");
    assert_eq!(gate.passed.load(Ordering::SeqCst), 0);

    // The backend comes back, the gateway starts again: the job is found
    // at start (a lease the killed process held runs out first).
    gate.down.store(false, Ordering::SeqCst);
    env.gateway = env.gateway.relaunch(dir.path(), &env.certs).await;
    eventually(
        Duration::from_secs(90),
        "the delivery after the restart",
        || async { jobs(&config)[0]["state"] == "delivered" },
    )
    .await;
    let made = sftp_deliveries(&env).await;
    assert_eq!(made.len(), 1, "exactly one delivery: {made:?}");
    assert_eq!(made[0]["files"][0], stored["id"]);
    assert_eq!(made[0]["recipients"][0], "ops@ourcorp.example");
    assert_eq!(made[0]["sender"], "bob@ourcorp.example");
    let job = &jobs(&config)[0];
    assert_eq!(job["delivery_id"], made[0]["id"]);
    assert_eq!(
        gate.passed.load(Ordering::SeqCst),
        1,
        "one delivery request reached the backend"
    );
    let want = format!("delivery:{}", made[0]["id"].as_str().unwrap());
    eventually(Duration::from_secs(10), "the audited delivery", || async {
        audit_deliveries(&config)
            .iter()
            .any(|r| r["decision"] == "allow" && r["reason"] == want.as_str())
    })
    .await;
    let page = wait_metrics(
        env.gateway.admin,
        Duration::from_secs(10),
        "no queued job",
        |p| metric(p, "mft_sftp_delivery_jobs{state=\"queued\"}") == Some(0.0),
    )
    .await;
    assert_eq!(
        metric(&page, "mft_sftp_delivery_jobs{state=\"failed\"}"),
        Some(0.0)
    );
}

/// A delivery the backend never takes is given up once
/// `sftp.delivery_max_age` passed: `failed`, audited `fail` saying why,
/// counted in `mft_sftp_delivery_jobs{state="failed"}`; no delivery made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_not_made_within_delivery_max_age_is_given_up_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = None;
    let env = sftp::start_with(dir.path(), BOB, "delivery_max_age = \"2s\"", |config| {
        let text = std::fs::read_to_string(config).unwrap();
        let table: toml::Table = text.parse().unwrap();
        let backend = table["backend"]["url"].as_str().unwrap().to_string();
        let addr: SocketAddr = backend.trim_start_matches("http://").parse().unwrap();
        let g = gate(addr);
        let replace = (
            format!("url = \"{backend}\""),
            format!("url = \"{}\"", g.url),
        );
        proxy = Some(g);
        vec![replace]
    })
    .await;
    let gate = proxy.expect("the gate runs");
    let config = env.gateway.config.clone();
    gate.down.store(true, Ordering::SeqCst);
    std::fs::write(dir.path().join("late.pdf"), b"%PDF-1.7 late").unwrap();
    ok(&env.batch("bob", "put late.pdf\n"));
    eventually(Duration::from_secs(30), "the job given up", || async {
        jobs(&config)[0]["state"] == "failed"
    })
    .await;
    let job = &jobs(&config)[0];
    let error = job["last_error"].as_str().unwrap();
    assert!(error.contains("sftp.delivery_max_age"), "{error}");
    assert!(job["attempts"].as_u64().unwrap() >= 1, "{job}");
    eventually(Duration::from_secs(10), "the audited give-up", || async {
        audit_deliveries(&config).iter().any(|r| {
            r["decision"] == "fail"
                && r["path"] == "/late.pdf"
                && r["reason"]
                    .as_str()
                    .is_some_and(|s| s.contains("sftp.delivery_max_age"))
        })
    })
    .await;
    wait_metrics(
        env.gateway.admin,
        Duration::from_secs(10),
        "one failed job",
        |p| metric(p, "mft_sftp_delivery_jobs{state=\"failed\"}") == Some(1.0),
    )
    .await;
    assert_eq!(gate.passed.load(Ordering::SeqCst), 0);
    assert!(sftp_deliveries(&env).await.is_empty());
}
