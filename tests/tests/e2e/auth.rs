//! Identity and access through the running gateway: API keys, scopes,
//! revocation from another process, the defender, the admin API, and an
//! audit trail that never holds a secret.

use mft_e2e::*;
use std::process::Command;
use std::time::{Duration, Instant};

struct Setup {
    certs: Certs,
    _backend: Backend,
    gateway: Gateway,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    dir: tempfile::TempDir,
}

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

async fn setup(tables: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).unwrap();
    let backend = start_backend(dir.path()).await;
    let tables = format!("[admin]\ntoken = \"file:admin.token\"\n\n{tables}");
    let gateway = start_gateway_with(dir.path(), &certs, &backend.url, "", &tables).await;
    Setup {
        dir,
        certs,
        _backend: backend,
        gateway,
    }
}

fn audit_lines(s: &Setup) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(s.dir.path().join("gateway-data/audit.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// Waits until the audit trail has a record matching `pred` (the writer is asynchronous).
async fn audit_has(s: &Setup, pred: impl Fn(&serde_json::Value) -> bool) -> bool {
    for _ in 0..100 {
        if audit_lines(s).iter().any(&pred) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn assert_401(r: reqwest::Response) {
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 401);
    // One generic message, whatever the reason: the reason is for the audit log.
    assert_eq!(body["detail"], "missing or invalid credentials", "{body}");
}

#[tokio::test]
async fn requests_without_valid_keys_get_401_and_the_reason_goes_to_the_audit_log() {
    let s = setup("").await;
    let anon = client(&s.certs, Proto::Http1);
    let files = format!("{}/api/v1/files", s.gateway.base);
    assert_401(anon.get(&files).send().await.unwrap()).await;

    let (id, _) = s.gateway.key.split_at(4 + 16);
    let wrong_secret = format!("{id}_{}", "A".repeat(43));
    let unknown = format!("mgw_0123456789abcdef_{}A", "B".repeat(42));
    for bad in [
        wrong_secret.as_str(),
        unknown.as_str(),
        "mgw_garbage",
        "not-a-key",
    ] {
        let r = anon
            .get(&files)
            .header("X-API-Key", bad)
            .send()
            .await
            .unwrap();
        assert_401(r).await;
    }
    assert!(
        audit_has(&s, |r| r["decision"] == "deny"
            && r["reason"] == "missing_credential")
        .await
    );
    assert!(audit_has(&s, |r| r["reason"] == "bad_secret").await);
    assert!(audit_has(&s, |r| r["reason"] == "unknown_key").await);
    assert!(audit_has(&s, |r| r["reason"] == "malformed_credential").await);

    // Both header forms work for a valid key.
    let r = anon
        .get(&files)
        .header("X-API-Key", &s.gateway.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .gateway
        .client(&s.certs, Proto::Http2)
        .get(&files)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        audit_has(&s, |r| r["event"] == "request"
            && r["status"] == 200
            && r["principal"]
                .as_str()
                .is_some_and(|p| p.starts_with("key:")))
        .await
    );

    // The audit trail and the gateway's logs never contain a key's secret.
    let secret = mft_e2e::key_secret(&s.gateway.key).to_string();
    assert_eq!(secret.len(), 43, "the whole secret, not a fragment");
    let audit = std::fs::read_to_string(s.dir.path().join("gateway-data/audit.jsonl")).unwrap();
    assert!(!audit.contains(&secret));
    assert!(
        !audit.contains("AAAAAAAAAAAAAAAAAAAA"),
        "a presented wrong secret was logged"
    );
    assert!(!s.gateway.proc.stderr().contains(&secret));
}

#[tokio::test]
async fn a_key_without_the_route_scope_gets_403_naming_the_scope() {
    let s = setup("").await;
    let (_, reader) = create_key(&s.gateway.config, "reader", "files:read");
    let c = client_with_key(&s.certs, Proto::Http1, &reader);
    let r = c
        .get(format!("{}/api/v1/files", s.gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{}/api/v1/files", s.gateway.base))
        .header("X-Filename", "x.txt")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("files:write"),
        "{body}"
    );
    assert!(audit_has(&s, |r| r["reason"] == "missing_scope").await);
}

#[tokio::test]
async fn revocation_from_the_cli_reaches_the_running_gateway_within_5_seconds() {
    let s = setup("").await;
    let (id, key) = create_key(&s.gateway.config, "soon-revoked", ALL_SCOPES);
    let c = client_with_key(&s.certs, Proto::Http1, &key);
    let url = format!("{}/api/v1/files", s.gateway.base);
    assert_eq!(
        c.get(&url).send().await.unwrap().status(),
        200,
        "key works (and is now cached)"
    );

    let out = Command::new(bin("mft-gateway"))
        .args(["keys", "revoke", &id, "--config"])
        .arg(&s.gateway.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked_at = Instant::now();
    loop {
        let status = c.get(&url).send().await.unwrap().status();
        if status == 401 {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "revoked key still accepted after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(audit_has(&s, |r| r["reason"] == "revoked").await);
    // Other keys are unaffected.
    let r = s
        .gateway
        .client(&s.certs, Proto::Http1)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_defender_bans_an_ip_after_repeated_failures_and_lifts_the_ban() {
    let s = setup("[defender]\nthreshold = 3\nban_time = \"2s\"\n").await;
    let url = format!("{}/api/v1/files", s.gateway.base);
    let anon = client(&s.certs, Proto::Http1);
    let good = s.gateway.client(&s.certs, Proto::Http1);
    // Connected before the ban: a new connection from a banned address is
    // dropped at accept, an open one gets the ban's 429.
    assert_eq!(good.get(&url).send().await.unwrap().status(), 200);
    let bad = format!("mgw_0123456789abcdef_{}A", "C".repeat(42));
    for _ in 0..3 {
        assert_eq!(
            anon.get(&url)
                .header("X-API-Key", &bad)
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
    }
    let banned_at = Instant::now();
    // Banned: even the valid key is refused without a credential check.
    let r = good.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    // The ban's answer closes its connection, and the address's new
    // connections are dropped before the TLS handshake.
    assert_eq!(r.headers()["connection"], "close");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    assert!(audit_has(&s, |r| r["event"] == "ban").await);
    // Refused until ban_time (2 s) has passed, then served.
    eventually(
        Duration::from_secs(10),
        "ban lifted after ban_time",
        || async {
            match good.get(&url).send().await {
                Ok(r) => {
                    let status = r.status();
                    assert!(status == 429 || status == 200, "{status}");
                    status == 200
                }
                // Refused at accept while banned.
                Err(_) => false,
            }
        },
    )
    .await;
    assert!(
        banned_at.elapsed() >= Duration::from_secs(1),
        "lifted early"
    );
}

#[tokio::test]
async fn a_banned_client_loses_its_connections_over_h1_and_h2_and_new_ones_are_refused() {
    let s = setup("[defender]\nthreshold = 3\nban_time = \"60s\"\n").await;
    let url = format!("{}/api/v1/files", s.gateway.base);
    let bad = format!("mgw_0123456789abcdef_{}A", "C".repeat(42));
    // Opened before the ban: one h1 and one h2 connection that work.
    let h1 = s.gateway.client(&s.certs, Proto::Http1);
    let h2 = s.gateway.client(&s.certs, Proto::Http2);
    for c in [&h1, &h2] {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let h2_version = h2.get(&url).send().await.unwrap().version();
    assert_eq!(h2_version, reqwest::Version::HTTP_2);
    let anon = client(&s.certs, Proto::Http1);
    for _ in 0..3 {
        let r = anon
            .get(&url)
            .header("X-API-Key", &bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // h1: the ban's 429 says the connection closes.
    let r = h1.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["connection"], "close");
    // h2: the 429, then GOAWAY; the client's next request needs a new
    // connection, which is dropped before the handshake.
    let r = h2.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    eventually(
        Duration::from_secs(10),
        "the banned h2 client's next request fails to connect",
        || async { h2.get(&url).send().await.is_err() },
    )
    .await;
    // A new connection of either kind: refused, no HTTP answer at all.
    for proto in [Proto::Http1, Proto::Http2] {
        let fresh = s.gateway.client(&s.certs, proto);
        let e = fresh.get(&url).send().await.unwrap_err();
        assert!(e.is_connect() || e.is_request(), "{e:?}");
    }
    // The refusals at accept cost no audit records; the ban itself is there.
    assert!(audit_has(&s, |r| r["event"] == "ban").await);
}

#[tokio::test]
async fn admin_api_manages_keys_with_the_admin_token() {
    let s = setup("").await;
    let admin = reqwest::Client::new();
    let base = format!("http://{}/admin/v1/keys", s.gateway.admin);
    let r = admin.get(&base).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = admin
        .get(&base)
        .bearer_auth("wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = admin
        .post(&base)
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"name": "via-admin", "scopes": ["files:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    let (id, key) = (
        created["id"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
    );
    let c = client_with_key(&s.certs, Proto::Http1, &key);
    let url = format!("{}/api/v1/files", s.gateway.base);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);

    let listed: serde_json::Value = admin
        .get(&base)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["account"], "via-admin");
    assert!(
        entry.get("key").is_none() && !listed.to_string().contains(&key),
        "list must not reveal secrets"
    );

    let r = admin
        .delete(format!("{base}/{id}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = admin
        .delete(format!("{base}/{id}x"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.get(&url).send().await.unwrap().status() != 401 {
        assert!(
            Instant::now() < deadline,
            "key revoked through the admin API still accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        audit_has(&s, |r| r["event"] == "key"
            && r["reason"]
                .as_str()
                .is_some_and(|x| x.starts_with("revoke")))
        .await
    );
}

#[tokio::test]
async fn a_gateway_on_the_postgresql_key_store_sees_cli_changes() {
    // scripts/test always starts a PostgreSQL and sets this.
    let Ok(url) = std::env::var("MFT_TEST_POSTGRES_URL") else {
        eprintln!("skipped: MFT_TEST_POSTGRES_URL is not set (scripts/test sets it)");
        return;
    };
    let s = setup(&format!("[auth]\nstore = \"{url}\"\n")).await;
    assert!(
        !s.dir.path().join("gateway-data/keys.sqlite").exists(),
        "with auth.store set, no SQLite store may be created"
    );
    let (id, key) = create_key(&s.gateway.config, "pg-user", "files:read");
    let c = client_with_key(&s.certs, Proto::Http1, &key);
    let url = format!("{}/api/v1/files", s.gateway.base);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    let out = Command::new(bin("mft-gateway"))
        .args(["keys", "revoke", &id, "--config"])
        .arg(&s.gateway.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.get(&url).send().await.unwrap().status() != 401 {
        assert!(
            Instant::now() < deadline,
            "revocation in PostgreSQL not seen within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_expired_key_is_refused_even_when_it_was_cached() {
    let s = setup("").await;
    // `keys create --expires` counts days; the store itself takes any duration.
    let store = mft_gateway::store::Store::open(None, &s.dir.path().join("gateway-data"))
        .await
        .unwrap();
    let (_, key) = store
        .create_key(
            "short-lived",
            &["files:read".to_string()],
            Some(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    store.close().await;
    let c = client_with_key(&s.certs, Proto::Http1, &key);
    let url = format!("{}/api/v1/files", s.gateway.base);
    let created = Instant::now();
    assert_eq!(
        c.get(&url).send().await.unwrap().status(),
        200,
        "valid before expiry (and now cached)"
    );
    // Served from the cache until it expires (2 s after creation), then refused.
    eventually(
        Duration::from_secs(10),
        "the cached key expired",
        || async { c.get(&url).send().await.unwrap().status() == 401 },
    )
    .await;
    assert!(created.elapsed() >= Duration::from_secs(1), "refused early");
    assert_401(c.get(&url).send().await.unwrap()).await;
    assert!(audit_has(&s, |r| r["reason"] == "expired").await);
}
