//! Upstream failures become 502/504 problem+json, never a hang.

use mft_e2e::*;
use std::time::{Duration, Instant};

async fn assert_problem(r: reqwest::Response, status: u16) {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(body["request_id"], id.as_str());
    // No upstream address or internal error text leaks to the client.
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
}

#[tokio::test]
async fn backend_down_gives_502_problem_json() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    // Held until the test ends: nothing can listen there meanwhile.
    let held = refused();
    let nowhere = held.addr;
    let gw = start_gateway(dir.path(), &certs, &format!("http://{nowhere}"), "").await;
    for proto in [Proto::Http1, Proto::Http2] {
        let r = gw
            .client(&certs, proto)
            .get(format!("{}/api/v1/files", gw.base))
            .send()
            .await
            .unwrap();
        assert_problem(r, 502).await;
    }
}

#[tokio::test]
async fn silent_backend_gives_504_problem_json_after_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let gw = start_gateway(
        dir.path(),
        &certs,
        &format!("http://{addr}"),
        "read_timeout = \"1s\"",
    )
    .await;
    let started = Instant::now();
    let r = gw
        .client(&certs, Proto::Http1)
        .get(format!("{}/api/v1/files", gw.base))
        .send()
        .await
        .unwrap();
    assert_problem(r, 504).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "gateway hung instead of timing out"
    );
    holder.abort();
}
