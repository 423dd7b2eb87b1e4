//! The gateway's trust-network contract: the delivery change feed, relay
//! status per recipient and download receipts.

use crate::support::*;
use serde_json::{json, Value};
use std::collections::HashSet;

const GATEWAY: (&str, &str) = ("X-MFT-Principal", "gateway");

async fn create(s: &Server, recipients: &[&str], files: &[&str]) -> Value {
    let r = s
        .client
        .post(s.url("/api/v1/deliveries"))
        .json(&json!({"sender": "alice@ourcorp.example", "recipients": recipients, "files": files}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn get_json(s: &Server, path: &str) -> Value {
    let r = s.client.get(s.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

async fn put_relay(
    s: &Server,
    id: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = s
        .client
        .put(s.url(&format!("/api/v1/deliveries/{id}/relay")))
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

async fn post_receipt(
    s: &Server,
    id: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = s
        .client
        .post(s.url(&format!("/api/v1/deliveries/{id}/receipts")))
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn ids_of(list: &Value) -> Vec<String> {
    list["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

fn seqs_of(list: &Value) -> Vec<i64> {
    list["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn feed_pages_through_deliveries_in_seq_order() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let mut created = Vec::new();
    for i in 0..5 {
        let to = if i % 2 == 0 {
            "bob@beta.example"
        } else {
            "carol@gamma.example"
        };
        created.push(create(&s, &[to], &[]).await);
    }
    let seqs: Vec<i64> = created.iter().map(|d| d["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(created
        .iter()
        .all(|d| d["relay"] == json!([]) && d["receipts"] == json!([])));

    // Without paging parameters: everything, in seq order.
    let all = get_json(&s, "/api/v1/deliveries").await;
    assert_eq!(seqs_of(&all), seqs);
    assert_eq!(all["next_after_seq"], seqs[4]);

    // Pages of two, continued from next_after_seq.
    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let page = get_json(&s, &format!("/api/v1/deliveries?after_seq={after}&limit=2")).await;
        let got = seqs_of(&page);
        assert!(got.len() <= 2);
        if got.is_empty() {
            assert_eq!(
                page["next_after_seq"], after,
                "an empty page keeps the position"
            );
            break;
        }
        assert!(got.iter().all(|&q| q > after));
        assert_eq!(page["next_after_seq"], *got.last().unwrap());
        after = page["next_after_seq"].as_i64().unwrap();
        pages.push(got);
    }
    assert_eq!(pages.len(), 3);
    assert_eq!(pages.concat(), seqs);

    // The default page size covers five; after_seq alone pages too.
    let rest = get_json(&s, &format!("/api/v1/deliveries?after_seq={}", seqs[1])).await;
    assert_eq!(seqs_of(&rest), seqs[2..].to_vec());

    // Combined with the recipient filter.
    let bob = get_json(
        &s,
        &format!(
            "/api/v1/deliveries?recipient=BOB@beta.example&after_seq={}&limit=1",
            seqs[0]
        ),
    )
    .await;
    assert_eq!(seqs_of(&bob), vec![seqs[2]]);
    assert_eq!(bob["next_after_seq"], seqs[2]);
    let none = get_json(
        &s,
        &format!(
            "/api/v1/deliveries?recipient=nobody@x.example&after_seq={}",
            seqs[3]
        ),
    )
    .await;
    assert_eq!(none["deliveries"], json!([]));
    assert_eq!(none["next_after_seq"], seqs[3]);
    s.stop().await;
}

/// A feed reader as the gateway runs it: small pages, continuing from
/// `next_after_seq`, checking that seq only grows.
#[derive(Default)]
struct Poller {
    after: i64,
    seen: Vec<String>,
}

impl Poller {
    /// Reads one page; returns how many deliveries it had.
    async fn poll(&mut self, s: &Server) -> usize {
        let path = format!("/api/v1/deliveries?after_seq={}&limit=3", self.after);
        let page = get_json(s, &path).await;
        let got = ids_of(&page)
            .into_iter()
            .zip(seqs_of(&page))
            .collect::<Vec<_>>();
        for (id, seq) in &got {
            assert!(*seq > self.after, "seq went from {} to {seq}", self.after);
            self.after = *seq;
            self.seen.push(id.clone());
        }
        assert_eq!(page["next_after_seq"], self.after);
        got.len()
    }
}

#[tokio::test]
async fn a_poller_misses_nothing_while_deliveries_are_created_concurrently() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let client = s.client.clone();
            let url = s.url("/api/v1/deliveries");
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..10 {
                    let r = client
                        .post(&url)
                        .json(&json!({"sender": "a@x.example", "recipients": [format!("r{w}-{i}@y.example")]}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                    let d: Value = r.json().await.unwrap();
                    ids.push(d["id"].as_str().unwrap().to_string());
                }
                ids
            })
        })
        .collect();

    let mut poller = Poller::default();
    while !writers.iter().all(|w| w.is_finished()) {
        poller.poll(&s).await;
    }
    let mut created = HashSet::new();
    for w in writers {
        created.extend(w.await.unwrap());
    }
    // Everything is committed now: drain what is left.
    while poller.poll(&s).await > 0 {}
    assert_eq!(created.len(), 80);
    assert_eq!(poller.seen.len(), 80, "each delivery exactly once");
    assert_eq!(poller.seen.into_iter().collect::<HashSet<_>>(), created);
    s.stop().await;
}

#[tokio::test]
async fn bad_feed_parameters_are_400_naming_the_parameter() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let cases = [
        ("after_seq=-1", "after_seq"),
        ("after_seq=abc", "after_seq"),
        ("after_seq=", "after_seq"),
        ("after_seq=%2B1", "after_seq"),
        ("after_seq=99999999999999999999", "after_seq"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=1.5", "limit"),
        ("after_seq=0&limit=-3", "limit"),
    ];
    for (query, field) in cases {
        let r = s
            .client
            .get(s.url(&format!("/api/v1/deliveries?{query}")))
            .send()
            .await
            .unwrap();
        let p = assert_problem(r, 400).await;
        assert_eq!(p["field"], field, "{query}");
        assert_eq!(p["type"], "urn:mft:problem:invalid-parameter", "{query}");
    }
    let edge = get_json(&s, "/api/v1/deliveries?after_seq=0&limit=1000").await;
    assert_eq!(edge["next_after_seq"], 0);
    s.stop().await;
}

#[tokio::test]
async fn relay_status_is_upserted_per_recipient_and_shown_everywhere() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let d = create(
        &s,
        &[
            "Bob@Beta.example",
            "carol@beta.example",
            "dave@ourcorp.example",
        ],
        &[],
    )
    .await;
    let id = d["id"].as_str().unwrap();

    // Spelled differently, answered as the delivery spells it, in its order.
    let r = put_relay(
        &s,
        id,
        &json!({"partner": "beta", "recipients": ["carol@beta.example", "bob@beta.EXAMPLE"], "status": "queued"}),
        &[GATEWAY],
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], d["id"]);
    assert_eq!(v["seq"], d["seq"]);
    let relay = v["relay"].as_array().unwrap();
    assert_eq!(relay.len(), 2);
    assert_eq!(relay[0]["recipient"], "Bob@Beta.example");
    assert_eq!(relay[1]["recipient"], "carol@beta.example");
    for r in relay {
        assert_eq!(r["partner"], "beta");
        assert_eq!(r["status"], "queued");
        assert_eq!(r["attempts"], 0);
        assert!(r.get("detail").is_none(), "{r}");
        assert!(r.get("remote_delivery_id").is_none(), "{r}");
        assert_eq!(r["updated_at"].as_str().unwrap().len(), 24);
    }

    let r = put_relay(
        &s,
        id,
        &json!({"partner": "beta", "recipients": ["Bob@Beta.example"], "status": "retrying",
                "detail": "beta answered 503", "attempts": 1}),
        &[GATEWAY],
    )
    .await;
    assert_eq!(r.status(), 200);
    let got = get_json(&s, &format!("/api/v1/deliveries/{id}")).await;
    assert_eq!(got["relay"][0]["status"], "retrying");
    assert_eq!(got["relay"][0]["detail"], "beta answered 503");
    assert_eq!(got["relay"][0]["attempts"], 1);
    assert_eq!(got["relay"][1]["status"], "queued", "carol is untouched");

    let r = put_relay(
        &s,
        id,
        &json!({"partner": "beta", "recipients": ["Bob@Beta.example", "carol@beta.example"],
                "status": "delivered", "remote_delivery_id": "01a2aaaa-0000-7000-8000-000000000001",
                "attempts": 2}),
        &[GATEWAY],
    )
    .await;
    assert_eq!(r.status(), 200);
    // Omitted attempts and remote id keep their value; detail is replaced.
    let r = put_relay(
        &s,
        id,
        &json!({"partner": "beta", "recipients": ["bob@beta.example"], "status": "delivered"}),
        &[GATEWAY],
    )
    .await;
    let v: Value = r.json().await.unwrap();
    let bob = &v["relay"][0];
    assert_eq!(bob["status"], "delivered");
    assert!(
        bob.get("detail").is_none(),
        "a new status clears the old detail: {bob}"
    );
    assert_eq!(
        bob["remote_delivery_id"],
        "01a2aaaa-0000-7000-8000-000000000001"
    );
    assert_eq!(bob["attempts"], 2);

    let listed = get_json(&s, "/api/v1/deliveries?recipient=dave@ourcorp.example").await;
    assert_eq!(listed["deliveries"][0]["relay"], v["relay"]);
    let fed = get_json(&s, "/api/v1/deliveries?after_seq=0").await;
    assert_eq!(fed["deliveries"][0], v);
    s.stop().await;
}

#[tokio::test]
async fn only_the_gateway_may_write_relay_status_and_receipts() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let file = s.upload("a.txt", b"a".to_vec()).await;
    let file_id = file["id"].as_str().unwrap();
    let d = create(&s, &["bob@beta.example"], &[file_id]).await;
    let id = d["id"].as_str().unwrap();
    let relay =
        json!({"partner": "beta", "recipients": ["bob@beta.example"], "status": "delivered"});
    let receipt =
        json!({"partner": "beta", "file_id": file_id, "downloaded_at": "2026-03-01T08:00:00Z"});
    let unknown = "01a20000-0000-7000-8000-000000000000";

    for principal in [
        None,
        Some("key:k1"),
        Some("partner:beta"),
        Some("jwt:gateway"),
        Some("Gateway"),
    ] {
        let headers: Vec<(&str, &str)> = principal
            .map(|p| ("X-MFT-Principal", p))
            .into_iter()
            .collect();
        let p = assert_problem(put_relay(&s, id, &relay, &headers).await, 403).await;
        assert_eq!(p["type"], "urn:mft:problem:gateway-only", "{principal:?}");
        let p = assert_problem(post_receipt(&s, id, &receipt, &headers).await, 403).await;
        assert_eq!(p["type"], "urn:mft:problem:gateway-only", "{principal:?}");
        // Refused before the lookup, so an unknown id tells a client nothing.
        assert_problem(put_relay(&s, unknown, &relay, &headers).await, 403).await;
    }
    let got = get_json(&s, &format!("/api/v1/deliveries/{id}")).await;
    assert_eq!(got["relay"], json!([]));
    assert_eq!(got["receipts"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn invalid_relay_updates_name_the_field() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let d = create(&s, &["bob@beta.example", "carol@beta.example"], &[]).await;
    let id = d["id"].as_str().unwrap();
    let ok = json!({"partner": "beta", "recipients": ["bob@beta.example"], "status": "queued"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases = [
        (
            with(
                "recipients",
                json!(["bob@beta.example", "eve@beta.example"]),
            ),
            "recipients[1]",
        ),
        (with("recipients", json!([])), "recipients"),
        (with("status", json!("sent")), "status"),
        (with("status", json!("Delivered")), "status"),
        (with("partner", json!("beta corp")), "partner"),
        (with("partner", json!("")), "partner"),
        (with("detail", json!("x".repeat(501))), "detail"),
        (with("remote_delivery_id", json!("")), "remote_delivery_id"),
    ];
    for (body, field) in cases {
        let p = assert_problem(put_relay(&s, id, &body, &[GATEWAY]).await, 400).await;
        assert_eq!(p["field"], field, "{body}");
        assert_eq!(p["type"], "urn:mft:problem:invalid-relay", "{body}");
    }
    let p = assert_problem(
        put_relay(&s, id, &with("attempts", json!(-1)), &[GATEWAY]).await,
        400,
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("relay status JSON"),
        "{p}"
    );
    let r = s
        .client
        .put(s.url(&format!("/api/v1/deliveries/{id}/relay")))
        .header("X-MFT-Principal", "gateway")
        .body(ok.to_string())
        .send()
        .await
        .unwrap();
    assert_problem(r, 415).await;
    for unknown in ["01a20000-0000-7000-8000-000000000000", "not-an-id"] {
        let p = assert_problem(put_relay(&s, unknown, &ok, &[GATEWAY]).await, 404).await;
        assert_eq!(p["type"], "urn:mft:problem:not-found");
    }
    // Nothing above was stored.
    let got = get_json(&s, &format!("/api/v1/deliveries/{id}")).await;
    assert_eq!(got["relay"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn a_receipt_is_recorded_once_per_file_and_partner() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let f1 = s.upload("one.txt", b"1".to_vec()).await;
    let f2 = s.upload("two.txt", b"2".to_vec()).await;
    let (f1, f2) = (f1["id"].as_str().unwrap(), f2["id"].as_str().unwrap());
    let d = create(&s, &["bob@beta.example", "x@gamma.example"], &[f1, f2]).await;
    let id = d["id"].as_str().unwrap();

    let first =
        json!({"partner": "beta", "file_id": f2, "downloaded_at": "2026-03-01T10:15:30.5+02:00"});
    let r = post_receipt(&s, id, &first, &[GATEWAY]).await;
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let v: Value = r.json().await.unwrap();
    let receipts = v["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0]["file_id"], f2);
    assert_eq!(receipts[0]["partner"], "beta");
    assert_eq!(receipts[0]["downloaded_at"], "2026-03-01T08:15:30.500Z");
    assert_eq!(receipts[0]["recorded_at"].as_str().unwrap().len(), 24);
    let recorded = receipts[0].clone();

    // The same file and partner again, even with another time: a replay.
    let again = json!({"partner": "beta", "file_id": f2, "downloaded_at": "2026-03-02T00:00:00Z"});
    let r = post_receipt(&s, id, &again, &[GATEWAY]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["receipts"], json!([recorded]));

    // Another partner, and another file: new receipts, in recording order.
    let gamma = json!({"partner": "gamma", "file_id": f2, "downloaded_at": "2026-03-01T09:00:00Z"});
    assert_eq!(post_receipt(&s, id, &gamma, &[GATEWAY]).await.status(), 201);
    let other_file =
        json!({"partner": "beta", "file_id": f1, "downloaded_at": "2026-03-01T07:00:00Z"});
    assert_eq!(
        post_receipt(&s, id, &other_file, &[GATEWAY]).await.status(),
        201
    );
    let got = get_json(&s, &format!("/api/v1/deliveries/{id}")).await;
    let order: Vec<(&str, &str)> = got["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["file_id"].as_str().unwrap(),
                r["partner"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(order, [(f2, "beta"), (f2, "gamma"), (f1, "beta")]);
    assert_eq!(got["receipts"][0], recorded);
    let listed = get_json(&s, "/api/v1/deliveries").await;
    assert_eq!(listed["deliveries"][0]["receipts"], got["receipts"]);
    s.stop().await;
}

#[tokio::test]
async fn invalid_receipts_name_the_field() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let mine = s.upload("mine.txt", b"m".to_vec()).await;
    let foreign = s.upload("foreign.txt", b"f".to_vec()).await;
    let mine = mine["id"].as_str().unwrap();
    let d = create(&s, &["bob@beta.example"], &[mine]).await;
    let id = d["id"].as_str().unwrap();
    let ok = json!({"partner": "beta", "file_id": mine, "downloaded_at": "2026-03-01T08:00:00Z"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("file_id", foreign["id"].clone()), "file_id"),
        (
            with("file_id", json!("01a20000-0000-7000-8000-000000000000")),
            "file_id",
        ),
        (with("downloaded_at", json!("2026-03-01")), "downloaded_at"),
        (with("downloaded_at", json!("yesterday")), "downloaded_at"),
        (with("partner", json!("Beta/EU")), "partner"),
    ];
    for (body, field) in cases {
        let p = assert_problem(post_receipt(&s, id, &body, &[GATEWAY]).await, 400).await;
        assert_eq!(p["field"], field, "{body}");
        assert_eq!(p["type"], "urn:mft:problem:invalid-receipt", "{body}");
    }
    let p = assert_problem(
        post_receipt(&s, "01a20000-0000-7000-8000-000000000000", &ok, &[GATEWAY]).await,
        404,
    )
    .await;
    assert_eq!(p["type"], "urn:mft:problem:not-found");
    let got = get_json(&s, &format!("/api/v1/deliveries/{id}")).await;
    assert_eq!(got["receipts"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn an_idempotent_replay_shows_the_current_relay_and_receipts() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let file = s.upload("r.txt", b"r".to_vec()).await;
    let file_id = file["id"].as_str().unwrap();
    let body = json!({"sender": "a@ourcorp.example", "recipients": ["bob@beta.example"], "files": [file_id]});
    let send = || {
        s.client
            .post(s.url("/api/v1/deliveries"))
            .header("Idempotency-Key", "relay-replay")
            .json(&body)
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let id = first["id"].as_str().unwrap();
    let relay =
        json!({"partner": "beta", "recipients": ["bob@beta.example"], "status": "delivered"});
    assert_eq!(put_relay(&s, id, &relay, &[GATEWAY]).await.status(), 200);
    let receipt =
        json!({"partner": "beta", "file_id": file_id, "downloaded_at": "2026-03-01T08:00:00Z"});
    assert_eq!(
        post_receipt(&s, id, &receipt, &[GATEWAY]).await.status(),
        201
    );

    let again = send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["seq"], first["seq"]);
    assert_eq!(again["relay"][0]["status"], "delivered");
    assert_eq!(again["receipts"][0]["file_id"], file_id);
    s.stop().await;
}

#[tokio::test]
async fn file_metadata_names_the_uploader() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let r = s
        .client
        .post(s.url("/api/v1/files"))
        .header("X-Filename", "from-beta.pdf")
        .header("X-MFT-Principal", "partner:beta")
        .body(b"%PDF".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let rec: Value = r.json().await.unwrap();
    let got = get_json(
        &s,
        &format!("/api/v1/files/{}", rec["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(got["created_by"], "partner:beta");
    let anonymous = s.upload("anon.txt", b"x".to_vec()).await;
    let got = get_json(
        &s,
        &format!("/api/v1/files/{}", anonymous["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(got["created_by"], Value::Null);
    s.stop().await;
}
