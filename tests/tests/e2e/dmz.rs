//! DMZ mode (issue 17): the backend and the connector in a "lan" network
//! namespace whose firewall drops every connection from outside; the
//! gateway reaches the backend only over connections the connector opened.

use mft_e2e::dmz::*;
use mft_e2e::smtp::{code, deliveries_with_subject, smtp_tables, smtplib, wait_delivery};
use mft_e2e::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);

struct Dmz {
    dir: PathBuf,
    certs: Certs,
    lan: Lan,
    _backend: Proc,
    gw: Gateway,
    connector_listen: SocketAddr,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    _dir: tempfile::TempDir,
}

/// A LAN namespace with the backend, and a DMZ-mode gateway outside whose
/// `[backend] url` is the backend's real (unreachable) address.
/// The link protocol is the default one.
async fn dmz(tables: &str) -> Dmz {
    dmz_over(None, tables).await
}

/// [`dmz`] with the gateway's `[connector] link = LINK`.
async fn dmz_with(link: &str, tables: &str) -> Dmz {
    dmz_over(Some(link), tables).await
}

async fn dmz_over(link: Option<&str>, tables: &str) -> Dmz {
    dmz_full(link, VIA_CONNECTOR, tables).await
}

/// [`dmz_over`] with `backend_lines` as the `[backend]` lines besides `url`.
async fn dmz_full(link: Option<&str>, backend_lines: &str, tables: &str) -> Dmz {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let certs = make_certs(&path);
    let lan = Lan::new();
    let backend = lan.start_backend(&path);
    let connector_listen = SocketAddr::from((lan.outside, 8444));
    let gw = start_gateway_with(
        &path,
        &certs,
        &format!("http://{}", lan.backend_addr()),
        backend_lines,
        &format!(
            "{}\n{tables}",
            match link {
                Some(link) => gateway_tables_with_link(connector_listen, link),
                None => gateway_tables(connector_listen),
            }
        ),
    )
    .await;
    Dmz {
        _dir: dir,
        dir: path,
        certs,
        lan,
        _backend: backend,
        gw,
        connector_listen,
    }
}

impl Dmz {
    /// Enrols `name` and writes its config (pinned gateway certificate).
    fn enrol(&self, name: &str, connections: u32) -> (PathBuf, String) {
        let key = add_connector(&self.gw.config, name);
        let config = connector_config(
            &self.dir,
            name,
            &key,
            &format!("https://{}", self.connector_listen),
            &format!("gateway_pin_sha256 = \"{}\"", cert_pin(&self.certs.cert)),
            &format!("http://127.0.0.1:{LAN_BACKEND_PORT}"),
            connections,
        );
        (config, key)
    }

    fn start_connector(&self, name: &str, config: &Path) -> Proc {
        self.lan.spawn(
            name,
            &bin("mft-gateway"),
            &["connector", "--config", config.to_str().unwrap()],
            &self.dir,
        )
    }

    /// `connector --check` inside the LAN: (success, stdout).
    fn check_inside(&self, config: &Path) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.lan.name])
            .arg(bin("mft-gateway"))
            .args(["connector", "--check", "--config"])
            .arg(config)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn client(&self) -> reqwest::Client {
        self.gw.client(&self.certs, Proto::Http1)
    }
}

async fn assert_no_connector_503(d: &Dmz) {
    let r = d
        .client()
        .get(format!("{}/api/v1/files", d.gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = r.json().await.unwrap();
    assert!(p["request_id"].is_string(), "{p}");
}

#[tokio::test]
async fn the_backend_is_reached_only_through_the_connector_and_a_removed_one_is_cut_off() {
    reached_only_through_the_connector("h2").await;
}

#[tokio::test]
async fn over_http1_links_the_backend_is_reached_only_through_the_connector_and_a_removed_one_is_cut_off(
) {
    reached_only_through_the_connector("http1").await;
}

async fn reached_only_through_the_connector(link: &str) {
    let d = dmz_with(link, "").await;
    // The firewall works: the backend answers inside the LAN, but a
    // connection from the DMZ side is dropped.
    let inside_url = format!("http://{}/healthz", d.lan.backend_addr());
    assert!(d
        .lan
        .exec_status(&["curl", "-sf", "-o", "/dev/null", &inside_url]));
    let dialled = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(d.lan.backend_addr()),
    )
    .await;
    assert!(
        !matches!(dialled, Ok(Ok(_))),
        "the gateway side could connect to the backend"
    );

    assert_no_connector_503(&d).await;

    let (config, key) = d.enrol("lan-a", 2);
    let (ok, report) = d.check_inside(&config);
    assert!(ok, "{report}");
    assert!(report.contains("ok    gateway:"), "{report}");
    assert!(report.contains(&format!("(link {link})")), "{report}");
    assert!(report.contains("ok    backend:"), "{report}");
    let connector = d.start_connector("connector-a", &config);
    wait_connections(d.gw.admin, "lan-a", 2.0, LONG).await;

    // 64 MiB up and down through gateway -> connector -> backend.
    let content = Arc::new(Content::new(64 << 20, 17));
    let r = d
        .client()
        .post(format!("{}/api/v1/files", d.gw.base))
        .header("x-filename", "big.bin")
        .header("content-type", "application/octet-stream")
        .body(content.body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let stored: serde_json::Value = r.json().await.unwrap();
    assert_eq!(stored["sha256"], content.sha256().as_str());
    let r = d
        .client()
        .get(format!(
            "{}/api/v1/files/{}/content",
            d.gw.base,
            stored["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha256_of(r).await, (64 << 20, content.sha256()));

    // The CLI shows it connected with the bytes it carried.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = list_connectors(&d.gw.config);
        let a = &list[0];
        if a["state"] == "connected"
            && a["connections"] == 2
            && a["bytes_out"].as_u64().unwrap_or(0) >= 64 << 20
            && a["bytes_in"].as_u64().unwrap_or(0) >= 64 << 20
        {
            assert!(a.get("key").is_none() && a.get("key_hash").is_none(), "{a}");
            break;
        }
        assert!(Instant::now() < deadline, "connectors list: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = Command::new(bin("mft-gateway"))
        .args(["check", "--config"])
        .arg(&d.gw.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ok    backend: via connector: 1 of 1 connected (lan-a)"),
        "{text}"
    );

    // Removed: disconnected within 5 s, and its key no longer attaches.
    assert!(remove_connector(&d.gw.config, "lan-a"));
    wait_connections(d.gw.admin, "lan-a", 0.0, Duration::from_secs(5)).await;
    assert_no_connector_503(&d).await;
    let (ok, report) = d.check_inside(&config);
    assert!(!ok);
    assert!(report.contains("FAIL  connector key refused"), "{report}");

    // Audited, and the key's secret is in no log or audit line.
    // The audit writer appends on its own tick: give it a moment.
    let events = [
        "\"connector_connect\"",
        "\"connector_disconnect\"",
        "\"connector_refused\"",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let audit = loop {
        let audit =
            std::fs::read_to_string(d.dir.join("gateway-data/audit.jsonl")).unwrap_or_default();
        if events.iter().all(|e| audit.contains(e)) {
            break audit;
        }
        let missing: Vec<_> = events.iter().filter(|e| !audit.contains(*e)).collect();
        assert!(Instant::now() < deadline, "not audited: {missing:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // mgc_ + 16 hex digits of id + _ + secret (whose alphabet has '_' too).
    let secret = &key[4 + 16 + 1..];
    assert!(secret.len() > 20);
    for text in [audit, d.gw.proc.stderr(), connector.stderr()] {
        assert!(!text.contains(secret), "the connector key leaked");
    }
}

#[tokio::test]
async fn two_connectors_one_sigkilled_under_load_only_its_requests_fail() {
    one_sigkilled_under_load("h2").await;
}

#[tokio::test]
async fn over_http1_links_two_connectors_one_sigkilled_under_load_only_its_requests_fail() {
    one_sigkilled_under_load("http1").await;
}

async fn one_sigkilled_under_load(link: &str) {
    let d = dmz_with(link, "").await;
    let (config_a, _) = d.enrol("lan-a", 2);
    let (config_b, _) = d.enrol("lan-b", 2);
    let a = d.start_connector("connector-a", &config_a);
    let _b = d.start_connector("connector-b", &config_b);
    wait_connections(d.gw.admin, "lan-a", 2.0, LONG).await;
    wait_connections(d.gw.admin, "lan-b", 2.0, LONG).await;

    let content = Arc::new(Content::new(1 << 20, 5));
    let r = d
        .client()
        .post(format!("{}/api/v1/files", d.gw.base))
        .header("x-filename", "one.bin")
        .body(content.body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    const WORKERS: usize = 16;
    let started = Instant::now();
    let run_for = Duration::from_secs(6);
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let client = d.client();
        let base = d.gw.base.clone();
        let id = id.clone();
        let content = content.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut i = 0u64;
            while started.elapsed() < run_for {
                let at = started.elapsed();
                // Half the workers upload (not retried when lost), half download.
                let result = if w % 2 == 0 {
                    client
                        .post(format!("{base}/api/v1/files"))
                        .header("x-filename", format!("w{w}-{i}.bin"))
                        .body(content.body())
                        .send()
                        .await
                } else {
                    client
                        .get(format!("{base}/api/v1/files/{id}/content"))
                        .send()
                        .await
                };
                let outcome = match result {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let problem = r
                            .headers()
                            .get("content-type")
                            .is_some_and(|v| v == "application/problem+json");
                        let complete = r.bytes().await.is_ok();
                        (at, status, problem, complete)
                    }
                    Err(_) => (at, 0, false, false),
                };
                outcomes.push(outcome);
                i += 1;
            }
            outcomes
        }));
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    a.signal("KILL");
    let killed_at = started.elapsed();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let failed: Vec<_> = all
        .iter()
        .filter(|(_, status, _, complete)| !(200..300).contains(status) || !*complete)
        .collect();
    // Each worker has at most one request in flight when the connector
    // dies; everything else went over lan-b.
    assert!(
        failed.len() <= WORKERS,
        "{} of {} failed: {failed:?}",
        failed.len(),
        all.len()
    );
    for (at, status, problem, _) in &failed {
        // The kill is seen by the gateway as soon as the kernel closes the
        // connector's sockets; a request picked a connection in that instant
        // was in flight on it too.
        assert!(
            *at <= killed_at + Duration::from_millis(500),
            "a request started {at:?} after the kill at {killed_at:?} failed"
        );
        // Lost before its answer began: 502 problem+json; lost while the
        // answer streamed: a cut-off body (the status was sent already).
        assert!(
            (*status == 502 && *problem) || (200..300).contains(status),
            "failure other than 502 problem+json or a cut-off body: {status}"
        );
    }
    let after = all.iter().filter(|(at, ..)| *at > killed_at).count();
    assert!(after > 0, "no request ran after the kill");
    wait_connections(d.gw.admin, "lan-a", 0.0, Duration::from_secs(10)).await;
    // HTTP/1.1: the connections lan-b opened under load retire at their
    // next heartbeats (every 2 s here) until it keeps its 2 idle ones.
    let settle = if link == "http1" { 10 } else { 1 };
    wait_connections(d.gw.admin, "lan-b", 2.0, Duration::from_secs(settle)).await;
}

#[tokio::test]
async fn a_connector_whose_path_goes_silent_is_found_dead_by_ping_within_10_s() {
    found_dead_when_silent("h2").await;
}

#[tokio::test]
async fn over_http1_links_a_connector_whose_path_goes_silent_is_found_dead_by_heartbeat_within_10_s(
) {
    found_dead_when_silent("http1").await;
}

async fn found_dead_when_silent(link: &str) {
    let d = dmz_with(link, "").await;
    let (config, _) = d.enrol("lan-a", 2);
    let _a = d.start_connector("connector-a", &config);
    wait_connections(d.gw.admin, "lan-a", 2.0, LONG).await;
    d.lan.go_silent();
    // Nothing closes the connections: only the unanswered PINGs tell.
    wait_connections(d.gw.admin, "lan-a", 0.0, Duration::from_secs(10)).await;
    assert_no_connector_503(&d).await;
}

#[tokio::test]
async fn a_busy_connection_whose_path_goes_silent_fails_its_transfers_within_10_s() {
    silent_mid_transfer("h2").await;
}

#[tokio::test]
async fn over_http1_links_a_busy_connection_whose_path_goes_silent_fails_its_transfers_within_10_s()
{
    silent_mid_transfer("http1").await;
}

/// Issue 17: a download and an upload are streaming (and an idle link
/// waits) when every packet from the connector's side starts being dropped.
/// `[backend] read_timeout` is 60 s, and busy HTTP/1.1 links get no
/// heartbeat: only the link sockets' keepalive and user timeout can end the
/// transfers this soon.
async fn silent_mid_transfer(link: &str) {
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    let d = dmz_full(
        Some(link),
        &format!("{VIA_CONNECTOR}\nread_timeout = \"60s\""),
        "",
    )
    .await;
    let (config, _) = d.enrol("lan-a", 2);
    let _a = d.start_connector("connector-a", &config);
    wait_connections(d.gw.admin, "lan-a", 2.0, LONG).await;

    // Larger than every buffer on the way, so the transfers are mid-body.
    let content = Arc::new(Content::new(64 << 20, 23));
    let r = d
        .client()
        .post(format!("{}/api/v1/files", d.gw.base))
        .header("x-filename", "big.bin")
        .body(content.body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut download = d
        .client()
        .get(format!("{}/api/v1/files/{id}/content", d.gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    let mut received = 0usize;
    while received < 1 << 20 {
        received += download.chunk().await.unwrap().unwrap().len();
    }

    // An upload that streams until the path goes silent, then waits on
    // the gateway's backpressure.
    let sent = Arc::new(AtomicU64::new(0));
    let upload = {
        let (client, base, content, sent) =
            (d.client(), d.gw.base.clone(), content.clone(), sent.clone());
        tokio::spawn(async move {
            let chunks = futures_util::stream::iter(0..).map(move |i| {
                let chunk = content.chunk(i % content.chunks());
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Ok::<_, std::io::Error>(chunk)
            });
            let r = client
                .post(format!("{base}/api/v1/files"))
                .header("x-filename", "endless.bin")
                .body(reqwest::Body::wrap_stream(chunks))
                .send()
                .await;
            let answered = Instant::now();
            let r = match r {
                Ok(r) => r,
                Err(e) => return (answered, Err(e.to_string())),
            };
            let status = r.status().as_u16();
            let problem = r
                .headers()
                .get("content-type")
                .is_some_and(|v| v == "application/problem+json");
            (answered, Ok((status, problem)))
        })
    };
    while sent.load(Ordering::Relaxed) < 4 << 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    d.lan.go_silent();
    let silenced = Instant::now();
    // Generous against the ~9 s bound, and far below the 60 s read_timeout.
    let bound = Duration::from_secs(20);

    let cut = tokio::time::timeout(bound + Duration::from_secs(10), async {
        loop {
            match download.chunk().await {
                Ok(Some(c)) => received += c.len(),
                Ok(None) => return Ok(received),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the download still hangs");
    assert!(
        cut.is_err(),
        "the download completed ({received} bytes) with its path silent"
    );
    assert!(received < 64 << 20);
    let download_failed = silenced.elapsed();

    let (answered, outcome) = upload.await.unwrap();
    let upload_failed = answered - silenced;
    eprintln!("silent path: download cut after {download_failed:?}, upload answered after {upload_failed:?}");
    // Lost with its connection before any answer: 502 problem+json.
    assert_eq!(outcome, Ok((502, true)), "upload outcome");
    assert!(
        download_failed < bound && upload_failed < bound,
        "download failed after {download_failed:?}, upload after {upload_failed:?}"
    );

    // Every link (the idle one too) is gone and the connector is
    // reported disconnected.
    wait_connections(
        d.gw.admin,
        "lan-a",
        0.0,
        bound.saturating_sub(silenced.elapsed()),
    )
    .await;
    assert_no_connector_503(&d).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = list_connectors(&d.gw.config);
        if list[0]["state"] == "disconnected" {
            break;
        }
        assert!(Instant::now() < deadline, "connectors list: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The path comes back: the connector reattaches and requests go through.
    d.lan.speak_again();
    let back = Instant::now();
    wait_connections(d.gw.admin, "lan-a", 2.0, LONG).await;
    eprintln!(
        "silent path: reattached {:?} after the path came back",
        back.elapsed()
    );
    let r = d
        .client()
        .get(format!("{}/api/v1/files/{id}/content", d.gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha256_of(r).await, (64 << 20, content.sha256()));
}

/// Issue 17, the other kind of silence: the connector process hangs (SIGSTOP)
/// while its host's kernel keeps acknowledging. An upload in flight fills
/// the windows; the gateway's user timeout then ends the link, well before
/// the 60 s `[backend] read_timeout`. After SIGCONT it reattaches.
#[tokio::test]
async fn over_http1_links_an_upload_to_a_hung_connector_fails_within_10_s_once_the_windows_fill() {
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    let d = dmz_full(
        Some("http1"),
        &format!("{VIA_CONNECTOR}\nread_timeout = \"60s\""),
        "",
    )
    .await;
    let (config, _) = d.enrol("lan-a", 1);
    let a = d.start_connector("connector-a", &config);
    wait_connections(d.gw.admin, "lan-a", 1.0, LONG).await;

    let sent = Arc::new(AtomicU64::new(0));
    let upload = {
        let (client, base, sent) = (d.client(), d.gw.base.clone(), sent.clone());
        let content = Arc::new(Content::new(1 << 20, 29));
        tokio::spawn(async move {
            let chunks = futures_util::stream::iter(0..).map(move |i| {
                let chunk = content.chunk(i % content.chunks());
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Ok::<_, std::io::Error>(chunk)
            });
            let r = client
                .post(format!("{base}/api/v1/files"))
                .header("x-filename", "endless.bin")
                .body(reqwest::Body::wrap_stream(chunks))
                .send()
                .await;
            let answered = Instant::now();
            let outcome = r.map_err(|e| e.to_string()).map(|r| {
                let problem = r
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v == "application/problem+json");
                (r.status().as_u16(), problem)
            });
            (answered, outcome)
        })
    };
    while sent.load(Ordering::Relaxed) < 4 << 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.signal("STOP");
    let stopped = Instant::now();
    let (answered, outcome) = tokio::time::timeout(Duration::from_secs(40), upload)
        .await
        .expect("the upload still hangs")
        .unwrap();
    let after = answered - stopped;
    eprintln!("hung connector: upload answered after {after:?}");
    assert_eq!(outcome, Ok((502, true)), "upload outcome");
    assert!(after < Duration::from_secs(20), "answered after {after:?}");
    wait_connections(d.gw.admin, "lan-a", 0.0, Duration::from_secs(10)).await;

    a.signal("CONT");
    wait_connections(d.gw.admin, "lan-a", 1.0, LONG).await;
    let r = d
        .client()
        .get(format!("{}/api/v1/files", d.gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn mail_accepted_while_no_connector_is_connected_is_delivered_once_after_one_connects() {
    let d = dmz(&smtp_tables(ephemeral(), ephemeral(), "")).await;
    let smtp = d.gw.listeners.get("smtp");
    let (attachment, sha) = mft_e2e::smtp::attachment(&d.dir, "report.pdf", 300_000, 9);
    let port = smtp.port().to_string();
    let ca = d.certs.ca.display().to_string();
    let path = attachment.display().to_string();
    let report = smtplib(&[
        "--port",
        &port,
        "--starttls",
        "--cafile",
        &ca,
        "--user",
        "any",
        "--password",
        &d.gw.key,
        "--subject",
        "queued in the dmz",
        "--to",
        "bob@ourcorp.example",
        "--attach",
        &path,
    ]);
    assert_eq!(code(&report, "data"), 250, "{report}");
    // Held in the spool while no connector can carry it: the worker tried,
    // was told to retry, and kept the message.
    mft_e2e::smtp::wait_spool_depth(d.gw.admin, 1.0, LONG).await;
    mft_e2e::wait_metrics(d.gw.admin, LONG, "a delivery attempt to retry", |p| {
        let labels = [("bridge", "smtp"), ("outcome", "retry")];
        mft_e2e::metric_with(p, "mft_bridge_deliveries_total", &labels).unwrap_or(0.0) >= 1.0
    })
    .await;
    mft_e2e::smtp::wait_spool_depth(d.gw.admin, 1.0, Duration::from_secs(1)).await;

    let (config, _) = d.enrol("lan-a", 1);
    let _connector = d.start_connector("connector-a", &config);
    wait_connections(d.gw.admin, "lan-a", 1.0, LONG).await;
    let delivery = wait_delivery(&d.gw, &d.certs, "queued in the dmz", LONG).await;
    assert_eq!(delivery["origin"], "smtp");
    let files = delivery["files"].as_array().unwrap();
    let f = mft_e2e::smtp::file(&d.gw, &d.certs, files[0].as_str().unwrap()).await;
    assert_eq!(f["sha256"], sha.as_str());
    mft_e2e::smtp::wait_spool_depth(d.gw.admin, 0.0, LONG).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        deliveries_with_subject(&d.gw, &d.certs, "queued in the dmz")
            .await
            .len(),
        1
    );
}

/// Loopback only: the admin API, and `connector --check` naming each fault.
#[tokio::test]
async fn admin_api_enrols_and_removes_and_check_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let certs = make_certs(path);
    let backend = start_backend(path).await;
    let token = "dmz-admin-token-0123456789abcdefghijkl";
    std::fs::write(path.join("admin.token"), token).unwrap();
    // The gateway's config never names the backend's real address.
    let gw = start_gateway_with(
        path,
        &certs,
        "http://mft.internal:8080",
        VIA_CONNECTOR,
        &format!(
            "{}\n[admin]\ntoken = \"file:{}\"\n",
            gateway_tables(ephemeral()),
            path.join("admin.token").display()
        ),
    )
    .await;
    let listen = gw.listeners.get("connector");
    let admin = reqwest::Client::new();
    let url = format!("http://{}/admin/v1/connectors", gw.admin);
    let r = admin
        .post(&url)
        .bearer_auth(token)
        .json(&serde_json::json!({"name": "lan-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let added: serde_json::Value = r.json().await.unwrap();
    let key = added["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("mgc_"));
    let r = admin.post(&url).json(&added).send().await.unwrap();
    assert_eq!(r.status(), 401, "no token, no enrolment");
    // Pinning over the admin API: a bad pin is a 400, an unknown name a 404.
    let pin_url = format!("{url}/lan-1/client-cert");
    let pin = "AB:".repeat(31) + "AB";
    for (target, body, want) in [
        (&pin_url, serde_json::json!({"sha256": "nope"}), 400),
        (
            &format!("{url}/nobody/client-cert"),
            serde_json::json!({"sha256": pin}),
            404,
        ),
        (&pin_url, serde_json::json!({"sha256": pin}), 200),
    ] {
        let r = admin
            .put(target)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "PUT {target} {body}");
    }
    let listed: serde_json::Value = admin
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["connectors"][0]["client_cert_sha256"],
        "ab".repeat(32)
    );
    let r = admin
        .put(&pin_url)
        .bearer_auth(token)
        .json(&serde_json::json!({"sha256": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let gateway = format!("https://{listen}");
    let ca = format!("ca_file = \"{}\"", certs.ca.display());
    let check = |config: &Path| {
        let out = Command::new(bin("mft-gateway"))
            .args(["connector", "--check", "--config"])
            .arg(config)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let good = connector_config(path, "good", &key, &gateway, &ca, &backend.url, 2);
    let (ok, text) = check(&good);
    assert!(ok, "{text}");
    // Same id, another secret.
    let mut wrong_key = key.clone();
    let last = wrong_key.pop();
    wrong_key.push(if last == Some('A') { 'B' } else { 'A' });
    let nowhere = refused();
    let cases = [
        (
            connector_config(path, "k", &wrong_key, &gateway, &ca, &backend.url, 1),
            "FAIL  connector key refused",
        ),
        (
            connector_config(
                path,
                "u",
                &key,
                &format!("https://{}", nowhere.addr),
                &ca,
                &backend.url,
                1,
            ),
            "FAIL  gateway unreachable",
        ),
        (
            connector_config(
                path,
                "t",
                &key,
                &gateway,
                &format!("gateway_pin_sha256 = \"{}\"", "ab".repeat(32)),
                &backend.url,
                1,
            ),
            "FAIL  gateway certificate not trusted",
        ),
        (
            connector_config(
                path,
                "b",
                &key,
                &gateway,
                &ca,
                &format!("http://{}", nowhere.addr),
                1,
            ),
            "FAIL  backend unreachable from the connector",
        ),
    ];
    for (config, want) in &cases {
        let (ok, text) = check(config);
        assert!(!ok, "{want}: {text}");
        assert!(text.contains(want), "want {want:?} in {text}");
    }

    let _connector = Proc::spawn(
        "connector",
        &bin("mft-gateway"),
        &["connector", "--config", good.to_str().unwrap()],
        path,
    );
    wait_connections(gw.admin, "lan-1", 2.0, LONG).await;
    // Signed end to end: this backend refuses unsigned requests, and it
    // verifies the authority the gateway signed (mft.internal:8080).
    let r = gw
        .client(&certs, Proto::Http2)
        .get(format!("{}/api/v1/files", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let listed: serde_json::Value = admin
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["connectors"][0]["name"], "lan-1");

    let r = admin
        .delete(format!("{url}/lan-1"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_connections(gw.admin, "lan-1", 0.0, Duration::from_secs(5)).await;
    let r = admin
        .delete(format!("{url}/lan-1"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_pinned_connector_attaches_only_with_its_client_certificate() {
    let d = dmz("").await;
    let key = add_connector(&d.gw.config, "lan-p");
    // Two client certificates; the connector is pinned to the first.
    let (dir_right, dir_wrong) = (d.dir.join("client-right"), d.dir.join("client-wrong"));
    std::fs::create_dir_all(&dir_right).unwrap();
    std::fs::create_dir_all(&dir_wrong).unwrap();
    let right = make_certs(&dir_right);
    let wrong = make_certs(&dir_wrong);
    let out = Command::new(bin("mft-gateway"))
        .args(["connectors", "pin", "lan-p", "--client-cert"])
        .arg(&right.cert)
        .arg("--config")
        .arg(&d.gw.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = list_connectors(&d.gw.config);
    assert_eq!(list[0]["client_cert_sha256"], cert_pin(&right.cert));

    let config = |name: &str, client: Option<&Certs>| {
        let mut trust = format!("gateway_pin_sha256 = \"{}\"", cert_pin(&d.certs.cert));
        if let Some(c) = client {
            trust.push_str(&format!(
                "\nclient_cert = \"{}\"\nclient_key = \"{}\"",
                c.cert.display(),
                c.key.display()
            ));
        }
        connector_config(
            &d.dir,
            name,
            &key,
            &format!("https://{}", d.connector_listen),
            &trust,
            &format!("http://127.0.0.1:{LAN_BACKEND_PORT}"),
            1,
        )
    };
    // Another certificate, or none: refused with the reason named.
    for (name, client) in [("lan-p-wrong", Some(&wrong)), ("lan-p-none", None)] {
        let (ok, report) = d.check_inside(&config(name, client));
        assert!(!ok, "{name}: {report}");
        assert!(
            report.contains("FAIL  client certificate refused"),
            "{name}: {report}"
        );
    }
    // The pinned certificate: attached, and requests go through.
    let config_right = config("lan-p-right", Some(&right));
    let (ok, report) = d.check_inside(&config_right);
    assert!(ok, "{report}");
    let _connector = d.start_connector("connector-p", &config_right);
    wait_connections(d.gw.admin, "lan-p", 1.0, LONG).await;
    let r = d
        .client()
        .get(format!("{}/api/v1/files", d.gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The refusals are audited with reason `certificate`.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let audit =
            std::fs::read_to_string(d.dir.join("gateway-data/audit.jsonl")).unwrap_or_default();
        let refused = audit
            .lines()
            .filter(|l| l.contains("\"connector_refused\"") && l.contains("\"certificate\""))
            .count();
        if refused >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "refusals not audited: {audit}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
