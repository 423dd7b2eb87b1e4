//! SIGTERM: stop accepting, let in-flight transfers finish, then exit.

use super::proxy::{stack, upload};
use futures_util::StreamExt;
use mft_e2e::*;
use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn sigterm_drains_an_in_flight_download_then_exits() {
    let mut s = stack().await;
    let client = s.gateway.client(&s.certs, Proto::Http1);
    let content = Arc::new(Content::new(64 << 20, 21));
    let meta = upload(&client, &s.gateway.base, "drain.bin", &content).await;
    let r = client
        .get(format!(
            "{}/api/v1/files/{}/content",
            s.gateway.base,
            meta["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut hasher = sha2::Sha256::new();
    let first = body.next().await.unwrap().unwrap();
    hasher.update(&first);

    s.gateway.proc.signal("TERM");
    // New connections are refused while the old one drains (as soon as
    // the listener has closed).
    let fresh = mft_e2e::client(&s.certs, Proto::Http1);
    let healthz = format!("{}/healthz", s.gateway.base);
    mft_e2e::eventually(Duration::from_secs(10), "listener closed", || async {
        fresh.get(&healthz).send().await.is_err()
    })
    .await;

    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("download cut during graceful shutdown");
        hasher.update(&chunk);
    }
    assert_eq!(hex::encode(hasher.finalize()), content.sha256());
    let status = s
        .gateway
        .proc
        .wait_exit(Duration::from_secs(10))
        .expect("gateway did not exit after draining");
    assert!(status.success(), "exit status {status}");
    // The drained request's audit record was flushed before the process exited.
    let audit = std::fs::read_to_string(s.dir.path().join("gateway-data/audit.jsonl")).unwrap();
    let content_path = format!("/api/v1/files/{}/content", meta["id"].as_str().unwrap());
    assert!(
        audit.lines().any(|l| l.contains("\"event\":\"request\"")
            && l.contains(&content_path)
            && l.contains("\"status\":200")),
        "no audit record for the drained download:\n{audit}"
    );
}
