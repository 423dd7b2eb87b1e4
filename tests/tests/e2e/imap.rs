//! IMAP poller against a real, private Dovecot: deliveries with attachments,
//! restart without skip or repeat, UIDVALIDITY change, after_upload
//! seen / move / delete as Dovecot shows them, XOAUTH2 through Dovecot's
//! oauth2 passdb, and `mft-gateway check`.

use mft_e2e::dovecot::{self, Dovecot};
use mft_e2e::*;
use sha2::Digest;
use std::path::Path;
use std::time::{Duration, Instant};

/// Backend, Dovecot and a gateway polling `tables`.
pub struct MailStack {
    pub certs: Certs,
    pub backend: Backend,
    pub dovecot: Dovecot,
    pub gateway: Gateway,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    pub dir: tempfile::TempDir,
}

/// Writes the mailbox password to a file and returns its `file:` reference.
pub fn password_ref(dir: &Path) -> String {
    let p = dir.join("mailbox-password");
    std::fs::write(&p, format!("{}\n", dovecot::PASSWORD)).unwrap();
    format!("file:{}", p.display())
}

/// Starts the stack; `tables(dovecot, password_ref, ca)` returns the mailbox sections.
pub async fn mail_stack(
    backend_extra: &str,
    opts: dovecot::Options,
    before: impl FnOnce(&Dovecot),
    tables: impl FnOnce(&Dovecot, &str, &Path) -> String,
) -> MailStack {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let dovecot = dovecot::start(dir.path(), &certs, opts);
    before(&dovecot);
    let pw = password_ref(dir.path());
    let t = tables(&dovecot, &pw, &certs.ca);
    let gateway = start_gateway_with(dir.path(), &certs, &backend.url, backend_extra, &t).await;
    MailStack {
        dir,
        certs,
        backend,
        dovecot,
        gateway,
    }
}

/// Every delivery the backend holds, oldest first.
pub async fn deliveries(s: &MailStack) -> Vec<serde_json::Value> {
    let r = s
        .gateway
        .client(&s.certs, Proto::Http1)
        .get(format!("{}/api/v1/deliveries", s.gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v["deliveries"].as_array().cloned().unwrap_or_default()
}

/// Waits until `pred(deliveries)` holds; panics with the logs after 30 s.
pub async fn wait_deliveries(
    s: &MailStack,
    what: &str,
    pred: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = deliveries(s).await;
        if pred(&d) {
            return d;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; deliveries: {d:#?}\ngateway:\n{}\ndovecot:\n{}",
                s.gateway.proc.stderr(),
                s.dovecot.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until Dovecot shows `pred(messages of folder)`.
pub async fn wait_mailbox(
    s: &MailStack,
    folder: &str,
    what: &str,
    pred: impl Fn(&[(u32, String)]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = s.dovecot.messages(folder);
        if pred(&m) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what} in {folder}: {m:?}\ngateway:\n{}",
                s.gateway.proc.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The SHA-256 of a stored file's content, read through the gateway.
pub async fn file_sha256(s: &MailStack, id: &str) -> String {
    let r = s
        .gateway
        .client(&s.certs, Proto::Http1)
        .get(format!("{}/api/v1/files/{id}/content", s.gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    hex::encode(sha2::Sha256::digest(r.bytes().await.unwrap()))
}

/// Messages of `mailbox` delivered by this gateway process (metric).
pub async fn delivered(s: &MailStack, mailbox: &str) -> f64 {
    let page = metrics(s.gateway.admin).await;
    metric(
        &page,
        &format!("mft_mailbox_messages_total{{mailbox=\"{mailbox}\",outcome=\"delivered\"}}"),
    )
    .unwrap_or(0.0)
}

/// Completed polls of `mailbox` so far (metric).
pub async fn polls(s: &MailStack, mailbox: &str) -> f64 {
    let page = metrics(s.gateway.admin).await;
    metric(
        &page,
        &format!("mft_mailbox_polls_total{{mailbox=\"{mailbox}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Waits until `mailbox` completed at least `n` polls (passes over the
/// whole folder) in this gateway process: no sleeping as synchronisation.
pub async fn wait_polls(s: &MailStack, mailbox: &str, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while polls(s, mailbox).await < n {
        assert!(
            Instant::now() < deadline,
            "no polls of {mailbox}: {}",
            s.gateway.proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn payload(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub fn imap_table(
    d: &Dovecot,
    pw: &str,
    ca: &Path,
    name: &str,
    folder: &str,
    after: &str,
) -> String {
    format!(
        r#"
[[imap]]
name = "{name}"
host = "127.0.0.1"
port = {port}
tls = "implicit"
ca_file = "{ca}"
username = "{user}"
password = "{pw}"
folder = "{folder}"
after_upload = "{after}"
poll_secs = 1
command_timeout = "10s"
"#,
        port = d.imaps.port(),
        ca = ca.display(),
        user = dovecot::USER,
    )
}

#[tokio::test]
async fn imap_delivers_attachments_and_a_restart_neither_skips_nor_repeats() {
    let a = payload(1, 300_000);
    let b = payload(2, 1234);
    let mut s = mail_stack(
        "",
        dovecot::Options::default(),
        |d| {
            d.save("INBOX", &dovecot::message("first", "report-a.bin", &a));
            d.save("INBOX", &dovecot::message("second", "report b.csv", &b));
        },
        |d, pw, ca| imap_table(d, pw, ca, "legacy", "INBOX", "seen"),
    )
    .await;
    let got = wait_deliveries(&s, "two deliveries", |d| d.len() == 2).await;
    let mut subjects: Vec<&str> = got.iter().map(|d| d["subject"].as_str().unwrap()).collect();
    subjects.sort();
    assert_eq!(subjects, ["first", "second"]);
    for d in &got {
        assert_eq!(d["origin"], "imap:legacy", "{d}");
        assert_eq!(d["sender"], "legacy@ourcorp.example");
        assert_eq!(d["recipients"], serde_json::json!(["bob@partner.example"]));
        let files = d["files"].as_array().unwrap();
        assert_eq!(files.len(), 1, "{d}");
        let id = files[0].as_str().unwrap();
        let want = if d["subject"] == "first" { &a } else { &b };
        assert_eq!(
            file_sha256(&s, id).await,
            hex::encode(sha2::Sha256::digest(want))
        );
    }
    // after_upload = "seen": both are \Seen in Dovecot now.
    wait_mailbox(&s, "INBOX", "two seen messages", |m| {
        m.len() == 2 && m.iter().all(|(_, f)| f.contains("\\Seen"))
    })
    .await;

    // A message arriving while the poller waits (IDLE) is picked up.
    s.dovecot
        .save("INBOX", &dovecot::message("third", "c.bin", b"ccc"));
    wait_deliveries(&s, "the third delivery", |d| d.len() == 3).await;

    // Stop the gateway hard, add a message, restart: exactly one more.
    s.gateway.proc.signal("KILL");
    s.gateway
        .proc
        .wait_exit(Duration::from_secs(10))
        .expect("gateway killed");
    s.dovecot
        .save("INBOX", &dovecot::message("fourth", "d.bin", b"dddd"));
    s.gateway = s.gateway.relaunch(s.dir.path(), &s.certs).await;
    wait_deliveries(&s, "the fourth delivery", |d| d.len() == 4).await;
    // The first pass after the restart is complete and delivered only the
    // new message: the stored UID kept the first three from being fetched
    // again (the backend would have deduplicated them by idempotency key,
    // so the count of deliveries alone could not show a repeat).
    wait_polls(&s, "imap:legacy", 1.0).await;
    assert_eq!(
        delivered(&s, "imap:legacy").await,
        1.0,
        "{}",
        s.gateway.proc.stderr()
    );
    let d = deliveries(&s).await;
    assert_eq!(d.len(), 4, "a restart repeated a delivery: {d:#?}");
    let page = metrics(s.gateway.admin).await;
    assert_eq!(
        metric(&page, "mft_mailbox_connected{mailbox=\"imap:legacy\"}"),
        Some(1.0)
    );

    // UIDVALIDITY changes: the folder was renumbered, so every message in
    // it is new to us (RFC 3501 2.3.1.1) and is delivered again, once.
    // Dovecot does not interrupt an IDLE for it; the next change in the
    // folder (here a fifth message) or the IDLE renewal makes the poller look.
    s.dovecot.set_uidvalidity("INBOX", 4242);
    s.dovecot
        .save("INBOX", &dovecot::message("fifth", "e.bin", b"eeeee"));
    wait_deliveries(&s, "five more after the UIDVALIDITY change", |d| {
        d.len() == 9
    })
    .await;
    // One fetch per message of the renumbered folder, each delivered once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivered(&s, "imap:legacy").await < 6.0 {
        assert!(Instant::now() < deadline, "{}", s.gateway.proc.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delivered(&s, "imap:legacy").await, 6.0);
    assert_eq!(deliveries(&s).await.len(), 9);
    let audit =
        std::fs::read_to_string(s.dir.path().join("gateway-data/audit.jsonl")).unwrap_or_default();
    assert!(
        audit.contains("UIDVALIDITY"),
        "no audit record of the reset: {audit}"
    );
}

#[tokio::test]
async fn imap_after_upload_move_and_delete_are_visible_in_dovecot() {
    let s = mail_stack(
        "",
        dovecot::Options::default(),
        |d| {
            for f in ["MoveIn", "Done", "DeleteIn"] {
                d.create_folder(f);
            }
            d.save("MoveIn", &dovecot::message("to-move", "m.bin", b"move me"));
            d.save(
                "DeleteIn",
                &dovecot::message("to-delete", "x.bin", b"delete me"),
            );
            // Not a message: skipped, flagged for a human, never retried.
            d.save("DeleteIn", b"this is not an e-mail at all");
        },
        |d, pw, ca| {
            // One of them over STARTTLS on the plain port.
            imap_table(d, pw, ca, "mover", "MoveIn", "move:Done")
                .replace("tls = \"implicit\"", "tls = \"starttls\"")
                .replace(
                    &format!("port = {}", d.imaps.port()),
                    &format!("port = {}", d.imap.port()),
                )
                + &imap_table(d, pw, ca, "deleter", "DeleteIn", "delete")
        },
    )
    .await;
    let got = wait_deliveries(&s, "two deliveries", |d| d.len() == 2).await;
    let origins: std::collections::HashSet<&str> =
        got.iter().map(|d| d["origin"].as_str().unwrap()).collect();
    assert_eq!(origins, ["imap:mover", "imap:deleter"].into());
    wait_mailbox(&s, "MoveIn", "an empty source folder", |m| m.is_empty()).await;
    wait_mailbox(&s, "Done", "the moved message", |m| m.len() == 1).await;
    // The delivered message is gone; the unparseable one stays, flagged.
    wait_mailbox(&s, "DeleteIn", "only the flagged bad message", |m| {
        m.len() == 1 && m[0].1.contains("\\Flagged")
    })
    .await;
    wait_polls(&s, "imap:deleter", 1.0).await;
    assert_eq!(deliveries(&s).await.len(), 2);
    let page = metrics(s.gateway.admin).await;
    assert_eq!(
        metric(
            &page,
            "mft_mailbox_messages_total{mailbox=\"imap:deleter\",outcome=\"failed\"}"
        ),
        Some(1.0)
    );
    let audit =
        std::fs::read_to_string(s.dir.path().join("gateway-data/audit.jsonl")).unwrap_or_default();
    assert!(
        audit.lines().any(|l| l.contains("\"event\":\"mailbox\"")
            && l.contains("imap:deleter")
            && l.contains("skipped")),
        "no audit record of the skipped message: {audit}"
    );
}

fn oauth_block(dir: &Path, oauth: std::net::SocketAddr, table: &str) -> String {
    oauth_block_with(dir, oauth, table, dovecot::REFRESH_TOKEN)
}

fn oauth_block_with(dir: &Path, oauth: std::net::SocketAddr, table: &str, token: &str) -> String {
    let secret = dir.join("oauth-client-secret");
    std::fs::write(&secret, dovecot::CLIENT_SECRET).unwrap();
    let refresh = dir.join(format!("oauth-refresh-token-{}", token.len()));
    std::fs::write(&refresh, token).unwrap();
    format!(
        r#"
[{table}.oauth2]
provider = "custom"
token_url = "http://{oauth}/token"
client_id = "{id}"
client_secret = "file:{secret}"
refresh_token = "file:{refresh}"
scope = "mail.read offline_access"
"#,
        id = dovecot::CLIENT_ID,
        secret = secret.display(),
        refresh = refresh.display(),
    )
}

// Multi-threaded: the test's OAuth2 server must keep answering while the
// test blocks on `mft-gateway check`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_is_accepted_by_dovecots_oauth2_passdb_for_imap_and_pop3() {
    let oauth = dovecot::start_oauth().await;
    let introspect = format!("http://{}/introspect", oauth.addr);
    let s = mail_stack(
        "",
        dovecot::Options {
            introspection_url: Some(introspect),
        },
        |d| {
            d.create_folder("OAuthIn");
            d.save("OAuthIn", &dovecot::message("by-imap", "i.bin", b"imap oauth"));
            d.save("INBOX", &dovecot::message("by-pop", "p.bin", b"pop oauth"));
        },
        |d, pw, ca| {
            let dir = Path::new(pw.trim_start_matches("file:")).parent().unwrap();
            // No password: the [oauth2] table replaces it.
            let imap = imap_table(d, pw, ca, "oauth-imap", "OAuthIn", "seen")
                .replace(&format!("password = \"{pw}\"\n"), "");
            let pop = format!(
                "\n[[pop3]]\nname = \"oauth-pop\"\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{}\"\nusername = \"{}\"\npoll_secs = 1\ncommand_timeout = \"10s\"\n",
                d.pop3s.port(),
                ca.display(),
                dovecot::USER
            );
            format!(
                "{imap}{}{pop}{}",
                oauth_block(dir, oauth.addr, "imap"),
                oauth_block(dir, oauth.addr, "pop3")
            )
        },
    )
    .await;
    let got = wait_deliveries(&s, "one delivery per protocol", |d| d.len() == 2).await;
    let origins: std::collections::HashSet<&str> =
        got.iter().map(|d| d["origin"].as_str().unwrap()).collect();
    assert_eq!(origins, ["imap:oauth-imap", "pop3:oauth-pop"].into());
    // The gateway used the refresh grant with its client credentials...
    {
        let log = oauth.log.lock().unwrap();
        assert!(!log.token_requests.is_empty());
        for form in &log.token_requests {
            let get = |k: &str| form.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
            assert_eq!(get("grant_type"), Some("refresh_token"));
            assert_eq!(get("scope"), Some("mail.read offline_access"));
        }
        // ...and Dovecot validated exactly the issued tokens.
        assert!(
            !log.introspected.is_empty(),
            "Dovecot never asked the introspection endpoint"
        );
        assert!(
            log.introspected.iter().all(|t| log.issued.contains(t)),
            "{log:?}"
        );
    }
    let dlog = s.dovecot.log();
    assert!(
        dlog.contains("method=XOAUTH2")
            && dlog
                .lines()
                .any(|l| l.contains("pop3-login") && l.contains("method=XOAUTH2")),
        "Dovecot did not log XOAUTH2 logins for both protocols:\n{dlog}"
    );
    // Tokens never reach the gateway's log.
    let stderr = s.gateway.proc.stderr();
    assert!(!stderr.contains("access-1") && !stderr.contains(dovecot::REFRESH_TOKEN));

    // A token Dovecot finds inactive: XOAUTH2 fails in two steps (the
    // server's `+ <error JSON>` continuation, our empty answer, then NO /
    // -ERR); `check` reports both mailboxes as failed, without the token.
    let dir = s.dir.path();
    let mut config = std::fs::read_to_string(&s.gateway.config).unwrap();
    config.push_str(&format!(
        "\n[[imap]]\nname = \"revoked-imap\"\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{ca}\"\nusername = \"{user}\"\ncommand_timeout = \"10s\"\n{}\
         \n[[pop3]]\nname = \"revoked-pop\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nca_file = \"{ca}\"\nusername = \"{user}\"\ncommand_timeout = \"10s\"\n{}",
        s.dovecot.imaps.port(),
        oauth_block_with(dir, oauth.addr, "imap", dovecot::REVOKED_REFRESH_TOKEN),
        s.dovecot.pop3.port(),
        oauth_block_with(dir, oauth.addr, "pop3", dovecot::REVOKED_REFRESH_TOKEN),
        ca = s.certs.ca.display(),
        user = dovecot::USER,
    ));
    let revoked = dir.join("check-revoked.toml");
    std::fs::write(&revoked, config).unwrap();
    let out = std::process::Command::new(bin("mft-gateway"))
        .args(["check", "--config"])
        .arg(&revoked)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_default()
    };
    assert!(line("imap oauth-imap").starts_with("ok"), "{stdout}");
    assert!(line("pop3 oauth-pop").starts_with("ok"), "{stdout}");
    assert!(
        line("imap revoked-imap").starts_with("FAIL")
            && line("imap revoked-imap").contains("refused"),
        "{stdout}"
    );
    assert!(
        line("pop3 revoked-pop").starts_with("FAIL") && line("pop3 revoked-pop").contains("-ERR"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("revoked-access") && !stdout.contains(dovecot::REVOKED_REFRESH_TOKEN),
        "{stdout}"
    );
}

/// A server that accepts connections and never says a word is a fault no
/// real Dovecot shows on demand, so a bare TCP listener plays it.
#[tokio::test]
async fn a_silent_server_times_out_and_the_poller_reconnects() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(conn);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let pw = password_ref(dir.path());
    let table = format!(
        "[[imap]]\nname = \"silent\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nusername = \"u\"\npassword = \"{pw}\"\ncommand_timeout = \"1s\"\n",
        silent.port()
    );
    let gateway = start_gateway_with(dir.path(), &certs, &backend.url, "", &table).await;
    // Each attempt gives up after 1 s and another follows after the backoff.
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "the poller hung on a silent server: {}",
            gateway.proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gateway
            .proc
            .stderr()
            .contains("greeting: no answer within 1 s"),
        "{}",
        gateway.proc.stderr()
    );
    let page = metrics(gateway.admin).await;
    assert_eq!(
        metric(&page, "mft_mailbox_connected{mailbox=\"imap:silent\"}"),
        Some(0.0)
    );
    // `check` reports it in bounded time, too.
    let started = Instant::now();
    let out = std::process::Command::new(bin("mft-gateway"))
        .args(["check", "--config"])
        .arg(&gateway.config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    let line = stdout
        .lines()
        .find(|l| l.contains("imap silent"))
        .unwrap_or_default();
    assert!(
        line.starts_with("FAIL") && line.contains("no answer within 1 s"),
        "{stdout}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}
