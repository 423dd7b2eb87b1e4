//! Input limits: body size (declared and streamed), request head size,
//! upload names, slowloris headers and the per-IP connection cap.

use base64::Engine;
use mft_e2e::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMITS: &str = r#"
[limits]
max_header_count = 40
max_url_bytes = 2048
request_header_timeout = "2s"
max_connections_per_ip = 6

[[limits.routes]]
path_prefix = "/api/v1/files"
methods = ["POST"]
max_body_bytes = "1 MiB"
"#;

struct Setup {
    certs: Certs,
    _backend: Backend,
    gw: Gateway,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    _dir: tempfile::TempDir,
}

async fn setup(tables: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let gw = start_gateway_with(dir.path(), &certs, &backend.url, "", tables).await;
    Setup {
        _dir: dir,
        certs,
        _backend: backend,
        gw,
    }
}

/// `GET /healthz` on an open connection answers 200.
async fn healthz_answers<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(tls: &mut S) {
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

async fn problem(r: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["request_id"].is_string(), "{body}");
    body
}

/// Files the backend holds, asked through the gateway.
async fn stored_files(s: &Setup) -> Vec<serde_json::Value> {
    let r =
        s.gw.client(&s.certs, Proto::Http1)
            .get(format!("{}/api/v1/files", s.gw.base))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v.as_array()
        .cloned()
        .or_else(|| v["files"].as_array().cloned())
        .unwrap_or_default()
}

#[tokio::test]
async fn oversized_bodies_get_413_declared_or_chunked_and_nothing_is_stored() {
    let s = setup(LIMITS).await;
    for proto in [Proto::Http1, Proto::Http2] {
        let c = s.gw.client(&s.certs, proto);
        // Declared: refused from Content-Length before a byte of body is read.
        let r = c
            .post(format!("{}/api/v1/files", s.gw.base))
            .header("x-filename", "big.bin")
            .body(vec![7u8; 2 << 20])
            .send()
            .await
            .unwrap();
        let body = problem(r, 413).await;
        assert_eq!(body["type"], "urn:mft:problem:body-too-large");

        // Unknown length (chunked on h1, no content-length on h2): refused mid-stream.
        let content = Arc::new(Content::new(3 << 20, 11));
        let r = c
            .post(format!("{}/api/v1/files", s.gw.base))
            .header("x-filename", "chunked.bin")
            .body(content.body())
            .send()
            .await
            .unwrap();
        problem(r, 413).await;
    }
    // The limit is per route: within it an upload works.
    let r =
        s.gw.client(&s.certs, Proto::Http1)
            .post(format!("{}/api/v1/files", s.gw.base))
            .header("x-filename", "small.bin")
            .body(vec![1u8; 1 << 20])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 201);
    let names: Vec<String> = stored_files(&s)
        .await
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        names,
        vec!["small.bin".to_string()],
        "only the small upload is stored"
    );
}

#[tokio::test]
async fn json_endpoints_have_a_built_in_body_limit() {
    let s = setup("").await;
    let big = format!(
        r#"{{"sender":"a@ourcorp.example","recipients":["b@ourcorp.example"],"subject":"{}","files":[]}}"#,
        "x".repeat(2 << 20)
    );
    let r =
        s.gw.client(&s.certs, Proto::Http1)
            .post(format!("{}/api/v1/deliveries", s.gw.base))
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .unwrap();
    problem(r, 413).await;
}

/// A multipart/form-data body with a 300 kB file part (several chunks, so
/// the check runs while the body streams) and an optional folder field.
fn multipart(filename: &str, folder: Option<&str>) -> (String, Vec<u8>) {
    let boundary = "----e2eBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    if let Some(folder) = folder {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"folder\"\r\n\r\n{folder}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend(std::iter::repeat_n(5u8, 300_000));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn a_multipart_boundary_longer_than_rfc_2046_allows_gets_400() {
    let s = setup(LIMITS).await;
    let c = s.gw.client(&s.certs, Proto::Http1);
    let url = format!("{}/api/v1/files", s.gw.base);
    for (len, status) in [(70, 201), (71, 400), (8_392, 400)] {
        let boundary = "b".repeat(len);
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b{len}.txt\"\r\n\
             Content-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n"
        );
        let r = c
            .post(&url)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        if status == 400 {
            let p = problem(r, 400).await;
            assert!(
                p["detail"].as_str().unwrap_or("").contains("70 characters"),
                "{p}"
            );
        } else {
            assert_eq!(r.status(), status, "boundary of {len}");
        }
    }
}

#[tokio::test]
async fn traversal_and_unsafe_upload_names_are_refused_with_400() {
    let s = setup(LIMITS).await;
    let c = s.gw.client(&s.certs, Proto::Http1);
    let url = format!("{}/api/v1/files", s.gw.base);
    let long = "a".repeat(256);
    for (header, value) in [
        ("x-filename", "..%2F..%2Fetc%2Fpasswd"),
        ("x-filename", "..\\evil.txt"),
        ("x-filename", "nul%00byte.txt"),
        ("x-filename", "line%0Abreak.txt"),
        ("x-filename", ".."),
        ("x-filename", long.as_str()),
        ("x-folder", "in/../../etc"),
    ] {
        let mut req = c.post(&url).body("data");
        if header == "x-folder" {
            req = req.header("x-filename", "ok.txt");
        }
        let r = req.header(header, value).send().await.unwrap();
        let body = problem(r, 400).await;
        assert_eq!(
            body["type"], "urn:mft:problem:invalid-name",
            "{header}: {value}"
        );
    }

    // Multipart: the part's filename is checked while the body streams.
    for filename in ["../../evil.txt", "a\\b.txt"] {
        let (ct, body) = multipart(filename, None);
        let r = c
            .post(&url)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        let body = problem(r, 400).await;
        assert_eq!(body["type"], "urn:mft:problem:invalid-name", "{filename}");
    }
    // RFC 8187 filename* is decoded before the check.
    let boundary = "XyZbOuNdArY";
    let raw = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"ok.txt\"; \
         filename*=UTF-8''..%2Fpasswd\r\n\r\nhello\r\n--{boundary}--\r\n"
    );
    let r = c
        .post(&url)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(raw)
        .send()
        .await
        .unwrap();
    problem(r, 400).await;

    // tus creation: Upload-Metadata filename "../x".
    let meta = format!(
        "filename {}",
        base64::engine::general_purpose::STANDARD.encode("../x")
    );
    let r = c
        .post(format!("{}/api/v1/uploads", s.gw.base))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "10")
        .header("upload-metadata", meta)
        .send()
        .await
        .unwrap();
    problem(r, 400).await;

    assert!(stored_files(&s).await.is_empty(), "nothing was stored");

    // Controls: a good multipart upload and a normalised Unicode name pass.
    let (ct, body) = multipart("report.pdf", Some("in/2026"));
    let r = c
        .post(&url)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = c
        .post(&url)
        .header("x-filename", "cafe%CC%81.txt")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["name"], "caf\u{e9}.txt");
}

#[tokio::test]
async fn oversized_request_heads_get_414_and_431() {
    let s = setup(LIMITS).await;
    let c = s.gw.client(&s.certs, Proto::Http1);
    let r = c
        .get(format!("{}/api/v1/files?q={}", s.gw.base, "a".repeat(3000)))
        .send()
        .await
        .unwrap();
    problem(r, 414).await;
    let mut req = c.get(format!("{}/api/v1/files", s.gw.base));
    for i in 0..50 {
        req = req.header(format!("x-pad-{i}"), "v");
    }
    problem(req.send().await.unwrap(), 431).await;
    // Checked before authentication: an anonymous client gets the same.
    let r = client(&s.certs, Proto::Http2)
        .get(format!("{}/api/v1/files?q={}", s.gw.base, "a".repeat(3000)))
        .send()
        .await
        .unwrap();
    problem(r, 414).await;
}

#[tokio::test]
async fn slowloris_header_is_cut_off_after_request_header_timeout() {
    let s = setup(LIMITS).await;
    let mut tls = tls_connect(&s.certs, s.gw.addr).await.unwrap();
    tls.write_all(b"GET /api/v1/files HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // One header line every 300 ms: each read is well inside pingora's
    // per-read timeout, the whole header never completes.
    let closed_after = loop {
        let mut buf = [0u8; 256];
        let write = tls.write_all(b"X-Slow: 1\r\n").await;
        let read = tokio::time::timeout(Duration::from_millis(300), tls.read(&mut buf)).await;
        match (write, read) {
            (Err(_), _) | (_, Ok(Ok(0))) | (_, Ok(Err(_))) => break started.elapsed(),
            (Ok(()), Ok(Ok(n))) => panic!(
                "server answered a header that never finished: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            (Ok(()), Err(_)) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "slow header connection still open after 15 s"
        );
    };
    assert!(
        closed_after >= Duration::from_millis(1500),
        "closed too early: {closed_after:?}"
    );

    // A keep-alive connection gets a fresh deadline per request: a fast
    // request, then a slow one on the same connection.
    let mut tls = tls_connect(&s.certs, s.gw.addr).await.unwrap();
    healthz_answers(&mut tls).await;
    let mut buf = vec![0u8; 4096];
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Idle time between requests does not count against the next header.
    healthz_answers(&mut tls).await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if tls.write_all(b"X-Slow: 1\r\n").await.is_err() {
                return 0;
            }
            match tokio::time::timeout(Duration::from_millis(300), tls.read(&mut buf)).await {
                Ok(Ok(n)) => return n,
                Ok(Err(_)) => return 0,
                Err(_) => {}
            }
        }
    })
    .await
    .expect("second slow header was not cut off");
    assert_eq!(n, 0, "closed, no response");
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

/// `[server] keepalive_timeout` decides how long an idle HTTP/1.1
/// connection lives, beyond 30 s too (hyper's own header timer, on by
/// default, used to close every idle connection at 30 s).
#[tokio::test]
async fn an_idle_keep_alive_connection_lives_until_keepalive_timeout() {
    add_server_line(r#"keepalive_timeout = "36s""#);
    let s = setup(LIMITS).await;
    let mut kept = tls_connect(&s.certs, s.gw.addr).await.unwrap();
    let mut idle = tls_connect(&s.certs, s.gw.addr).await.unwrap();
    healthz_answers(&mut kept).await;
    healthz_answers(&mut idle).await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(33)).await;
    healthz_answers(&mut kept).await;
    // Read to the end; any rest of the first answer arrives at once.
    let mut b = [0u8; 256];
    let after = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match idle.read(&mut b).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(n) => assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "an idle connection got data: {:?}",
                    String::from_utf8_lossy(&b[..n])
                ),
            }
        }
    })
    .await
    .expect("an idle connection outlived keepalive_timeout by 17 s");
    assert!(after >= Duration::from_secs(35), "closed after {after:?}");
}

#[tokio::test]
async fn connections_per_ip_are_capped() {
    let s = setup(LIMITS).await;
    // The harness's readiness probe may still hold a pooled connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        match tls_connect(&s.certs, s.gw.addr).await {
            Ok(mut tls) => {
                let mut b = [0u8; 1];
                // A refused connection is closed before or right after the handshake.
                match tokio::time::timeout(Duration::from_millis(200), tls.read(&mut b)).await {
                    Ok(_) => refused += 1,
                    Err(_) => open.push(tls),
                }
            }
            Err(_) => refused += 1,
        }
    }
    assert!(open.len() <= 6, "{} connections held", open.len());
    assert!(open.len() >= 5, "only {} connections held", open.len());
    assert!(refused >= 4, "{refused} refused");
    // Closing connections frees slots (once the gateway saw them close).
    open.clear();
    let c = s.gw.client(&s.certs, Proto::Http1);
    let healthz = format!("{}/healthz", s.gw.base);
    eventually(Duration::from_secs(10), "a slot freed", || async {
        c.get(&healthz).send().await.is_ok()
    })
    .await;
    let r = c.get(&healthz).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn at_max_connections_new_connections_wait_for_a_slot_instead_of_being_served() {
    const MAX: usize = 4;
    // Per IP uncapped: every connection here comes from 127.0.0.1.
    let s = setup("[limits]\nmax_connections = 4\nmax_connections_per_ip = 0\n").await;
    // The harness's readiness probe may still hold a pooled connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut held = Vec::new();
    let mut waiting = loop {
        let mut connecting = Box::pin(tls_connect(&s.certs, s.gw.addr));
        match tokio::time::timeout(Duration::from_secs(1), connecting.as_mut()).await {
            Ok(Ok(tls)) => held.push(tls),
            Ok(Err(e)) => panic!(
                "connection {} refused instead of waiting: {e}",
                held.len() + 1
            ),
            // TCP is up (the kernel's queue, or held by the accept loop),
            // but no TLS handshake: not served.
            Err(_) => break connecting,
        }
        assert!(held.len() <= MAX, "{} connections served", held.len());
    };
    assert!(held.len() >= MAX - 1, "only {} served", held.len());
    // A second one waits too.
    let mut second = Box::pin(tls_connect(&s.certs, s.gw.addr));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), second.as_mut())
            .await
            .is_err(),
        "served past the cap"
    );
    // Each connection that ends lets one waiting connection in, in turn.
    for next in [&mut waiting, &mut second] {
        drop(held.pop());
        let mut tls = tokio::time::timeout(Duration::from_secs(10), next.as_mut())
            .await
            .expect("a waiting connection was not served after a slot freed")
            .unwrap();
        healthz_answers(&mut tls).await;
        held.push(tls);
    }
    assert!(held.len() <= MAX);
    let log = s.gw.proc.stderr();
    assert!(
        log.contains("HTTPS connections at limits.max_connections"),
        "{log}"
    );
}

/// A body of `bytes` bytes, `chunk` at a time with a pause of `every`
/// before each piece.
fn paced_body(bytes: usize, chunk: usize, every: Duration) -> reqwest::Body {
    let s = futures_util::stream::unfold(0usize, move |sent| async move {
        if sent >= bytes {
            return None;
        }
        tokio::time::sleep(every).await;
        let n = chunk.min(bytes - sent);
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; n])),
            sent + n,
        ))
    });
    reqwest::Body::wrap_stream(s)
}

#[tokio::test]
async fn a_trickled_body_under_the_minimum_rate_gets_408_over_h1_and_h2() {
    // Each byte comes well inside body_idle_timeout (60 s), but 1 byte per
    // 300 ms is far under 1 KiB/s over a 2 s window.
    let s = setup(
        r#"
[limits]
min_body_rate = "1 KiB"
min_body_rate_window = "2s"
"#,
    )
    .await;
    for proto in [Proto::Http1, Proto::Http2] {
        let c = s.gw.client(&s.certs, proto);
        let started = Instant::now();
        let sent = tokio::time::timeout(
            Duration::from_secs(30),
            c.post(format!("{}/api/v1/files", s.gw.base))
                .header("x-filename", format!("trickle-{proto:?}.bin"))
                .body(paced_body(1000, 1, Duration::from_millis(300)))
                .send(),
        )
        .await
        .unwrap_or_else(|_| panic!("{proto:?}: the trickle was not cut off within 30 s"));
        let r = sent.unwrap_or_else(|e| panic!("{proto:?}: no answer: {e}"));
        let body = problem(r, 408).await;
        assert_eq!(body["type"], "urn:mft:problem:body-too-slow", "{proto:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{proto:?}: cut before a window of waiting: {:?}",
            started.elapsed()
        );
    }
    // A sender-bound key's delivery is read ahead (its sender checked
    // before it goes on): that read is held to the same floor.
    let (_, bound) = create_key_with(
        &s.gw.config,
        "bound",
        ALL_SCOPES,
        &["--allowed-senders", "ops@ourcorp.example"],
    );
    for proto in [Proto::Http1, Proto::Http2] {
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            client_with_key(&s.certs, proto, &bound)
                .post(format!("{}/api/v1/deliveries", s.gw.base))
                .header("content-type", "application/json")
                .body(paced_body(1000, 1, Duration::from_millis(300)))
                .send(),
        )
        .await
        .unwrap_or_else(|_| panic!("{proto:?}: the read-ahead was not cut off within 30 s"))
        .unwrap_or_else(|e| panic!("{proto:?}: no answer: {e}"));
        let body = problem(r, 408).await;
        assert_eq!(body["type"], "urn:mft:problem:body-too-slow", "{proto:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{proto:?}: {:?}",
            started.elapsed()
        );
    }
    // A body above the rate (4 KiB every 100 ms) passes window after window.
    for proto in [Proto::Http1, Proto::Http2] {
        let r =
            s.gw.client(&s.certs, proto)
                .post(format!("{}/api/v1/files", s.gw.base))
                .header("x-filename", format!("paced-{proto:?}.bin"))
                .body(paced_body(240 * 1024, 4096, Duration::from_millis(100)))
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), 201, "{proto:?}");
    }
    let mut names: Vec<String> = stored_files(&s)
        .await
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["paced-Http1.bin".to_string(), "paced-Http2.bin".to_string()],
        "nothing of the trickled bodies is stored"
    );
}
