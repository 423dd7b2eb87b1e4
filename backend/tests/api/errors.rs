//! Health, unknown routes and wrong methods.

use crate::support::*;

#[tokio::test]
async fn healthz_unknown_route_and_wrong_method() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let r = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "ok"}));

    let r = s
        .client
        .get(s.url("/api/v1/nothing-here"))
        .header("X-Request-Id", "abc-123")
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 404).await;
    assert_eq!(p["request_id"], "abc-123");

    let r = s.client.put(s.url("/api/v1/files")).send().await.unwrap();
    let allow = r.headers()["allow"].to_str().unwrap().to_string();
    assert!(allow.contains("POST"), "{allow}");
    assert_problem(r, 405).await;

    let r = s
        .client
        .get(s.url("/api/v1/files/not-an-id"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    s.stop().await;
}
