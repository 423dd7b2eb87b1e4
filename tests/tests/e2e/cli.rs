//! The command line: config errors that name file, line and key; clean TLS
//! errors instead of panics; `check` exit codes.

use mft_e2e::*;
use std::process::Command;

fn run_gateway(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(bin("mft-gateway"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn malformed_config_is_a_named_error_with_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let text = gateway_config(
        &certs,
        ephemeral(),
        ephemeral(),
        "backend.local/api",
        "",
        "",
    );
    let line = text.lines().position(|l| l.starts_with("url = ")).unwrap() + 1;
    std::fs::write(dir.path().join("gateway.toml"), &text).unwrap();
    let (code, _, stderr) = run_gateway(&["run", "--config", "gateway.toml"], dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "gateway.toml:{line}: backend.url: relative URL without a base"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn unknown_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let text = gateway_config(
        &certs,
        ephemeral(),
        ephemeral(),
        "http://127.0.0.1:1",
        "",
        "",
    )
    .replace("threads = 2", "thraeds = 2");
    std::fs::write(dir.path().join("gateway.toml"), &text).unwrap();
    let (code, _, stderr) = run_gateway(&["run", "--config", "gateway.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.contains("server.thraeds: unknown field `thraeds`"),
        "{stderr}"
    );
}

#[test]
fn key_that_does_not_match_the_certificate_is_a_clean_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let other = tempfile::tempdir().unwrap();
    let other_certs = make_certs(other.path());
    std::fs::copy(&other_certs.key, &certs.key).unwrap();
    let text = gateway_config(
        &certs,
        ephemeral(),
        ephemeral(),
        "http://127.0.0.1:1",
        "",
        "",
    );
    std::fs::write(dir.path().join("gateway.toml"), &text).unwrap();
    let (code, _, stderr) = run_gateway(&["run", "--config", "gateway.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(stderr.contains("does not match certificate"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    std::fs::remove_file(&certs.cert).unwrap();
    let (code, _, stderr) = run_gateway(&["run", "--config", "gateway.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read certificate"), "{stderr}");
}

#[tokio::test]
async fn check_reports_each_connection_and_fails_when_the_backend_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    std::fs::write(
        dir.path().join("gateway.toml"),
        gateway_config(&certs, ephemeral(), ephemeral(), &backend.url, "", ""),
    )
    .unwrap();
    let (code, stdout, _) = run_gateway(&["check", "--config", "gateway.toml"], dir.path());
    assert_eq!(code, 0, "{stdout}");
    for check in [
        "ok    config:",
        "ok    tls:",
        "ok    data_dir:",
        "ok    backend:",
    ] {
        assert!(stdout.contains(check), "missing {check:?} in\n{stdout}");
    }
    drop(backend);
    let (code, stdout, _) = run_gateway(&["check", "--config", "gateway.toml"], dir.path());
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  backend:"), "{stdout}");
    assert!(stdout.contains("ok    tls:"), "{stdout}");
}

#[test]
fn help_and_version_work_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = run_gateway(&["--version"], dir.path());
    assert_eq!(code, 0);
    assert!(stdout.starts_with("mft-gateway "), "{stdout}");
    for sub in ["run", "check", "demo"] {
        let (code, stdout, _) = run_gateway(&[sub, "--help"], dir.path());
        assert_eq!(code, 0, "{sub} --help");
        assert!(stdout.contains("Usage: mft-gateway"), "{stdout}");
    }
}
