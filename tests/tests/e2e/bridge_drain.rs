//! SIGTERM with bridge work in flight: an SMTP message in DATA is finished
//! (idle sessions get 421 4.3.2), an SFTP upload is finished (or, past the
//! shutdown timeout, discarded whole), a mailbox poller stops between
//! messages. After a restart everything accepted reached the backend once.

use super::imap::{deliveries, file_sha256, imap_table, mail_stack, payload};
use mft_e2e::dovecot::{self};
use mft_e2e::smtp::*;
use mft_e2e::*;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A client script that prints "ready", waits for a line, then prints its
/// JSON report.
struct Scripted {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Scripted {
    fn start(script: &str, args: &[&str]) -> Scripted {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("py")
            .join(script);
        let mut child = Command::new(python())
            .arg(path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python from scripts/setup --test");
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut s = Scripted { child, out };
        let mut line = String::new();
        s.out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "{script} did not get ready");
        s
    }

    /// Lets the script go on; returns its report.
    fn finish(mut self) -> serde_json::Value {
        let mut stdin = self.child.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
        drop(stdin);
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "script failed: {line}");
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"))
    }
}

/// The gateway exits 0 once the drain is over, and says so.
fn assert_drained(gw: &mut Gateway, limit: Duration) {
    let status = gw
        .proc
        .wait_exit(limit)
        .unwrap_or_else(|| panic!("gateway still running:\n{}", gw.proc.stderr()));
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_smtp_data_finishes_the_message_and_421s_idle_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let mut smtp = start_smtp_gateway(dir.path(), &certs, &backend.url, "").await;
    let port = smtp.smtp.port().to_string();
    let ca = certs.ca.display().to_string();
    let client = Scripted::start(
        "smtp_drain.py",
        &[
            "--port",
            &port,
            "--cafile",
            &ca,
            "--password",
            &smtp.gw.key,
            "--subject",
            "across the shutdown",
        ],
    );
    smtp.gw.proc.signal("TERM");
    let report = client.finish();
    assert_eq!(report["new_connection_refused"], true, "{report}");
    assert_eq!(report["data"][0], 354, "{report}");
    // The idle session is told, unasked, that the server goes away.
    assert_eq!(report["idle"][0], 421, "{report}");
    assert!(
        report["idle"][1].as_str().unwrap().starts_with("4.3.2"),
        "{report}"
    );
    // The message in progress was finished and accepted...
    assert_eq!(report["end_of_data"][0], 250, "{report}");
    // ...and the session ended after it.
    assert_eq!(report["after_message"][0], 421, "{report}");
    assert_drained(&mut smtp.gw, Duration::from_secs(20));
    assert!(
        smtp.gw
            .proc
            .stderr()
            .contains("all in-flight work finished"),
        "{}",
        smtp.gw.proc.stderr()
    );

    // Accepted means delivered, once, whether before the exit or after.
    let smtp = restart(dir.path(), &certs, &smtp).await;
    let d = wait_delivery(&smtp.gw, &certs, "across the shutdown", LONG).await;
    wait_spool_depth(smtp.gw.admin, 0.0, LONG).await;
    let all = deliveries_with_subject(&smtp.gw, &certs, "across the shutdown").await;
    assert_eq!(all.len(), 1, "{all:?}");
    let files = d["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{d}");
    let f = file(&smtp.gw, &certs, files[0].as_str().unwrap()).await;
    assert_eq!(f["sha256"], report["sha256"], "{f}");
    drop(backend);
}

const LONG: Duration = Duration::from_secs(60);

const ALICE: &str = r#"
[[sftp.users]]
name = "alice"
password_hash = "{HASH}"
folder = "partners/alice"
permissions = ["upload", "download", "list", "delete"]
"#;

/// Restarts the SFTP environment's gateway with `shutdown_timeout`.
async fn relaunch(env: &mut mft_e2e::sftp::SftpEnv, shutdown_timeout: &str) {
    if env.gateway.proc.child.try_wait().unwrap().is_none() {
        env.gateway.proc.signal("TERM");
        assert_drained(&mut env.gateway, Duration::from_secs(20));
    }
    let text: String = std::fs::read_to_string(&env.gateway.config)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("shutdown_timeout = ") {
                format!("shutdown_timeout = \"{shutdown_timeout}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&env.gateway.config, text).unwrap();
    env.gateway = env.gateway.relaunch(&env.dir, &env.certs).await;
    // Bound before the gateway recorded it: it accepts already.
    env.sftp = env.gateway.listeners.get("sftp");
}

fn sftp_client(env: &mft_e2e::sftp::SftpEnv, name: &str, size: u64) -> Scripted {
    Scripted::start(
        "sftp_drain.py",
        &[
            "127.0.0.1",
            &env.sftp.port().to_string(),
            "alice",
            "s3cret pass",
            name,
            &size.to_string(),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_sftp_upload_finishes_it_and_refuses_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let users = ALICE.replace("{HASH}", &mft_e2e::sftp::hash_password("s3cret pass"));
    let mut env = mft_e2e::sftp::start(dir.path(), &users, "").await;
    let client = sftp_client(&env, "drain.bin", 16 << 20);
    env.gateway.proc.signal("TERM");
    // The listener closes: new SSH connections are refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(env.sftp).is_ok() {
        assert!(Instant::now() < deadline, "sftp still accepting");
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = client.finish();
    let late = report["late_open_error"]
        .as_str()
        .expect("late open refused");
    assert!(late.contains("shutting down"), "{report}");
    assert!(report["close_error"].is_null(), "{report}");
    assert_drained(&mut env.gateway, Duration::from_secs(20));

    relaunch(&mut env, "20s").await;
    let stored: Vec<_> = env
        .files()
        .await
        .into_iter()
        .filter(|f| f["name"] == "drain.bin")
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["sha256"], report["sha256"]);
    assert!(env.file("partners/alice", "late-drain.bin").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sftp_upload_still_open_at_the_shutdown_timeout_is_discarded_whole() {
    let dir = tempfile::tempdir().unwrap();
    let users = ALICE.replace("{HASH}", &mft_e2e::sftp::hash_password("s3cret pass"));
    let mut env = mft_e2e::sftp::start(dir.path(), &users, "").await;
    relaunch(&mut env, "1s").await;
    let client = sftp_client(&env, "stalled.bin", 4 << 20);
    let started = Instant::now();
    env.gateway.proc.signal("TERM");
    // The client stalls past the timeout: the gateway gives up on it.
    assert_drained(&mut env.gateway, Duration::from_secs(15));
    assert!(started.elapsed() >= Duration::from_secs(1));
    let log = env.gateway.proc.stderr();
    assert!(log.contains("abandoning it"), "{log}");
    // The tus upload was terminated at the backend before the exit.
    assert!(log.contains("terminating it"), "{log}");
    assert!(!log.contains("cannot terminate"), "{log}");
    let report = client.finish();
    assert!(!report["close_error"].is_null(), "{report}");

    relaunch(&mut env, "20s").await;
    assert!(
        env.file("partners/alice", "stalled.bin").await.is_none(),
        "a half upload was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_mailbox_fetch_stops_between_messages_without_loss_or_repeat() {
    mailbox_drain(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_pop3_pass_quits_committing_what_was_delivered() {
    mailbox_drain(true).await;
}

/// SIGTERM once the first of N messages is delivered; after the restart
/// every message is delivered once. POP3: the QUIT at the drain removed
/// exactly the messages delivered before it.
async fn mailbox_drain(pop3: bool) {
    const N: u8 = 8;
    let bodies: Vec<Vec<u8>> = (0..N).map(|i| payload(i, 3 << 20)).collect();
    let mailbox = if pop3 { "pop3:ops" } else { "imap:ops" };
    let mut s = mail_stack(
        "",
        dovecot::Options::default(),
        |d| {
            for (i, b) in bodies.iter().enumerate() {
                d.save(
                    "INBOX",
                    &dovecot::message(&format!("drain-{i}"), &format!("f{i}.bin"), b),
                );
            }
        },
        |d, pw, ca| {
            if pop3 {
                super::pop3::pop3_table(d, pw, ca, "ops")
            } else {
                imap_table(d, pw, ca, "ops", "INBOX", "seen")
            }
        },
    )
    .await;
    // SIGTERM as soon as the first message is in: the poller is mid-folder.
    let deadline = Instant::now() + LONG;
    while deliveries(&s).await.is_empty() {
        assert!(Instant::now() < deadline, "{}", s.gateway.proc.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.gateway.proc.signal("TERM");
    assert_drained(&mut s.gateway, Duration::from_secs(20));
    let log = s.gateway.proc.stderr();
    assert!(log.contains("all in-flight work finished"), "{log}");
    let first_run = log.matches(r#""message":"delivered""#).count();
    eprintln!("{mailbox}: delivered before the shutdown: {first_run} of {N}");
    assert!(first_run >= 1, "{log}");
    if pop3 {
        let left = s.dovecot.messages("INBOX").len();
        assert_eq!(left + first_run, usize::from(N), "QUIT committed the DELEs");
    }

    s.gateway = s.gateway.relaunch(s.dir.path(), &s.certs).await;
    let deadline = Instant::now() + LONG;
    let all = loop {
        let d = deliveries(&s).await;
        if d.len() >= usize::from(N) {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "{d:?}\n{}",
            s.gateway.proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The restarted poller's first pass over the folder is complete: a
    // repeat would have shown up in it.
    super::imap::wait_polls(&s, mailbox, 1.0).await;
    let all_again = deliveries(&s).await;
    assert_eq!(all_again.len(), all.len(), "a message was delivered twice");
    assert_eq!(all.len(), usize::from(N));
    for (i, body) in bodies.iter().enumerate() {
        let subject = format!("drain-{i}");
        let d: Vec<_> = all.iter().filter(|d| d["subject"] == subject).collect();
        assert_eq!(d.len(), 1, "{subject}: {d:?}");
        let id = d[0]["files"][0].as_str().unwrap();
        use sha2::Digest;
        assert_eq!(
            file_sha256(&s, id).await,
            hex::encode(sha2::Sha256::digest(body))
        );
    }
    if pop3 {
        assert!(s.dovecot.messages("INBOX").is_empty());
    }
}
