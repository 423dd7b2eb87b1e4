//! Deliveries across the trust network: a user of one organisation delivers
//! to a user of the other through both gateways, the recipient's download
//! comes back as a receipt, and every rule of the federation API holds
//! against hand-made partner requests.

pub(crate) use mft_e2e::trust::connect;
use mft_e2e::trust::{two_orgs, two_orgs_with, Org};
use mft_e2e::*;
use mft_filters::auth::partner_key;
use mft_filters::signing::RequestView;
use mft_gateway::trust::wire;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn api(org: &Org) -> reqwest::Client {
    org.gateway.client(&org.certs, Proto::Http1)
}

async fn upload(org: &Org, name: &str, body: reqwest::Body) -> Value {
    let r = api(org)
        .post(format!("{}/api/v1/files", org.gateway.base))
        .header("x-filename", name)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn deliver(org: &Org, sender: &str, recipients: &[&str], files: &[&str]) -> Value {
    let r = api(org)
        .post(format!("{}/api/v1/deliveries", org.gateway.base))
        .json(&json!({
            "sender": sender,
            "recipients": recipients,
            "subject": "quarterly figures",
            "message": "see attached",
            "files": files,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn delivery(org: &Org, id: &str) -> Value {
    let r = api(org)
        .get(format!("{}/api/v1/deliveries/{id}", org.gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Polls delivery `id` at `org` until `done` holds, for at most `limit`.
async fn wait_for(org: &Org, id: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let d = delivery(org, id).await;
        if done(&d) {
            return d;
        }
        assert!(
            start.elapsed() < limit,
            "gave up waiting; delivery is {d:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn relay_status(d: &Value, recipient: &str) -> Option<String> {
    d["relay"]
        .as_array()?
        .iter()
        .find(|r| r["recipient"] == recipient)
        .and_then(|r| r["status"].as_str().map(str::to_string))
}

async fn deliveries_for(org: &Org, recipient: &str) -> Vec<Value> {
    let r = api(org)
        .get(format!("{}/api/v1/deliveries", org.gateway.base))
        .query(&[("recipient", recipient)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["deliveries"].as_array().unwrap().clone()
}

/// The audit trail of `org` once it holds `n` lines matching `wanted`
/// (records reach the file shortly after the event).
async fn audit_with(org: &Org, n: usize, wanted: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text =
            std::fs::read_to_string(org.path.join("gateway-data/audit.jsonl")).unwrap_or_default();
        if text.lines().filter(|l| wanted(l)).count() >= n {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "audit trail lacks {n} wanted records: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_of_a_delivers_200_mib_to_b_and_sees_the_receipt() {
    let (a, b) = two_orgs().await;
    connect(&a, &b);

    let content = Arc::new(Content::new(200 * 1024 * 1024, 8));
    let file = upload(&a, "figures.bin", content.body()).await;
    let file_id = file["id"].as_str().unwrap().to_string();
    let sent = deliver(
        &a,
        "anna@acme.example",
        &["bob@beta.example", "carl@acme.example"],
        &[&file_id],
    )
    .await;
    let id = sent["id"].as_str().unwrap().to_string();

    let d = wait_for(&a, &id, Duration::from_secs(180), |d| {
        relay_status(d, "bob@beta.example").as_deref() == Some("delivered")
    })
    .await;
    // Only the partner's recipient is relayed; the local one is not.
    assert_eq!(d["relay"].as_array().unwrap().len(), 1, "{d:#}");
    assert_eq!(d["relay"][0]["partner"], "beta");
    assert!(relay_status(&d, "carl@acme.example").is_none());
    let remote_id = d["relay"][0]["remote_delivery_id"]
        .as_str()
        .unwrap()
        .to_string();

    // At B: one delivery to bob, from A's user, origin partner:acme.
    let at_b = deliveries_for(&b, "bob@beta.example").await;
    assert_eq!(at_b.len(), 1, "{at_b:#?}");
    let got = &at_b[0];
    assert_eq!(got["id"], remote_id.as_str());
    assert_eq!(got["origin"], "partner:acme");
    assert_eq!(got["sender"], "anna@acme.example");
    assert_eq!(got["recipients"], json!(["bob@beta.example"]));
    assert_eq!(got["subject"], "quarterly figures");
    let b_file = got["files"][0].as_str().unwrap().to_string();
    let r = api(&b)
        .get(format!("{}/api/v1/files/{b_file}", b.gateway.base))
        .send()
        .await
        .unwrap();
    let meta: Value = r.json().await.unwrap();
    assert_eq!(meta["sha256"], content.sha256().as_str());
    assert_eq!(meta["name"], "figures.bin");

    // No receipt before anyone downloaded.
    assert_eq!(delivery(&a, &id).await["receipts"], json!([]));

    // Bob downloads at B; A's delivery shows the receipt.
    let r = api(&b)
        .get(format!("{}/api/v1/files/{b_file}/content", b.gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (size, sha) = sha256_of(r).await;
    assert_eq!(size, content.size);
    assert_eq!(sha, content.sha256());
    let d = wait_for(&a, &id, Duration::from_secs(30), |d| {
        d["receipts"].as_array().is_some_and(|r| !r.is_empty())
    })
    .await;
    let receipts = d["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0]["file_id"], file_id.as_str());
    assert_eq!(receipts[0]["partner"], "beta");

    // A second download sends no second receipt.
    let r = api(&b)
        .get(format!("{}/api/v1/files/{b_file}/content", b.gateway.base))
        .send()
        .await
        .unwrap();
    let _ = sha256_of(r).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        delivery(&a, &id).await["receipts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Both audit trails hold the relay and the receipt.
    for (org, event) in [
        (&a, "\"federation_relay\""),
        (&a, "\"federation_receipt\""),
        (&b, "\"federation_delivery\""),
        (&b, "\"federation_receipt_sent\""),
    ] {
        audit_with(org, 1, |l| l.contains(event) && l.contains("\"allow\"")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_waits_for_a_partner_that_is_down_and_delivers_once() {
    let (mut a, mut b) = two_orgs().await;
    connect(&a, &b);

    // B's gateway goes away before the delivery is made.
    b.gateway.proc.signal("KILL");
    b.gateway.proc.wait_exit(Duration::from_secs(10));

    let file = upload(&a, "late.txt", reqwest::Body::from("arrives late")).await;
    let file_id = file["id"].as_str().unwrap().to_string();
    let sent = deliver(&a, "anna@acme.example", &["bob@beta.example"], &[&file_id]).await;
    let id = sent["id"].as_str().unwrap().to_string();
    wait_for(&a, &id, Duration::from_secs(30), |d| {
        relay_status(d, "bob@beta.example").as_deref() == Some("retrying")
    })
    .await;

    // A restarts while the relay is pending: the queue is on disk.
    a.gateway.proc.signal("KILL");
    a.gateway.proc.wait_exit(Duration::from_secs(10));
    a.gateway = a.gateway.relaunch(&a.path, &a.certs).await;
    // The restarted A took the job from its queue and tried again.
    wait_metrics(
        a.gateway.admin,
        Duration::from_secs(30),
        "a relay attempt after the restart",
        |p| {
            let labels = [("partner", "beta"), ("outcome", "retry")];
            metric_with(p, "mft_federation_relay_attempts_total", &labels).unwrap_or(0.0) >= 1.0
        },
    )
    .await;
    assert_eq!(
        relay_status(&delivery(&a, &id).await, "bob@beta.example").as_deref(),
        Some("retrying")
    );

    // B comes back: delivered, exactly once.
    b.gateway = b.gateway.relaunch(&b.path, &b.certs).await;
    let d = wait_for(&a, &id, Duration::from_secs(60), |d| {
        relay_status(d, "bob@beta.example").as_deref() == Some("delivered")
    })
    .await;
    let attempts = d["relay"][0]["attempts"].as_u64().unwrap();
    assert!(attempts >= 2, "{d:#}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_b = deliveries_for(&b, "bob@beta.example").await;
    assert_eq!(at_b.len(), 1, "{at_b:#?}");
    let r = api(&b)
        .get(format!(
            "{}/api/v1/files/{}/content",
            b.gateway.base,
            at_b[0]["files"][0].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "arrives late");
}

/// A partner request signed with `key`, as a partner gateway would send it.
pub(crate) struct PartnerCaller {
    pub(crate) client: reqwest::Client,
    base: String,
    authority: String,
    key: String,
}

impl PartnerCaller {
    pub(crate) fn new(to: &Org, key: &str) -> PartnerCaller {
        Self::to_gateway(to, &to.gateway, key)
    }

    /// A caller of `to`'s gateway `gateway` (one of several instances).
    pub(crate) fn to_gateway(to: &Org, gateway: &mft_e2e::Gateway, key: &str) -> PartnerCaller {
        PartnerCaller {
            client: client(&to.certs, Proto::Http1),
            base: gateway.base.clone(),
            authority: gateway.addr.to_string(),
            key: key.to_string(),
        }
    }

    /// Signs a POST of `body` to `path`; `digest_of` is what the
    /// Content-Digest claims (normally the body itself).
    pub(crate) fn request(
        &self,
        path: &str,
        body: Vec<u8>,
        digest_of: &[u8],
        extra: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let parsed = partner_key::parse(&self.key).unwrap();
        let request_id = format!(
            "test-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let digest = wire::content_digest(digest_of);
        let view = RequestView {
            method: "POST",
            authority: &self.authority,
            path,
            query: None,
            fields: &[("x-request-id", &request_id), ("content-digest", &digest)],
        };
        let signed =
            wire::sign_request(&partner_key::signing_key(&parsed), parsed.id, &view).unwrap();
        let mut r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("x-request-id", request_id)
            .header("content-digest", digest)
            .header("signature-input", signed.signature_input)
            .header("signature", signed.signature)
            .body(body);
        for (n, v) in extra {
            r = r.header(*n, *v);
        }
        r
    }

    /// A signed `GET /federation/v1/ping`, built but not sent (so it can
    /// be sent again byte for byte).
    pub(crate) fn ping(&self) -> reqwest::Request {
        let parsed = partner_key::parse(&self.key).unwrap();
        let request_id = format!(
            "ping-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let view = RequestView {
            method: "GET",
            authority: &self.authority,
            path: wire::PING_PATH,
            query: None,
            fields: &[("x-request-id", &request_id)],
        };
        let signed =
            wire::sign_request(&partner_key::signing_key(&parsed), parsed.id, &view).unwrap();
        self.client
            .get(format!("{}{}", self.base, wire::PING_PATH))
            .bearer_auth(&self.key)
            .header("x-request-id", request_id)
            .header("signature-input", signed.signature_input)
            .header("signature", signed.signature)
            .build()
            .unwrap()
    }

    pub(crate) async fn file(&self, name: &str, data: &[u8], claimed: &[u8]) -> reqwest::Response {
        self.request(
            wire::FILES_PATH,
            data.to_vec(),
            claimed,
            &[
                ("x-filename", name),
                ("content-type", "application/octet-stream"),
            ],
        )
        .send()
        .await
        .unwrap()
    }

    async fn delivery(&self, body: &Value) -> reqwest::Response {
        let bytes = serde_json::to_vec(body).unwrap();
        self.request(
            wire::DELIVERIES_PATH,
            bytes.clone(),
            &bytes,
            &[("content-type", "application/json")],
        )
        .send()
        .await
        .unwrap()
    }
}

async fn problem(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_deliveries_break_no_rule() {
    let (a, b) = two_orgs().await;
    let (_, key_for_a) = connect(&a, &b);
    let acme = PartnerCaller::new(&b, &key_for_a);

    // A file whose body does not match its signed digest is not stored.
    let r = acme
        .file("tampered.bin", b"the real bytes", b"other bytes")
        .await;
    let p = problem(r, 400).await;
    assert!(
        p["detail"].as_str().unwrap().contains("Content-Digest"),
        "{p}"
    );
    let r = api(&b)
        .get(format!("{}/api/v1/files", b.gateway.base))
        .send()
        .await
        .unwrap();
    let listing = r.text().await.unwrap();
    assert!(!listing.contains("tampered.bin"), "{listing}");

    // A good file, then deliveries that break each rule.
    let r = acme.file("ok.txt", b"fine bytes", b"fine bytes").await;
    assert_eq!(r.status(), 201);
    let f: Value = r.json().await.unwrap();
    let fid = f["id"].as_str().unwrap().to_string();
    let sha = f["sha256"].as_str().unwrap().to_string();
    let base = |sender: &str, recipient: &str, relay: &str, fid: &str| {
        json!({
            "relay_id": relay,
            "sender": sender,
            "recipients": [recipient],
            "subject": "s",
            "message": "m",
            "files": [{"id": fid, "source_id": "src-1", "sha256": sha}],
        })
    };
    let p = problem(
        acme.delivery(&base("eve@evil.example", "bob@beta.example", "r1", &fid))
            .await,
        403,
    )
    .await;
    assert_eq!(p["type"], "urn:mft:problem:domain-rule");
    assert!(
        p["detail"].as_str().unwrap().contains("sender-domain"),
        "{p}"
    );
    let p = problem(
        acme.delivery(&base(
            "anna@acme.example",
            "zoe@elsewhere.example",
            "r2",
            &fid,
        ))
        .await,
        403,
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("recipient-domain"),
        "{p}"
    );

    // A file of B's own (not sent by acme) cannot be handed on.
    let own = upload(&b, "internal.txt", reqwest::Body::from("internal")).await;
    let own_id = own["id"].as_str().unwrap();
    let p = problem(
        acme.delivery(&base("anna@acme.example", "bob@beta.example", "r3", own_id))
            .await,
        422,
    )
    .await;
    assert_eq!(p["type"], "urn:mft:problem:unknown-file");

    // Nothing so far created a delivery at B, and every refusal is audited.
    assert!(deliveries_for(&b, "bob@beta.example").await.is_empty());
    assert!(deliveries_for(&b, "zoe@elsewhere.example").await.is_empty());
    audit_with(&b, 3, |l| {
        l.contains("\"federation_delivery\"") && l.contains("\"deny\"")
    })
    .await;

    // The rules hold: accepted, and a replay of the very same signed
    // request is refused.
    let good = base("anna@acme.example", "Bob@Beta.Example", "r4", &fid);
    let bytes = serde_json::to_vec(&good).unwrap();
    let request = acme
        .request(wire::DELIVERIES_PATH, bytes.clone(), &bytes, &[])
        .build()
        .unwrap();
    let again = request.try_clone().unwrap();
    let r = acme.client.execute(request).await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(
        r.headers().contains_key("signature"),
        "the answer is signed"
    );
    let accepted: Value = r.json().await.unwrap();
    assert_eq!(accepted["relay_id"], "r4");
    let r = acme.client.execute(again).await.unwrap();
    assert_eq!(r.status(), 401, "a replayed request is refused");
    let at_b = deliveries_for(&b, "bob@beta.example").await;
    assert_eq!(at_b.len(), 1);
    assert_eq!(at_b[0]["origin"], "partner:acme");

    // The key of another connection authenticates that connection, whose
    // domains do not include acme's senders.
    let key_for_gamma = {
        let (code, out, err) = b.partners(&[
            "add",
            "--name",
            "gamma",
            "--url",
            "https://gamma.invalid",
            "--email-domain",
            "gamma.example",
            "--json",
        ]);
        assert_eq!(code, 0, "{out}{err}");
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        v["key"].as_str().unwrap().to_string()
    };
    assert_eq!(b.set_key("gamma", &key_for_a).0, 0);
    let gamma = PartnerCaller::new(&b, &key_for_gamma);
    let p = problem(
        gamma
            .delivery(&base("anna@acme.example", "bob@beta.example", "r5", &fid))
            .await,
        403,
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("sender-domain"),
        "{p}"
    );
    // And acme's file is not gamma's to deliver.
    let p = problem(
        gamma
            .delivery(&base("gil@gamma.example", "bob@beta.example", "r6", &fid))
            .await,
        422,
    )
    .await;
    assert_eq!(p["type"], "urn:mft:problem:unknown-file");

    // A removed connection is refused once B's partner cache has it.
    assert_eq!(b.partners_live(&["remove", "acme"]).await.0, 0);
    let r = acme
        .delivery(&base("anna@acme.example", "bob@beta.example", "r7", &fid))
        .await;
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_connection_needs_the_partners_client_certificate() {
    let (a, b) = two_orgs_with("client_auth = true").await;
    connect(&a, &b);

    // Pinned to some other certificate: A's requests are refused.
    let other = "AB:".repeat(31) + "AB";
    let (code, out, err) = b
        .partners_live(&["pin", "acme", "--client-cert-sha256", &other])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = a.partners(&["test", "beta"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("refused by the partner (401)"), "{out}");
    audit_with(&b, 1, |l| l.contains("client_cert_mismatch")).await;

    // Pinned to A's certificate (the one its gateway presents): connected.
    let cert = a.certs.cert.to_str().unwrap();
    let (code, out, err) = b
        .partners_live(&["pin", "acme", "--client-cert", cert])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = a.partners(&["test", "beta"]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, list, _) = b.partners(&["list", "--json"]);
    assert!(!list.contains("\"client_cert_sha256\":null"), "{list}");

    // Clients without a certificate still use B's API as before.
    let r = api(&b)
        .get(format!("{}/api/v1/files", b.gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_relay_releases_the_lease_so_the_restart_relays_at_once() {
    let (mut a, b) = two_orgs().await;
    connect(&a, &b);
    // A with a short drain: its relay attempt below never ends by itself.
    a.gateway.proc.signal("TERM");
    a.gateway
        .proc
        .wait_exit(Duration::from_secs(20))
        .expect("idle gateway exits");
    let text = std::fs::read_to_string(&a.gateway.config)
        .unwrap()
        .replace(r#"shutdown_timeout = "20s""#, r#"shutdown_timeout = "1s""#);
    std::fs::write(&a.gateway.config, text).unwrap();
    a.gateway = a.gateway.relaunch(&a.path, &a.certs).await;

    // B hangs (stopped, its sockets still accept): A's attempt gets stuck.
    b.gateway.proc.signal("STOP");
    let file = upload(
        &a,
        "stuck.txt",
        reqwest::Body::from("sent twice, kept once"),
    )
    .await;
    let file_id = file["id"].as_str().unwrap().to_string();
    let sent = deliver(&a, "anna@acme.example", &["bob@beta.example"], &[&file_id]).await;
    let id = sent["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a
        .gateway
        .proc
        .stderr()
        .contains("delivery queued for relay")
    {
        assert!(Instant::now() < deadline, "{}", a.gateway.proc.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The job is claimed in the same round, right after it was queued.
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.gateway.proc.signal("TERM");
    let status = a
        .gateway
        .proc
        .wait_exit(Duration::from_secs(15))
        .expect("the drain gives up on the relay after shutdown_timeout");
    assert!(status.success(), "{status}");
    let log = a.gateway.proc.stderr();
    assert!(
        log.contains("relay attempt abandoned, lease released"),
        "{log}"
    );

    // B resumes, A restarts: the 120 s lease was given back, so the job
    // is taken at once, and B keeps one delivery.
    b.gateway.proc.signal("CONT");
    a.gateway = a.gateway.relaunch(&a.path, &a.certs).await;
    wait_for(&a, &id, Duration::from_secs(30), |d| {
        relay_status(d, "bob@beta.example").as_deref() == Some("delivered")
    })
    .await;
    let at_b = deliveries_for(&b, "bob@beta.example").await;
    assert_eq!(at_b.len(), 1, "{at_b:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_that_fail_for_good_send_one_relay_failed_notification() {
    use super::transports::{received, start_smtp, transports, SMTP_PASSWORD, SMTP_USER};
    let (a, mut b) = two_orgs_with(
        "relay_max_age = \"3s\"\n\n\
         [[notify]]\nevent = \"relay_failed\"\nprovider = \"mail\"\n\
         to = [\"ops@acme.example\"]\nperiod = \"1h\"\n",
    )
    .await;
    connect(&a, &b);
    let smtp = free_addr();
    let log = a.path.join("smtp.jsonl");
    let _server = start_smtp(&a.path, &a.certs, smtp, &log);
    std::fs::write(a.path.join("smtp.password"), SMTP_PASSWORD).unwrap();
    let port = smtp.port().to_string();
    let (code, out, err) = transports(
        &a.gateway.config,
        &[
            "add",
            "mail",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--ca-file",
            a.certs.ca.to_str().unwrap(),
            "--username",
            SMTP_USER,
            "--password-file",
            a.path.join("smtp.password").to_str().unwrap(),
            "--from",
            "mft@acme.example",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");

    // The partner refuses every connection until both relays give up.
    b.gateway.proc.signal("KILL");
    b.gateway.proc.wait_exit(Duration::from_secs(10));
    let mut ids = Vec::new();
    for name in ["one.txt", "two.txt"] {
        let file = upload(&a, name, reqwest::Body::from("never arrives")).await;
        let file_id = file["id"].as_str().unwrap().to_string();
        let sent = deliver(&a, "anna@acme.example", &["bob@beta.example"], &[&file_id]).await;
        ids.push(sent["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let d = wait_for(&a, id, Duration::from_secs(30), |d| {
            relay_status(d, "bob@beta.example").as_deref() == Some("failed")
        })
        .await;
        assert!(d["relay"][0]["attempts"].as_u64().unwrap() >= 2, "{d:#}");
    }
    let notices = || {
        received(&log)
            .into_iter()
            .filter(|g| {
                g["data"]
                    .as_str()
                    .is_some_and(|d| d.contains("relay to beta failed for good"))
            })
            .collect::<Vec<_>>()
    };
    let start = Instant::now();
    while notices().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "no notification");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = notices();
    assert_eq!(
        got.len(),
        1,
        "one notification for two failed relays: {got:#?}"
    );
    assert_eq!(got[0]["rcpt_tos"], json!(["ops@acme.example"]));
    let text = got[0]["data"].as_str().unwrap();
    assert!(
        ids.iter().any(|id| text.contains(id.as_str())),
        "names a delivery: {text}"
    );
    let audit = audit_with(&a, 1, |l| {
        l.contains("notify[0] relay_failed: queued as msg_")
    })
    .await;
    assert_eq!(
        audit
            .lines()
            .filter(|l| l.contains("notify[0] relay_failed: queued as msg_"))
            .count(),
        1,
        "{audit}"
    );
}
