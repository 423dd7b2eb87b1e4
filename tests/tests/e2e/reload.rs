//! Live reload of the running gateway (docs/operations.md, "Reload"):
//! `mft-gateway reload` (through `POST /admin/v1/reload`) and SIGHUP change
//! rate limits and route body limits without a restart while an upload
//! started before the reload finishes on the old settings; an invalid file
//! changes nothing and is reported with the same lines as `check`; the
//! audit record names the changed sections and no secret.

use futures_util::StreamExt;
use mft_e2e::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "reload-test-admin-token-0123456789abcdef";

/// Generous limits: nothing is refused before the reload.
const BEFORE: &str = r#"
[rate_limit]
per_key = "1000/s burst 1000"

[[limits.routes]]
path_prefix = "/api/v1/files"
methods = ["POST"]
max_body_bytes = "100 MiB"
"#;

/// After the reload: 2 requests per minute per key, 1 MiB uploads.
const AFTER: &str = r#"
[rate_limit]
per_key = "1/m burst 3"

[[limits.routes]]
path_prefix = "/api/v1/files"
methods = ["POST"]
max_body_bytes = "1 MiB"
"#;

struct Env {
    certs: Certs,
    _backend: Backend,
    backend_url: String,
    addr: SocketAddr,
    admin: SocketAddr,
    config: PathBuf,
    gateway: Option<Gateway>,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    dir: tempfile::TempDir,
}

impl Env {
    /// A gateway on the hyper engine, whose request path reloads.
    async fn start(tables: &str) -> Env {
        use_engine("hyper");
        Env::start_on_current_engine(tables).await
    }

    async fn start_on_current_engine(tables: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let certs = make_certs(dir.path());
        let backend = start_backend(dir.path()).await;
        std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).unwrap();
        let mut env = Env {
            backend_url: backend.url.clone(),
            config: dir.path().join("gateway.toml"),
            dir,
            certs,
            _backend: backend,
            // Port 0 in the file: the gateway reports what it bound.
            addr: ephemeral(),
            admin: ephemeral(),
            gateway: None,
        };
        env.write(tables);
        let (_, key) = create_key(&env.config, "e2e", ALL_SCOPES);
        env.gateway = Some(
            launch_gateway(
                env.dir.path(),
                &env.certs,
                env.config.clone(),
                env.addr,
                env.admin,
                key,
            )
            .await,
        );
        env
    }

    /// Rewrites the config file with `tables` (listeners and backend unchanged).
    fn write(&self, tables: &str) {
        let signing = format!(
            "signing_key = \"file:{}\"",
            default_signing_key(self.dir.path()).display()
        );
        let tables = format!("[admin]\ntoken = \"file:admin.token\"\n{tables}");
        std::fs::write(
            &self.config,
            gateway_config(
                &self.certs,
                self.addr,
                self.admin,
                &self.backend_url,
                &signing,
                &tables,
            ),
        )
        .unwrap();
    }

    fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().unwrap()
    }

    fn client(&self) -> reqwest::Client {
        self.gateway().client(&self.certs, Proto::Http1)
    }

    fn files(&self) -> String {
        format!("{}/api/v1/files", self.gateway().base)
    }
}

/// `mft-gateway <args> --config FILE`: (exit code, stdout).
fn cli(args: &[&str], config: &Path) -> (i32, String) {
    let out = Command::new(bin("mft-gateway"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// How many of `n` quick GETs the gateway answered 200 (the rest must be 429).
async fn admitted(env: &Env, n: usize) -> usize {
    let client = env.client();
    let mut ok = 0;
    for _ in 0..n {
        let r = client.get(env.files()).send().await.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    ok
}

async fn upload(env: &Env, size: u64, seed: u64) -> reqwest::Response {
    let content = Arc::new(Content::new(size, seed));
    env.client()
        .post(env.files())
        .header("X-Filename", format!("f{seed}.bin"))
        .header("Content-Length", size)
        .body(content.body())
        .send()
        .await
        .unwrap()
}

async fn reloads(admin: SocketAddr, result: &str) -> f64 {
    metric(
        &metrics(admin).await,
        &format!("mft_config_reloads_total{{result=\"{result}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Waits until `mft_config_reloads_total{result}` reaches `want`.
async fn wait_reloads(admin: SocketAddr, result: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while reloads(admin, result).await < want {
        assert!(Instant::now() < deadline, "no {result} reload counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The audit trail's `config_reloaded` records, once `want` are there.
async fn reload_records(dir: &Path, want: usize) -> Vec<serde_json::Value> {
    let file = dir.join("gateway-data").join("audit.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let records: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["event"] == "config_reloaded")
            .collect();
        if records.len() >= want {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "no config_reloaded record in {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn reload_applies_new_limits_while_an_upload_started_before_finishes() {
    let env = Env::start(BEFORE).await;
    assert_eq!(admitted(&env, 6).await, 6, "the generous limit admits all");

    // A 16 MiB upload whose second half waits until the reload is done
    // (its first half is more than the sockets buffer, so the gateway has
    // read its head and decided its limits by then).
    let content = Arc::new(Content::new(16 << 20, 7));
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    let half = content.chunks() / 2;
    let gate = futures_util::future::FutureExt::shared(async move {
        let _ = gate.await;
    });
    // Told when the first half went out: its head was through the gateway's
    // limits and the body is streaming to the backend.
    let (reached, halfway) = tokio::sync::oneshot::channel::<()>();
    let reached = Arc::new(std::sync::Mutex::new(Some(reached)));
    let c = content.clone();
    let body = futures_util::stream::iter(0..content.chunks()).then(move |i| {
        let (c, gate, reached) = (c.clone(), gate.clone(), reached.clone());
        async move {
            if i == half {
                if let Some(tx) = reached.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                gate.await;
            }
            Ok::<_, std::io::Error>(c.chunk(i))
        }
    });
    let client = env.client();
    let long = tokio::spawn(
        client
            .post(env.files())
            .header("X-Filename", "long.bin")
            .header("Content-Length", content.size)
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tokio::time::timeout(Duration::from_secs(30), halfway)
        .await
        .expect("the upload's first half went out")
        .unwrap();

    env.write(AFTER);
    let (code, stdout) = cli(&["reload"], &env.config);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("ok    config:"), "{stdout}");
    assert!(
        stdout.contains("ok    reload: applied: rate_limit, limits"),
        "{stdout}"
    );

    // New behaviour, no restart: a 2 MiB upload is refused before its body ...
    let r = upload(&env, 2 << 20, 8).await;
    assert_eq!(r.status(), 413);
    // ... and the key gets 3 requests, then 429 (the upload above was one).
    assert_eq!(admitted(&env, 4).await, 2);

    // The upload begun before the reload finishes on the old limits.
    let _ = release.send(());
    let r = long.await.unwrap().unwrap();
    assert_eq!(r.status(), 201);
    let stored: serde_json::Value = r.json().await.unwrap();
    assert_eq!(stored["size"], content.size);
    assert_eq!(stored["sha256"], content.sha256());

    assert_eq!(reloads(env.gateway().admin, "success").await, 1.0);
    let records = reload_records(env.dir.path(), 1).await;
    let reason = records[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("rate_limit") && reason.contains("limits"),
        "{reason}"
    );
    assert_eq!(records[0]["principal"], "admin");
    let audit = std::fs::read_to_string(env.dir.path().join("gateway-data/audit.jsonl")).unwrap();
    let signing = std::fs::read_to_string(default_signing_key(env.dir.path())).unwrap();
    assert!(!audit.contains(ADMIN_TOKEN));
    assert!(!audit.contains(signing.trim()));
    assert!(!env.gateway().proc.stderr().contains(ADMIN_TOKEN));
}

#[tokio::test]
async fn an_invalid_file_changes_nothing_by_cli_or_sighup() {
    let env = Env::start(AFTER).await;
    let good = std::fs::read_to_string(&env.config).unwrap();
    // Two problems: a quota that does not parse and an unknown key.
    env.write(
        "[rate_limit]\nper_key = \"lots\"\n\n[limits]\nmax_body_bytes = \"1 MiB\"\nmax_bodys = 3\n",
    );
    let (code, stdout) = cli(&["reload"], &env.config);
    assert_eq!(code, 1, "{stdout}");
    let (_, check) = cli(&["check"], &env.config);
    let fail_lines = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.starts_with("FAIL  config: "))
            .map(str::to_string)
            .collect()
    };
    let lines = fail_lines(&stdout);
    assert!(!lines.is_empty(), "{stdout}");
    assert_eq!(lines, fail_lines(&check), "the same lines as check");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("FAIL  config: gateway.toml:")),
        "file:line: key: message lines: {lines:?}"
    );

    // The same file by SIGHUP: refused in the process, logged, counted.
    env.gateway().proc.signal("HUP");
    wait_reloads(env.gateway().admin, "failure", 1.0).await;
    // The log line may reach the pipe a moment after the counter moved.
    let mut stderr = env.gateway().proc.stderr();
    for _ in 0..50 {
        if stderr.contains("config reload refused, nothing changed: gateway.toml:") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        stderr = env.gateway().proc.stderr();
    }
    assert!(
        stderr.contains("config reload refused, nothing changed: gateway.toml:"),
        "{stderr}"
    );
    // An invalid value (not a parse error) is listed with its key.
    env.write("[rate_limit]\nper_key = \"lots\"\n");
    let (code, stdout) = cli(&["reload"], &env.config);
    assert_eq!(code, 1);
    assert!(stdout.contains("rate_limit.per_key"), "{stdout}");

    // Old behaviour: the running limit (burst 3) still holds, the process runs.
    assert_eq!(admitted(&env, 5).await, 3);
    assert_eq!(reloads(env.gateway().admin, "success").await, 0.0);
    std::fs::write(&env.config, good).unwrap();
    let records = reload_records(env.dir.path(), 1).await;
    assert_eq!(records[0]["decision"], "deny");
}

#[tokio::test]
async fn sighup_reloads_like_the_cli() {
    let env = Env::start(BEFORE).await;
    assert_eq!(admitted(&env, 5).await, 5);
    env.write(AFTER);
    env.gateway().proc.signal("HUP");
    wait_reloads(env.gateway().admin, "success", 1.0).await;
    assert_eq!(admitted(&env, 5).await, 3);
    let r = upload(&env, 2 << 20, 9).await;
    assert!(r.status() == 413 || r.status() == 429, "{}", r.status());

    let records = reload_records(env.dir.path(), 1).await;
    assert_eq!(records[0]["principal"], "signal:SIGHUP");
    assert_eq!(records[0]["decision"], "allow");
    let reason = records[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("changed: rate_limit, limits;"),
        "{reason}"
    );

    // The worker count cannot change in a running process: named, not
    // ignored. (A moved https_listen is rebound live: rebind.rs.)
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("threads = 2", "threads = 3");
    std::fs::write(&env.config, text).unwrap();
    let (code, stdout) = cli(&["reload"], &env.config);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout
            .contains("warn  reload: server.threads changed but takes effect only after a restart"),
        "{stdout}"
    );
    let stderr = env.gateway().proc.stderr();
    assert!(
        stderr.contains("take effect only after a restart"),
        "{stderr}"
    );
    // Still serving where it was.
    let r = env
        .client()
        .get(format!("{}/healthz", env.gateway().base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn reload_switches_backend_and_scope_rules_and_refuses_what_cannot_apply() {
    let env = Env::start("").await;
    let client = env.client();
    let r = upload(&env, 1000, 1).await;
    assert_eq!(r.status(), 201);
    let list = |c: reqwest::Client| {
        let url = env.files();
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, body) = list(client.clone()).await;
    assert_eq!(status, 200);
    assert!(body.contains("f1.bin"), "{body}");

    // A second backend (same signing key), empty: the reload moves the API there.
    let other_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        default_signing_key(env.dir.path()),
        default_signing_key(other_dir.path()),
    )
    .unwrap();
    let other = start_backend(other_dir.path()).await;
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(&env.backend_url, &other.url);
    // And a scope rule: listing files now needs a scope the key lacks.
    let text = format!(
        "{text}\n[[auth.scopes]]\nmethods = [\"GET\"]\npath_prefix = \"/api/v1/files\"\nscope = \"files:list\"\n"
    );
    std::fs::write(&env.config, &text).unwrap();
    let (code, stdout) = cli(&["reload"], &env.config);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("auth.scopes"), "{stdout}");
    assert!(stdout.contains("backend"), "{stdout}");
    let (status, _) = list(client.clone()).await;
    assert_eq!(status, 403, "the new scope rule applies");
    let r = upload(&env, 1000, 2).await;
    assert_eq!(r.status(), 201);
    // f2 went to the new backend, f1 stays on the old one.
    let in_new = std::fs::read_dir(other.data_dir.join("files")).map_or(0, |d| d.count());
    let in_old = std::fs::read_dir(env._backend.data_dir.join("files")).map_or(0, |d| d.count());
    assert_eq!((in_new, in_old), (1, 1), "files stored by each backend");

    // Valid TOML, but a certificate whose key does not match: nothing changes.
    let certs2 = make_certs(other_dir.path());
    let broken = format!(
        "{text}\n[[server.certificates]]\nnames = [\"x.test\"]\ncert = \"{}\"\nkey = \"{}\"\n",
        certs2.cert.display(),
        env.certs.key.display()
    );
    std::fs::write(&env.config, &broken).unwrap();
    let (code, stdout) = cli(&["reload"], &env.config);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL  reload: the running gateway answered 422"),
        "{stdout}"
    );
    assert!(stdout.contains("does not match certificate"), "{stdout}");
    let (status, _) = list(client).await;
    assert_eq!(status, 403, "still the rules of the last good reload");
    assert_eq!(reloads(env.gateway().admin, "failure").await, 1.0);
    assert_eq!(reloads(env.gateway().admin, "success").await, 1.0);
}

#[tokio::test]
async fn the_pingora_engine_names_request_path_changes_as_needing_restart() {
    use_engine("pingora");
    let env = Env::start_on_current_engine(BEFORE).await;
    env.write(AFTER);
    let (code, stdout) = cli(&["reload"], &env.config);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("ok    reload: applied (nothing changed)"),
        "{stdout}"
    );
    for section in ["rate_limit", "limits"] {
        assert!(
            stdout.contains(&format!(
                "warn  reload: {section} changed but takes effect only after a restart"
            )),
            "{stdout}"
        );
    }
    // And indeed the old limit still holds.
    assert_eq!(admitted(&env, 5).await, 5);
}
