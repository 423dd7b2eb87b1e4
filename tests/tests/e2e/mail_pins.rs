//! `tls_pin_sha256` for mailboxes: a real Dovecot with a self-signed
//! certificate is refused without a pin (with a message naming the way
//! out), refused with a wrong pin, and polled with the right one (hex with
//! ':' separators, as `openssl x509 -fingerprint -sha256` prints it).

use super::imap::{password_ref, payload};
use mft_e2e::dovecot::{self};
use mft_e2e::*;
use sha2::Digest;
use std::time::{Duration, Instant};

/// A self-signed certificate for 127.0.0.1 and its pin (colon form).
fn self_signed(dir: &std::path::Path) -> (Certs, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let certs = Certs {
        ca_pem: String::new(),
        ca: dir.join("no-ca.pem"),
        cert: dir.join("mail-self.pem"),
        key: dir.join("mail-self.key"),
    };
    std::fs::write(&certs.cert, cert.pem()).unwrap();
    std::fs::write(&certs.key, key.serialize_pem()).unwrap();
    let digest = sha2::Sha256::digest(cert.der().as_ref());
    let pin = digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    (certs, pin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_mail_server_needs_its_pin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let certs = make_certs(path);
    let (mail_certs, pin) = self_signed(path);
    let backend = start_backend(path).await;
    let d = dovecot::start(path, &mail_certs, dovecot::Options::default());
    let body = payload(7, 50_000);
    d.save("INBOX", &dovecot::message("pinned", "pinned.bin", &body));
    let pw = password_ref(path);
    let mailbox = |proto: &str, name: &str, port: u16, trust: &str| {
        format!(
            "\n[[{proto}]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\n{}username = \"{user}\"\npassword = \"{pw}\"\npoll_secs = 1\ncommand_timeout = \"10s\"\n{trust}\n",
            if proto == "pop3" { "tls = \"starttls\"\ndelete = false\n" } else { "" },
            user = dovecot::USER,
        )
    };
    let tables = [
        mailbox("imap", "unpinned", d.imaps.port(), ""),
        mailbox(
            "imap",
            "wrongpin",
            d.imaps.port(),
            &format!("tls_pin_sha256 = \"{}\"", "ab".repeat(32)),
        ),
        mailbox(
            "imap",
            "pinned",
            d.imaps.port(),
            &format!("tls_pin_sha256 = \"{pin}\""),
        ),
        mailbox(
            "pop3",
            "pinned-pop",
            d.pop3.port(),
            &format!("tls_pin_sha256 = \"{}\"", pin.to_lowercase()),
        ),
    ]
    .concat();
    let gw = start_gateway_with(path, &certs, &backend.url, "", &tables).await;

    let out = std::process::Command::new(bin("mft-gateway"))
        .args(["check", "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(!out.status.success(), "{stdout}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_default()
            .to_string()
    };
    let unpinned = line("imap unpinned");
    assert!(unpinned.starts_with("FAIL"), "{stdout}");
    assert!(
        unpinned.contains("not trusted") && unpinned.contains("tls_pin_sha256"),
        "{stdout}"
    );
    let wrong = line("imap wrongpin");
    assert!(
        wrong.starts_with("FAIL") && wrong.contains("not the pinned one"),
        "{stdout}"
    );
    assert!(line("imap pinned").starts_with("ok"), "{stdout}");
    assert!(line("pop3 pinned-pop").starts_with("ok"), "{stdout}");

    // The pinned mailboxes deliver; the others never got a message.
    let client = gw.client(&certs, Proto::Http1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let origins = loop {
        let v: serde_json::Value = client
            .get(format!("{}/api/v1/deliveries", gw.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut origins: Vec<String> = v["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["subject"] == "pinned")
            .map(|d| d["origin"].as_str().unwrap().to_string())
            .collect();
        origins.sort();
        if origins.len() >= 2 {
            break origins;
        }
        assert!(
            Instant::now() < deadline,
            "{origins:?}\n{}",
            gw.proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(origins, ["imap:pinned", "pop3:pinned-pop"]);
    let log = gw.proc.stderr();
    assert!(log.contains("not the pinned one"), "{log}");
}
