//! No raw request head reaches the log, whatever the log level: pingora
//! logs an unparsable request head in full at debug level, with the
//! client's `Authorization` / `X-API-Key` in it.

use mft_e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_malformed_request_carrying_a_key_does_not_put_the_key_in_debug_logs() {
    for engine in ["pingora", "hyper"] {
        use_engine(engine);
        let dir = tempfile::tempdir().unwrap();
        let certs = make_certs(dir.path());
        let backend = start_backend(dir.path()).await;
        let (addr, admin) = (ephemeral(), ephemeral());
        let config = dir.path().join("gateway.toml");
        let default_key = dir.path().join("backend-signing.key");
        let signing = format!("signing_key = \"file:{}\"", default_key.display());
        std::fs::write(
            &config,
            gateway_config(&certs, addr, admin, &backend.url, &signing, ""),
        )
        .unwrap();
        let (_, key) = create_key(&config, "e2e", ALL_SCOPES);
        let secret = key_secret(&key).to_string();
        let gw = launch_gateway_env(
            dir.path(),
            &certs,
            config,
            addr,
            admin,
            key.clone(),
            &[("RUST_LOG", "trace")],
        )
        .await;
        // Header lines a parser must refuse: no colon, a space in a name,
        // a bare CR; each request carries the key both ways.
        for broken in ["this line has no colon", "Bad Name: x", "X-A: a\rb"] {
            let req = format!(
                "GET /api/v1/files HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n\
                 X-API-Key: {key}\r\n{broken}\r\n\r\n"
            );
            let mut tls = tls_connect(&certs, gw.addr).await.unwrap();
            tls.write_all(req.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                tls.read_to_end(&mut answer),
            )
            .await;
            let answer = String::from_utf8_lossy(&answer);
            // pingora answers 400 itself after logging the head; hyper's
            // parser answers 400 or closes.
            assert!(
                answer.starts_with("HTTP/1.1 400") || (engine == "hyper" && answer.is_empty()),
                "{engine}: {answer}"
            );
        }
        // The same key, well-formed, works: it was the request that was bad.
        let r = gw
            .client(&certs, Proto::Http1)
            .get(format!("{}/api/v1/files", gw.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{engine}");
        let log = gw.proc.stderr();
        assert!(
            log.contains("\"level\":\"DEBUG\""),
            "{engine}: debug logging is on: {log}"
        );
        assert!(
            !log.contains(&secret),
            "{engine}: the key's secret is in the log"
        );
        assert!(
            !log.contains("this line has no colon"),
            "{engine}: a raw request head is in the log"
        );
    }
}
