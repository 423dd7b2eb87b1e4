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
    let (addr, admin) = (free_addr(), free_addr());
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
