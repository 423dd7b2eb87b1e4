//! POP3 poller against a real Dovecot: delivery with attachments, DELE only
//! after the backend confirmed (backend down: the message stays; delivered
//! and removed once it is back), and `mft-gateway check` for every mailbox.

use super::imap::{
    delivered, deliveries, file_sha256, imap_table, mail_stack, payload, wait_deliveries,
    wait_mailbox, MailStack,
};
use mft_e2e::dovecot::{self, Dovecot};
use mft_e2e::*;
use sha2::Digest;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn pop3_table(d: &Dovecot, pw: &str, ca: &Path, name: &str) -> String {
    format!(
        r#"
[[pop3]]
name = "{name}"
host = "127.0.0.1"
port = {port}
ca_file = "{ca}"
username = "{user}"
password = "{pw}"
poll_secs = 1
command_timeout = "10s"
"#,
        port = d.pop3s.port(),
        ca = ca.display(),
        user = dovecot::USER,
    )
}

async fn wait_metric(s: &MailStack, series: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = metrics(s.gateway.admin).await;
        if metric(&page, series).unwrap_or(0.0) >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {at_least}: {}",
            s.gateway.proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn pop3_deletes_only_after_the_backend_confirmed() {
    let a = payload(7, 200_000);
    let mut s = mail_stack(
        "retry_attempts = 2\nretry_max = \"200ms\"\nbreaker_cooldown = \"1s\"",
        dovecot::Options::default(),
        |d| d.save("INBOX", &dovecot::message("pop-first", "pop-a.bin", &a)),
        |d, pw, ca| pop3_table(d, pw, ca, "legacy-pop"),
    )
    .await;
    let got = wait_deliveries(&s, "the first delivery", |d| d.len() == 1).await;
    assert_eq!(got[0]["origin"], "pop3:legacy-pop");
    assert_eq!(got[0]["subject"], "pop-first");
    let id = got[0]["files"][0].as_str().unwrap();
    assert_eq!(
        file_sha256(&s, id).await,
        hex::encode(sha2::Sha256::digest(&a))
    );
    wait_mailbox(&s, "INBOX", "the delivered message deleted", |m| {
        m.is_empty()
    })
    .await;

    // Backend down: the poller fetches the message, cannot deliver it, and
    // leaves it on the server.
    let backend_addr: std::net::SocketAddr =
        s.backend.url.trim_start_matches("http://").parse().unwrap();
    s.backend.proc.signal("KILL");
    s.backend
        .proc
        .wait_exit(Duration::from_secs(10))
        .expect("backend killed");
    s.dovecot.save(
        "INBOX",
        &dovecot::message("pop-second", "pop-b.bin", b"second"),
    );
    wait_metric(
        &s,
        "mft_mailbox_messages_total{mailbox=\"pop3:legacy-pop\",outcome=\"retry\"}",
        2.0,
    )
    .await;
    assert_eq!(
        s.dovecot.messages("INBOX").len(),
        1,
        "a message was deleted before its delivery"
    );

    // Backend back: delivered once, then deleted.
    s.backend = start_backend_at(s.dir.path(), backend_addr).await;
    let got = wait_deliveries(&s, "the second delivery", |d| d.len() == 2).await;
    assert!(got.iter().any(|d| d["subject"] == "pop-second"));
    wait_mailbox(&s, "INBOX", "the second message deleted", |m| m.is_empty()).await;
    assert_eq!(delivered(&s, "pop3:legacy-pop").await, 2.0);
    assert_eq!(deliveries(&s).await.len(), 2);
}

#[tokio::test]
async fn check_reports_every_mailbox_on_its_own_line() {
    let s = mail_stack(
        "",
        dovecot::Options::default(),
        |d| {
            d.save("INBOX", &dovecot::message("one", "1.bin", b"1"));
            d.save("INBOX", &dovecot::message("two", "2.bin", b"2"));
        },
        // after_upload seen and delete = false: the gateway leaves the count alone.
        |d, pw, ca| {
            imap_table(d, pw, ca, "good-imap", "INBOX", "seen")
                + &pop3_table(d, pw, ca, "good-pop")
                    .replace("poll_secs = 1", "poll_secs = 1\ndelete = false")
        },
    )
    .await;
    let run = |config: &Path| {
        let out = Command::new(bin("mft-gateway"))
            .args(["check", "--config"])
            .arg(config)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (ok, stdout) = run(&s.gateway.config);
    assert!(ok, "check failed:\n{stdout}");
    let line = |out: &str, name: &str| {
        out.lines()
            .find(|l| l.contains(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line(&stdout, "imap good-imap").starts_with("ok"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "imap good-imap").contains("2 message(s) in INBOX"),
        "{stdout}"
    );
    assert!(line(&stdout, "pop3 good-pop").starts_with("ok"), "{stdout}");
    assert!(
        line(&stdout, "pop3 good-pop").contains("2 message(s)"),
        "{stdout}"
    );

    // A wrong password and a closed port: each fails on its own line, exit 1.
    let wrong = s.dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password").unwrap();
    // Held until the test ends: nothing can listen there meanwhile.
    let held = refused();
    let closed = held.addr.port();
    let mut config = std::fs::read_to_string(&s.gateway.config).unwrap();
    config.push_str(&format!(
        "\n[[imap]]\nname = \"bad-login\"\nhost = \"127.0.0.1\"\nport = {port}\nca_file = \"{ca}\"\nusername = \"{user}\"\npassword = \"file:{wrong}\"\ncommand_timeout = \"5s\"\n\
         \n[[pop3]]\nname = \"no-server\"\nhost = \"127.0.0.1\"\nport = {closed}\nusername = \"x\"\npassword = \"file:{wrong}\"\ncommand_timeout = \"5s\"\n",
        port = s.dovecot.imaps.port(),
        ca = s.certs.ca.display(),
        user = dovecot::USER,
        wrong = wrong.display(),
    ));
    let bad = s.dir.path().join("check-bad.toml");
    std::fs::write(&bad, config).unwrap();
    let (ok, stdout) = run(&bad);
    assert!(!ok, "check passed with a wrong password:\n{stdout}");
    assert!(
        line(&stdout, "imap good-imap").starts_with("ok"),
        "{stdout}"
    );
    let l = line(&stdout, "imap bad-login");
    assert!(l.starts_with("FAIL") && l.contains("refused"), "{stdout}");
    assert!(
        !stdout.contains("not-the-password"),
        "a password was printed:\n{stdout}"
    );
    let l = line(&stdout, "pop3 no-server");
    assert!(l.starts_with("FAIL") && l.contains("connect"), "{stdout}");
}
