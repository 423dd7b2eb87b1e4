//! Relays to a trust partner through a PostgreSQL outage (issue 21): two
//! gateway instances of one organisation share a PostgreSQL key store and
//! relay queue; PostgreSQL is killed with relays queued and in flight and
//! restarted. Every delivery reaches the partner exactly once (one
//! federation delivery request each: the lease keeps the two instances
//! from sending one job twice), and the relays recover without a restart.

use super::faults::OwnPostgres;
use super::trust::{org, org_with, Org};
use super::trust_relay::connect;
use mft_e2e::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BOB: &str = "bob@beta.example";

fn api(org: &Org) -> reqwest::Client {
    org.gateway.client(&org.certs, Proto::Http1)
}

async fn deliver(a: &Org, subject: &str, file: &str) -> String {
    let r = api(a)
        .post(format!("{}/api/v1/deliveries", a.gateway.base))
        .json(&json!({
            "sender": "anna@acme.example",
            "recipients": [BOB],
            "subject": subject,
            "message": "through the outage",
            "files": [file],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{subject}");
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

async fn upload(a: &Org, name: &str, size: u64) -> String {
    let content = Arc::new(Content::new(size, size));
    let r = api(a)
        .post(format!("{}/api/v1/files", a.gateway.base))
        .header("x-filename", name)
        .header("content-length", size)
        .body(content.body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

async fn relay_status(a: &Org, id: &str) -> Option<String> {
    let d: Value = api(a)
        .get(format!("{}/api/v1/deliveries/{id}", a.gateway.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    d["relay"]
        .as_array()?
        .iter()
        .find(|r| r["recipient"] == BOB)
        .and_then(|r| r["status"].as_str().map(str::to_string))
}

async fn wait_status(a: &Org, ids: &[String], want: &[&str], limit: Duration) {
    let deadline = Instant::now() + limit;
    for id in ids {
        loop {
            let s = relay_status(a, id).await;
            if s.as_deref().is_some_and(|s| want.contains(&s)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "relay of {id} is {s:?}, not {want:?}\n{}",
                a.gateway.proc.stderr()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A second gateway of `a` on the same store, backend and keys: its own
/// ports and data_dir (audit trail), the same relay queue.
async fn second_instance(a: &Org) -> Gateway {
    let text = std::fs::read_to_string(&a.gateway.config).unwrap();
    let (addr, admin) = (free_addr(), free_addr());
    let text = text
        .replace(&a.gateway.addr.to_string(), &addr.to_string())
        .replace(&a.gateway.admin.to_string(), &admin.to_string())
        .replace(
            "data_dir = \"gateway-data\"",
            "data_dir = \"gateway-data-2\"",
        );
    let config = a.path.join("gateway-2.toml");
    std::fs::write(&config, text).unwrap();
    launch_gateway(
        &a.path,
        &a.certs,
        config,
        addr,
        admin,
        a.gateway.key.clone(),
    )
    .await
}

async fn restart(org: &mut Org) {
    let g = &org.gateway;
    org.gateway = launch_gateway(
        &org.path,
        &org.certs,
        g.config.clone(),
        g.addr,
        g.admin,
        g.key.clone(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_killed_with_relays_queued_sends_each_once_and_recovers() {
    let state = tempfile::tempdir().unwrap();
    let Some(pg) = OwnPostgres::start(&state.path().join("pg-state")) else {
        return;
    };
    pg.durable_commits();
    let shared = tempfile::tempdir().unwrap();
    let (ca_a, ca_b) = (
        shared.path().join("a-ca.pem"),
        shared.path().join("b-ca.pem"),
    );
    std::fs::write(&ca_a, "").unwrap();
    std::fs::write(&ca_b, "").unwrap();
    let auth = format!("[auth]\nstore = \"{}\"\ncache_ttl = \"10m\"\n", pg.url);
    let mut a = org_with("acme", "acme.example", &ca_b, "", &auth).await;
    let mut b = org("beta", "beta.example", &ca_a, "").await;
    std::fs::write(&ca_a, &a.certs.ca_pem).unwrap();
    std::fs::write(&ca_b, &b.certs.ca_pem).unwrap();
    connect(&a, &b);
    let mut a2 = second_instance(&a).await;

    let file = upload(&a, "figures.bin", 256 * 1024).await;
    // Large enough that its relay is still streaming when PostgreSQL dies.
    let big = upload(&a, "archive.bin", 64 << 20).await;
    // The key cached in both instances before the outage.
    for g in [&a.gateway, &a2] {
        let r = g
            .client(&a.certs, Proto::Http1)
            .get(format!("{}/api/v1/files", g.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(deliver(&a, &format!("before-{i}"), &file).await);
    }
    wait_status(&a, &ids, &["delivered"], Duration::from_secs(60)).await;

    // Load on A's API with the cached key throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let (c, u, st) = (
        api(&a),
        format!("{}/api/v1/files", a.gateway.base),
        stop.clone(),
    );
    let load = tokio::spawn(async move {
        let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
        while !st.load(Ordering::SeqCst) {
            let s = c
                .get(&u)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            *statuses.entry(s).or_default() += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        statuses
    });

    // B away: relays queue up and are retried.
    b.gateway.proc.signal("KILL");
    b.gateway.proc.wait_exit(Duration::from_secs(10));
    let mut queued = Vec::new();
    for i in 0..4 {
        queued.push(deliver(&a, &format!("queued-{i}"), &file).await);
    }
    wait_status(&a, &queued, &["retrying"], Duration::from_secs(60)).await;

    // B comes back: those come due, two large ones start streaming, and
    // PostgreSQL dies with relays queued and mid-attempt (the attempt's
    // outcome cannot be recorded until it is back).
    restart(&mut b).await;
    let mut inflight = Vec::new();
    for i in 0..2 {
        inflight.push(deliver(&a, &format!("inflight-{i}"), &big).await);
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    pg.kill();
    let mut during = Vec::new();
    for i in 0..3 {
        during.push(deliver(&a, &format!("during-{i}"), &file).await);
    }
    // The large relays finish streaming during the outage and cannot
    // record what they did: they keep trying (within their lease) rather
    // than leave the job leased by nobody for the rest of it.
    // Whether one was caught depends on how far the streams got before the
    // kill (seen to miss once under heavy load): the exactly-once checks
    // below hold either way, so a miss is reported, not failed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(a.gateway.proc.stderr() + &a2.proc.stderr())
        .contains("cannot record relay outcome; trying again")
    {
        if Instant::now() > deadline {
            eprintln!("no relay attempt was caught by the outage this run");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.gateway.proc.assert_running();
    a2.proc.assert_running();

    // Back: everything relayed, without restarting either instance, well
    // within the 120 s the caught attempts' leases would have held them.
    pg.restart();
    let all: Vec<String> = ids
        .iter()
        .chain(&queued)
        .chain(&inflight)
        .chain(&during)
        .cloned()
        .collect();
    wait_status(&a, &all, &["delivered"], Duration::from_secs(90)).await;
    stop.store(true, Ordering::SeqCst);
    let statuses = load.await.unwrap();
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "cached key through the outage: {statuses:?}"
    );

    // Exactly once at the partner: one delivery per subject, and one
    // federation delivery request per relay (none sent twice).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = api(&b)
        .get(format!("{}/api/v1/deliveries", b.gateway.base))
        .query(&[("recipient", BOB)])
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let at_b = v["deliveries"].as_array().unwrap().clone();
    let mut subjects: Vec<String> = at_b
        .iter()
        .map(|d| d["subject"].as_str().unwrap().to_string())
        .collect();
    subjects.sort();
    let mut want: Vec<String> = (0..3)
        .map(|i| format!("before-{i}"))
        .chain((0..4).map(|i| format!("queued-{i}")))
        .chain((0..2).map(|i| format!("inflight-{i}")))
        .chain((0..3).map(|i| format!("during-{i}")))
        .collect();
    want.sort();
    assert_eq!(subjects, want);
    let posts = |org: &Org| {
        std::fs::read_to_string(org.path.join("gateway-data/audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"event\":\"federation_delivery\""))
            .count()
    };
    // Records of the restarted B and of the B before it share the file.
    assert_eq!(posts(&b), 12, "delivery requests at the partner");

    let out = std::process::Command::new(bin("mft-gateway"))
        .args(["partners", "relays", "--json", "--config"])
        .arg(&a.gateway.config)
        .output()
        .unwrap();
    let jobs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jobs.len(), 12, "{jobs:#?}");
    assert!(jobs.iter().all(|j| j["state"] == "delivered"), "{jobs:#?}");
    a.gateway.proc.assert_running();
    a2.proc.assert_running();
    let log = a.gateway.proc.stderr() + &a2.proc.stderr();
    assert!(
        !log.contains("the job is repeated once its lease runs out"),
        "an outcome was given up in a short outage"
    );
    assert!(
        !log.contains("relay lease lost"),
        "a lease was lost in a 3 s outage"
    );
    drop(shared);
}
