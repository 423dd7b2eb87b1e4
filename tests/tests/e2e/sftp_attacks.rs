//! Attacks on the SFTP bridge from the security review (issue "Security
//! findings", High): a write flood that would hold unbounded memory, and API
//! keys that logged in as any user with `api_key_login`.

use mft_e2e::python;
use mft_e2e::sftp::{self, ok, random_file, sha256_file, SftpEnv};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Peak RSS (KiB) of `pid` while `work` runs.
fn peak_rss_during<T>(pid: u32, work: impl FnOnce() -> T) -> (T, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while !s.load(Ordering::Relaxed) {
            peak = peak.max(mft_e2e::rss_kib(pid).unwrap_or(0));
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    let out = work();
    stop.store(true, Ordering::Relaxed);
    (out, sampler.join().unwrap_or(0))
}

/// 2 KiB WRITEs one byte apart: 80 MiB held before the fix.
const OVERLAPPING: u64 = 40_000;
/// 1-byte WRITEs side by side: 100,000 held writes before the fix.
const ADJACENT: u64 = 100_000;

/// Attack: one user with upload permission pipelines tens of thousands of
/// WRITEs that each start one byte after the last (overlapping 2 KiB
/// writes, then 1-byte writes), never writing offset 0, so nothing can be
/// streamed on. Before the fix every one was kept: the process grew without
/// bound. Now the first overlap fails the upload, held writes are capped
/// per upload and per process, RSS stays flat, and another user uploads
/// undisturbed meanwhile and afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shifted_write_flood_is_refused_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let users = format!(
        r#"
[[sftp.users]]
name = "mallory"
password_hash = "{}"
folder = "mallory"
permissions = ["upload", "list"]

[[sftp.users]]
name = "bob"
authorized_keys = ["{{KEY}}"]
folder = "bob"
permissions = ["upload", "download", "list"]
"#,
        sftp::hash_password("flood pass")
    );
    let env = sftp::start(dir.path(), &users, "").await;
    let pid = env.gateway.proc.child.id();
    let before = mft_e2e::rss_kib(pid).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/sftp_attacks.py");
    let port = env.sftp.port().to_string();
    let (out, peak) = peak_rss_during(pid, || {
        std::process::Command::new(python())
            .arg(&script)
            .args(["127.0.0.1", &port, "mallory", "flood pass"])
            .args([OVERLAPPING.to_string(), ADJACENT.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("python: {e} (run scripts/setup --test)"))
    });
    assert!(
        out.status.success(),
        "attack script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 48 * 1024,
        "gateway RSS grew by {grown} KiB during the flood (from {before} KiB)"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let overlapping = &v["overlapping"];
    assert_eq!(overlapping["ok"], 1, "only the first write is held: {v}");
    assert_eq!(overlapping["errors"], OVERLAPPING - 1, "{v}");
    let first = overlapping["first_error"].as_str().unwrap_or_default();
    assert!(first.contains("overlaps"), "{first}");
    let adjacent = &v["adjacent"];
    let held = adjacent["ok"].as_u64().unwrap();
    // 4 MiB window / (1 byte + 128 bytes per held write).
    assert!(held > 1_000 && held < 40_000, "{v}");
    assert_eq!(held + adjacent["errors"].as_u64().unwrap(), ADJACENT);
    let first = adjacent["first_error"].as_str().unwrap_or_default();
    assert!(first.contains("out of order"), "{first}");
    // Neither file was published.
    assert!(env.file("mallory", "overlap.bin").await.is_none());
    assert!(env.file("mallory", "adjacent.bin").await.is_none());
    // Another user is served as before.
    assert_other_user_uploads(&env, dir.path());
}

fn assert_other_user_uploads(env: &SftpEnv, dir: &Path) {
    let local = dir.join("after.bin");
    let sum = random_file(&local, 2 * 1024 * 1024 + 5, 3);
    ok(&env.batch("bob", "put after.bin\nget after.bin back.bin\n"));
    assert_eq!(sha256_file(&dir.join("back.bin")), sum);
}

/// The `[[sftp.users]]` of the key-binding test.
const KEY_USERS: &str = r#"
[[sftp.users]]
name = "carol"
api_key_login = true
folder = "carol"
permissions = ["upload", "download", "list", "delete"]

[[sftp.users]]
name = "dave"
api_key_login = true
api_key_ids = ["daveplaceholder0"]
folder = "dave"
permissions = ["upload", "download", "list"]
"#;

/// Attack: any API key with `files:write` (here: the e2e key of account
/// `e2e`, every scope) logged in as every user with `api_key_login`, with
/// read/write/delete on that user's folder, audited as the user. Now a key
/// logs in only as the user its account is named after (or that lists its
/// id), its scopes narrow the user's permissions, and the audit trail names
/// both the user and the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_logs_in_only_as_its_own_user() {
    let dir = tempfile::tempdir().unwrap();
    let keys = std::sync::Mutex::new(Vec::new());
    let env = sftp::start_with(dir.path(), KEY_USERS, "", |config| {
        let mut made = keys.lock().unwrap();
        for (name, scopes) in [
            ("carol", "files:write"),
            ("carol", "deliveries:write"),
            ("svc-dave", "files:read,files:write"),
            ("dave", "files:read,files:write"),
        ] {
            made.push(mft_e2e::create_key(config, name, scopes));
        }
        vec![("daveplaceholder0".to_string(), made[2].0.clone())]
    })
    .await;
    let keys = keys.into_inner().unwrap();
    let carol_writer = keys[0].1.clone();
    let carol_delivery_only = keys[1].1.clone();
    let dave_listed = keys[2].1.clone();
    let dave_named = keys[3].1.clone();
    std::fs::write(dir.path().join("in.txt"), b"carol's report").unwrap();

    // Another account's key, with every scope, is refused for carol and dave.
    let stranger = env.gateway.key.clone();
    let out = env.batch_with_password("carol", &stranger, "put in.txt\n");
    assert!(!out.status.success(), "a stranger's key logged in as carol");
    let out = env.batch_with_password("dave", &dave_named, "ls\n");
    assert!(
        !out.status.success(),
        "an unlisted key logged in as dave although dave lists his keys"
    );
    // A key whose scopes allow nothing of the user's permissions.
    let out = env.batch_with_password("carol", &carol_delivery_only, "ls\n");
    assert!(!out.status.success());
    assert!(env.file("carol", "in.txt").await.is_none());

    // Carol's own write-only key uploads but neither lists nor downloads.
    ok(&env.batch_with_password("carol", &carol_writer, "put in.txt\n"));
    assert!(env.file("carol", "in.txt").await.is_some());
    let out = env.batch_with_password("carol", &carol_writer, "get in.txt got.txt\n");
    assert!(!out.status.success(), "files:write alone must not download");
    assert!(!dir.path().join("got.txt").exists());
    // (OpenSSH's `ls` reports a refused listing but goes on: the file it
    // just uploaded must simply not be shown.)
    let out = env.batch_with_password("carol", &carol_writer, "ls -1\n");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        !listed.contains("in.txt"),
        "files:write alone must not list: {listed}"
    );
    let said = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(said.contains("permission denied"), "{said}");

    // Dave's listed key works.
    ok(&env.batch_with_password("dave", &dave_listed, "put in.txt\nls\n"));
    assert!(env.file("dave", "in.txt").await.is_some());

    // The audit trail names the user and the key, never the secret.
    let audit = wait_audit(dir.path(), |t| {
        t.lines()
            .any(|l| l.contains("\"sftp_upload\"") && l.contains("sftp:dave"))
    })
    .await;
    let carol_id = key_id(&carol_writer);
    let stranger_id = key_id(&stranger);
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let has =
        |event: &str, principal: &str, credential: &str, decision: &str, reason: Option<&str>| {
            lines.iter().any(|r| {
                r["event"] == event
                    && r["principal"] == principal
                    && r["credential"] == credential
                    && r["decision"] == decision
                    && reason.is_none_or(|why| r["reason"] == why)
            })
        };
    assert!(
        has(
            "sftp_login",
            "sftp:carol",
            &format!("key:{stranger_id}"),
            "deny",
            Some("key_not_bound_to_user")
        ),
        "{audit}"
    );
    assert!(
        has(
            "sftp_login",
            "sftp:carol",
            &format!("key:{carol_id}"),
            "allow",
            None
        ),
        "{audit}"
    );
    assert!(
        has(
            "sftp_upload",
            "sftp:carol",
            &format!("key:{carol_id}"),
            "allow",
            None
        ),
        "{audit}"
    );
    assert!(
        has(
            "sftp_login",
            "sftp:dave",
            &format!("key:{}", key_id(&dave_named)),
            "deny",
            Some("key_not_bound_to_user")
        ),
        "{audit}"
    );
    for key in [&stranger, &carol_writer, &dave_listed, &dave_named] {
        assert!(!audit.contains(mft_e2e::key_secret(key)));
    }
}

fn key_id(key: &str) -> String {
    mft_filters::auth::api_key::parse(key)
        .expect("key")
        .id
        .to_string()
}

async fn wait_audit(dir: &Path, done: impl Fn(&str) -> bool) -> String {
    let start = std::time::Instant::now();
    loop {
        let text =
            std::fs::read_to_string(dir.join("gateway-data/audit.jsonl")).unwrap_or_default();
        if done(&text) {
            return text;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "audit: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Attack (defender bypass): an attacker holding one valid login (their
/// own, `mallory`) guesses another user's password (`bob`) nine times,
/// logs in once as themselves to reset the count, and repeats, never
/// banned. Now a success clears only the failures against the user who
/// logged in: the tenth guess at bob bans the address, and mallory's own
/// valid password is refused from there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_login_does_not_reset_guesses_at_other_users() {
    let dir = tempfile::tempdir().unwrap();
    let users = format!(
        r#"
[[sftp.users]]
name = "mallory"
password_hash = "{}"
folder = "mallory"

[[sftp.users]]
name = "bob"
password_hash = "{}"
folder = "bob"

[defender]
threshold = 10
score_per_failure = 1
"#,
        sftp::hash_password("mallory's own"),
        sftp::hash_password("bob's secret"),
    );
    let env = sftp::start(dir.path(), &users, "").await;
    let port = env.sftp.port().to_string();
    // One paramiko login per attempt; prints "ok" or "refused" per line.
    let script = r#"
import sys, paramiko
port = int(sys.argv[1])
for item in sys.argv[2:]:
    user, password = item.split(":", 1)
    t = paramiko.Transport(("127.0.0.1", port))
    try:
        t.connect(username=user, password=password)
        print("ok")
    except paramiko.AuthenticationException:
        print("refused")
    except (paramiko.SSHException, OSError):
        # Banned: closed at accept, before the SSH banner.
        print("closed")
    finally:
        t.close()
"#;
    let mut attempts: Vec<String> = Vec::new();
    attempts.extend((0..9).map(|i| format!("bob:guess-{i}")));
    attempts.push("mallory:mallory's own".into());
    attempts.push("bob:guess-9".into());
    attempts.push("mallory:mallory's own".into());
    let out = std::process::Command::new(python())
        .args(["-c", script, &port])
        .args(&attempts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(results.len(), 12, "{results:?}");
    assert!(results[..9].iter().all(|r| r == "refused"), "{results:?}");
    assert_eq!(results[9], "ok", "mallory's own login works before the ban");
    assert_eq!(results[10], "refused");
    assert_eq!(
        results[11], "closed",
        "the tenth guess at bob must ban the address despite mallory's success"
    );
    let audit = wait_audit(dir.path(), |t| t.contains("\"ban\"")).await;
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"ban\"") && l.contains("SFTP")),
        "{audit}"
    );
}

/// Runs a paramiko snippet with `args`; returns its stdout lines.
fn paramiko(script: &str, args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// What a raw TCP client hears first: the SSH banner, or nothing (closed).
async fn first_bytes(from: &str, to: std::net::SocketAddr) -> (tokio::net::TcpStream, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut tcp = socket.connect(to).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("an answer or a close in time")
        .unwrap_or(0);
    buf.truncate(n);
    (tcp, buf)
}

/// Attacks on the SFTP listener: one address holding many connections,
/// connections that never log in (kept alive by trickling), a banned
/// address still getting key exchanges, and one connection opening
/// unbounded SFTP sessions. Now: a per-client and a global cap before the
/// key exchange, a login deadline, the ban checked at accept, and at most
/// four sessions per connection; another client is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_listener_limits_hold_before_and_after_login() {
    let dir = tempfile::tempdir().unwrap();
    let users = format!(
        r#"
[[sftp.users]]
name = "alice"
password_hash = "{}"
folder = "alice"

[defender]
threshold = 3
score_per_failure = 1
"#,
        sftp::hash_password("alice pass"),
    );
    let extra = "max_connections = 6\nmax_connections_per_ip = 2\nlogin_timeout = \"2s\"";
    let env = sftp::start(dir.path(), &users, extra).await;
    let addr = env.sftp;
    let port = addr.port().to_string();

    // Two silent connections from one address get the banner; a third is
    // closed before any key exchange.
    let (silent_a, banner) = first_bytes("127.0.0.1", addr).await;
    assert!(banner.starts_with(b"SSH-2.0-"), "{banner:?}");
    let (_silent_b, _) = first_bytes("127.0.0.1", addr).await;
    let (_third, heard) = first_bytes("127.0.0.1", addr).await;
    assert!(heard.is_empty(), "third connection got {heard:?}");

    // Another address logs in and works meanwhile, with at most four
    // SFTP sessions on its one connection.
    let sessions = r#"
import socket, sys, paramiko
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), source_address=("127.0.0.2", 0))
t = paramiko.Transport(sock)
t.connect(username="alice", password=sys.argv[2])
opened = []
for i in range(6):
    try:
        opened.append(paramiko.SFTPClient.from_transport(t))
        print("session")
    except Exception as e:
        print("refused")
with opened[0].open("hello.txt", "w") as f:
    f.write("hi")
print("uploaded")
t.close()
"#;
    let lines = paramiko(sessions, &[&port, "alice pass"]);
    assert_eq!(
        lines,
        ["session", "session", "session", "session", "refused", "refused", "uploaded"]
    );
    assert!(env.file("alice", "hello.txt").await.is_some());

    // The silent connections are closed at the login deadline.
    let start = std::time::Instant::now();
    let mut silent_a = silent_a;
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        loop {
            match silent_a.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a connection without login stayed open");
    assert!(start.elapsed() < Duration::from_secs(5));

    // Three wrong passwords ban 127.0.0.3; its next connection gets no
    // key exchange at all.
    let guess = r#"
import socket, sys, paramiko
for i in range(3):
    sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), source_address=("127.0.0.3", 0))
    t = paramiko.Transport(sock)
    try:
        t.connect(username="alice", password="wrong %d" % i)
        print("ok")
    except paramiko.AuthenticationException:
        print("refused")
    finally:
        t.close()
"#;
    assert_eq!(paramiko(guess, &[&port]), ["refused", "refused", "refused"]);
    let (_banned, heard) = first_bytes("127.0.0.3", addr).await;
    assert!(heard.is_empty(), "a banned address got {heard:?}");

    let page = mft_e2e::metrics(env.gateway.admin).await;
    let refused = |why: &str| {
        mft_e2e::metric(
            &page,
            &format!("mft_sftp_connections_refused_total{{reason=\"{why}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(refused("per_ip") >= 1.0, "{page}");
    assert!(refused("login_timeout") >= 1.0, "{page}");
    assert!(refused("banned") >= 1.0, "{page}");
}

/// Attack: a session opened with an API key outlives the key's revocation
/// (the key leaked; the operator revoked it; the thief's open SFTP session
/// goes on). Now the connection is closed within seconds of `keys revoke`,
/// audited, and the key no longer logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_key_ends_its_live_sftp_session() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let users = "\n[[sftp.users]]\nname = \"erin\"\napi_key_login = true\nfolder = \"erin\"\n";
    let key = std::sync::Mutex::new((String::new(), String::new()));
    let env = sftp::start_with(dir.path(), users, "", |config| {
        *key.lock().unwrap() = mft_e2e::create_key(config, "erin", "files:read,files:write");
        Vec::new()
    })
    .await;
    let (key_id, key) = key.into_inner().unwrap();
    let script = r#"
import sys, time, paramiko
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.connect(username="erin", password=sys.argv[2])
s = paramiko.SFTPClient.from_transport(t)
s.listdir(".")
print("ready", flush=True)
sys.stdin.readline()
start = time.time()
while time.time() - start < 15:
    if not t.is_active():
        print("closed", flush=True)
        break
    time.sleep(0.1)
else:
    print("still open", flush=True)
"#;
    let mut child = std::process::Command::new(python())
        .args(["-c", script, &env.sftp.port().to_string(), &key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
    mft_e2e::revoke_key(&env.gateway.config, &key_id);
    let started = std::time::Instant::now();
    writeln!(child.stdin.take().unwrap()).unwrap();
    let verdict = lines.next().and_then(Result::ok);
    assert_eq!(verdict.as_deref(), Some("closed"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let _ = child.wait();
    // The key no longer logs in, and the cut is audited with the key.
    let out = env.batch_with_password("erin", &key, "ls\n");
    assert!(!out.status.success());
    let audit = wait_audit(dir.path(), |t| t.contains("key_revoked")).await;
    assert!(
        audit.lines().any(|l| l.contains("\"sftp_session\"")
            && l.contains("key_revoked")
            && l.contains(&format!("key:{key_id}"))),
        "{audit}"
    );
}
