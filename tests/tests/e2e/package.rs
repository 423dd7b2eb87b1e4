//! Packages and service: the .deb built from the debug binary by
//! scripts/package-deb is installed with dpkg, runs, passes `check` on its
//! installed config as the service user, its unit passes `systemd-analyze
//! verify`, and it purges cleanly. The gateway speaks systemd's notify
//! protocol (READY=1, WATCHDOG=1, STOPPING=1) to a real datagram socket.

use mft_e2e::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn is_root() -> bool {
    let out = run(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn installed() -> bool {
    run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "mft-gateway"]))
        .stdout
        .starts_with(b"install ok")
}

/// Purges the package when the test ends, passed or not.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "mft-gateway"])
            .output();
    }
}

#[test]
fn the_deb_installs_checks_verifies_and_purges() {
    if !is_root() {
        eprintln!("SKIPPED: installing a .deb with dpkg needs root");
        return;
    }
    if installed() {
        // Left by an interrupted run: start clean.
        let out = run(Command::new("dpkg").args(["--purge", "mft-gateway"]));
        assert!(out.status.success(), "{}", text(&out));
    }
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/package-deb");
    let out = run(Command::new(&script)
        .arg("--binary")
        .arg(bin("mft-gateway"))
        .arg("--out")
        .arg(dir.path())
        .args(["--compression", "none"]));
    assert!(out.status.success(), "package-deb: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = stdout.lines().last().unwrap().trim().to_string();
    assert!(
        deb.ends_with(".deb") && Path::new(&deb).is_file(),
        "{stdout}"
    );

    let contents = text(&run(Command::new("dpkg-deb").args(["--contents", &deb])));
    for path in [
        "./usr/bin/mft-gateway",
        "./lib/systemd/system/mft-gateway.service",
        "./etc/mft-gateway/gateway.toml",
        "./usr/share/doc/mft-gateway/operations.md",
    ] {
        assert!(contents.contains(path), "{path} missing:\n{contents}");
    }
    let conffiles = text(&run(Command::new("dpkg-deb").args([
        "--info",
        &deb,
        "conffiles",
    ])));
    assert_eq!(conffiles.trim(), "/etc/mft-gateway/gateway.toml");

    let _purge = Purge;
    let out = run(Command::new("dpkg").args(["--install", &deb]));
    assert!(out.status.success(), "dpkg --install: {}", text(&out));
    assert!(installed());

    let out = run(Command::new("/usr/bin/mft-gateway").arg("--version"));
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("mft-gateway "),
        "{}",
        text(&out)
    );

    // The service user exists, cannot log in, and owns the data directory.
    let user = text(&run(Command::new("getent").args(["passwd", "mft-gateway"])));
    assert!(user.trim_end().ends_with("/usr/sbin/nologin"), "{user}");
    let stat = |p: &str| text(&run(Command::new("stat").args(["-c", "%U:%G %a", p])));
    assert_eq!(
        stat("/var/lib/mft-gateway").trim(),
        "mft-gateway:mft-gateway 750"
    );
    assert_eq!(
        stat("/etc/mft-gateway/gateway.toml").trim(),
        "root:mft-gateway 640"
    );
    assert_eq!(
        stat("/etc/mft-gateway/tls/key.pem").trim(),
        "root:mft-gateway 640"
    );

    // `check` on the installed config, as the service runs it.
    let out = run(Command::new("runuser").args([
        "-u",
        "mft-gateway",
        "--",
        "/usr/bin/mft-gateway",
        "check",
        "--offline",
        "--config",
        "/etc/mft-gateway/gateway.toml",
    ]));
    let report = text(&out);
    assert!(out.status.success(), "check: {report}");
    for line in [
        "ok    config",
        "ok    tls",
        "ok    data_dir",
        "ok    key store",
    ] {
        assert!(report.contains(line), "{line} missing:\n{report}");
    }
    // A user without access to the config is refused by it.
    let out = run(Command::new("runuser").args([
        "-u",
        "nobody",
        "--",
        "/usr/bin/mft-gateway",
        "check",
        "--offline",
        "--config",
        "/etc/mft-gateway/gateway.toml",
    ]));
    assert!(!out.status.success(), "{}", text(&out));

    // Installing the package again while a gateway runs upgrades that
    // gateway in place: no transfer is cut.
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(reinstall_while_serving(&deb));

    if run(Command::new("sh").args(["-c", "command -v systemd-analyze"]))
        .status
        .success()
    {
        let out = run(Command::new("systemd-analyze").args([
            "verify",
            "--man=no",
            "/lib/systemd/system/mft-gateway.service",
        ]));
        assert!(
            out.status.success(),
            "systemd-analyze verify: {}",
            text(&out)
        );
        let security = text(&run(Command::new("systemd-analyze").args([
            "security",
            "--offline=yes",
            "/lib/systemd/system/mft-gateway.service",
        ])));
        eprintln!("{security}");
        // systemd's own score of the sandbox: 0 (locked down) to 10 (none);
        // "OK" ends below 4.5. The unit scores 1.8.
        let exposure: f64 = security
            .lines()
            .find_map(|l| l.split("mft-gateway.service: ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{security}"));
        assert!(exposure <= 2.5, "exposure {exposure}:\n{security}");
    } else {
        eprintln!("systemd-analyze not installed: unit not verified");
    }

    let out = run(Command::new("dpkg").args(["--purge", "mft-gateway"]));
    assert!(out.status.success(), "dpkg --purge: {}", text(&out));
    assert!(!installed());
    for gone in [
        "/usr/bin/mft-gateway",
        "/etc/mft-gateway",
        "/var/lib/mft-gateway",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
    assert!(!run(Command::new("getent").args(["passwd", "mft-gateway"]))
        .status
        .success());
}

#[tokio::test]
async fn run_tells_systemd_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let socket_path = dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let (addr, admin) = (ephemeral(), ephemeral());
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        gateway_config(&certs, addr, admin, &backend.url, "", ""),
    )
    .unwrap();
    let (_, key) = create_key(&config, "e2e", ALL_SCOPES);
    let socket_env = socket_path.display().to_string();
    let gw = launch_gateway_env(
        dir.path(),
        &certs,
        config,
        addr,
        admin,
        key,
        &[("NOTIFY_SOCKET", &socket_env), ("WATCHDOG_USEC", "400000")],
    )
    .await;

    let mut seen = Vec::new();
    recv_until(&socket, &mut seen, "READY=1", 1).await;
    // Two pings at least: the watchdog keeps going while the gateway runs.
    recv_until(&socket, &mut seen, "WATCHDOG=1", 2).await;
    gw.proc.signal("TERM");
    recv_until(&socket, &mut seen, "STOPPING=1", 1).await;
    drop(backend);
}

/// Receives notifications until `count` of them contain `want`.
async fn recv_until(
    socket: &tokio::net::UnixDatagram,
    seen: &mut Vec<String>,
    want: &str,
    count: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 4096];
    while seen.iter().filter(|m| m.contains(want)).count() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, socket.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {want} within 10 s; got {seen:?}"))
            .unwrap();
        seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
}

/// Writes `bytes` as root:mft-gateway 0640 (what the service user reads).
fn install_for_service(path: &str, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    let out = run(Command::new("chown").args(["root:mft-gateway", path]));
    assert!(out.status.success(), "{}", text(&out));
    let out = run(Command::new("chmod").args(["0640", path]));
    assert!(out.status.success(), "{}", text(&out));
}

/// A gateway runs from the installed binary and config (data_dir
/// /var/lib/mft-gateway) with an upload in flight; `dpkg --install` of the
/// package again runs its postinst, which (no systemd here) finds the
/// running gateway by `data_dir/listeners.json` and runs `mft-gateway upgrade`
/// as the service user: the new process takes the sockets, the old one
/// finishes the upload and exits 0.
async fn reinstall_while_serving(deb: &str) {
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    const TOKEN: &str = "package-upgrade-admin-token-0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let certs = make_certs(path);
    let backend = start_backend(path).await;
    let signing = default_signing_key(path);
    install_for_service(
        "/etc/mft-gateway/tls/e2e.pem",
        &std::fs::read(&certs.cert).unwrap(),
    );
    install_for_service(
        "/etc/mft-gateway/tls/e2e.key",
        &std::fs::read(&certs.key).unwrap(),
    );
    install_for_service(
        "/etc/mft-gateway/backend-signing.key",
        &std::fs::read(&signing).unwrap(),
    );
    install_for_service("/etc/mft-gateway/admin.token", TOKEN.as_bytes());
    let installed = Certs {
        ca_pem: certs.ca_pem.clone(),
        ca: certs.ca.clone(),
        cert: "/etc/mft-gateway/tls/e2e.pem".into(),
        key: "/etc/mft-gateway/tls/e2e.key".into(),
    };
    let (addr, admin) = (ephemeral(), ephemeral());
    let config = gateway_config(
        &installed,
        addr,
        admin,
        &backend.url,
        "signing_key = \"file:/etc/mft-gateway/backend-signing.key\"",
        "[admin]\ntoken = \"file:/etc/mft-gateway/admin.token\"\n",
    )
    .replace(
        "data_dir = \"gateway-data\"",
        "data_dir = \"/var/lib/mft-gateway\"",
    );
    install_for_service("/etc/mft-gateway/gateway.toml", config.as_bytes());
    let config_path = Path::new("/etc/mft-gateway/gateway.toml");
    let (_, key) = create_key(config_path, "e2e", ALL_SCOPES);
    let mut old = Proc::spawn(
        "installed-gateway",
        Path::new("/usr/bin/mft-gateway"),
        &["run", "--config", "/etc/mft-gateway/gateway.toml"],
        path,
    );
    let addr = Listeners::wait(&mut old, Path::new("/var/lib/mft-gateway"))
        .await
        .get("https");
    let base = format!("https://{addr}");
    wait_ready(
        &mut old,
        &client(&certs, Proto::Http1),
        &format!("{base}/healthz"),
    )
    .await;

    // An upload in flight while dpkg runs: after its first chunks it trickles
    // (one 64 KiB chunk per 40 ms, well inside the body idle timeout) until
    // dpkg has returned, so however slow the machine, the upgrade happens
    // mid-body; then it goes at full speed.
    let size: u64 = 64 << 20;
    let content = Arc::new(Content::new(size, 41));
    let sent = Arc::new(AtomicUsize::new(0));
    let upgraded = Arc::new(AtomicBool::new(false));
    let body = {
        let (content, sent, upgraded) = (content.clone(), sent.clone(), upgraded.clone());
        reqwest::Body::wrap_stream(
            futures_util::stream::iter(0..content.chunks()).then(move |i| {
                let (content, sent, upgraded) = (content.clone(), sent.clone(), upgraded.clone());
                async move {
                    if i >= 16 && !upgraded.load(Ordering::Acquire) {
                        tokio::time::sleep(Duration::from_millis(40)).await;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, std::io::Error>(content.chunk(i))
                }
            }),
        )
    };
    let upload = {
        let client = client_with_key(&certs, Proto::Http1, &key);
        let url = format!("{base}/api/v1/files");
        tokio::spawn(async move {
            client
                .post(url)
                .header("X-Filename", "package-upgrade.bin")
                .header("Content-Length", size)
                .body(body)
                .send()
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent.load(Ordering::Relaxed) < 16 {
        assert!(Instant::now() < deadline, "the upload did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let deb = deb.to_string();
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new("dpkg").args(["--force-confold", "--install", &deb]))
    })
    .await
    .unwrap();
    let said = text(&out);
    assert!(out.status.success(), "dpkg --install again: {said}");
    assert!(
        said.contains("ok    upgrade: new process"),
        "{said}\n{}",
        old.stderr()
    );
    assert!(
        (sent.load(Ordering::Relaxed) as u64) < content.chunks(),
        "the upload finished before the upgrade"
    );
    upgraded.store(true, Ordering::Release);
    let new_pid: i32 = said
        .split("new process ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no new pid in: {said}"));

    // The upload in flight on the old process finished, whole.
    let response = upload.await.unwrap().expect("upload cut by the upgrade");
    assert_eq!(response.status(), 201);
    let meta: serde_json::Value = response.json().await.unwrap();
    assert_eq!(meta["sha256"], content.sha256().as_str());
    // The old process drained and exited 0; the new one serves.
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = old.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the old process did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "old process: {status}\n{}", old.stderr());
    let r = client(&certs, Proto::Http1)
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("nothing serves after the upgrade");
    assert_eq!(r.status(), 200);
    // The new process is not our child: stop it by its pid before purging.
    let out = run(Command::new("kill").args(["-TERM", &new_pid.to_string()]));
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(40);
    // Gone, or a zombie nobody reaps (its parent, the old process, is gone).
    let alive = || {
        std::fs::read_to_string(format!("/proc/{new_pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    while alive() {
        assert!(Instant::now() < deadline, "the new process did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Not the package's: purge would leave /etc/mft-gateway behind.
    for f in [
        "/etc/mft-gateway/admin.token",
        "/etc/mft-gateway/backend-signing.key",
    ] {
        let _ = std::fs::remove_file(f);
    }
    let _ = &backend;
}
