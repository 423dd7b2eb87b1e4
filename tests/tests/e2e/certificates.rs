//! Certificates of the public listener (docs/operations.md, "Certificates"):
//! `[[server.certificates]]` chosen by SNI (checked with `openssl s_client`
//! and the served certificate's subject), a replaced file served on new
//! connections within seconds without a restart, a broken replacement
//! keeping the certificate served now, a certificate added by reload, the
//! expiry gauge, and `check` warning about a certificate that expires soon.

use mft_e2e::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A test CA that signs certificates with a chosen common name.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "sni test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes a certificate for `names` with common name `cn` to
    /// `dir/<file>.pem` and its key to `dir/<file>.key`.
    fn issue(&self, dir: &Path, file: &str, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        // Key first: the watcher may look between the two writes, and a
        // new key beside the old certificate is refused until the pair matches.
        std::fs::write(&k, key.serialize_pem()).unwrap();
        std::fs::write(&c, cert.pem()).unwrap();
        (c, k)
    }
}

/// The subject of the certificate the gateway serves for `sni` (none:
/// no SNI at all), as `openssl x509 -subject` prints it.
fn served_subject(addr: SocketAddr, sni: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &addr.to_string()]);
    match sni {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate served: {text}"));
    let end = text[start..].find("-----END CERTIFICATE-----").unwrap() + start + 25;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-subject"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin
        .take()
        .unwrap()
        .write_all(text[start..end].as_bytes())
        .unwrap();
    let out = x509.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits up to `limit` until `sni` is served a certificate whose subject has `cn`.
fn wait_served(addr: SocketAddr, sni: &str, cn: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let subject = served_subject(addr, Some(sni));
        if subject.contains(cn) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sni} still served {subject}, wanted {cn}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn certificate_table(names: &[&str], cert: &Path, key: &Path) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "\n[[server.certificates]]\nnames = [{}]\ncert = \"{}\"\nkey = \"{}\"\n",
        names.join(", "),
        cert.display(),
        key.display()
    )
}

#[tokio::test]
async fn sni_picks_the_certificate_and_renewed_files_are_served_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new();
    std::fs::write(d.join("ca.pem"), &ca.pem).unwrap();
    let (cert, key) = ca.issue(
        d,
        "default",
        "default-localhost",
        &["localhost", "127.0.0.1"],
    );
    let certs = Certs {
        ca_pem: ca.pem.clone(),
        ca: d.join("ca.pem"),
        cert,
        key,
    };
    let (alpha_c, alpha_k) = ca.issue(d, "alpha", "alpha-1", &["alpha.test"]);
    let (beta_c, beta_k) = ca.issue(d, "beta", "beta-wildcard", &["*.beta.test"]);
    add_server_line("certificate_watch_interval = \"1s\"");
    let tables = certificate_table(&["alpha.test"], &alpha_c, &alpha_k)
        + &certificate_table(&["*.beta.test"], &beta_c, &beta_k);
    let backend = start_backend(d).await;
    let gateway = start_gateway_with(d, &certs, &backend.url, "", &tables).await;
    let addr = gateway.addr;

    assert!(served_subject(addr, Some("alpha.test")).contains("alpha-1"));
    assert!(served_subject(addr, Some("ALPHA.test")).contains("alpha-1"));
    assert!(served_subject(addr, Some("files.beta.test")).contains("beta-wildcard"));
    // A wildcard covers one label, not two, and not the parent itself.
    assert!(served_subject(addr, Some("a.b.beta.test")).contains("default-localhost"));
    assert!(served_subject(addr, Some("beta.test")).contains("default-localhost"));
    assert!(served_subject(addr, Some("other.test")).contains("default-localhost"));
    assert!(served_subject(addr, None).contains("default-localhost"));
    // The API still works with the default certificate (the test clients verify it).
    let r = gateway
        .client(&certs, Proto::Http2)
        .get(format!("{}/api/v1/files", gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The expiry gauge, per certificate.
    let page = metrics(gateway.admin).await;
    for name in ["default", "alpha.test", "*.beta.test"] {
        let left = metric(
            &page,
            &format!("mft_tls_certificate_expiry_seconds{{name=\"{name}\"}}"),
        )
        .unwrap_or_else(|| panic!("no expiry gauge for {name}:\n{page}"));
        assert!(left > 14.0 * 86_400.0, "{name}: {left}");
    }

    // Renewed on disk: new connections get the new certificate, no restart.
    ca.issue(d, "alpha", "alpha-2", &["alpha.test"]);
    wait_served(addr, "alpha.test", "alpha-2", Duration::from_secs(10));
    let stderr = gateway.proc.stderr();
    assert!(stderr.contains("serving the new certificate"), "{stderr}");

    // A broken replacement: logged, and the current certificate stays.
    let refusals = || {
        gateway
            .proc
            .stderr()
            .matches("changed certificate cannot be used")
            .count()
    };
    let before = refusals();
    std::fs::write(&alpha_c, "-----BEGIN CERTIFICATE-----\nnot a certificate\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while refusals() == before {
        assert!(Instant::now() < deadline, "{}", gateway.proc.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served_subject(addr, Some("alpha.test")).contains("alpha-2"));
    ca.issue(d, "alpha", "alpha-3", &["alpha.test"]);
    wait_served(addr, "alpha.test", "alpha-3", Duration::from_secs(10));

    // A certificate added by a reload (SIGHUP) is served at once.
    let (gamma_c, gamma_k) = ca.issue(d, "gamma", "gamma-1", &["gamma.test"]);
    let mut text = std::fs::read_to_string(&gateway.config).unwrap();
    text.push_str(&certificate_table(&["gamma.test"], &gamma_c, &gamma_k));
    std::fs::write(&gateway.config, text).unwrap();
    gateway.proc.signal("HUP");
    wait_served(addr, "gamma.test", "gamma-1", Duration::from_secs(10));
    let page = metrics(gateway.admin).await;
    assert!(
        metric(
            &page,
            "mft_tls_certificate_expiry_seconds{name=\"gamma.test\"}"
        )
        .is_some(),
        "{page}"
    );
}

#[test]
fn check_warns_about_a_certificate_expiring_within_14_days() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = make_certs(d);
    let openssl = |days: &str, name: &str| {
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", days, "-subj", &format!("/CN={name}")])
            .args(["-addext", &format!("subjectAltName=DNS:{name}")])
            .args([
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        (d.join(format!("{name}.pem")), d.join(format!("{name}.key")))
    };
    let (soon_c, soon_k) = openssl("10", "soon.test");
    let (later_c, later_k) = openssl("100", "later.test");
    let tables = certificate_table(&["soon.test"], &soon_c, &soon_k)
        + &certificate_table(&["later.test"], &later_c, &later_k);
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        gateway_config(
            &certs,
            ephemeral(),
            ephemeral(),
            "http://127.0.0.1:9",
            "",
            &tables,
        ),
    )
    .unwrap();
    let out = Command::new(bin("mft-gateway"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let soon: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warn  tls: server.certificates[0] soon.test:"))
        .collect();
    assert_eq!(soon.len(), 1, "{stdout}");
    assert!(
        soon[0].contains("expires in 9 day(s)") || soon[0].contains("expires in 10 day(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok    tls: server.certificates[1] later.test:"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("warn  tls: server.certificates[1]"),
        "{stdout}"
    );
    assert!(!stdout.contains("warn  tls: default"), "{stdout}");
}
