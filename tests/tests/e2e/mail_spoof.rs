//! Attack from the security review (High): anyone who can e-mail a polled
//! mailbox wrote `From: ceo@ourcorp` and `To: someone@partner`, and our
//! gateway relayed the files to the partner organisation as our CEO. Now a
//! mailbox relays only with `relay_to_partners`, only senders on its
//! `relay_senders`, and (with `trusted_authserv_id`) only with our MX's
//! aligned DKIM/SPF/DMARC pass; otherwise the partner recipients are taken
//! off the delivery, audited, and nothing is queued for the partner.

use super::imap::{deliveries, imap_table, mail_stack, wait_deliveries, wait_polls};
use mft_e2e::dovecot::{self, Dovecot};
use mft_e2e::*;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn mail(from: &str, to: &str, subject: &str, auth_results: &[&str]) -> Vec<u8> {
    let mut head = String::new();
    for ar in auth_results {
        head.push_str(&format!("Authentication-Results: {ar}\r\n"));
    }
    format!(
        "{head}From: <{from}>\r\n\
         To: {to}\r\n\
         Subject: {subject}\r\n\
         Message-ID: <{subject}@spoof.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         see attached\r\n\
         --b1\r\n\
         Content-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"{subject}.bin\"\r\n\
         \r\n\
         payload of {subject}\r\n\
         --b1--\r\n"
    )
    .into_bytes()
}

fn partners_cli(config: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(bin("mft-gateway"))
        .arg("partners")
        .args(args)
        .arg("--config")
        .arg(config)
        .current_dir(config.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "partners {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn relay_jobs(config: &std::path::Path) -> Vec<Value> {
    let out = partners_cli(config, &["relays", "--json"]);
    serde_json::from_str::<Vec<Value>>(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn by_subject<'a>(all: &'a [Value], subject: &str) -> Option<&'a Value> {
    all.iter().find(|d| d["subject"] == subject)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_sender_in_a_polled_mailbox_is_never_relayed_to_a_partner() {
    let s = mail_stack(
        "",
        dovecot::Options::default(),
        |d: &Dovecot| d.create_folder("Billing"),
        |d, pw, ca| {
            format!(
                "{}{}\nrelay_to_partners = true\nrelay_senders = [\"billing@ourcorp.example\"]\ntrusted_authserv_id = \"mx.ourcorp.example\"\n\n[trust]\nrelay_poll_interval = \"1s\"\n",
                imap_table(d, pw, ca, "open", "INBOX", "seen"),
                imap_table(d, pw, ca, "billing", "Billing", "seen"),
            )
        },
    )
    .await;
    let config = s.gateway.config.clone();
    // A partner whose users are at beta.example (its gateway need not answer:
    // a queued relay job is what the attack needs).
    partners_cli(
        &config,
        &[
            "add",
            "--name",
            "beta",
            "--url",
            "https://127.0.0.1:9",
            "--email-domain",
            "beta.example",
        ],
    );
    // Polls that start after the partner exists.
    wait_polls(&s, "imap:open", 1.0).await;

    let victim = "alice@beta.example";
    let both = format!("{victim}, ops@ourcorp.example");
    let pass = "mx.ourcorp.example; dkim=pass header.d=ourcorp.example header.s=s1";
    // The open mailbox: the stranger's message keeps its local recipient only;
    // one for the partner alone is not delivered at all.
    s.dovecot.save(
        "INBOX",
        &mail("ceo@ourcorp.example", &both, "spoof-open", &[pass]),
    );
    s.dovecot.save(
        "INBOX",
        &mail("ceo@ourcorp.example", victim, "spoof-only-partner", &[pass]),
    );
    // The relaying mailbox: a sender not on the list, a listed sender whose
    // DKIM failed at our MX (with a forged pass below our MX's field), and
    // the one real case.
    s.dovecot.save(
        "Billing",
        &mail("ceo@ourcorp.example", &both, "spoof-unlisted", &[pass]),
    );
    s.dovecot.save(
        "Billing",
        &mail(
            "billing@ourcorp.example",
            &both,
            "spoof-dkim-fail",
            &[
                "mx.ourcorp.example; dkim=fail header.d=ourcorp.example",
                pass,
            ],
        ),
    );
    s.dovecot.save(
        "Billing",
        &mail("billing@ourcorp.example", victim, "genuine", &[pass]),
    );

    let all = wait_deliveries(&s, "four deliveries", |d| d.len() == 4).await;
    for subject in ["spoof-open", "spoof-unlisted", "spoof-dkim-fail"] {
        let d = by_subject(&all, subject).unwrap_or_else(|| panic!("{subject}: {all:#?}"));
        assert_eq!(
            d["recipients"],
            serde_json::json!(["ops@ourcorp.example"]),
            "{subject}: the partner recipient must be removed: {d}"
        );
    }
    assert!(by_subject(&all, "spoof-only-partner").is_none(), "{all:#?}");
    let genuine = by_subject(&all, "genuine").expect("genuine delivery");
    assert_eq!(genuine["recipients"], serde_json::json!([victim]));

    // Exactly the genuine delivery is queued for the partner.
    let start = Instant::now();
    let jobs = loop {
        let jobs = relay_jobs(&config);
        if !jobs.is_empty() || start.elapsed() > Duration::from_secs(20) {
            break jobs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0]["delivery_id"], genuine["id"]);
    assert_eq!(jobs[0]["partner"], "beta");
    // Later relay rounds queue nothing more.
    let rounds = metric_sum(&s).await;
    let start = Instant::now();
    while metric_sum(&s).await < rounds + 2.0 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(relay_jobs(&config).len(), 1);
    let still = deliveries(&s).await;
    assert_eq!(still.len(), 4);

    // Each refusal is in the audit trail with its reason.
    let audit = std::fs::read_to_string(s.dir.path().join("gateway-data/audit.jsonl")).unwrap();
    for reason in [
        "relay_not_enabled",
        "sender_not_allowed",
        "sender_not_authenticated",
    ] {
        assert!(
            audit
                .lines()
                .any(|l| l.contains("\"mailbox_relay\"") && l.contains(reason)),
            "no mailbox_relay record for {reason}: {audit}"
        );
    }
}

/// Completed polls of both mailboxes, to let a few rounds pass.
async fn metric_sum(s: &super::imap::MailStack) -> f64 {
    super::imap::polls(s, "imap:open").await + super::imap::polls(s, "imap:billing").await
}
