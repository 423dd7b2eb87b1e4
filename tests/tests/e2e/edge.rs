//! The hyper engine (`[server] http_engine = "hyper"`) on key scenarios,
//! refusals that every client sees over HTTP/1.1 and HTTP/2 even with a
//! body still coming, request hygiene at the edge, and
//! `[server] tls_min_version`.

use super::proxy::recording_upstream;
use mft_e2e::*;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMITS: &str = r#"
[limits]
request_header_timeout = "2s"

[[limits.routes]]
path_prefix = "/api/v1/files"
methods = ["POST"]
max_body_bytes = "1 MiB"
"#;

struct Setup {
    certs: Certs,
    _backend: Option<Backend>,
    gw: Gateway,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    dir: tempfile::TempDir,
}

async fn setup(engine: &str, tables: &str) -> Setup {
    use_engine(engine);
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let gw = start_gateway_with(dir.path(), &certs, &backend.url, "", tables).await;
    Setup {
        dir,
        certs,
        _backend: Some(backend),
        gw,
    }
}

/// curl's status code for a request, and whether curl itself succeeded
/// (a stream error is a curl failure with no status).
fn curl_status(args: &[&str]) -> (String, bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .expect("curl installed");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn hyper_engine_streams_both_ways_over_http1_and_http2() {
    let s = setup("hyper", "").await;
    for (i, proto) in [Proto::Http1, Proto::Http2].into_iter().enumerate() {
        let client = s.gw.client(&s.certs, proto);
        let content = Arc::new(Content::new(3 * 1024 * 1024 + 7, i as u64));
        let meta = super::proxy::upload(&client, &s.gw.base, "h.bin", &content).await;
        assert_eq!(meta["sha256"], content.sha256().as_str());
        let r = client
            .get(format!(
                "{}/api/v1/files/{}/content",
                s.gw.base,
                meta["id"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("x-request-id"));
        let (len, sha) = sha256_of(r).await;
        assert_eq!((len, sha), (content.size, content.sha256()));
        let r = client
            .get(format!("{}/healthz", s.gw.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = client
            .get(format!("{}/nope", s.gw.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}

#[tokio::test]
async fn hyper_engine_strips_client_headers_and_signs() {
    use_engine("hyper");
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let _ = default_signing_key(dir.path());
    let (url, mut heads) = recording_upstream().await;
    let gw = start_gateway(dir.path(), &certs, &url, "").await;
    let r = gw
        .client(&certs, Proto::Http2)
        .get(format!("{}/api/v1/files?folder=a%2Fb", gw.base))
        .header("x-forwarded-host", "evil.example")
        .header("x-mft-principal", "key:forged")
        .header("forwarded", "for=10.6.6.6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let head = heads.recv().await.unwrap();
    assert!(
        head.starts_with("get /api/v1/files?folder=a%2fb http/1.1\r\n"),
        "{head}"
    );
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
    for present in [
        "x-mft-principal: key:",
        "x-mft-scopes: ",
        "x-request-id: ",
        "forwarded: for=127.0.0.1;proto=https",
        "signature-input: ",
        "signature: ",
    ] {
        assert!(head.contains(present), "{present} missing:\n{head}");
    }
}

#[tokio::test]
async fn refusals_with_a_5_mib_body_answer_over_http1_and_http2() {
    let s = setup("hyper", LIMITS).await;
    let big = s.dir.path().join("5mib.bin");
    std::fs::write(&big, vec![b'x'; 5 * 1024 * 1024]).unwrap();
    let (_, reader) = create_key(&s.gw.config, "reader", "files:read");
    let (_, limited) = create_key_with(
        &s.gw.config,
        "limited",
        ALL_SCOPES,
        &["--rate-limit", "1/m burst 1"],
    );
    let ca = s.certs.ca.to_str().unwrap();
    let url = format!("{}/api/v1/files", s.gw.base);
    let data = format!("@{}", big.display());
    let good = format!("X-API-Key: {}", s.gw.key);
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "401",
            "X-API-Key: mgw_wrong_wrong".to_string(),
            "X-Filename: a.bin",
            "",
        ),
        (
            "403",
            format!("X-API-Key: {reader}"),
            "X-Filename: a.bin",
            "",
        ),
        // A dot-segment in the path: refused before the body limit applies.
        ("400", good.clone(), "X-Filename: a.bin", "X-Path: ..;"),
        ("413", good.clone(), "X-Filename: a.bin", ""),
        (
            "413",
            good.clone(),
            "X-Filename: a.bin",
            "Transfer-Encoding: chunked",
        ),
        (
            "429",
            format!("X-API-Key: {limited}"),
            "X-Filename: a.bin",
            "",
        ),
    ];
    for proto in ["--http1.1", "--http2"] {
        for (want, cred, name, extra) in &cases {
            let mut args = vec![proto, "--cacert", ca, "-H", cred, "-H", name];
            let target = if *extra == "X-Path: ..;" {
                format!("{url}/..;/deliveries")
            } else {
                if !extra.is_empty() {
                    args.extend(["-H", extra]);
                }
                url.clone()
            };
            args.extend(["--path-as-is", "--data-binary", &data, &target]);
            let (code, ok, err) = curl_status(&args);
            assert!(ok, "{proto} {want} {extra}: curl failed ({code}): {err}");
            if *want == "429" && code == "413" {
                // The first request of the limited key passes the limiter
                // and then meets the body limit; the next one is limited.
                continue;
            }
            assert_eq!(&code, want, "{proto} {extra}: {err}");
        }
        // The limited key's second request (after its one allowed).
        let (code, ok, err) = curl_status(&[
            proto,
            "--cacert",
            ca,
            "-H",
            &format!("X-API-Key: {limited}"),
            "-H",
            "X-Filename: a.bin",
            "--data-binary",
            &data,
            &url,
        ]);
        assert!(ok && code == "429", "{proto}: {code} {err}");
    }
}

/// Writes `request` on a fresh HTTP/1.1 connection; returns what came back
/// before the server closed (or 3 s passed) and whether it closed.
async fn raw(s: &Setup, request: &[u8]) -> (String, bool) {
    let mut tls = tls_connect(&s.certs, s.gw.addr).await.unwrap();
    tls.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(3), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[tokio::test]
async fn length_and_chunked_together_get_400_and_the_connection_closes() {
    let s = setup("hyper", "").await;
    let key = s.gw.key.clone();
    for order in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ] {
        let req = format!(
            "POST /api/v1/files HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {key}\r\n\
             X-Filename: s.bin\r\n{order}\r\n5\r\nhello\r\n0\r\n\r\n\
             GET /api/v1/files HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {key}\r\n\r\n"
        );
        let (answer, closed) = raw(&s, req.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
        assert!(closed, "connection stayed open");
    }
}

#[tokio::test]
async fn http11_without_host_gets_400() {
    let s = setup("hyper", "").await;
    let req = format!(
        "GET /api/v1/files HTTP/1.1\r\nConnection: close\r\nX-API-Key: {}\r\n\r\n",
        s.gw.key
    );
    let (answer, _) = raw(&s, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let req = "GET /healthz HTTP/1.0\r\n\r\n";
    let (answer, _) = raw(&s, req.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 200 ") || answer.starts_with("HTTP/1.0 200 "),
        "{answer}"
    );
}

#[tokio::test]
async fn two_credentials_get_400() {
    for engine in ["hyper", "pingora"] {
        let s = setup(engine, "").await;
        let key = s.gw.key.clone();
        for creds in [
            format!("X-API-Key: {key}\r\nX-API-Key: {key}\r\n"),
            format!("X-API-Key: {key}\r\nAuthorization: Bearer {key}\r\n"),
            format!("Authorization: Bearer {key}\r\nAuthorization: Bearer {key}\r\n"),
        ] {
            let req = format!(
                "GET /api/v1/files HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{creds}\r\n"
            );
            let (answer, _) = raw(&s, req.as_bytes()).await;
            assert!(answer.starts_with("HTTP/1.1 400 "), "{engine}: {answer}");
        }
    }
}

#[tokio::test]
async fn path_parameters_and_dot_segments_get_400_before_the_scope_check() {
    for engine in ["hyper", "pingora"] {
        use_engine(engine);
        let dir = tempfile::tempdir().unwrap();
        let certs = make_certs(dir.path());
        let (url, mut heads) = recording_upstream().await;
        let gw = start_gateway(dir.path(), &certs, &url, "").await;
        let (_, files_only) = create_key(&gw.config, "files-only", "files:read");
        let s = Setup {
            dir,
            certs,
            _backend: None,
            gw,
        };
        for path in [
            "/api/v1/files/..;/deliveries",
            "/api/v1/files;x=1/../deliveries",
            "/api/v1/files/.%2e/deliveries",
            "/api/v1/files/%2e./deliveries",
            "/api/v1/files/%2E%2E/deliveries",
            "/api/v1/files/.%2E/deliveries",
            "/api/v1/files/../deliveries",
        ] {
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {files_only}\r\nConnection: close\r\n\r\n"
            );
            let (answer, _) = raw(&s, req.as_bytes()).await;
            assert!(
                answer.starts_with("HTTP/1.1 400 "),
                "{engine} {path}: {answer}"
            );
            assert!(answer.contains("application/problem+json"), "{answer}");
        }
        assert!(
            heads.try_recv().is_err(),
            "{engine}: a refused path reached the backend"
        );
        // What the scope check saw is what the backend gets, byte for byte.
        let path = "/api/v1/files?folder=a%2Fb&x=%2e%2e;..";
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {files_only}\r\nConnection: close\r\n\r\n"
        );
        let (answer, _) = raw(&s, req.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{engine}: {answer}");
        let head = heads.recv().await.unwrap();
        assert!(
            head.starts_with(&format!("get {} http/1.1\r\n", path.to_lowercase())),
            "{engine}: {head}"
        );
    }
}

#[tokio::test]
async fn tls_min_version_13_refuses_a_tls12_client_hello() {
    add_server_line("tls_min_version = \"1.3\"");
    for engine in ["pingora", "hyper"] {
        use_engine(engine);
        let dir = tempfile::tempdir().unwrap();
        let certs = make_certs(dir.path());
        let backend = start_backend(dir.path()).await;
        let gw = start_gateway(dir.path(), &certs, &backend.url, "").await;
        let connect = format!("127.0.0.1:{}", gw.addr.port());
        let s_client = |version: &str| {
            Command::new("openssl")
                .args([
                    "s_client",
                    version,
                    "-connect",
                    &connect,
                    "-servername",
                    "localhost",
                ])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("openssl installed")
        };
        let old = s_client("-tls1_2");
        assert!(
            !old.status.success(),
            "{engine}: TLS 1.2 handshake succeeded"
        );
        let new = s_client("-tls1_3");
        let text = String::from_utf8_lossy(&new.stdout);
        assert!(text.contains("TLSv1.3"), "{engine}: {text}");
        let r = client(&certs, Proto::Http1)
            .get(format!("{}/healthz", gw.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}
