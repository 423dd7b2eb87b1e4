//! Injected backend faults (issue 21, docs/reliability.md#faults): a
//! backend that stalls or trickles its response head, one that stalls
//! mid-body, one whose connection is reset mid-download. A real backend
//! cannot be made to show these, so a small TCP server (or a cutting proxy
//! in front of the reference backend) plays them.

use futures_util::StreamExt;
use mft_e2e::*;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Part of the head, then silence.
    StallInHead,
    /// The head one byte every 400 ms (each gap shorter than read_timeout).
    TrickleHead,
    /// The whole head (Content-Length 100000), 1000 bytes of body, silence.
    StallInBody,
    /// Reads 256 KiB of the request body, then closes with the rest unread
    /// (the kernel resets the connection), without answering.
    ResetInUpload,
}

/// Reads a request head; false if the peer went away first.
async fn read_head(s: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&b[..n]),
        }
    }
    true
}

/// A backend playing `fault` on every connection; `closed` counts the
/// connections the gateway closed (the slot it freed).
async fn faulty_backend(fault: Fault) -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let closed = Arc::new(AtomicU64::new(0));
    let c = closed.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                if !read_head(&mut s).await {
                    return;
                }
                if let Fault::ResetInUpload = fault {
                    let mut b = vec![0u8; 256 * 1024];
                    let _ = s.read_exact(&mut b).await;
                    c.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n";
                match fault {
                    Fault::StallInHead => {
                        let _ = s.write_all(&head[..30]).await;
                    }
                    Fault::TrickleHead => {
                        for b in head {
                            if s.write_all(&[*b]).await.is_err() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(400)).await;
                        }
                    }
                    Fault::StallInBody => {
                        let _ = s.write_all(head).await;
                        let _ = s.write_all(&[b'x'; 1000]).await;
                    }
                    Fault::ResetInUpload => {}
                }
                // Silence until the gateway lets go.
                let mut b = [0u8; 256];
                loop {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, closed)
}

async fn assert_504(r: reqwest::Response) {
    assert_eq!(r.status(), 504);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 504);
}

async fn wait_closed(closed: &AtomicU64, n: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while closed.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "{what}: the gateway kept the backend connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_backend_that_stalls_or_trickles_its_head_gets_504_and_frees_the_slot() {
    for engine in ["hyper", "pingora"] {
        use_engine(engine);
        // pingora (the fallback engine) bounds each read, not the whole
        // head: a trickling head is not refused there (docs/reliability.md).
        let faults: &[Fault] = if engine == "hyper" {
            &[Fault::StallInHead, Fault::TrickleHead]
        } else {
            &[Fault::StallInHead]
        };
        for &fault in faults {
            let dir = tempfile::tempdir().unwrap();
            let certs = make_certs(dir.path());
            let (addr, closed) = faulty_backend(fault).await;
            let mut gw = start_gateway(
                dir.path(),
                &certs,
                &format!("http://{addr}"),
                "read_timeout = \"1s\"",
            )
            .await;
            let c = gw.client(&certs, Proto::Http1);
            let started = Instant::now();
            let r = c
                .get(format!("{}/api/v1/files", gw.base))
                .send()
                .await
                .unwrap();
            let took = started.elapsed();
            assert_504(r).await;
            // The whole head within read_timeout, not each read: a
            // trickling head (36 s at this pace) may not hold the slot.
            assert!(
                took < Duration::from_secs(4),
                "{engine} {fault:?}: 504 after {took:?}"
            );
            wait_closed(&closed, 1, &format!("{engine} {fault:?}")).await;
            gw.proc.assert_running();
        }
    }
}

#[tokio::test]
async fn a_backend_that_stalls_mid_body_fails_the_transfer_visibly() {
    for engine in ["hyper", "pingora"] {
        use_engine(engine);
        let dir = tempfile::tempdir().unwrap();
        let certs = make_certs(dir.path());
        let (addr, closed) = faulty_backend(Fault::StallInBody).await;
        let gw = start_gateway(
            dir.path(),
            &certs,
            &format!("http://{addr}"),
            "read_timeout = \"1s\"",
        )
        .await;
        for proto in [Proto::Http1, Proto::Http2] {
            let c = gw.client(&certs, proto);
            let started = Instant::now();
            let r = c
                .get(format!("{}/api/v1/files/x/content", gw.base))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "the head was already on its way");
            let mut body = r.bytes_stream();
            let mut got = 0;
            let mut failed = false;
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(b) => got += b.len(),
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            assert!(
                failed,
                "{engine} {proto:?}: a cut body ended like a whole one ({got} bytes)"
            );
            assert!(got < 100_000);
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "{engine} {proto:?}"
            );
        }
        wait_closed(&closed, 2, engine).await;
    }
}

/// A TCP proxy in front of the reference backend that, once armed, resets
/// the connection toward the gateway after `cut_after` response bytes.
struct Cutter {
    addr: SocketAddr,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicU64>,
}

async fn cutter(to: SocketAddr, cut_after: u64) -> Cutter {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let cuts = Arc::new(AtomicU64::new(0));
    let (a, k) = (armed.clone(), cuts.clone());
    tokio::spawn(async move {
        while let Ok((mut client, _)) = l.accept().await {
            let (armed, cuts) = (a.clone(), k.clone());
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(to).await else {
                    return;
                };
                let mut cb = vec![0u8; 16 * 1024];
                let mut sb = vec![0u8; 16 * 1024];
                let mut sent = 0u64;
                loop {
                    tokio::select! {
                        r = client.read(&mut cb) => match r {
                            Ok(0) | Err(_) => break,
                            Ok(n) => if server.write_all(&cb[..n]).await.is_err() { break },
                        },
                        r = server.read(&mut sb) => {
                            let n = match r {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if armed.load(Ordering::SeqCst) {
                                if sent + n as u64 >= cut_after {
                                    let keep = (cut_after - sent) as usize;
                                    let _ = client.write_all(&sb[..keep]).await;
                                    armed.store(false, Ordering::SeqCst);
                                    cuts.fetch_add(1, Ordering::SeqCst);
                                    // Closed with a RST, as a crashed backend host would.
                                    let _ = client.set_zero_linger();
                                    return;
                                }
                                sent += n as u64;
                            }
                            if client.write_all(&sb[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    Cutter { addr, armed, cuts }
}

#[tokio::test]
async fn a_backend_reset_mid_download_fails_visibly_and_a_range_resume_completes() {
    const SIZE: u64 = 8 * 1024 * 1024;
    const CUT: u64 = 3 * 1024 * 1024;
    for engine in ["hyper", "pingora"] {
        use_engine(engine);
        let dir = tempfile::tempdir().unwrap();
        let certs = make_certs(dir.path());
        let backend = start_backend(dir.path()).await;
        let backend_addr: SocketAddr = backend
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let cut = cutter(backend_addr, CUT).await;
        let gw = start_gateway(dir.path(), &certs, &format!("http://{}", cut.addr), "").await;
        for proto in [Proto::Http1, Proto::Http2] {
            let c = gw.client(&certs, proto);
            let content = Arc::new(Content::new(SIZE, 21));
            let r = c
                .post(format!("{}/api/v1/files", gw.base))
                .header("X-Filename", "reset.bin")
                .header("Content-Length", SIZE)
                .body(content.body())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let meta: serde_json::Value = r.json().await.unwrap();
            let url = format!(
                "{}/api/v1/files/{}/content",
                gw.base,
                meta["id"].as_str().unwrap()
            );

            cut.armed.store(true, Ordering::SeqCst);
            let r = c.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let mut body = r.bytes_stream();
            let mut h = Sha256::new();
            let mut got = 0u64;
            let mut failed = false;
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(b) => {
                        got += b.len() as u64;
                        h.update(&b);
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            assert!(cut.cuts.load(Ordering::SeqCst) >= 1);
            assert!(failed, "{engine} {proto:?}: the cut download ended like a whole one ({got} of {SIZE} bytes)");
            assert!(got < SIZE, "{engine} {proto:?}");

            // Resume from what arrived: the rest, then one SHA-256 over both.
            let r = c
                .get(&url)
                .header("Range", format!("bytes={got}-"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 206, "{engine} {proto:?}");
            let mut rest = r.bytes_stream();
            while let Some(chunk) = rest.next().await {
                let b = chunk.unwrap();
                got += b.len() as u64;
                h.update(&b);
            }
            assert_eq!(got, SIZE);
            assert_eq!(
                hex::encode(h.finalize()),
                content.sha256(),
                "{engine} {proto:?}"
            );
        }
    }
}

/// The backend dies while a client streams an upload over HTTP/1.1: the
/// gateway answers 502 problem+json, and then keeps reading (and
/// discarding) what the client still sends for a while before it closes.
/// Closing at once with the client's bytes unread would make the kernel
/// reset the connection, and a client whose next write fails on that reset
/// (hyper's, reqwest's) reports "error sending request" instead of the 502.
#[tokio::test]
async fn a_backend_lost_mid_upload_answers_502_and_the_close_lingers_so_the_client_sees_it() {
    use_engine("hyper");
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let (backend, _) = faulty_backend(Fault::ResetInUpload).await;
    let gw = start_gateway(dir.path(), &certs, &format!("http://{backend}"), "").await;

    let tls = tls_connect(&certs, gw.addr).await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    let head = format!(
        "POST /api/v1/files HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         X-Filename: lost.bin\r\nContent-Length: {}\r\n\r\n",
        gw.key,
        1u64 << 30
    );
    wr.write_all(head.as_bytes()).await.unwrap();
    // The client streams its body until the answer comes, and on after it.
    let answered = Arc::new(AtomicBool::new(false));
    let writer = {
        let answered = answered.clone();
        tokio::spawn(async move {
            let chunk = vec![b'u'; 16 * 1024];
            let mut after = 0usize;
            while after < 1 << 20 {
                wr.write_all(&chunk).await?;
                if answered.load(Ordering::SeqCst) {
                    after += chunk.len();
                }
            }
            wr.flush().await?;
            // Done sending (short of its Content-Length): our end, so the
            // gateway's lingering read sees it.
            wr.shutdown().await?;
            Ok::<usize, std::io::Error>(after)
        })
    };
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let n = rd.read(&mut b).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            got.extend_from_slice(&b[..n]);
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                answered.store(true, Ordering::SeqCst);
            }
        }
    })
    .await
    .expect("the connection neither answered nor closed");
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 502"), "answer: {text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "answer: {text}"
    );
    let sent_after = writer.await.unwrap();
    assert!(
        matches!(sent_after, Ok(n) if n >= 1 << 20),
        "writes after the answer failed (the gateway closed on unread bytes): {sent_after:?}"
    );
    assert!(read.is_ok(), "the connection ended in an error: {read:?}");
}

/// Sends one message with smtplib over implicit TLS; its report.
fn send_mail(
    s: &mft_e2e::smtp::SmtpGateway,
    ca: &str,
    subject: &str,
    attach: &str,
) -> serde_json::Value {
    mft_e2e::smtp::smtplib(&[
        "--port",
        &s.smtps.port().to_string(),
        "--ssl",
        "--cafile",
        ca,
        "--user",
        mft_e2e::smtp::BRIDGE_USER,
        "--password",
        mft_e2e::smtp::BRIDGE_PASSWORD,
        "--to",
        "carol@ourcorp.example",
        "--subject",
        subject,
        "--attach",
        attach,
    ])
}

#[tokio::test]
async fn a_full_spool_refuses_mail_before_accepting_it_and_recovers() {
    use mft_e2e::smtp::*;
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = super::audit_chain::Tmpfs::mount(&dir.path().join("gateway-data/spool"), "8m")
    else {
        return;
    };
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    // No free-space floor: this is the refusal at the end of DATA (the
    // 452 at MAIL/RCPT is the next test).
    let s = start_smtp_gateway(dir.path(), &certs, &backend.url, "spool_min_free = 0").await;
    let ca = certs.ca.display().to_string();
    let (file, _) = attachment(dir.path(), "a.bin", 200 * 1024, 5);
    let file = file.display().to_string();

    let r = send_mail(&s, &ca, "before-full", &file);
    assert_eq!(code(&r, "data"), 250, "{r}");
    wait_delivery(&s.gw, &certs, "before-full", Duration::from_secs(30)).await;
    wait_spool_depth(s.gw.admin, 0.0, Duration::from_secs(30)).await;

    let filler = fs.fill("filler");
    let r = send_mail(&s, &ca, "while-full", &file);
    let refused = code(&r, "data");
    assert!(
        refused == 451 || refused == 452,
        "a full spool must refuse before 250: {r}"
    );
    assert!(s.gw.proc.stderr().contains("smtp spool write failed"));

    std::fs::remove_file(&filler).unwrap();
    let r = send_mail(&s, &ca, "after-full", &file);
    assert_eq!(code(&r, "data"), 250, "{r}");
    wait_delivery(&s.gw, &certs, "after-full", Duration::from_secs(30)).await;
    wait_spool_depth(s.gw.admin, 0.0, Duration::from_secs(30)).await;
    // Nothing twice, nothing refused delivered, nothing half-written left.
    for (subject, n) in [("before-full", 1), ("while-full", 0), ("after-full", 1)] {
        assert_eq!(
            deliveries_with_subject(&s.gw, &certs, subject).await.len(),
            n,
            "{subject}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(&fs.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.iter().all(|n| n.to_string_lossy().starts_with('.')
            || std::fs::metadata(fs.0.join(n))
                .map(|m| m.is_dir())
                .unwrap_or(false)),
        "{left:?}"
    );
}

/// Sends one message with smtplib over implicit TLS, declaring `SIZE=`.
fn send_mail_sized(
    s: &mft_e2e::smtp::SmtpGateway,
    ca: &str,
    subject: &str,
    attach: &str,
    size: u64,
) -> serde_json::Value {
    mft_e2e::smtp::smtplib(&[
        "--port",
        &s.smtps.port().to_string(),
        "--ssl",
        "--cafile",
        ca,
        "--user",
        mft_e2e::smtp::BRIDGE_USER,
        "--password",
        mft_e2e::smtp::BRIDGE_PASSWORD,
        "--to",
        "carol@ourcorp.example",
        "--subject",
        subject,
        "--attach",
        attach,
        "--size",
        &size.to_string(),
    ])
}

#[tokio::test]
async fn a_nearly_full_spool_answers_452_at_mail_and_rcpt_and_recovers() {
    use mft_e2e::smtp::*;
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = super::audit_chain::Tmpfs::mount(&dir.path().join("gateway-data/spool"), "8m")
    else {
        return;
    };
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let s = start_smtp_gateway(
        dir.path(),
        &certs,
        &backend.url,
        r#"spool_min_free = "2 MiB""#,
    )
    .await;
    let ca = certs.ca.display().to_string();
    let (file, _) = attachment(dir.path(), "a.bin", 200 * 1024, 5);
    let file = file.display().to_string();

    // A declared size the floor cannot take: 452 at MAIL, no data sent.
    let r = send_mail_sized(&s, &ca, "declared-too-big", &file, 7 << 20);
    assert_eq!(code(&r, "mail"), 452, "{r}");
    assert!(r["mail"][1].as_str().unwrap().starts_with("4.3.1"), "{r}");
    assert!(r.get("data").is_none(), "{r}");

    let r = send_mail(&s, &ca, "before-full", &file);
    assert_eq!(code(&r, "data"), 250, "{r}");
    wait_delivery(&s.gw, &certs, "before-full", Duration::from_secs(30)).await;
    wait_spool_depth(s.gw.admin, 0.0, Duration::from_secs(30)).await;

    // A transaction open when the disk fills: its next RCPT gets 452.
    let tcp = TcpStream::connect(s.smtps).await.unwrap();
    let mut raw = RawSmtp::new(starttls(&certs, tcp).await);
    assert!(raw.reply().await[0].starts_with("220"));
    raw.send("EHLO client.example\r\n").await;
    raw.reply().await;
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("\0{BRIDGE_USER}\0{BRIDGE_PASSWORD}"));
    raw.send(&format!("AUTH PLAIN {token}\r\n")).await;
    assert!(raw.reply().await[0].starts_with("235"));
    raw.send("MAIL FROM:<alice@partner.example>\r\n").await;
    assert!(raw.reply().await[0].starts_with("250"));

    let filler = fs.fill("filler");
    // Free space is measured about once a second: wait for the condition.
    let deadline = Instant::now() + Duration::from_secs(15);
    let rcpt = loop {
        raw.send("RCPT TO:<carol@ourcorp.example>\r\n").await;
        let reply = raw.reply().await.join("\n");
        if !reply.starts_with("250") || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(rcpt.starts_with("452 4.3.1"), "{rcpt}");
    raw.send("QUIT\r\n").await;

    let r = send_mail(&s, &ca, "while-full", &file);
    assert_eq!(code(&r, "mail"), 452, "{r}");
    assert!(r.get("data").is_none(), "refused before DATA: {r}");

    std::fs::remove_file(&filler).unwrap();
    // Recovers without a restart once a measurement sees the space.
    let deadline = Instant::now() + Duration::from_secs(15);
    let r = loop {
        let r = send_mail(&s, &ca, "after-full", &file);
        if code(&r, "mail") != 452 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(code(&r, "data"), 250, "{r}");
    wait_delivery(&s.gw, &certs, "after-full", Duration::from_secs(30)).await;
    wait_spool_depth(s.gw.admin, 0.0, Duration::from_secs(30)).await;
    // Nothing twice, nothing refused delivered.
    for (subject, n) in [
        ("declared-too-big", 0),
        ("before-full", 1),
        ("while-full", 0),
        ("after-full", 1),
    ] {
        assert_eq!(
            deliveries_with_subject(&s.gw, &certs, subject).await.len(),
            n,
            "{subject}"
        );
    }
    let m = metrics(s.gw.admin).await;
    assert!(
        m.contains(r#"mft_smtp_rejections_total{reason="spool_full"}"#),
        "the refusals are counted"
    );
}

/// A PostgreSQL of this test's own (scripts/start-postgres), to kill.
pub(crate) struct OwnPostgres {
    dir: std::path::PathBuf,
    pub(crate) url: String,
    port: u16,
}

impl OwnPostgres {
    pub(crate) fn start(state: &std::path::Path) -> Option<OwnPostgres> {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/start-postgres");
        let out = std::process::Command::new(script)
            .env("MFT_PG_STATE_FILE", state)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED: scripts/start-postgres failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let port = url.rsplit(':').next()?.split('/').next()?.parse().ok()?;
        let dir = std::fs::read_to_string(state).ok()?.trim().into();
        Some(OwnPostgres { dir, url, port })
    }

    fn bin() -> std::path::PathBuf {
        let mut dirs: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path().join("bin"))
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
        dirs.pop().unwrap_or_else(|| "/usr/bin".into())
    }

    fn as_owner(args: &[&str]) -> std::process::ExitStatus {
        let mut c = if nix_is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "nobody", "--"]);
            c
        } else {
            std::process::Command::new(args[0])
        };
        if nix_is_root() {
            c.arg(args[0]);
        }
        c.args(&args[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c.status().unwrap()
    }

    fn psql(&self, sql: &str) {
        let ok = std::process::Command::new(Self::bin().join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "mft",
                "mft",
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }

    /// Makes every commit so far durable: the throwaway cluster runs with
    /// `synchronous_commit=off`, so a kill could otherwise lose the last
    /// commits (the test's new key), which is not the fault under test.
    fn checkpoint(&self) {
        self.psql("CHECKPOINT");
    }

    /// Every commit from now on durable before it is acknowledged (for the
    /// sessions opened after this), as on a real server: with the cluster's
    /// `synchronous_commit=off` a kill would lose acknowledged commits, a
    /// fault of the test's setup, not of the gateway.
    pub(crate) fn durable_commits(&self) {
        self.psql("ALTER DATABASE mft SET synchronous_commit = on");
    }

    /// SIGQUIT to the postmaster: every server process exits at once, no
    /// checkpoint (what `pg_ctl stop -m immediate` sends; a crash for clients).
    pub(crate) fn kill(&self) {
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap();
        let pid = pid.lines().next().unwrap().trim().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-QUIT", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(Instant::now() < deadline, "postgres did not die");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn restart(&self) {
        let bin = Self::bin().join("pg_ctl");
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        let ok = Self::as_owner(&[
            bin.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "60",
            "-o",
            &opts,
            "start",
        ]);
        assert!(
            ok.success(),
            "postgres did not restart: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/start-postgres");
        let _ = std::process::Command::new(script)
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

#[tokio::test]
async fn postgresql_killed_under_load_cached_keys_serve_new_lookups_503_and_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pg) = OwnPostgres::start(&dir.path().join("pg-state")) else {
        return;
    };
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let tables = format!("[auth]\nstore = \"{}\"\ncache_ttl = \"10m\"\n", pg.url);
    let mut gw = start_gateway_with(dir.path(), &certs, &backend.url, "", &tables).await;
    let url = format!("{}/api/v1/files", gw.base);
    // Created before the outage, never used: not cached.
    let (_, fresh) = create_key(&gw.config, "fresh", ALL_SCOPES);
    let cached = gw.client(&certs, Proto::Http1);
    assert_eq!(cached.get(&url).send().await.unwrap().status(), 200);

    // Load with the cached key throughout the outage.
    let stop = Arc::new(AtomicBool::new(false));
    let (c, u, st) = (cached.clone(), url.clone(), stop.clone());
    let load = tokio::spawn(async move {
        let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
        while !st.load(Ordering::SeqCst) {
            let s = c
                .get(&u)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            *statuses.entry(s).or_default() += 1;
        }
        statuses
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.checkpoint();
    pg.kill();
    let fresh_client = client_with_key(&certs, Proto::Http1, &fresh);
    let r = fresh_client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 503, "a new lookup with the store down");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    tokio::time::sleep(Duration::from_secs(1)).await;
    gw.proc.assert_running();

    pg.restart();
    // Recovery without a restart.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = fresh_client.get(&url).send().await.unwrap().status();
        if s == 200 {
            break;
        }
        assert_eq!(s, 503);
        assert!(Instant::now() < deadline, "the key store did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let statuses = load.await.unwrap();
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "cached key under load: {statuses:?}"
    );
    assert!(statuses[&200] > 10, "{statuses:?}");
    gw.proc.assert_running();
}

#[tokio::test]
async fn redis_killed_under_load_deny_policy_answers_503_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let redis = start_redis(dir.path());
    let addr = redis.addr;
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let tables = format!(
        "[rate_limit]\nper_key = \"1000/s burst 1000\"\nredis = \"{}\"\non_redis_error = \"deny\"\n",
        redis.url
    );
    let gw = start_gateway_with(dir.path(), &certs, &backend.url, "", &tables).await;
    let url = format!("{}/api/v1/files", gw.base);
    let c = gw.client(&certs, Proto::Http1);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);

    let phase = Arc::new(AtomicU64::new(0));
    let (cc, u, ph) = (c.clone(), url.clone(), phase.clone());
    let load = tokio::spawn(async move {
        // Statuses per phase: 0 before the kill, 1 down, 2 after the restart.
        let mut seen: [std::collections::BTreeMap<u16, u64>; 3] = Default::default();
        loop {
            let p = ph.load(Ordering::SeqCst);
            if p == 3 {
                return seen;
            }
            let r = cc.get(&u).send().await.unwrap();
            let s = r.status().as_u16();
            if s == 503 {
                assert_eq!(r.headers()["content-type"], "application/problem+json");
            }
            *seen[p as usize].entry(s).or_default() += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(redis);
    assert!(!redis_ping(addr));
    phase.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _redis = start_redis_at(dir.path(), addr);
    // Recovery without a gateway restart.
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.get(&url).send().await.unwrap().status() != 200 {
        assert!(
            Instant::now() < deadline,
            "not recovered after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    phase.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    phase.store(3, Ordering::SeqCst);
    let seen = load.await.unwrap();
    assert_eq!(
        seen[0].keys().copied().collect::<Vec<_>>(),
        vec![200],
        "{seen:?}"
    );
    assert!(
        seen[1].get(&503).copied().unwrap_or(0) > 0,
        "deny while down: {seen:?}"
    );
    assert!(seen[1].keys().all(|s| *s == 503 || *s == 200), "{seen:?}");
    assert_eq!(
        seen[2].keys().copied().collect::<Vec<_>>(),
        vec![200],
        "{seen:?}"
    );
}
