//! Rate limits through the running gateway: per key (with per-account
//! overrides), per client IP before authentication, one limit shared by two
//! gateways through a real redis-server, and the failure policy when Redis
//! is gone. Quotas refill slowly (per minute) so nothing races the clock.

use mft_e2e::*;
use std::time::{Duration, Instant};

struct Setup {
    certs: Certs,
    _backend: Backend,
    gateway: Gateway,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    dir: tempfile::TempDir,
}

async fn setup_in(dir: tempfile::TempDir, tables: &str) -> Setup {
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let gateway = start_gateway_with(dir.path(), &certs, &backend.url, "", tables).await;
    Setup {
        dir,
        certs,
        _backend: backend,
        gateway,
    }
}

async fn setup(tables: &str) -> Setup {
    setup_in(tempfile::tempdir().unwrap(), tables).await
}

fn files(g: &Gateway) -> String {
    format!("{}/api/v1/files", g.base)
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {:?}", r.headers()))
        .to_str()
        .unwrap()
        .to_string()
}

/// `"key";r=0;t=300` -> ("key", 0, 300)
fn parse_state(v: &str) -> (String, u64, u64) {
    let mut parts = v.split(';');
    let name = parts.next().unwrap().trim_matches('"').to_string();
    let mut r = None;
    let mut t = None;
    for p in parts {
        match p.split_once('=') {
            Some(("r", n)) => r = n.parse().ok(),
            Some(("t", n)) => t = n.parse().ok(),
            _ => {}
        }
    }
    (name, r.unwrap(), t.unwrap())
}

async fn assert_429(r: reqwest::Response, policy: &str, window: u64, period: u64) {
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    // 1 per `period` seconds: the next request is allowed one period after the
    // first of the burst, a moment ago; rounded up, so never early and never 0.
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!(
        (period - 2..=period).contains(&retry),
        "Retry-After {retry}"
    );
    assert_eq!(header(&r, "ratelimit-policy"), policy);
    let (_, remaining, reset) = parse_state(&header(&r, "ratelimit"));
    assert_eq!(remaining, 0);
    assert!((window - 2..=window).contains(&reset), "t={reset}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 429);
    assert_eq!(body["type"], "urn:mft:problem:rate-limited");
    assert!(body["request_id"].is_string(), "{body}");
}

#[tokio::test]
async fn burst_over_the_key_limit_gets_429_and_keys_are_independent() {
    let s = setup("[rate_limit]\nper_key = \"1/m burst 5\"\n").await;
    let c = s.gateway.client(&s.certs, Proto::Http1);
    let url = files(&s.gateway);
    for i in 0..5u64 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        // Allowed responses describe the quota and what is left of it.
        assert_eq!(header(&r, "ratelimit-policy"), "\"key\";q=5;w=300");
        assert_eq!(
            header(&r, "ratelimit"),
            format!("\"key\";r={};t={}", 4 - i, 60 * (i + 1))
        );
    }
    assert_429(
        c.get(&url).send().await.unwrap(),
        "\"key\";q=5;w=300",
        300,
        60,
    )
    .await;
    // Over HTTP/2 too: the limit is per key, not per connection.
    let h2 = s.gateway.client(&s.certs, Proto::Http2);
    assert_eq!(h2.get(&url).send().await.unwrap().status(), 429);

    // Another key of the same account kind has its own full bucket.
    let (_, other) = create_key(&s.gateway.config, "other", ALL_SCOPES);
    let c2 = client_with_key(&s.certs, Proto::Http1, &other);
    for i in 0..5u64 {
        let r = c2.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "other key, request {i}");
        assert_eq!(parse_state(&header(&r, "ratelimit")).1, 4 - i);
    }
    assert_eq!(c2.get(&url).send().await.unwrap().status(), 429);

    // The refusal is audited with its reason; the metrics count it.
    let audit = s.dir.path().join("gateway-data/audit.jsonl");
    let mut audited = false;
    for _ in 0..100 {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.contains("\"rate_limited\"") && l.contains("\"status\":429"))
        {
            audited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(audited, "no rate_limited record in the audit trail");
    // Responses are counted in pingora's logging phase, which may run just
    // after the client has the answer: wait for the last one to be counted.
    let mut page = metrics(s.gateway.admin).await;
    for _ in 0..40 {
        if metric(&page, "mft_http_requests_total{class=\"4xx\"}") == Some(3.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        page = metrics(s.gateway.admin).await;
    }
    assert_eq!(
        metric(&page, "mft_ratelimit_limited_total{limit=\"key\"}"),
        Some(3.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "mft_http_requests_total{class=\"4xx\"}"),
        Some(3.0),
        "{page}"
    );
    // 10 allowed API requests plus the readiness probes on /healthz.
    assert!(
        metric(&page, "mft_http_requests_total{class=\"2xx\"}").unwrap_or(0.0) >= 10.0,
        "{page}"
    );
    // No Redis configured, so no Redis series to alert on.
    assert!(!page.contains("redis"), "{page}");
}

#[tokio::test]
async fn an_accounts_own_rate_limit_overrides_the_default() {
    let s = setup("[rate_limit]\nper_key = \"1/m burst 5\"\n").await;
    let (_, slow) = create_key_with(
        &s.gateway.config,
        "slow-partner",
        ALL_SCOPES,
        &["--rate-limit", "1/m burst 2"],
    );
    let c = client_with_key(&s.certs, Proto::Http1, &slow);
    let url = files(&s.gateway);
    for _ in 0..2 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "ratelimit-policy"), "\"key\";q=2;w=120");
    }
    assert_429(
        c.get(&url).send().await.unwrap(),
        "\"key\";q=2;w=120",
        120,
        60,
    )
    .await;
    // The default key still has its 5.
    let d = s.gateway.client(&s.certs, Proto::Http1);
    for _ in 0..5 {
        assert_eq!(d.get(&url).send().await.unwrap().status(), 200);
    }
    // A malformed override is refused by the CLI, naming the syntax.
    let out = std::process::Command::new(bin("mft-gateway"))
        .args(["keys", "create", "--name", "x", "--scopes", "files:read"])
        .args(["--rate-limit", "fast", "--config"])
        .arg(&s.gateway.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("burst"), "{err}");
}

#[tokio::test]
async fn the_ip_limit_applies_before_authentication() {
    let s = setup("[rate_limit]\nper_ip = \"1/m burst 3\"\nper_key = \"1/m burst 100\"\n").await;
    let anon = client(&s.certs, Proto::Http1);
    let url = files(&s.gateway);
    for i in 0..3u64 {
        let r = anon.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 401, "request {i}");
        // Even a refusal by authentication says what the IP limit has left.
        assert_eq!(header(&r, "ratelimit-policy"), "\"ip\";q=3;w=180");
        assert_eq!(parse_state(&header(&r, "ratelimit")).1, 2 - i);
    }
    // The fourth is refused by the IP limit, before any credential check:
    // a valid key does not help, and the authenticator never sees it.
    let keyed = s.gateway.client(&s.certs, Proto::Http1);
    assert_429(
        keyed.get(&url).send().await.unwrap(),
        "\"ip\";q=3;w=180",
        180,
        60,
    )
    .await;
    assert_eq!(
        anon.get(format!("{}/nowhere", s.gateway.base))
            .send()
            .await
            .unwrap()
            .status(),
        429
    );
    // Health checks are exempt.
    let r = anon
        .get(format!("{}/healthz", s.gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = metrics(s.gateway.admin).await;
    assert_eq!(
        metric(&page, "mft_ratelimit_limited_total{limit=\"ip\"}"),
        Some(2.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "mft_auth_decisions_total{decision=\"deny\"}"),
        Some(3.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "mft_auth_decisions_total{decision=\"allow\"}"),
        Some(0.0),
        "{page}"
    );
}

async fn wait_redis_up(g: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = metrics(g.admin).await;
        if metric(&page, "mft_ratelimit_redis_up") == Some(1.0) {
            return;
        }
        assert!(Instant::now() < deadline, "Redis never up:\n{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_gateways_sharing_redis_enforce_one_limit() {
    let dir = tempfile::tempdir().unwrap();
    let redis = start_redis(dir.path());
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let tables = format!(
        "[rate_limit]\nper_key = \"1/m burst 6\"\nredis = \"{}\"\n",
        redis.url
    );
    // Both gateways must know the same key: create it in the first one's
    // store, then give the second a copy of that store.
    let dir_a = dir.path().join("a");
    let dir_b = dir.path().join("b");
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    // The backend verifies signatures: both gateways sign with its key.
    let signing = format!(
        "signing_key = \"file:{}\"",
        default_signing_key(dir.path()).display()
    );
    let mut configs = Vec::new();
    for d in [&dir_a, &dir_b] {
        let (addr, admin) = (ephemeral(), ephemeral());
        let config = d.join("gateway.toml");
        std::fs::write(
            &config,
            gateway_config(&certs, addr, admin, &backend.url, &signing, &tables),
        )
        .unwrap();
        configs.push((d.clone(), config, addr, admin));
    }
    let (_, key) = create_key(&configs[0].1, "shared", ALL_SCOPES);
    std::fs::create_dir_all(dir_b.join("gateway-data")).unwrap();
    for entry in std::fs::read_dir(dir_a.join("gateway-data")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            dir_b.join("gateway-data").join(entry.file_name()),
        )
        .unwrap();
    }
    let mut gateways = Vec::new();
    for (d, config, addr, admin) in configs {
        gateways.push(launch_gateway(&d, &certs, config, addr, admin, key.clone()).await);
    }
    for g in &gateways {
        wait_redis_up(g).await;
    }
    let clients: Vec<_> = gateways
        .iter()
        .map(|g| (g.client(&certs, Proto::Http1), files(g)))
        .collect();
    let mut allowed = [0u32; 2];
    let mut remaining = Vec::new();
    for i in 0..12 {
        let (c, url) = &clients[i % 2];
        let r = c.get(url).send().await.unwrap();
        match r.status().as_u16() {
            200 => {
                allowed[i % 2] += 1;
                remaining.push(parse_state(&header(&r, "ratelimit")).1);
            }
            429 => {}
            other => panic!("request {i}: unexpected status {other}"),
        }
    }
    // One burst of 6 for the cluster, not 6 per instance.
    assert_eq!(
        allowed[0] + allowed[1],
        6,
        "allowed per gateway: {allowed:?}"
    );
    assert!(allowed[0] > 0 && allowed[1] > 0, "{allowed:?}");
    // Both instances report the one shared bucket draining.
    assert_eq!(remaining, [5, 4, 3, 2, 1, 0]);
    // Refused everywhere now, and Redis was up throughout.
    for (c, url) in &clients {
        let r = c.get(url).send().await.unwrap();
        assert_eq!(r.status(), 429);
        // Redis' clock decides: one minute after the first request, rounded up.
        let retry: u64 = header(&r, "retry-after").parse().unwrap();
        assert!((58..=60).contains(&retry), "{retry}");
    }
    for g in &gateways {
        let page = metrics(g.admin).await;
        assert_eq!(
            metric(&page, "mft_ratelimit_redis_errors_total"),
            Some(0.0),
            "{page}"
        );
    }
    drop(redis);
}

#[tokio::test]
async fn without_redis_local_policy_keeps_serving_within_local_limits() {
    let dir = tempfile::tempdir().unwrap();
    let redis = start_redis(dir.path());
    let tables = format!(
        "[rate_limit]\nper_key = \"1/m burst 3\"\nredis = \"{}\"\non_redis_error = \"local\"\n",
        redis.url
    );
    let s = setup_in(dir, &tables).await;
    wait_redis_up(&s.gateway).await;
    let addr = redis.addr;
    drop(redis);
    assert!(!redis_ping(addr), "redis-server still answers");

    let c = s.gateway.client(&s.certs, Proto::Http1);
    let url = files(&s.gateway);
    for i in 0..3 {
        let started = Instant::now();
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        // A dead Redis costs at most redis_timeout (50 ms) per request.
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    assert_eq!(c.get(&url).send().await.unwrap().status(), 429);

    let page = metrics(s.gateway.admin).await;
    assert_eq!(metric(&page, "mft_ratelimit_redis_up"), Some(0.0), "{page}");
    assert!(
        metric(&page, "mft_ratelimit_redis_errors_total").unwrap_or(0.0) >= 1.0,
        "{page}"
    );
    assert!(
        metric(&page, "mft_ratelimit_redis_fallback_total").unwrap_or(0.0) >= 3.0,
        "{page}"
    );
    let log = s.gateway.proc.stderr();
    let warnings = log.matches("Redis unavailable").count();
    assert!((1..=2).contains(&warnings), "{warnings} warnings:\n{log}");
    assert!(
        !log.contains("redis://"),
        "the Redis URL must not be logged"
    );

    // Redis comes back: the gateway reconnects by itself and shares state again.
    let _redis = start_redis_at(s.dir.path(), addr);
    wait_redis_up(&s.gateway).await;
    let (_, other) = create_key(&s.gateway.config, "after-outage", ALL_SCOPES);
    let c2 = client_with_key(&s.certs, Proto::Http1, &other);
    assert_eq!(c2.get(&url).send().await.unwrap().status(), 200);
    let id = &other["mgw_".len().."mgw_".len() + 16];
    assert_eq!(
        redis_command(addr, &format!("EXISTS mft:rl:key:key:{id}")),
        ":1",
        "the request after the outage went through Redis"
    );
}

#[tokio::test]
async fn without_redis_deny_policy_answers_503() {
    // Nothing listens on this port.
    // Held until the test ends: nothing can listen there meanwhile.
    let held = refused();
    let dead = held.addr;
    let tables = format!(
        "[rate_limit]\nper_key = \"1/m burst 3\"\nredis = \"redis://{dead}/0\"\non_redis_error = \"deny\"\n"
    );
    let s = setup(&tables).await;
    let c = s.gateway.client(&s.certs, Proto::Http1);
    let r = c.get(files(&s.gateway)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(header(&r, "retry-after"), "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["type"], "urn:mft:problem:rate-limit-unavailable");
    let page = metrics(s.gateway.admin).await;
    assert_eq!(metric(&page, "mft_ratelimit_redis_up"), Some(0.0), "{page}");
    // The admin API stays behind its token while /metrics is open.
    let r = reqwest::get(format!("http://{}/admin/v1/keys", s.gateway.admin))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// Sends one inline command to Redis and returns the first reply line.
fn redis_command(addr: std::net::SocketAddr, command: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(format!("{command}\r\n").as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

fn check(config: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(bin("mft-gateway"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn the_script_is_reloaded_after_a_redis_script_flush_and_check_probes_redis() {
    let dir = tempfile::tempdir().unwrap();
    let redis = start_redis(dir.path());
    // A generous Redis timeout: under a loaded CI machine the default 50 ms
    // could send a request to the local fallback, which this test is not about.
    let tables = format!(
        "[rate_limit]\nper_key = \"1/m burst 10\"\nredis = \"{}\"\nredis_timeout = \"5s\"\n",
        redis.url
    );
    let s = setup_in(dir, &tables).await;
    wait_redis_up(&s.gateway).await;
    let c = s.gateway.client(&s.certs, Proto::Http1);
    let url = files(&s.gateway);
    for _ in 0..2 {
        assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    }
    // Redis forgets every script (as after a restart): EVALSHA gets NOSCRIPT,
    // the script is sent again, and the key's state in Redis carries on.
    assert_eq!(redis_command(redis.addr, "SCRIPT FLUSH"), "+OK");
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(parse_state(&header(&r, "ratelimit")).1, 7);
    // One Redis key per principal, expiring when its bucket would be full
    // again (3 requests at 1/m: in 180 s), so Redis holds only active keys.
    let id = &s.gateway.key["mgw_".len().."mgw_".len() + 16];
    let pttl = redis_command(redis.addr, &format!("PTTL mft:rl:key:key:{id}"));
    let ms: u64 = pttl.trim_start_matches(':').parse().unwrap();
    assert!((170_000..=180_000).contains(&ms), "PTTL {pttl}");
    let page = metrics(s.gateway.admin).await;
    assert_eq!(
        metric(&page, "mft_ratelimit_redis_errors_total"),
        Some(0.0),
        "{page}"
    );

    let (ok, out) = check(&s.gateway.config);
    assert!(ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok    redis: 127.0.0.1:")),
        "{out}"
    );
    drop(redis);
    let (ok, out) = check(&s.gateway.config);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL  redis: rate_limit.redis: 127.0.0.1:"),
        "{out}"
    );
}

#[tokio::test]
async fn the_admin_api_sets_an_accounts_limit_even_without_a_default() {
    const TOKEN: &str = "admin-token-for-rate-limit-tests-01";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), TOKEN).unwrap();
    // No [rate_limit] at all: only the account's own limit applies.
    let s = setup_in(dir, "[admin]\ntoken = \"file:admin.token\"\n").await;
    let admin = reqwest::Client::new();
    let base = format!("http://{}/admin/v1/keys", s.gateway.admin);
    let r = admin
        .post(&base)
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"name": "bad", "scopes": ["files:read"], "rate_limit": "fast"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("rate_limit: expected"),
        "{body}"
    );

    let r = admin
        .post(&base)
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"name": "metered", "scopes": ["files:read"], "rate_limit": "1/m burst 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    assert_eq!(created["rate_limit"], "1/m burst 1");
    let c = client_with_key(&s.certs, Proto::Http1, created["key"].as_str().unwrap());
    let url = files(&s.gateway);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "ratelimit"), "\"key\";r=0;t=60");
    assert_429(
        c.get(&url).send().await.unwrap(),
        "\"key\";q=1;w=60",
        60,
        60,
    )
    .await;
    // Keys without an override are not limited when there is no default.
    let unlimited = s.gateway.client(&s.certs, Proto::Http1);
    for _ in 0..5 {
        let r = unlimited.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("ratelimit").is_none());
    }
}

#[tokio::test]
async fn a_hung_redis_costs_a_request_at_most_redis_timeout() {
    // Accepts connections (the kernel completes the handshake) but never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = hung.local_addr().unwrap();
    let tables = format!(
        "[rate_limit]\nper_key = \"1/m burst 3\"\nredis = \"redis://{addr}/0\"\nredis_timeout = \"100ms\"\n"
    );
    let s = setup(&tables).await;
    let c = s.gateway.client(&s.certs, Proto::Http1);
    let url = files(&s.gateway);
    for i in 0..3 {
        let started = Instant::now();
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(900),
            "request {i} took {took:?}"
        );
    }
    assert_eq!(c.get(&url).send().await.unwrap().status(), 429);
    let page = metrics(s.gateway.admin).await;
    assert_eq!(metric(&page, "mft_ratelimit_redis_up"), Some(0.0), "{page}");
    assert!(
        metric(&page, "mft_ratelimit_redis_fallback_total").unwrap_or(0.0) >= 3.0,
        "{page}"
    );
    drop(hung);
}
