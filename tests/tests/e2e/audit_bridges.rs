//! `audit.on_failure = "deny"` on the bridges (issue 21): while the audit
//! trail cannot be written (its own small tmpfs, filled up), the SMTP
//! listener answers 451 before accepting, the spool workers keep what is
//! spooled, SFTP refuses new operations and the POP3 poller leaves the
//! message in the mailbox; when space returns everything goes on without a
//! restart, and every message and file arrives exactly once.

use super::audit_chain::Tmpfs;
use super::pop3::pop3_table;
use mft_e2e::dovecot;
use mft_e2e::smtp::*;
use mft_e2e::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One message over implicit TLS with smtplib; its report.
fn send(smtps: SocketAddr, ca: &str, subject: &str, attach: &str) -> serde_json::Value {
    smtplib(&[
        "--port",
        &smtps.port().to_string(),
        "--ssl",
        "--cafile",
        ca,
        "--user",
        BRIDGE_USER,
        "--password",
        BRIDGE_PASSWORD,
        "--to",
        "carol@ourcorp.example",
        "--subject",
        subject,
        "--attach",
        attach,
    ])
}

/// `sftp -b -` as alice with `key`.
fn sftp_batch(sftp: SocketAddr, key: &Path, cwd: &Path, batch: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new("sftp")
        .args(["-b", "-", "-i"])
        .arg(key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "IdentityAgent=none",
            "-P",
            &sftp.port().to_string(),
            "alice@127.0.0.1",
        ])
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(batch.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

async fn wait_metric(admin: SocketAddr, series: &str, want: impl Fn(f64) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = metrics(admin).await;
        if want(metric(&page, series).unwrap_or(0.0)) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {series}\n{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn files_named(gw: &Gateway, certs: &Certs, name: &str) -> usize {
    let v: serde_json::Value = gw
        .client(certs, Proto::Http1)
        .get(format!("{}/api/v1/files?folder=partners/alice", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["files"]
        .as_array()
        .map(|a| a.iter().filter(|f| f["name"] == name).count())
        .unwrap_or(0)
}

#[tokio::test]
async fn bridges_take_nothing_in_while_the_audit_trail_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("audit-disk"), "16m") else {
        return;
    };
    let certs = make_certs(dir.path());
    let mut backend = start_backend(dir.path()).await;
    let backend_addr: SocketAddr = backend.url.trim_start_matches("http://").parse().unwrap();
    let mail = dovecot::start(dir.path(), &certs, dovecot::Options::default());
    let pw = super::imap::password_ref(dir.path());
    let key = dir.path().join("id_ed25519");
    let public = mft_e2e::sftp::keygen(&key);
    let (smtp, smtps, sftp) = (free_addr(), free_addr(), free_addr());
    let tables = format!(
        "{}\n[sftp]\nlisten = \"{sftp}\"\n\n[[sftp.users]]\nname = \"alice\"\nauthorized_keys = [\"{public}\"]\nfolder = \"partners/alice\"\npermissions = [\"upload\", \"download\", \"list\"]\n{}\n[audit]\nfile = \"{}\"\n",
        smtp_tables(smtp, smtps, ""),
        pop3_table(&mail, &pw, &certs.ca, "legacy-pop"),
        disk.0.join("audit.jsonl").display(),
    );
    let mut gw = start_gateway_with(dir.path(), &certs, &backend.url, "", &tables).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(sftp).is_err() {
        assert!(Instant::now() < deadline, "sftp not listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ca = certs.ca.display().to_string();
    let (attach, _) = attachment(dir.path(), "a.bin", 20 * 1024, 3);
    let attach = attach.display().to_string();
    for name in ["before.bin", "while.bin", "after.bin"] {
        mft_e2e::sftp::random_file(&dir.path().join(name), 64 * 1024, 9);
    }

    // Before: every bridge works.
    let r = send(smtps, &ca, "smtp-before", &attach);
    assert_eq!(code(&r, "data"), 250, "{r}");
    mail.save(
        "INBOX",
        &dovecot::message("polled-before", "p1.bin", b"first"),
    );
    let out = sftp_batch(sftp, &key, dir.path(), "put before.bin\n");
    assert!(out.status.success(), "{out:?}");
    wait_delivery(&gw, &certs, "smtp-before", Duration::from_secs(30)).await;
    wait_delivery(&gw, &certs, "polled-before", Duration::from_secs(30)).await;
    wait_spool_depth(gw.admin, 0.0, Duration::from_secs(30)).await;

    // A message spooled while the backend is down: its delivery comes due
    // while the trail cannot be written.
    backend.proc.signal("KILL");
    backend.proc.wait_exit(Duration::from_secs(10)).unwrap();
    let r = send(smtps, &ca, "smtp-queued", &attach);
    assert_eq!(code(&r, "data"), 250, "{r}");
    wait_spool_depth(gw.admin, 1.0, Duration::from_secs(10)).await;

    // The audit disk fills; the next record cannot be written.
    let filler = disk.fill("filler");
    let c = gw.client(&certs, Proto::Http1);
    let deadline = Instant::now() + Duration::from_secs(15);
    while c
        .get(format!("{}/api/v1/files", gw.base))
        .send()
        .await
        .unwrap()
        .status()
        != 503
    {
        assert!(Instant::now() < deadline, "never refused with a full disk");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The spool worker has seen the trail fail (a delivery already under
    // way when it started failing would finish, as a request under way
    // does on HTTPS): only then does the backend come back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gw.proc.stderr().contains("deliveries wait") {
        assert!(Instant::now() < deadline, "{}", gw.proc.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    backend = start_backend_at(dir.path(), backend_addr).await;

    // SMTP: 451 4.3.0 at MAIL, before any data.
    let r = send(smtps, &ca, "smtp-while", &attach);
    assert_eq!(code(&r, "mail"), 451, "{r}");
    assert!(r["mail"][1].as_str().unwrap().starts_with("4.3.0"), "{r}");
    assert!(r.get("data").is_none(), "{r}");

    // SFTP: the upload is refused, nothing stored.
    let out = sftp_batch(sftp, &key, dir.path(), "put while.bin\n");
    assert!(!out.status.success(), "{out:?}");

    // POP3: a new message stays in the mailbox, poll after poll.
    mail.save(
        "INBOX",
        &dovecot::message("polled-while", "p2.bin", b"second"),
    );
    wait_metric(
        gw.admin,
        "mft_mailbox_messages_total{mailbox=\"pop3:legacy-pop\",outcome=\"retry\"}",
        |v| v >= 2.0,
        "the poller never left the message for later",
    )
    .await;
    assert_eq!(mail.messages("INBOX").len(), 1, "taken while denying");

    // The spool keeps the queued message although the backend is back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let page = metrics(gw.admin).await;
    assert_eq!(metric(&page, "mft_smtp_spool_depth"), Some(1.0), "{page}");
    assert_eq!(metric(&page, "mft_audit_write_failing"), Some(1.0));
    let log = gw.proc.stderr();
    assert!(log.contains("sftp operation refused"), "{log}");
    gw.proc.assert_running();

    // Space returns: everything goes on without a restart.
    std::fs::remove_file(&filler).unwrap();
    wait_metric(
        gw.admin,
        "mft_audit_write_failing",
        |v| v == 0.0,
        "the trail did not recover",
    )
    .await;
    wait_delivery(&gw, &certs, "smtp-queued", Duration::from_secs(30)).await;
    wait_delivery(&gw, &certs, "polled-while", Duration::from_secs(30)).await;
    let r = send(smtps, &ca, "smtp-after", &attach);
    assert_eq!(code(&r, "data"), 250, "{r}");
    let out = sftp_batch(sftp, &key, dir.path(), "put after.bin\n");
    assert!(out.status.success(), "{out:?}");
    wait_delivery(&gw, &certs, "smtp-after", Duration::from_secs(30)).await;
    wait_spool_depth(gw.admin, 0.0, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mail.messages("INBOX").is_empty() {
        assert!(Instant::now() < deadline, "the polled message stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Nothing lost, nothing twice.
    for (subject, n) in [
        ("smtp-before", 1),
        ("smtp-queued", 1),
        ("smtp-while", 0),
        ("smtp-after", 1),
        ("polled-before", 1),
        ("polled-while", 1),
    ] {
        assert_eq!(
            deliveries_with_subject(&gw, &certs, subject).await.len(),
            n,
            "{subject}"
        );
    }
    for (name, n) in [("before.bin", 1), ("while.bin", 0), ("after.bin", 1)] {
        assert_eq!(files_named(&gw, &certs, name).await, n, "{name}");
    }
    let page = metrics(gw.admin).await;
    assert_eq!(
        metric(&page, "mft_audit_dropped_records_total"),
        Some(0.0),
        "{page}"
    );
    assert!(
        metric(
            &page,
            "mft_smtp_rejections_total{reason=\"audit_unavailable\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{page}"
    );
    gw.proc.signal("TERM");
    assert!(gw.proc.wait_exit(Duration::from_secs(30)).is_some());
    // Every record written in order once space returned: the chain is whole.
    let out = Command::new(bin("mft-gateway"))
        .args(["audit", "verify", "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(disk.0.join("audit.jsonl")).unwrap();
    assert!(
        text.contains("\"event\":\"smtp_delivery\"") && text.contains("spool:"),
        "{text}"
    );
    drop(backend);
}
