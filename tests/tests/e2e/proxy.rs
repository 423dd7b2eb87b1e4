//! Streaming proxy: uploads and downloads through TLS, both HTTP versions.

use mft_e2e::*;
use std::sync::Arc;
use std::time::Duration;

pub struct Stack {
    pub certs: Certs,
    /// Kept so the backend lives as long as the stack (dropping it stops the process).
    pub _backend: Backend,
    pub gateway: Gateway,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    pub dir: tempfile::TempDir,
}

pub async fn stack() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let gateway = start_gateway(dir.path(), &certs, &backend.url, "").await;
    Stack {
        dir,
        certs,
        _backend: backend,
        gateway,
    }
}

/// Uploads `content` as a raw body and returns the backend's JSON answer.
pub async fn upload(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    content: &Arc<Content>,
) -> serde_json::Value {
    let r = client
        .post(format!("{base}/api/v1/files"))
        .header("X-Filename", name)
        .header("Content-Length", content.size)
        .body(content.body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "upload answered {}", r.status());
    assert!(r.headers().contains_key("x-request-id"));
    r.json().await.unwrap()
}

async fn roundtrip(s: &Stack, proto: Proto, size: u64, seed: u64) {
    let client = s.gateway.client(&s.certs, proto);
    let content = Arc::new(Content::new(size, seed));
    let expected = content.sha256();
    let meta = upload(&client, &s.gateway.base, "roundtrip.bin", &content).await;
    assert_eq!(meta["sha256"], expected.as_str());
    assert_eq!(meta["size"], size);
    let id = meta["id"].as_str().unwrap();
    let r = client
        .get(format!("{}/api/v1/files/{id}/content", s.gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let want_version = match proto {
        Proto::Http1 => reqwest::Version::HTTP_11,
        Proto::Http2 => reqwest::Version::HTTP_2,
    };
    assert_eq!(r.version(), want_version);
    let (n, sha) = sha256_of(r).await;
    assert_eq!((n, sha), (size, expected));
}

#[tokio::test]
async fn one_mib_roundtrip_over_http1_and_http2() {
    let s = stack().await;
    roundtrip(&s, Proto::Http1, 1 << 20, 1).await;
    roundtrip(&s, Proto::Http2, 1 << 20, 2).await;
}

/// Samples a process's RSS until told to stop; returns the peak in KiB.
fn watch_rss(
    pid: u32,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<u64>,
) {
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            peak = peak.max(rss_kib(pid).unwrap_or(0));
            tokio::select! {
                _ = &mut rx => return peak,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    });
    (tx, handle)
}

#[tokio::test]
async fn three_hundred_mib_streams_both_ways_without_buffering() {
    let s = stack().await;
    let pid = s.gateway.proc.child.id();
    let baseline = rss_kib(pid).unwrap();
    let (stop, peak) = watch_rss(pid);
    roundtrip(&s, Proto::Http1, 300 << 20, 3).await;
    roundtrip(&s, Proto::Http2, 300 << 20, 4).await;
    stop.send(()).unwrap();
    let peak = peak.await.unwrap();
    // Buffering even one body would add 300 MiB; streaming stays within a few
    // dozen MiB of the idle process whatever the body size.
    assert!(
        peak < baseline + 96 * 1024,
        "gateway RSS grew from {baseline} KiB to {peak} KiB while streaming 600 MiB each way"
    );
}

#[tokio::test]
async fn range_request_returns_206_with_exact_bytes() {
    let s = stack().await;
    let client = s.gateway.client(&s.certs, Proto::Http2);
    let content = Arc::new(Content::new(200_000, 5));
    let meta = upload(&client, &s.gateway.base, "range.bin", &content).await;
    let url = format!(
        "{}/api/v1/files/{}/content",
        s.gateway.base,
        meta["id"].as_str().unwrap()
    );
    let r = client
        .get(&url)
        .header("Range", "bytes=65530-65545")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 65530-65545/200000");
    assert_eq!(
        r.bytes().await.unwrap().to_vec(),
        content.slice(65530, 65545)
    );
    let r = client
        .get(&url)
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.bytes().await.unwrap().to_vec(),
        content.slice(199_990, 199_999)
    );
    let r = client
        .get(&url)
        .header("Range", "bytes=300000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
}

#[tokio::test]
async fn gateway_answers_health_itself_and_404s_unknown_paths_as_problem_json() {
    let s = stack().await;
    let client = s.gateway.client(&s.certs, Proto::Http1);
    let r = client
        .get(format!("{}/healthz", s.gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("{}/etc/passwd", s.gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["request_id"], request_id.as_str());
    let r = reqwest::Client::new()
        .get(format!("http://{}/healthz", s.gateway.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "admin listener serves health");
}

#[tokio::test]
async fn bad_file_names_are_refused_with_400_problem_json() {
    let s = stack().await;
    let client = s.gateway.client(&s.certs, Proto::Http1);
    for name in ["../escape.txt", "a/b.txt", ".."] {
        let r = client
            .post(format!("{}/api/v1/files", s.gateway.base))
            .header("X-Filename", name)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "name {name:?}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}

#[tokio::test]
async fn client_credentials_and_identity_headers_do_not_reach_the_backend() {
    let s = stack().await;
    let client = s.gateway.client(&s.certs, Proto::Http1);
    let r = client
        .post(format!("{}/api/v1/deliveries", s.gateway.base))
        .header("X-MFT-Origin", "partner:forged")
        .header("X-MFT-Principal", "key:forged")
        .json(&serde_json::json!({
            "sender": "alice@ourcorp.example",
            "recipients": ["bob@ourcorp.example"],
            "subject": "hello",
            "message": "hi",
            "files": []
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let d: serde_json::Value = r.json().await.unwrap();
    // The backend records these headers when present; the gateway removed the client's.
    assert_eq!(
        d["origin"], "api",
        "spoofed X-MFT-Origin reached the backend: {d}"
    );
    assert_ne!(
        d["created_by"], "key:forged",
        "spoofed X-MFT-Principal reached the backend: {d}"
    );
}

/// Answers every request with 200 and hands each request head to the test.
pub async fn recording_upstream() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).to_lowercase());
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn forwarding_and_identity_headers_from_the_client_never_reach_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let (url, mut heads) = recording_upstream().await;
    let gw = start_gateway(dir.path(), &certs, &url, "").await;
    let r = gw
        .client(&certs, Proto::Http1)
        .get(format!("{}/api/v1/files", gw.base))
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-port", "1")
        .header("x-forwarded-for", "10.6.6.6")
        .header("x-mft-principal", "key:forged")
        .header("forwarded", "for=10.6.6.6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let head = heads.recv().await.unwrap();
    for gone in [
        "x-forwarded-",
        "evil.example",
        "key:forged",
        "mgw_",
        "10.6.6.6",
        "authorization",
    ] {
        assert!(!head.contains(gone), "{gone} reached the backend:\n{head}");
    }
    assert!(head.contains("x-mft-principal: key:"), "{head}");
    assert!(
        head.contains("forwarded: for=127.0.0.1;proto=https"),
        "{head}"
    );
}

/// CPU ticks (user + system) each thread named `prefix*` of `pid` used.
fn thread_ticks(pid: u32, prefix: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let name = name.trim().to_string();
        if !name.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|f| f.parse().ok())
            .collect();
        out.push((name, fields.iter().sum()));
    }
    out.sort();
    out
}

/// `[server] runtime = "per-core"`: one runtime, socket and backend pool per
/// worker. Both protocols stream intact, connections land on both workers,
/// and SIGTERM still drains and exits cleanly.
#[tokio::test]
async fn per_core_runtime_serves_both_protocols_on_every_worker_and_drains() {
    add_server_line(r#"runtime = "per-core""#);
    let mut s = stack().await;
    roundtrip(&s, Proto::Http1, 8 << 20, 11).await;
    roundtrip(&s, Proto::Http2, 8 << 20, 12).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        // A client of its own: a connection of its own, which the kernel
        // hands to one of the workers' sockets.
        let proto = if i % 2 == 0 {
            Proto::Http1
        } else {
            Proto::Http2
        };
        let client = s.gateway.client(&s.certs, proto);
        let url = format!("{}/api/v1/files", s.gateway.base);
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let r = client.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let workers = thread_ticks(s.gateway.proc.child.id(), "https-");
    let names: Vec<&str> = workers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["https-0", "https-1"], "one thread per worker");
    assert!(
        workers.iter().all(|(_, ticks)| *ticks > 0),
        "every worker served connections: {workers:?}"
    );
    s.gateway.proc.signal("TERM");
    let status = s
        .gateway
        .proc
        .wait_exit(Duration::from_secs(30))
        .expect("the gateway exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

/// Per-core workers balance by load, not by the kernel's address hash:
/// two h2 connections opened together are served by both workers, whatever
/// socket the kernel put them on (by the hash alone, half the time both
/// land on one worker and the other idles).
#[tokio::test]
async fn per_core_workers_share_connections_by_load() {
    add_server_line(r#"runtime = "per-core""#);
    let s = stack().await;
    // The readiness probe's connection still counts on its worker until the
    // gateway sees it close; two connections placed beside it could both go
    // to the other worker, which is balance by load, not what this judges.
    let served = format!(":{:04X}", s.gateway.addr.port());
    eventually(
        Duration::from_secs(10),
        "the gateway holds no connection",
        || {
            // Its side of a connection: ESTABLISHED, or CLOSE_WAIT until it sees the close.
            let held = count_tcp(|local, _, state| {
                local.ends_with(&served) && matches!(state, "01" | "08")
            });
            async move { held == 0 }
        },
    )
    .await;
    let pid = s.gateway.proc.child.id();
    let before = thread_ticks(pid, "https-");
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let client = s.gateway.client(&s.certs, Proto::Http2);
        let url = format!("{}/api/v1/files", s.gateway.base);
        tasks.push(tokio::spawn(async move {
            for _ in 0..400 {
                let r = client.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = thread_ticks(pid, "https-");
    let used: Vec<u64> = after
        .iter()
        .zip(&before)
        .map(|((_, a), (_, b))| a.saturating_sub(*b))
        .collect();
    let total: u64 = used.iter().sum();
    assert!(total >= 10, "too little work to judge: {used:?} ticks");
    assert!(
        used.iter().all(|t| *t * 5 >= total),
        "each worker did at least a fifth of the work: {used:?} ticks"
    );
}

/// Established TCP connections toward `port` on loopback (the gateway's
/// side of its backend connections).
fn connections_to(port: u16) -> usize {
    let remote = format!(":{port:04X}");
    count_tcp(|_, rem, state| rem.ends_with(&remote) && state == "01")
}

/// Sockets in /proc/net/tcp for which `keep(local, remote, state)` holds:
/// addresses as `HEXIP:HEXPORT`, states in hex (01 ESTABLISHED, 08
/// CLOSE_WAIT).
fn count_tcp(keep: impl Fn(&str, &str, &str) -> bool) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            // Fields: sl local rem st ...
            let mut fields = line.split_whitespace().skip(1);
            match (fields.next(), fields.next(), fields.next()) {
                (Some(local), Some(remote), Some(state)) => keep(local, remote, state),
                _ => false,
            }
        })
        .count()
}

#[tokio::test]
async fn a_bursts_backend_connections_drain_by_halves_after_pool_purge_delay() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let port: u16 = backend.url.rsplit(':').next().unwrap().parse().unwrap();
    let gateway = start_gateway(
        dir.path(),
        &certs,
        &backend.url,
        "pool_size = 64\npool_purge_delay = \"1s\"",
    )
    .await;
    let client = gateway.client(&certs, Proto::Http1);
    let base = format!("https://{}", gateway.addr);
    // 24 uploads at once whose bodies pause half a second: each holds its
    // own backend connection, which goes back to the pool at the end.
    let uploads = (0..24).map(|i| {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let body = futures_util::stream::unfold(0u8, |step| async move {
                match step {
                    0 => Some((
                        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"first half ")),
                        1,
                    )),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        Some((Ok(bytes::Bytes::from_static(b"second half")), 2))
                    }
                    _ => None,
                }
            });
            let r = client
                .post(format!("{base}/api/v1/files"))
                .header("X-Filename", format!("burst-{i}.txt"))
                .header("Content-Length", "22")
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        })
    });
    for upload in uploads.collect::<Vec<_>>() {
        upload.await.unwrap();
    }
    let first = connections_to(port);
    assert!(
        first >= 20,
        "only {first} backend connections after the burst"
    );
    // Idle for a purge delay, half of them close per delay: the count goes
    // down in steps, not all at once, and not to zero.
    let mut seen = vec![first];
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = connections_to(port);
        if seen.last() != Some(&n) {
            seen.push(n);
        }
    }
    let last = *seen.last().unwrap();
    assert!(
        (1..=4).contains(&last),
        "idle backend connections over 6 s: {seen:?}"
    );
    assert!(
        seen.iter().any(|&n| n < first && n > last),
        "no intermediate step, so not halved: {seen:?}"
    );
    // The pool still serves.
    let r = client
        .get(format!("{base}/api/v1/files"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
