//! A partner's limits on the receiving gateway: its rate limit runs before
//! its nonce is remembered, so a partner flooding past its rate gets 429,
//! fills no replay cache, and leaves every other partner's nonces alone;
//! its uploads go to its inbox folder, within its daily quota.

use super::trust::{two_orgs_with, two_orgs_with_tables, ADMIN_TOKEN};
use super::trust_relay::{connect, PartnerCaller};
use mft_e2e::Proto;
use mft_gateway::trust::wire;
use serde_json::Value;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_flooding_past_its_rate_gets_429_and_spares_other_partners_nonces() {
    let (a, b) = two_orgs_with("rate_limit = \"2/s burst 3\"").await;
    let (_, key_for_a) = connect(&a, &b);
    // A third partner of B: only its entry is needed, not a third gateway.
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
    let acme = PartnerCaller::new(&b, &key_for_a);
    let gamma = PartnerCaller::new(&b, &key_for_gamma);

    // Gamma's request is served and its nonce remembered.
    let gamma_first = gamma.ping();
    let gamma_again = gamma_first.try_clone().unwrap();
    let r = gamma.client.execute(gamma_first).await.unwrap();
    assert_eq!(r.status(), 200);

    // Acme floods: far more signed requests (each with a fresh nonce) than
    // its rate lets through.
    let mut limited = None;
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..40 {
        let request = acme.ping();
        let copy = request.try_clone().unwrap();
        let r = acme.client.execute(request).await.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                refused += 1;
                assert_eq!(r.headers()["content-type"], "application/problem+json");
                let p: Value = r.json().await.unwrap();
                assert_eq!(p["type"], "urn:mft:problem:rate-limited", "{p}");
                limited.get_or_insert(copy);
            }
            other => panic!("acme's flood got {other}"),
        }
    }
    assert!(refused > 0 && ok < 40, "ok {ok}, refused {refused}");

    // Gamma is untouched: its old nonce is still known (a replay is
    // refused), and its new requests pass.
    let r = gamma.client.execute(gamma_again).await.unwrap();
    assert_eq!(r.status(), 401, "gamma's nonce was forgotten");
    let r = gamma.client.execute(gamma.ping()).await.unwrap();
    assert_eq!(r.status(), 200);

    // A request refused by the rate limit left no nonce behind: once the
    // rate allows, the very same signed request is served (once). Each
    // try until then is refused by the rate limit again, storing nothing.
    let limited = limited.unwrap();
    let r = once_the_rate_allows(&acme.client, &limited).await;
    assert_eq!(
        r.status(),
        200,
        "the nonce of a rate-limited request was stored"
    );
    // Its replay, once the rate lets it reach the nonce check, is refused.
    let r = once_the_rate_allows(&acme.client, &limited).await;
    assert_eq!(r.status(), 401, "a served request's replay is refused");
    // Acme was limited, not banned: served again once the rate allows.
    let r = once_the_rate_allows(&acme.client, &acme.ping()).await;
    assert_eq!(r.status(), 200);
}

/// Sends `request` until the partner's rate limit lets it through (each
/// 429 before leaves nothing behind), at most 10 s; the first other answer.
async fn once_the_rate_allows(
    client: &reqwest::Client,
    request: &reqwest::Request,
) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client.execute(request.try_clone().unwrap()).await.unwrap();
        if r.status() != 429 {
            return r;
        }
        assert!(Instant::now() < deadline, "still rate-limited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A partner file upload with `extra` headers.
async fn partner_file(
    caller: &PartnerCaller,
    name: &str,
    data: &[u8],
    claimed: &[u8],
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut headers = vec![
        ("x-filename", name),
        ("content-type", "application/octet-stream"),
    ];
    headers.extend_from_slice(extra);
    caller
        .request(wire::FILES_PATH, data.to_vec(), claimed, &headers)
        .send()
        .await
        .unwrap()
}

async fn problem_type(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    p["type"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_cannot_choose_where_its_files_go_and_is_held_to_its_daily_quota() {
    let (a, b) = two_orgs_with("").await;
    let (_, key_for_a) = connect(&a, &b);
    let acme = PartnerCaller::new(&b, &key_for_a);

    // By default a partner's files land in partners/<name>.
    let r = partner_file(&acme, "plain.txt", b"plain", b"plain", &[]).await;
    assert_eq!(r.status(), 201);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["folder"], "partners/acme");

    // The attack: a partner writing into one of our users' folders, by
    // header or by a multipart field.
    for folder in [
        "finance",
        "/",
        "partners",
        "partners/beta",
        "partners/acme2",
    ] {
        let r = partner_file(&acme, "evil.txt", b"evil", b"evil", &[("x-folder", folder)]).await;
        assert_eq!(
            problem_type(r, 403).await,
            "urn:mft:problem:folder-not-allowed",
            "{folder}"
        );
    }
    let multipart =
        b"--x\r\nContent-Disposition: form-data; name=\"folder\"\r\n\r\nfinance\r\n--x--\r\n";
    let r = acme
        .request(
            wire::FILES_PATH,
            multipart.to_vec(),
            multipart,
            &[("content-type", "multipart/form-data; boundary=x")],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Below its inbox is fine.
    let r = partner_file(
        &acme,
        "sub.txt",
        b"sub",
        b"sub",
        &[("x-folder", "partners/acme/2026")],
    )
    .await;
    assert_eq!(r.status(), 201);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["folder"], "partners/acme/2026");
    let all = b
        .gateway
        .client(&b.certs, Proto::Http1)
        .get(format!("{}/api/v1/files", b.gateway.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!all.contains("evil.txt"), "{all}");

    // The admin moves the inbox and sets a quota of 1000 bytes a day.
    let (code, out, err) = b
        .partners_live(&[
            "set-inbox",
            "acme",
            "--folder",
            "inbound/acme",
            "--quota-bytes-per-day",
            "1000",
        ])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = b.partners(&["list", "--json"]);
    assert!(out.contains("\"inbox_folder\":\"inbound/acme\""), "{out}");
    assert!(out.contains("\"quota_bytes_per_day\":1000"), "{out}");

    let six = vec![b'6'; 600];
    let r = partner_file(&acme, "six.bin", &six, &six, &[]).await;
    assert_eq!(r.status(), 201);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["folder"], "inbound/acme");
    // 600 + 600 > 1000: refused by its Content-Length, before the body.
    let r = partner_file(&acme, "again.bin", &six, &six, &[]).await;
    assert!(r.headers().contains_key("retry-after"), "{r:?}");
    assert_eq!(problem_type(r, 429).await, "urn:mft:problem:quota-exceeded");
    // A refused upload (its body does not match its digest) costs nothing:
    // 600 + 300 (refunded) + 400 fits.
    let three = vec![b'3'; 300];
    let r = partner_file(&acme, "bad.bin", &three, b"other", &[]).await;
    assert_eq!(r.status(), 400);
    let four = vec![b'4'; 400];
    let r = partner_file(&acme, "four.bin", &four, &four, &[]).await;
    assert_eq!(r.status(), 201, "a refused upload was counted");
    let r = partner_file(&acme, "one.bin", b"1", b"1", &[]).await;
    assert_eq!(problem_type(r, 429).await, "urn:mft:problem:quota-exceeded");

    // The admin API does the same: back to the default inbox, no quota.
    let r = reqwest::Client::new()
        .put(format!(
            "http://{}/admin/v1/partners/acme/inbox",
            b.gateway.admin
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"folder": null, "quota_bytes_per_day": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["inbox_folder"], "partners/acme");
    let r = partner_file(&acme, "one.bin", b"1", b"1", &[]).await;
    assert_eq!(r.status(), 201);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["folder"], "partners/acme");
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

async fn wait_redis_up(admin: std::net::SocketAddr) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = mft_e2e::metrics(admin).await;
        if mft_e2e::metric(&page, "mft_ratelimit_redis_up") == Some(1.0) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Redis never up:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two instances of the receiving organisation's gateway share one Redis
/// (and one key store): a partner's daily quota holds across both, a
/// refused upload gives its bytes back, and the count expires with the day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partners_daily_quota_holds_across_gateways_sharing_redis() {
    let redis_dir = tempfile::tempdir().unwrap();
    let redis = mft_e2e::start_redis(redis_dir.path());
    let (a, mut b) = two_orgs_with(&format!("\n[rate_limit]\nredis = \"{}\"\n", redis.url)).await;
    let (_, key_for_a) = connect(&a, &b);
    let (code, out, err) = b.partners(&["set-inbox", "acme", "--quota-bytes-per-day", "1000"]);
    assert_eq!(code, 0, "{out}{err}");

    // A second instance of B: its own ports and data_dir, a copy of the
    // key store (connections and their quotas; B stops for the copy, so
    // the SQLite files are consistent), the same Redis.
    let b2_dir = tempfile::tempdir().unwrap();
    b.gateway.proc.signal("TERM");
    assert!(b.gateway.proc.wait_exit(Duration::from_secs(30)).is_some());
    let data = b2_dir.path().join("gateway-data");
    std::fs::create_dir_all(&data).unwrap();
    for entry in std::fs::read_dir(b.path.join("gateway-data")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("keys.sqlite") {
            std::fs::copy(entry.path(), data.join(name)).unwrap();
        }
    }
    b.gateway = b.gateway.relaunch(&b.path, &b.certs).await;
    // Another instance: b's config on ports of its own.
    let (addr, admin) = (mft_e2e::ephemeral(), mft_e2e::ephemeral());
    let config = std::fs::read_to_string(&b.gateway.config).unwrap();
    let config = mft_e2e::set_key(&config, "https_listen", &addr.to_string());
    let config = mft_e2e::set_key(&config, "admin_listen", &admin.to_string());
    let config_path = b2_dir.path().join("gateway.toml");
    std::fs::write(&config_path, config).unwrap();
    let b2 = mft_e2e::launch_gateway(
        b2_dir.path(),
        &b.certs,
        config_path,
        addr,
        admin,
        b.gateway.key.clone(),
    )
    .await;
    wait_redis_up(b.gateway.admin).await;
    wait_redis_up(b2.admin).await;
    let to_b = PartnerCaller::new(&b, &key_for_a);
    let to_b2 = PartnerCaller::to_gateway(&b, &b2, &key_for_a);

    let six = vec![b'6'; 600];
    let r = partner_file(&to_b, "six.bin", &six, &six, &[]).await;
    assert_eq!(r.status(), 201);
    // The attack: the same partner tries the other instance for a second
    // day's worth. 600 + 600 > 1000 across the cluster.
    let r = partner_file(&to_b2, "six-again.bin", &six, &six, &[]).await;
    assert_eq!(problem_type(r, 429).await, "urn:mft:problem:quota-exceeded");
    // An upload the backend does not store (its body does not match its
    // digest) gives its bytes back: 600 + 400 fits afterwards.
    let three = vec![b'3'; 300];
    let r = partner_file(&to_b2, "bad.bin", &three, b"other", &[]).await;
    assert_eq!(r.status(), 400);
    let four = vec![b'4'; 400];
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = partner_file(&to_b2, "four.bin", &four, &four, &[]).await;
        if r.status() == 201 {
            break;
        }
        // The refund of the refused upload runs just after its answer.
        assert_eq!(r.status(), 429);
        assert!(
            std::time::Instant::now() < deadline,
            "the refused upload was counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for caller in [&to_b, &to_b2] {
        let r = partner_file(caller, "one.bin", b"1", b"1", &[]).await;
        assert_eq!(problem_type(r, 429).await, "urn:mft:problem:quota-exceeded");
    }
    // One count in Redis, expiring after the day.
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let key = format!("mft:quota:partner:acme:{day}");
    assert_eq!(redis_command(redis.addr, &format!("GET {key}")), "$4");
    let ttl: i64 = redis_command(redis.addr, &format!("TTL {key}"))
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!(ttl > 0 && ttl <= 86_400 + 3600, "{ttl}");
    drop(b2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_trickling_a_delivery_body_gets_408_from_the_minimum_body_rate() {
    // Federation deliveries and receipts are read whole before they are
    // handled: that read is held to `min_body_rate` like any proxied body.
    let (a, b) = two_orgs_with_tables(
        "",
        "[limits]\nmin_body_rate = \"1 KiB\"\nmin_body_rate_window = \"2s\"\n",
    )
    .await;
    let (_, key_for_a) = connect(&a, &b);
    let acme = PartnerCaller::new(&b, &key_for_a);
    let json = serde_json::to_vec(&serde_json::json!({
        "relay_id": "trickled-delivery-0001",
        "sender": "anna@acme.example",
        "recipients": ["bob@beta.example"],
        "subject": "trickled",
        "message": "one byte every 300 ms",
        "files": [],
    }))
    .unwrap();
    let paced = {
        let data = json.clone();
        let s = futures_util::stream::unfold(0usize, move |at| {
            let data = data.clone();
            async move {
                if at >= data.len() {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(&data[at..at + 1])),
                    at + 1,
                ))
            }
        });
        reqwest::Body::wrap_stream(s)
    };
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        acme.request(
            wire::DELIVERIES_PATH,
            json.clone(),
            &json,
            &[("content-type", "application/json")],
        )
        .body(paced)
        .send(),
    )
    .await
    .expect("the trickle was not cut off within 30 s")
    .unwrap();
    assert_eq!(r.status(), 408);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["type"], "urn:mft:problem:body-too-slow");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "cut before a window of waiting: {:?}",
        started.elapsed()
    );
    // The same delivery at full speed is read and judged (not 408).
    let r = acme
        .request(
            wire::DELIVERIES_PATH,
            json.clone(),
            &json,
            &[("content-type", "application/json")],
        )
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 408);
    assert!(r.status().as_u16() < 500, "{}", r.status());
}
