//! SFTP users added and removed while the gateway runs (docs/sftp.md
//! "Users added at run time"): through the admin API and through the CLI,
//! logged in with the real OpenSSH `sftp` client and paramiko, uploads that
//! reach the backend, and removal: the next login is refused and an open
//! session is closed.

use mft_e2e::sftp::{self, ok, random_file, SftpEnv};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN: &str = "sftp-users-admin-token-0123456789";

/// `[[sftp.users]]` alice (config) and the admin token.
async fn env(dir: &Path) -> SftpEnv {
    std::fs::write(dir.join("admin.token"), TOKEN).unwrap();
    let tables = format!(
        "[[sftp.users]]\nname = \"alice\"\nauthorized_keys = [\"{{KEY}}\"]\nfolder = \"partners/alice\"\n\n\
         [admin]\ntoken = \"file:{}\"\n",
        dir.join("admin.token").display()
    );
    sftp::start(dir, &tables, "").await
}

async fn admin(
    env: &SftpEnv,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("http://{}{path}", env.gateway.admin))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn user<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
}

/// Logs in as `user` with `password` through paramiko and uploads
/// `content` as `name`; the script's exit status tells whether it worked.
fn paramiko_put(
    env: &SftpEnv,
    user: &str,
    password: &str,
    name: &str,
    content: &str,
) -> std::process::Output {
    const SCRIPT: &str = "import io, sys, paramiko\n\
        t = paramiko.Transport(('127.0.0.1', int(sys.argv[1])))\n\
        t.connect(username=sys.argv[2], password=sys.argv[3])\n\
        s = paramiko.SFTPClient.from_transport(t)\n\
        s.putfo(io.BytesIO(sys.argv[5].encode()), sys.argv[4])\n\
        s.close(); t.close()\n";
    std::process::Command::new(mft_e2e::python())
        .args([
            "-c",
            SCRIPT,
            &env.sftp.port().to_string(),
            user,
            password,
            name,
            content,
        ])
        .output()
        .expect("the test venv's python (scripts/setup --test)")
}

/// An `sftp` session held open (no command yet) as `user` with `key`.
fn hold_session(env: &SftpEnv, user: &str, key: &Path) -> std::process::Child {
    std::process::Command::new("sftp")
        .args(["-b", "-", "-i"])
        .arg(key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentityAgent=none",
            "-P",
        ])
        .arg(env.sftp.port().to_string())
        .arg(format!("{user}@127.0.0.1"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `f` holds, for at most `limit`.
async fn eventually(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_added_through_the_admin_api_logs_in_uploads_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path()).await;
    let acme_key = dir.path().join("acme_key");
    let acme_public = sftp::keygen(&acme_key);
    let post = reqwest::Method::POST;

    // Refusals first: nothing is stored by any of them.
    let bad = [
        (
            json!({"name": "alice", "password": "correct horse battery", "folder": "x"}),
            409,
            "config file",
        ),
        (
            json!({"name": "acme", "folder": "partners/acme"}),
            400,
            "no way to log in",
        ),
        (
            json!({"name": "acme", "password": "short", "folder": "partners/acme"}),
            400,
            "12",
        ),
        (
            json!({"name": "acme", "authorized_keys": ["ssh-ed25519 AAAA-not-a-key"], "folder": "partners/acme"}),
            400,
            "public key",
        ),
        (
            json!({"name": "acme", "password": "correct horse battery", "folder": "../etc"}),
            400,
            "folder",
        ),
        (
            json!({"name": "a/b", "password": "correct horse battery", "folder": "x"}),
            400,
            "name",
        ),
        (
            json!({"name": "acme", "password": "correct horse battery", "folder": "x", "shell": "/bin/sh"}),
            400,
            "shell",
        ),
    ];
    for (body, status, detail) in bad {
        let (got, problem) = admin(
            &env,
            post.clone(),
            "/admin/v1/sftp/users",
            Some(body.clone()),
        )
        .await;
        assert_eq!(got, status, "{body}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap_or("").contains(detail),
            "{body}: {problem}"
        );
    }
    let r = reqwest::Client::new()
        .post(format!("http://{}/admin/v1/sftp/users", env.gateway.admin))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // Added with a password and a public key; the answer shows neither.
    let password = "correct horse battery";
    let (status, added) = admin(
        &env,
        post.clone(),
        "/admin/v1/sftp/users",
        Some(json!({
            "name": "acme",
            "password": password,
            "authorized_keys": [acme_public],
            "folder": "partners/acme",
            "permissions": ["upload", "download", "list"],
            "deliver_to": ["ops@ourcorp.example"],
        })),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["source"], "store");
    assert_eq!(added["login"], json!(["public key", "password"]));
    assert!(added["public_keys"][0]
        .as_str()
        .unwrap()
        .starts_with("SHA256:"));
    let text = added.to_string();
    assert!(
        !text.contains(password) && !text.contains("argon2") && !text.contains("AAAA"),
        "{text}"
    );
    let (status, again) = admin(
        &env,
        post.clone(),
        "/admin/v1/sftp/users",
        Some(json!({"name": "acme", "password": password, "folder": "x"})),
    )
    .await;
    assert_eq!(status, 409, "{again}");

    // OpenSSH sftp with the key: the upload reaches the backend.
    let local = dir.path().join("report.csv");
    let sum = random_file(&local, 300 * 1024 + 5, 7);
    ok(&env.batch_with_key("acme", &acme_key, "put report.csv\nls\n"));
    let stored = env
        .file("partners/acme", "report.csv")
        .await
        .expect("uploaded");
    assert_eq!(stored["sha256"], sum.as_str());
    // Its on_upload delivery.
    let client = env.gateway.client(&env.certs, mft_e2e::Proto::Http1);
    let deliveries: Value = client
        .get(format!("{}/api/v1/deliveries", env.gateway.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        deliveries["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["origin"] == "sftp:acme"),
        "{deliveries}"
    );
    // OpenSSH sftp with the password, and paramiko with the password.
    ok(&env.batch_with_password("acme", password, "ls\n"));
    let out = paramiko_put(
        &env,
        "acme",
        password,
        "via-paramiko.txt",
        "paramiko was here",
    );
    assert!(
        out.status.success(),
        "paramiko: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = env
        .file("partners/acme", "via-paramiko.txt")
        .await
        .expect("paramiko's upload");
    assert_eq!(f["size"], 17);
    // A wrong password is refused.
    let out = paramiko_put(&env, "acme", "wrong horse battery", "x.txt", "x");
    assert!(!out.status.success());

    // Listed with config users; its last login is recorded (in batches).
    eventually(
        Duration::from_secs(5),
        "last_login_at recorded",
        async || {
            let (_, list) = admin(&env, reqwest::Method::GET, "/admin/v1/sftp/users", None).await;
            assert_eq!(user(&list, "alice").unwrap()["source"], "config");
            user(&list, "acme").unwrap()["last_login_at"].is_string()
        },
    )
    .await;
    let (_, bridges) = admin(&env, reqwest::Method::GET, "/admin/v1/bridges", None).await;
    assert!(user(&bridges["sftp"], "acme").is_some(), "{bridges}");

    // Removal: an open session is closed, the next login refused.
    let mut held = hold_session(&env, "acme", &acme_key);
    eventually(
        Duration::from_secs(10),
        "the held session is open",
        async || {
            let (_, list) = admin(&env, reqwest::Method::GET, "/admin/v1/sftp/users", None).await;
            user(&list, "acme").unwrap()["open_sessions"] == 1
        },
    )
    .await;
    let (status, _) = admin(
        &env,
        reqwest::Method::DELETE,
        "/admin/v1/sftp/users/alice",
        None,
    )
    .await;
    assert_eq!(status, 409, "a config user is removed in the file");
    let (status, removed) = admin(
        &env,
        reqwest::Method::DELETE,
        "/admin/v1/sftp/users/acme",
        None,
    )
    .await;
    assert_eq!(status, 200, "{removed}");
    let out = env.batch_with_key("acme", &acme_key, "ls\n");
    assert!(
        !out.status.success(),
        "the removed user's key is refused at once"
    );
    let out = env.batch_with_password("acme", password, "ls\n");
    assert!(
        !out.status.success(),
        "the removed user's password is refused"
    );
    // The gateway ends the held session (its gauge drops to 0); the
    // client, idle in batch mode, finds the connection gone at its next
    // command.
    eventually(
        Duration::from_secs(5),
        "the removed user's session closed",
        async || {
            let m = mft_e2e::metrics(env.gateway.admin).await;
            mft_e2e::metric(&m, "mft_sftp_user_sessions_active{user=\"acme\"}") == Some(0.0)
        },
    )
    .await;
    {
        use std::io::Write;
        let mut stdin = held.stdin.take().unwrap();
        let _ = stdin.write_all(b"ls\n");
    }
    let status = held.wait().unwrap();
    assert!(!status.success(), "the held session's next command fails");
    let (status, _) = admin(
        &env,
        reqwest::Method::DELETE,
        "/admin/v1/sftp/users/acme",
        None,
    )
    .await;
    assert_eq!(status, 404);
    // alice (config) is untouched.
    ok(&env.batch("alice", "ls\n"));

    // Every change is in the audit trail, never the password.
    let (_, audit) = admin(
        &env,
        reqwest::Method::GET,
        "/admin/v1/audit?event=sftp_user&limit=100",
        None,
    )
    .await;
    let records = audit["records"].as_array().unwrap();
    assert!(
        records
            .iter()
            .any(|r| r["reason"] == "POST acme" && r["status"] == 201),
        "{audit}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["reason"] == "DELETE acme" && r["status"] == 200),
        "{audit}"
    );
    assert!(!audit.to_string().contains(password));
    let (_, sessions) = admin(
        &env,
        reqwest::Method::GET,
        "/admin/v1/audit?event=sftp_session&limit=100",
        None,
    )
    .await;
    assert!(sessions.to_string().contains("user_removed"), "{sessions}");
}

fn cli(config: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(mft_e2e::bin("mft-gateway"))
        .args(["sftp", "users"])
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_added_and_removed_with_the_cli_reach_a_running_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path()).await;
    let config = &env.gateway.config;
    let key = dir.path().join("batch_key");
    sftp::keygen(&key);
    let pubfile = key.with_extension("pub");
    let pubfile = pubfile.to_str().unwrap();

    let (code, out) = cli(
        config,
        &[
            "add",
            "alice",
            "--folder",
            "x",
            "--authorized-keys",
            pubfile,
        ],
        None,
    );
    assert_eq!(code, 1, "a config user's name: {out}");
    assert!(out.contains("config file"), "{out}");
    let (code, out) = cli(
        config,
        &[
            "add",
            "batch-job",
            "--folder",
            "jobs/in",
            "--authorized-keys",
            pubfile,
            "--password-stdin",
            "--permissions",
            "upload,list",
        ],
        Some("batch job password\n"),
    );
    assert_eq!(code, 0, "{out}");
    // Another process wrote it: the gateway's copy catches up within ~1 s.
    std::fs::write(dir.path().join("in.txt"), b"from the batch job").unwrap();
    eventually(
        Duration::from_secs(5),
        "the CLI's user logs in",
        async || {
            env.batch_with_key("batch-job", &key, "put in.txt\n")
                .status
                .success()
        },
    )
    .await;
    assert!(env.file("jobs/in", "in.txt").await.is_some());
    let out = env.batch_with_key("batch-job", &key, "get in.txt back.txt\n");
    assert!(!out.status.success(), "no download permission");

    let (code, out) = cli(config, &["list", "--json"], None);
    assert_eq!(code, 0, "{out}");
    let list: Value = serde_json::from_str(out.trim()).unwrap();
    let names: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["name"].as_str().unwrap(), u["source"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("alice", "config"), ("batch-job", "store")]);
    assert!(
        !out.contains("argon2") && !out.contains("ssh-ed25519"),
        "{out}"
    );

    let (code, out) = cli(config, &["remove", "batch-job"], None);
    assert_eq!(code, 0, "{out}");
    eventually(
        Duration::from_secs(5),
        "the removed user is refused",
        async || {
            !env.batch_with_key("batch-job", &key, "ls\n")
                .status
                .success()
        },
    )
    .await;
    let (code, _) = cli(config, &["remove", "batch-job"], None);
    assert_eq!(code, 1);
}
