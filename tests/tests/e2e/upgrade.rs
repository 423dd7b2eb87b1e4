//! Zero-downtime binary upgrade (docs/operations.md, "Upgrade the binary"):
//! `mft-gateway upgrade` while clients keep sending requests (on kept-alive
//! connections and on a new connection each) and a large upload runs. No
//! request fails, the upload's SHA-256 as the backend stored it equals the
//! source's, the old process drains and exits 0, the new one serves on the
//! same sockets. A new process that cannot start leaves the old one serving.
//!
//! `MFT_UPGRADE_TEST_BYTES` sets the upload's size (default 256 MiB; the
//! issue's 1 GiB: `MFT_UPGRADE_TEST_BYTES=1073741824`).

use futures_util::StreamExt;
use mft_e2e::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "upgrade-test-admin-token-0123456789abcdef";

struct Env {
    certs: Certs,
    _backend: Backend,
    gateway: Gateway,
    /// What the gateways told "systemd" (`NOTIFY_SOCKET`).
    notify: std::os::unix::net::UnixDatagram,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    dir: tempfile::TempDir,
}

/// Kills a process that is not our child (the new gateway) when dropped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

fn config_text(
    env_dir: &Path,
    certs: &Certs,
    addr: SocketAddr,
    admin: SocketAddr,
    backend: &str,
) -> String {
    let signing = format!(
        "signing_key = \"file:{}\"",
        default_signing_key(env_dir).display()
    );
    gateway_config(
        certs,
        addr,
        admin,
        backend,
        &signing,
        "[admin]\ntoken = \"file:admin.token\"\n",
    )
    // Room for a 1 GiB upload on a debug build to finish while draining.
    .replace("shutdown_timeout = \"20s\"", "shutdown_timeout = \"300s\"")
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).unwrap();
    // Port 0: the new process must serve the ports the kernel gave the old.
    let (addr, admin) = (ephemeral(), ephemeral());
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        config_text(dir.path(), &certs, addr, admin, &backend.url),
    )
    .unwrap();
    let (_, key) = create_key(&config, "e2e", ALL_SCOPES);
    // The notify protocol is datagrams on this socket, as under systemd.
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_nonblocking(true).unwrap();
    let gateway = launch_gateway_env(
        dir.path(),
        &certs,
        config,
        addr,
        admin,
        key,
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    )
    .await;
    Env {
        dir,
        certs,
        _backend: backend,
        gateway,
        notify,
    }
}

/// `mft-gateway upgrade --config FILE`: (exit code, stdout).
fn upgrade_cli(config: &Path) -> (i32, String) {
    let out = Command::new(bin("mft-gateway"))
        .args(["upgrade", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The pid after `label` in the CLI's answer ("new process 123 serves").
fn pid_after(stdout: &str, label: &str) -> u32 {
    let rest = stdout
        .split(label)
        .nth(1)
        .unwrap_or_else(|| panic!("no {label:?} in {stdout}"));
    rest.split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid after {label:?} in {stdout}"))
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Requests in a loop until `stop`: on one kept-alive connection, or on a
/// new connection each (`fresh`). Returns (answered 200, failed, what failed).
fn load(
    env: &Env,
    fresh: bool,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize, Vec<String>)> {
    let url = format!("{}/healthz", env.gateway.base);
    let ca = reqwest::Certificate::from_pem(env.certs.ca_pem.as_bytes()).unwrap();
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(ca)
        .http1_only()
        .timeout(Duration::from_secs(30));
    if fresh {
        // No connection is reused: every request connects anew.
        builder = builder.pool_max_idle_per_host(0);
    }
    let c = builder.build().unwrap();
    tokio::spawn(async move {
        let (mut ok, mut failed, mut why) = (0, 0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match c.get(&url).send().await {
                Ok(r) if r.status() == 200 => ok += 1,
                Ok(r) => {
                    failed += 1;
                    why.push(format!("status {}", r.status()));
                }
                Err(e) => {
                    failed += 1;
                    why.push(format!("{e:?}"));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (ok, failed, why)
    })
}

async fn upgrade_under_load(per_core: bool) {
    if per_core {
        use_engine("hyper");
        add_server_line("runtime = \"per-core\"");
    }
    let mut env = start().await;
    let size: u64 = std::env::var("MFT_UPGRADE_TEST_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256 << 20);
    let stop = Arc::new(AtomicBool::new(false));
    let loads = [
        load(&env, false, stop.clone()),
        load(&env, true, stop.clone()),
    ];

    // The upload streams through the old process and must finish there.
    let content = Arc::new(Content::new(size, 16));
    let sent = Arc::new(AtomicUsize::new(0));
    let body = {
        let (content, sent) = (content.clone(), sent.clone());
        // Paced (about 1 ms per 64 KiB, 256 MiB in 4 s or more) so the
        // upgrade happens while the upload runs, however fast the machine.
        let stream = futures_util::stream::iter(0..content.chunks()).then(move |i| {
            let (content, sent) = (content.clone(), sent.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                sent.fetch_add(1, Ordering::Relaxed);
                Ok::<_, std::io::Error>(content.chunk(i))
            }
        });
        reqwest::Body::wrap_stream(stream)
    };
    let uploader = env.gateway.client(&env.certs, Proto::Http1);
    let url = format!("{}/api/v1/files", env.gateway.base);
    let upload = tokio::spawn(async move {
        uploader
            .post(url)
            .header("X-Filename", "upgrade.bin")
            .header("Content-Length", size)
            .body(body)
            .send()
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent.load(Ordering::Relaxed) < 64 {
        assert!(Instant::now() < deadline, "the upload did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Some requests before the upgrade.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let old_pid = env.gateway.proc.child.id();
    let config = env.gateway.config.clone();
    let (code, stdout) = tokio::task::spawn_blocking(move || upgrade_cli(&config))
        .await
        .unwrap();
    assert_eq!(
        code,
        0,
        "upgrade failed:\n{stdout}\n{}",
        env.gateway.proc.stderr()
    );
    let new_pid = pid_after(&stdout, "new process ");
    let _new = KillOnDrop(new_pid);
    assert_eq!(pid_after(&stdout, "old process "), old_pid);
    assert_ne!(new_pid, old_pid);
    assert!(
        upload_in_flight(&sent, &content),
        "the upload finished before the upgrade: make it larger"
    );
    // Audited requests on new connections, once the old process stopped
    // accepting: the new process writes to the audit trail while the old
    // one still has the upload's record to write.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let audited = env.gateway.client(&env.certs, Proto::Http1);
    for _ in 0..10 {
        let r = audited
            .get(format!("{}/api/v1/files", env.gateway.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(
        upload_in_flight(&sent, &content),
        "the upload finished before the new process audited: make it larger"
    );

    // The upload finishes on the old process, as the backend stored it.
    let response = upload.await.unwrap().expect("upload cut by the upgrade");
    assert_eq!(response.status(), 201);
    let meta: serde_json::Value = response.json().await.unwrap();
    assert_eq!(meta["sha256"], content.sha256().as_str());
    assert_eq!(meta["size"], size);

    // The old process drained and exited 0; the new one serves.
    let status = wait_exit(&mut env.gateway.proc, Duration::from_secs(60))
        .await
        .expect("the old process did not exit after draining");
    assert!(status.success(), "old process exit status {status}");
    assert!(alive(new_pid), "the new process is gone");
    // Requests after the old process is gone, all to the new one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for (i, handle) in loads.into_iter().enumerate() {
        let (ok, failed, why) = handle.await.unwrap();
        assert_eq!(failed, 0, "load {i}: {failed} failed requests: {why:?}");
        assert!(ok > 20, "load {i}: only {ok} requests");
    }
    // Both processes appended to one audit trail (the old one the upload's
    // record, after the new one had started): still one chain.
    let verify = Command::new(bin("mft-gateway"))
        .args(["audit", "verify", "--config"])
        .arg(&env.gateway.config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "audit verify: {said}");
    let trail = std::fs::read_to_string(data_dir_of(&env.gateway.config).join("audit.jsonl"))
        .unwrap_or_default();
    let uploads = trail
        .lines()
        .filter(|l| l.contains("\"method\":\"POST\"") && l.contains("\"status\":201"))
        .count();
    assert_eq!(uploads, 1, "the upload's record once, from the old process");
    let listed = trail
        .lines()
        .filter(|l| l.contains("\"method\":\"GET\"") && l.contains("\"status\":200"))
        .count();
    assert_eq!(listed, 10, "the new process's records");
    let admin = reqwest::Client::new()
        .get(format!("http://{}/metrics", env.gateway.admin))
        .send()
        .await
        .expect("the new process serves the admin listener");
    assert_eq!(admin.status(), 200);
    let log = env.gateway.proc.stderr();
    assert!(
        log.contains("binary upgrade: the new process serves"),
        "{log}"
    );
    assert!(log.contains("listening on a passed socket"), "{log}");
    // The new process recorded the same addresses under its own pid.
    let data_dir = data_dir_of(&env.gateway.config);
    let record = Listeners::wait_for(&data_dir, |l| l.pid == new_pid, || {}).await;
    assert_eq!(record.addrs, env.gateway.listeners.addrs);

    // systemd follows the new process and never hears the old one stop.
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = env.notify.recv(&mut buf) {
        said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let main_pid = said
        .iter()
        .position(|m| m.contains(&format!("MAINPID={new_pid}")))
        .unwrap_or_else(|| panic!("no MAINPID={new_pid} in {said:?}"));
    assert_eq!(
        said.iter().filter(|m| m.contains("READY=1")).count(),
        2,
        "both processes report ready: {said:?}"
    );
    assert!(
        !said[main_pid..].iter().any(|m| m.contains("STOPPING=1")),
        "the old process told systemd it stops: {said:?}"
    );
    let _ = &env.dir;
}

/// [`Proc::wait_exit`] that lets the test's other tasks (the clients) run.
async fn wait_exit(proc: &mut Proc, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = proc.child.try_wait() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn upload_in_flight(sent: &AtomicUsize, content: &Content) -> bool {
    (sent.load(Ordering::Relaxed) as u64) < content.chunks()
}

#[tokio::test]
async fn upgrade_hands_over_the_sockets_without_a_failed_request() {
    upgrade_under_load(false).await;
}

#[tokio::test]
async fn upgrade_hands_over_every_per_core_socket() {
    upgrade_under_load(true).await;
}

#[tokio::test]
async fn a_new_process_that_fails_leaves_the_old_one_serving() {
    let mut env = start().await;
    let config: PathBuf = env.gateway.config.clone();
    let good = std::fs::read_to_string(&config).unwrap();

    // An invalid file: the CLI refuses before asking the gateway.
    std::fs::write(&config, format!("{good}\n[nonsense]\nx = 1\n")).unwrap();
    let (code, stdout) = upgrade_cli(&config);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  config"), "{stdout}");

    // Asked directly, the gateway starts the new process, which exits on
    // the invalid file: 502, and the old process keeps serving.
    let r = reqwest::Client::new()
        .post(format!("http://{}/admin/v1/upgrade", env.gateway.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let problem: serde_json::Value = r.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("exited before it was ready"), "{problem}");
    assert!(detail.contains("keeps serving"), "{problem}");
    env.gateway.proc.assert_running();
    let client = env.gateway.client(&env.certs, Proto::Http1);
    let fresh = client
        .get(format!("{}/healthz", env.gateway.base))
        .send()
        .await
        .expect("the old process stopped serving");
    assert_eq!(fresh.status(), 200);

    // Fixed, the next upgrade succeeds.
    std::fs::write(&config, good).unwrap();
    let (code, stdout) = upgrade_cli(&config);
    assert_eq!(code, 0, "{stdout}\n{}", env.gateway.proc.stderr());
    let _new = KillOnDrop(pid_after(&stdout, "new process "));
    let status = wait_exit(&mut env.gateway.proc, Duration::from_secs(30))
        .await
        .expect("the old process did not exit");
    assert!(status.success());
    let r = client
        .get(format!("{}/healthz", env.gateway.base))
        .send()
        .await
        .expect("the new process serves");
    assert_eq!(r.status(), 200);
}
