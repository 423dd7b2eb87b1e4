//! Attacks on the SMTP listener from the security review (Medium): one
//! address taking every session slot, and clients that keep a session (or a
//! DATA transfer) alive for ever by trickling bytes under the idle timeout.

use mft_e2e::smtp::{deliveries, start_smtp_gateway, RawSmtp, SmtpGateway};
use mft_e2e::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};

struct Stack {
    certs: Certs,
    _backend: Backend,
    smtp: SmtpGateway,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    _dir: tempfile::TempDir,
}

async fn stack(extra: &str) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let smtp = start_smtp_gateway(dir.path(), &certs, &backend.url, extra).await;
    Stack {
        _dir: dir,
        certs,
        _backend: backend,
        smtp,
    }
}

/// A connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> RawSmtp<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    RawSmtp::new(socket.connect(to).await.unwrap())
}

/// Attack: one address opens sessions until the listener is full, locking
/// every other sender out (one global cap of 100, nothing per address).
/// Now that address gets `421` at its own cap, and another address is
/// still served; a closed session frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_smtp_session() {
    let s = stack("max_connections = 5\nmax_connections_per_ip = 2").await;
    let addr = s.smtp.smtp;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = connect_from("127.0.0.1", addr).await;
        assert!(c.reply().await[0].starts_with("220 "));
        held.push(c);
    }
    let mut third = connect_from("127.0.0.1", addr).await;
    let r = third.reply().await;
    assert!(
        r[0].starts_with("421 4.7.0 Too many connections from your address"),
        "{r:?}"
    );
    // Another address is served while the first one is at its cap.
    let mut other = connect_from("127.0.0.2", addr).await;
    assert!(other.reply().await[0].starts_with("220 "));
    other.send("EHLO other.example\r\n").await;
    assert!(other.reply().await.last().unwrap().starts_with("250 "));
    other.send("QUIT\r\n").await;
    assert!(other.reply().await[0].starts_with("221"));
    // A session that ends gives its slot back.
    let mut first = held.remove(0);
    first.send("QUIT\r\n").await;
    assert!(first.reply().await[0].starts_with("221"));
    drop(first);
    let start = Instant::now();
    loop {
        let mut again = connect_from("127.0.0.1", addr).await;
        let r = again.reply().await;
        if r[0].starts_with("220 ") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = metrics(s.smtp.gw.admin).await;
    assert!(
        metric(
            &page,
            r#"mft_smtp_sessions_total{outcome="refused_per_ip"}"#
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{page}"
    );
}

/// Attack: a client sends a NOOP every half second (under any idle
/// timeout) and holds its session for ever; another sends its DATA one
/// line at a time. Both are now cut at their deadline with `421 4.4.2`, and
/// the trickled message is not accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_clients_are_cut_at_the_session_and_data_deadlines() {
    let s = stack("require_auth = false\nmax_session_time = \"3s\"\nmax_data_time = \"2s\"").await;
    let addr = s.smtp.smtp;

    let mut c = connect_from("127.0.0.1", addr).await;
    assert!(c.reply().await[0].starts_with("220 "));
    let start = Instant::now();
    c.send("EHLO trickle.example\r\n").await;
    c.reply().await;
    let cut = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.send("NOOP\r\n").await;
        let r = c.reply().await;
        if !r[0].starts_with("250") {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "never cut off");
    };
    assert!(
        cut[0].starts_with("421 4.4.2 Session or DATA time limit"),
        "{cut:?}"
    );
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(2500), "{elapsed:?}");

    let mut d = connect_from("127.0.0.1", addr).await;
    assert!(d.reply().await[0].starts_with("220 "));
    d.send("EHLO trickle.example\r\n").await;
    d.reply().await;
    d.send("MAIL FROM:<slow@partner.example>\r\n").await;
    assert!(d.reply().await[0].starts_with("250"));
    d.send("RCPT TO:<ops@ourcorp.example>\r\n").await;
    assert!(d.reply().await[0].starts_with("250"));
    d.send("DATA\r\n").await;
    assert!(d.reply().await[0].starts_with("354"));
    let data_start = Instant::now();
    // One short line every 300 ms: every read comes well within data_timeout.
    let mut tcp = d.into_inner();
    let mut heard = Vec::new();
    for i in 0.. {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        assert!(
            data_start.elapsed() < Duration::from_secs(15),
            "never cut off"
        );
        let _ = tcp.write_all(format!("X-Line-{i}: x\r\n").as_bytes()).await;
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => heard.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if heard.ends_with(b"\r\n") {
            break;
        }
    }
    let heard = String::from_utf8_lossy(&heard);
    assert!(
        heard.starts_with("421 4.4.2 Session or DATA time limit"),
        "{heard:?}"
    );
    assert!(data_start.elapsed() >= Duration::from_millis(1500));
    // No 250 was sent, so nothing was spooled or delivered.
    let all = deliveries(&s.smtp.gw, &s.certs).await;
    assert!(all.iter().all(|x| x["subject"] != "trickled"), "{all:?}");
}

fn swaks_send(
    s: &Stack,
    auth: Option<&str>,
    subject: &str,
    attachments: &[std::path::PathBuf],
) -> (bool, String) {
    let port = s.smtp.smtp.port().to_string();
    let mut args: Vec<String> = ["--server", "127.0.0.1", "--port", &port, "--tls"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    if let Some(key) = auth {
        for a in [
            "--auth",
            "PLAIN",
            "--auth-user",
            "svc",
            "--auth-password",
            key,
        ] {
            args.push(a.to_string());
        }
    }
    for a in [
        "--from",
        "alice@partner.example",
        "--to",
        "bob@ourcorp.example",
        "--header",
        &format!("Subject: {subject}"),
        "--body",
        "see attached",
    ] {
        args.push(a.to_string());
    }
    for p in attachments {
        args.push("--attach".into());
        args.push(format!("@{}", p.display()));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    mft_e2e::smtp::swaks(&refs)
}

/// Attacks: a message of many tiny attachments fans out into as many
/// backend uploads; an API key with only `deliveries:write` (enough to log
/// in to SMTP) stores files through attachments. Now the first gets `552`
/// above `max_attachments`, the second `550 5.7.1`, and neither stores a
/// byte; a message within both limits is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_fan_out_and_scopes_are_checked_per_message() {
    let s = stack("max_attachments = 3").await;
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<std::path::PathBuf> = (0..4)
        .map(|i| {
            let p = dir.path().join(format!("part-{i}.txt"));
            std::fs::write(&p, format!("part {i}")).unwrap();
            p
        })
        .collect();
    let key = s.smtp.gw.key.clone();
    let (ok, t) = swaks_send(&s, Some(&key), "four parts", &files);
    assert!(!ok, "{t}");
    assert!(t.contains("552 5.3.4 Too many attachments"), "{t}");

    let (_, deliveries_only) = create_key(&s.smtp.gw.config, "mailer", "deliveries:write");
    let (ok, t) = swaks_send(&s, Some(&deliveries_only), "with a file", &files[..1]);
    assert!(!ok, "{t}");
    assert!(t.contains("235 2.7.0"), "the key logs in: {t}");
    assert!(t.contains("550 5.7.1"), "{t}");
    // Without attachments the same key may deliver.
    let (ok, t) = swaks_send(&s, Some(&deliveries_only), "text only", &[]);
    assert!(ok, "{t}");

    let (ok, t) = swaks_send(&s, Some(&key), "three parts", &files[..3]);
    assert!(ok, "{t}");
    let d =
        mft_e2e::smtp::wait_delivery(&s.smtp.gw, &s.certs, "three parts", Duration::from_secs(30))
            .await;
    assert_eq!(d["files"].as_array().map(Vec::len), Some(3), "{d}");
    mft_e2e::smtp::wait_delivery(&s.smtp.gw, &s.certs, "text only", Duration::from_secs(30)).await;
    let all = deliveries(&s.smtp.gw, &s.certs).await;
    for refused in ["four parts", "with a file"] {
        assert!(all.iter().all(|x| x["subject"] != refused), "{all:?}");
    }
    let files_stored = {
        let client = s.smtp.gw.client(&s.certs, Proto::Http1);
        let v: serde_json::Value = client
            .get(format!("{}/api/v1/files", s.smtp.gw.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["files"].as_array().map(Vec::len).unwrap_or(0)
    };
    assert_eq!(
        files_stored, 3,
        "only the accepted message's parts are stored"
    );
}

/// Attack: an SMTP session authenticated with an API key goes on storing
/// messages after the key is revoked. Now the next message after the
/// revocation is refused with `421` and the session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stores_nothing_more_in_its_open_smtp_session() {
    use base64::Engine;
    let s = stack("").await;
    let (key_id, key) = create_key(&s.smtp.gw.config, "mailer", "files:write,deliveries:write");
    let tcp = TcpStream::connect(s.smtp.smtp).await.unwrap();
    let mut c = RawSmtp::new(tcp);
    assert!(c.reply().await[0].starts_with("220"));
    c.send("EHLO client.example\r\n").await;
    c.reply().await;
    c.send("STARTTLS\r\n").await;
    assert!(c.reply().await[0].starts_with("220"));
    let tls = mft_e2e::smtp::starttls(&s.certs, c.into_inner()).await;
    let mut c = RawSmtp::new(tls);
    c.send("EHLO client.example\r\n").await;
    c.reply().await;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0svc\0{key}"));
    c.send(&format!("AUTH PLAIN {token}\r\n")).await;
    assert!(c.reply().await[0].starts_with("235"));
    let message = |subject: &str| {
        format!(
            "MAIL FROM:<alice@partner.example>\r\nRCPT TO:<bob@ourcorp.example>\r\nDATA\r\n\
             Subject: {subject}\r\n\r\nbody\r\n.\r\n"
        )
    };
    c.send(&message("before revocation")).await;
    for _ in 0..3 {
        c.reply().await;
    }
    let queued = c.reply().await;
    assert!(queued[0].starts_with("250 2.0.0 OK queued"), "{queued:?}");

    revoke_key(&s.smtp.gw.config, &key_id);
    // Wait until the running gateway refuses the key over HTTPS: the
    // change has reached its cache.
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(s.certs.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let start = Instant::now();
    loop {
        let r = https
            .get(format!("{}/api/v1/files", s.smtp.gw.base))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap();
        if r.status() == 401 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not revoked in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.send(&message("after revocation")).await;
    for _ in 0..3 {
        c.reply().await;
    }
    let r = c.reply().await;
    assert!(r[0].starts_with("421 4.7.0 The credential"), "{r:?}");
    mft_e2e::smtp::wait_delivery(
        &s.smtp.gw,
        &s.certs,
        "before revocation",
        Duration::from_secs(30),
    )
    .await;
    let all = deliveries(&s.smtp.gw, &s.certs).await;
    assert!(
        all.iter().all(|d| d["subject"] != "after revocation"),
        "{all:?}"
    );
}
