//! Deliveries: validation, origin, recipient filter, idempotency keys.

use crate::support::*;
use serde_json::json;

async fn post(s: &Server, body: &serde_json::Value, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut req = s.client.post(s.url("/api/v1/deliveries")).json(body);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn create_get_and_filter_by_recipient() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let file = s.upload("invoice.pdf", b"%PDF".to_vec()).await;
    let file_id = file["id"].as_str().unwrap();
    let body = json!({
        "sender": "alice@ourcorp.example",
        "recipients": ["Bob@Partner.example", "carol@partner.example"],
        "subject": "Q3 invoice",
        "message": "See attached.",
        "files": [file_id],
    });
    let r = post(
        &s,
        &body,
        &[
            ("X-MFT-Origin", "imap:sales"),
            ("X-MFT-Principal", "key:k1"),
        ],
    )
    .await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let d: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/deliveries/{}", d["id"].as_str().unwrap())
    );
    assert_eq!(d["origin"], "imap:sales");
    assert_eq!(d["created_by"], "key:k1");
    assert_eq!(d["recipients"], body["recipients"]);
    assert_eq!(d["files"], json!([file_id]));

    let other = post(
        &s,
        &json!({"sender": "x@y", "recipients": ["dave@elsewhere.example"]}),
        &[],
    )
    .await;
    assert_eq!(other.status(), 201);
    let other: serde_json::Value = other.json().await.unwrap();
    assert_eq!(other["origin"], "api");
    assert_eq!(other["subject"], "");

    let got: serde_json::Value = s
        .client
        .get(s.url(&location))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, d);

    let list: serde_json::Value = s
        .client
        .get(s.url("/api/v1/deliveries?recipient=BOB@partner.EXAMPLE"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let found = list["deliveries"].as_array().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], d["id"]);
    let all: serde_json::Value = s
        .client
        .get(s.url("/api/v1/deliveries"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["deliveries"].as_array().unwrap().len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn idempotency_key_replays_the_original_delivery() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let body = json!({"sender": "a@x", "recipients": ["b@y"], "subject": "once"});
    let key = [("Idempotency-Key", "0d6c3a6e-retry-1")];

    let first = post(&s, &body, &key).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: serde_json::Value = first.json().await.unwrap();

    let again = post(&s, &body, &key).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again, first);

    let changed = json!({"sender": "a@x", "recipients": ["b@y"], "subject": "twice?"});
    let r = post(&s, &changed, &key).await;
    let p = assert_problem(r, 422).await;
    assert_eq!(p["field"], "Idempotency-Key");

    // Another caller's identical key is its own.
    let r = post(&s, &body, &[key[0], ("X-MFT-Principal", "key:other")]).await;
    assert_eq!(r.status(), 201);

    let all: serde_json::Value = s
        .client
        .get(s.url("/api/v1/deliveries"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["deliveries"].as_array().unwrap().len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn invalid_deliveries_name_the_bad_field() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let cases = [
        (
            json!({"sender": "not-an-address", "recipients": ["b@y"]}),
            400,
            "sender",
        ),
        (
            json!({"sender": "a@x", "recipients": []}),
            400,
            "recipients",
        ),
        (
            json!({"sender": "a@x", "recipients": ["b@y", "c d@y"]}),
            400,
            "recipients[1]",
        ),
        (
            json!({"sender": "a@x", "recipients": ["b@y"], "files": ["01a20000-0000-7000-8000-000000000000"]}),
            422,
            "files[0]",
        ),
    ];
    for (body, status, field) in cases {
        let r = post(&s, &body, &[("X-Request-Id", "rid-9")]).await;
        let p = assert_problem(r, status).await;
        assert_eq!(p["field"], field, "{body}");
        assert_eq!(p["request_id"], "rid-9");
    }
    let r = s
        .client
        .post(s.url("/api/v1/deliveries"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400).await;
    let r = s
        .client
        .get(s.url("/api/v1/deliveries/01a20000-0000-7000-8000-000000000000"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    s.stop().await;
}
