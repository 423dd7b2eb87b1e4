//! The SMTP listener with real clients (swaks, Python smtplib): STARTTLS,
//! AUTH, policy refusals, large and RFC 2231-named attachments, and the
//! durable spool surviving SIGKILL while the backend is down.

use mft_e2e::smtp::*;
use mft_e2e::*;
use std::time::Duration;

struct Stack {
    dir: std::path::PathBuf,
    certs: Certs,
    backend: Backend,
    smtp: SmtpGateway,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    _dir: tempfile::TempDir,
}

async fn stack(extra: &str) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let certs = make_certs(&path);
    let backend = start_backend(&path).await;
    let smtp = start_smtp_gateway(&path, &certs, &backend.url, extra).await;
    Stack {
        _dir: dir,
        dir: path,
        certs,
        backend,
        smtp,
    }
}

impl Stack {
    fn port(&self) -> String {
        self.smtp.smtp.port().to_string()
    }

    fn ca(&self) -> String {
        self.certs.ca.display().to_string()
    }

    /// smtplib over STARTTLS as the gateway's API key, to `to`.
    fn send(&self, subject: &str, to: &[&str], more: &[&str]) -> serde_json::Value {
        let port = self.port();
        let ca = self.ca();
        let mut args = vec![
            "--port",
            &port,
            "--starttls",
            "--cafile",
            &ca,
            "--user",
            "any",
            "--password",
            &self.smtp.gw.key,
            "--subject",
            subject,
        ];
        for t in to {
            args.extend(["--to", t]);
        }
        args.extend_from_slice(more);
        smtplib(&args)
    }
}

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn swaks_starttls_auth_plain_with_api_key_becomes_a_delivery_with_origin_smtp() {
    let s = stack("").await;
    let (path, sha) = attachment(&s.dir, "report.pdf", 300_000, 1);
    let port = s.port();
    let (ok, transcript) = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "svc",
        "--auth-password",
        &s.smtp.gw.key,
        "--from",
        "alice@partner.example",
        "--to",
        "bob@ourcorp.example",
        "--header",
        "Subject: swaks delivery",
        "--body",
        "hello from swaks",
        "--attach",
        &format!("@{}", path.display()),
        "--pipeline",
    ]);
    assert!(ok, "{transcript}");
    assert!(
        transcript.contains("250-STARTTLS") || transcript.contains("250 STARTTLS"),
        "{transcript}"
    );
    assert!(transcript.contains("235 2.7.0"), "{transcript}");
    assert!(
        transcript.contains("250 2.0.0 OK queued as"),
        "{transcript}"
    );
    // The API key never appears in the gateway's output.
    let key_secret = mft_e2e::key_secret(&s.smtp.gw.key).to_string();

    let d = wait_delivery(&s.smtp.gw, &s.certs, "swaks delivery", LONG).await;
    assert_eq!(d["origin"], "smtp");
    assert_eq!(d["sender"], "alice@partner.example");
    assert_eq!(d["recipients"], serde_json::json!(["bob@ourcorp.example"]));
    assert!(
        d["message"].as_str().unwrap().contains("hello from swaks"),
        "{d}"
    );
    let files = d["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{d}");
    let f = file(&s.smtp.gw, &s.certs, files[0].as_str().unwrap()).await;
    assert_eq!(f["name"], "report.pdf");
    assert_eq!(f["sha256"], sha.as_str());
    assert!(f["created_by"].as_str().unwrap().starts_with("key:"), "{f}");
    wait_spool_depth(s.smtp.gw.admin, 0.0, LONG).await;
    let page = metrics(s.smtp.gw.admin).await;
    assert_eq!(
        metric(&page, r#"mft_smtp_messages_total{outcome="accepted"}"#),
        Some(1.0)
    );
    assert!(!s.smtp.gw.proc.stderr().contains(&key_secret));
    assert!(!s.smtp.gw.proc.stdout().contains(&key_secret));
}

#[tokio::test]
async fn auth_with_bridge_user_over_implicit_tls_and_refusals() {
    let s = stack("").await;
    let ca = s.ca();
    let port = s.port();
    let smtps = s.smtp.smtps.port().to_string();
    // A bridge user (argon2id) over implicit TLS with AUTH LOGIN.
    let r = smtplib(&[
        "--port",
        &smtps,
        "--ssl",
        "--cafile",
        &ca,
        "--user",
        BRIDGE_USER,
        "--password",
        BRIDGE_PASSWORD,
        "--mech",
        "LOGIN",
        "--to",
        "carol@ourcorp.example",
        "--subject",
        "bridge user",
    ]);
    assert_eq!(code(&r, "auth"), 235, "{r}");
    assert_eq!(code(&r, "data"), 250, "{r}");
    let d = wait_delivery(&s.smtp.gw, &s.certs, "bridge user", LONG).await;
    assert_eq!(d["origin"], "smtp");
    assert_eq!(d["created_by"], format!("smtp:{BRIDGE_USER}"));

    // AUTH before TLS: 538, and EHLO in clear does not offer AUTH.
    let r = smtplib(&[
        "--port",
        &port,
        "--raw-auth",
        "--user",
        "any",
        "--password",
        &s.smtp.gw.key,
        "--to",
        "bob@ourcorp.example",
    ]);
    assert_eq!(code(&r, "auth"), 538, "{r}");
    assert!(!r["ehlo"][1].as_str().unwrap().contains("AUTH"), "{r}");
    assert!(r["ehlo"][1].as_str().unwrap().contains("STARTTLS"), "{r}");

    // Wrong passwords: 535 for a bridge user and for a wrong API key.
    for (user, pw) in [(BRIDGE_USER, "wrong"), ("any", "mgw_nosuchkey_secret")] {
        let r = smtplib(&[
            "--port",
            &port,
            "--starttls",
            "--cafile",
            &ca,
            "--user",
            user,
            "--password",
            pw,
            "--to",
            "bob@ourcorp.example",
        ]);
        assert_eq!(code(&r, "auth"), 535, "{r}");
        assert!(r["auth"][1].as_str().unwrap().starts_with("5.7.8"), "{r}");
    }
    // Without AUTH no mail is accepted.
    let r = smtplib(&[
        "--port",
        &port,
        "--starttls",
        "--cafile",
        &ca,
        "--to",
        "bob@ourcorp.example",
    ]);
    assert_eq!(code(&r, "mail"), 530, "{r}");
    let page = metrics(s.smtp.gw.admin).await;
    assert_eq!(
        metric(&page, r#"mft_smtp_rejections_total{reason="auth_failed"}"#),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &page,
            r#"mft_smtp_rejections_total{reason="auth_without_tls"}"#
        ),
        Some(1.0)
    );
    // Audit: successes and failures recorded, never the secret.
    let audit_path = s.dir.join("gateway-data/audit.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let audit = loop {
        let audit = std::fs::read_to_string(&audit_path).unwrap_or_default();
        let auths: Vec<&str> = audit
            .lines()
            .filter(|l| l.contains(r#""event":"smtp_auth""#))
            .collect();
        if auths
            .iter()
            .filter(|l| l.contains(r#""decision":"deny""#))
            .count()
            >= 2
            && auths.iter().any(|l| l.contains(r#""decision":"allow""#))
        {
            break audit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "smtp_auth records missing:\n{audit}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!audit.contains(BRIDGE_PASSWORD));
    assert!(!audit.contains(&s.smtp.gw.key));
}

#[tokio::test]
async fn policy_refusals_unknown_recipient_sender_size_and_malformed() {
    let s = stack(r#"max_message_bytes = "64 KiB""#).await;
    // A recipient outside the organisation's domains: 550 5.1.1 (others still accepted).
    let r = s.send(
        "mixed",
        &["bob@elsewhere.example", "bob@ourcorp.example"],
        &[],
    );
    assert_eq!(code(&r, "auth"), 235, "{r}");
    assert_eq!(r["rcpt"][0][0], 550, "{r}");
    assert!(
        r["rcpt"][0][1].as_str().unwrap().starts_with("5.1.1"),
        "{r}"
    );
    assert_eq!(r["rcpt"][1][0], 250, "{r}");
    assert_eq!(code(&r, "data"), 250, "{r}");
    let d = wait_delivery(&s.smtp.gw, &s.certs, "mixed", LONG).await;
    assert_eq!(d["recipients"], serde_json::json!(["bob@ourcorp.example"]));

    // A sender domain that is not allowed.
    let r = s.send(
        "x",
        &["bob@ourcorp.example"],
        &["--from", "eve@evil.example"],
    );
    assert_eq!(code(&r, "mail"), 550, "{r}");

    // Over SIZE: announced in MAIL FROM, and (not announced) while receiving DATA.
    let (big, _) = attachment(&s.dir, "big.bin", 100_000, 2);
    let big = big.display().to_string();
    let r = s.send("too big", &["bob@ourcorp.example"], &["--size", "200000"]);
    assert_eq!(code(&r, "mail"), 552, "{r}");
    let r = s.send("too big", &["bob@ourcorp.example"], &["--attach", &big]);
    assert_eq!(code(&r, "data"), 552, "{r}");
    assert!(r["data"][1].as_str().unwrap().starts_with("5.3.4"), "{r}");
    // The session is still usable after the refused DATA.
    assert_eq!(code(&r, "quit"), 221, "{r}");

    // A message without a header section: 554 5.6.0 before acceptance.
    let raw = s.dir.join("malformed.eml");
    std::fs::write(&raw, "this is not\r\nan e-mail message\r\n").unwrap();
    let raw = raw.display().to_string();
    let r = s.send("malformed", &["bob@ourcorp.example"], &["--raw", &raw]);
    assert_eq!(code(&r, "data"), 554, "{r}");
    assert!(r["data"][1].as_str().unwrap().starts_with("5.6.0"), "{r}");

    wait_spool_depth(s.smtp.gw.admin, 0.0, LONG).await;
    let page = metrics(s.smtp.gw.admin).await;
    assert_eq!(
        metric(&page, r#"mft_smtp_messages_total{outcome="accepted"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&page, r#"mft_smtp_messages_total{outcome="too_big"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&page, r#"mft_smtp_messages_total{outcome="unparseable"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &page,
            r#"mft_smtp_rejections_total{reason="recipient_domain"}"#
        ),
        Some(1.0)
    );
    assert_eq!(deliveries(&s.smtp.gw, &s.certs).await.len(), 1);
}

#[tokio::test]
async fn twenty_mib_attachment_with_rfc2231_name_arrives_intact() {
    let s = stack("").await;
    let (path, sha) = attachment(&s.dir, "big.bin", 20 << 20, 3);
    let path = path.display().to_string();
    let name = "Übersicht März – 2026.bin";
    let r = s.send(
        "twenty mib",
        &["bob@ourcorp.example"],
        &["--attach", &path, "--attach-name", name],
    );
    assert_eq!(code(&r, "data"), 250, "{r}");
    let d = wait_delivery(&s.smtp.gw, &s.certs, "twenty mib", LONG).await;
    let files = d["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{d}");
    let f = file(&s.smtp.gw, &s.certs, files[0].as_str().unwrap()).await;
    assert_eq!(f["name"], name);
    assert_eq!(f["size"], 20 << 20);
    assert_eq!(f["sha256"], sha.as_str());
}

#[tokio::test]
async fn accepted_message_survives_sigkill_while_backend_is_down_and_is_delivered_once() {
    let mut s = stack("").await;
    let (path, sha) = attachment(&s.dir, "ledger.csv", 2 << 20, 4);
    let path = path.display().to_string();
    let backend_addr: std::net::SocketAddr =
        s.backend.url.trim_start_matches("http://").parse().unwrap();
    // Backend down: the 250 must not depend on it.
    s.backend.proc.signal("KILL");
    s.backend.proc.wait_exit(Duration::from_secs(10)).unwrap();
    let r = s.send("crash safe", &["bob@ourcorp.example"], &["--attach", &path]);
    assert_eq!(code(&r, "data"), 250, "{r}");
    // Killed right after the 250: the spool (fsynced) is all that remains.
    s.smtp.gw.proc.signal("KILL");
    s.smtp.gw.proc.wait_exit(Duration::from_secs(10)).unwrap();
    let spooled: Vec<_> = std::fs::read_dir(s.dir.join("gateway-data/spool"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".msg"))
        .collect();
    assert_eq!(spooled.len(), 1);

    s.backend = start_backend_at(&s.dir, backend_addr).await;
    s.smtp = restart(&s.dir, &s.certs, &s.smtp).await;
    let d = wait_delivery(&s.smtp.gw, &s.certs, "crash safe", LONG).await;
    assert_eq!(d["origin"], "smtp");
    let files = d["files"].as_array().unwrap();
    let f = file(&s.smtp.gw, &s.certs, files[0].as_str().unwrap()).await;
    assert_eq!(f["sha256"], sha.as_str());
    wait_spool_depth(s.smtp.gw.admin, 0.0, LONG).await;
    // Still exactly one after the worker had time to (wrongly) repeat it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        deliveries_with_subject(&s.smtp.gw, &s.certs, "crash safe")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn failed_bridge_logins_feed_the_defender_and_a_banned_client_is_refused_at_connect() {
    let s = stack("\n[defender]\nthreshold = 2\n").await;
    let (ca, port) = (s.ca(), s.port());
    let wrong = |to: &str| {
        smtplib(&[
            "--port",
            &port,
            "--starttls",
            "--cafile",
            &ca,
            "--user",
            BRIDGE_USER,
            "--password",
            "not-the-password",
            "--to",
            to,
        ])
    };
    assert_eq!(code(&wrong("bob@ourcorp.example"), "auth"), 535);
    assert_eq!(code(&wrong("bob@ourcorp.example"), "auth"), 535);
    // Banned now: even the right password gets no further than the greeting.
    let r = smtplib(&[
        "--port",
        &port,
        "--starttls",
        "--cafile",
        &ca,
        "--user",
        BRIDGE_USER,
        "--password",
        BRIDGE_PASSWORD,
        "--to",
        "bob@ourcorp.example",
    ]);
    assert_eq!(code(&r, "connect"), 554, "{r}");
    let page = metrics(s.smtp.gw.admin).await;
    assert_eq!(
        metric(
            &page,
            r#"mft_smtp_sessions_total{outcome="refused_banned"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_message_the_backend_refuses_moves_to_spool_failed_with_the_reason() {
    let s = stack("").await;
    // Accepted by SMTP (it parses), refused by the backend (a NUL in the text).
    let raw = s.dir.join("nul.eml");
    std::fs::write(
        &raw,
        "From: alice@partner.example\r\nTo: bob@ourcorp.example\r\nSubject: refused later\r\n\r\nbefore\0after\r\n",
    )
    .unwrap();
    let raw = raw.display().to_string();
    let r = s.send("refused later", &["bob@ourcorp.example"], &["--raw", &raw]);
    assert_eq!(code(&r, "data"), 250, "{r}");
    let failed = s.dir.join("gateway-data/spool/failed");
    let deadline = std::time::Instant::now() + LONG;
    let reason = loop {
        let reason = std::fs::read_dir(&failed)
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(".reason"));
        if let Some(e) = reason {
            break std::fs::read_to_string(e.path()).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing in spool/failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reason.contains("400"), "{reason}");
    wait_spool_depth(s.smtp.gw.admin, 0.0, LONG).await;
    assert!(
        deliveries_with_subject(&s.smtp.gw, &s.certs, "refused later")
            .await
            .is_empty()
    );
    let page = metrics(s.smtp.gw.admin).await;
    assert_eq!(
        metric(&page, r#"mft_smtp_spool_failed_total{stage="delivery"}"#),
        Some(1.0)
    );
}

#[tokio::test]
async fn starttls_forgets_the_plain_session_and_drops_pipelined_bytes_and_data_is_dot_unstuffed() {
    use base64::Engine;
    let s = stack("").await;
    let tcp = tokio::net::TcpStream::connect(s.smtp.smtp).await.unwrap();
    let mut c = RawSmtp::new(tcp);
    assert!(c.reply().await[0].starts_with("220 mx.ourcorp.example"));
    c.send("EHLO client.example\r\n").await;
    let ehlo = c.reply().await;
    assert!(ehlo.iter().any(|l| l.ends_with("STARTTLS")), "{ehlo:?}");
    assert!(!ehlo.iter().any(|l| l.contains("AUTH")), "{ehlo:?}");
    // An injected command behind STARTTLS must not be executed after TLS.
    c.send("STARTTLS\r\nNOOP\r\n").await;
    assert!(c.reply().await[0].starts_with("220 2.0.0"));
    let tls = starttls(&s.certs, c.into_inner()).await;
    let mut c = RawSmtp::new(tls);
    // The EHLO from before TLS is forgotten: MAIL needs a new EHLO.
    c.send("MAIL FROM:<alice@partner.example>\r\n").await;
    let r = c.reply().await;
    assert!(
        r[0].starts_with("503 5.5.1"),
        "{r:?} (a NOOP reply here would be the injection)"
    );
    c.send("EHLO client.example\r\n").await;
    let ehlo = c.reply().await;
    assert!(
        ehlo.iter().any(|l| l.ends_with("AUTH PLAIN LOGIN")),
        "{ehlo:?}"
    );
    assert!(!ehlo.iter().any(|l| l.contains("STARTTLS")), "{ehlo:?}");
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("\0svc\0{}", s.smtp.gw.key));
    // PIPELINING: the whole transaction up to DATA in one write.
    c.send(&format!(
        "AUTH PLAIN {token}\r\nMAIL FROM:<alice@partner.example>\r\nRCPT TO:<bob@ourcorp.example>\r\nDATA\r\n"
    ))
    .await;
    assert!(c.reply().await[0].starts_with("235 2.7.0"));
    assert!(c.reply().await[0].starts_with("250 2.1.0"));
    assert!(c.reply().await[0].starts_with("250 2.1.5"));
    assert!(c.reply().await[0].starts_with("354"));
    c.send(
        "From: alice@partner.example\r\nTo: bob@ourcorp.example\r\nSubject: dots\r\n\r\n\
         first\r\n..starts with a dot\r\n.\r\nQUIT\r\n",
    )
    .await;
    let r = c.reply().await;
    assert!(r[0].starts_with("250 2.0.0 OK queued as"), "{r:?}");
    assert!(c.reply().await[0].starts_with("221"));
    let d = wait_delivery(&s.smtp.gw, &s.certs, "dots", LONG).await;
    assert_eq!(d["message"], "first\r\n.starts with a dot\r\n", "{d}");
}

#[tokio::test]
async fn a_client_outside_the_allowed_networks_is_refused_at_connect() {
    let s = stack(r#"allowed_client_networks = ["192.0.2.0/24"]"#).await;
    let port = s.port();
    let r = smtplib(&["--port", &port, "--to", "bob@ourcorp.example"]);
    assert_eq!(code(&r, "connect"), 554, "{r}");
    let page = metrics(s.smtp.gw.admin).await;
    assert_eq!(
        metric(
            &page,
            r#"mft_smtp_sessions_total{outcome="refused_network"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn an_idle_client_is_disconnected_with_421_after_command_timeout() {
    let s = stack(r#"command_timeout = "1s""#).await;
    let tcp = tokio::net::TcpStream::connect(s.smtp.smtp).await.unwrap();
    let mut c = RawSmtp::new(tcp);
    assert!(c.reply().await[0].starts_with("220"));
    // Say nothing: the listener gives up after the command timeout.
    let r = c.reply().await;
    assert!(r[0].starts_with("421 4.4.2"), "{r:?}");
}

#[tokio::test]
async fn a_spool_write_failure_answers_451_never_250() {
    let s = stack("").await;
    // Break the spool under the running gateway: its temp directory becomes a file.
    let tmp = s.dir.join("gateway-data/spool/tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    let r = s.send("not queued", &["bob@ourcorp.example"], &[]);
    assert_eq!(code(&r, "data"), 451, "{r}");
    assert!(r["data"][1].as_str().unwrap().starts_with("4.3.0"), "{r}");
    let page = metrics(s.smtp.gw.admin).await;
    assert_eq!(
        metric(&page, r#"mft_smtp_messages_total{outcome="spool_error"}"#),
        Some(1.0)
    );
    assert_eq!(metric(&page, "mft_smtp_spool_depth"), Some(0.0));
}
