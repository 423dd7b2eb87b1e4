//! TLS policy (docs/security.md, "TLS policy"): testssl.sh (Debian package
//! `testssl.sh`) audits the public listener and the test fails on any
//! finding rated HIGH or CRITICAL; `server.tls_cipher_suites` limits what is
//! negotiated and unknown names are refused by `check` with file:line;
//! `[server.hsts]` adds Strict-Transport-Security to every answer.

use mft_e2e::*;
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Like a public CA's certificate, so testssl judges the gateway rather
/// than the test PKI: 90 days valid and a CRL distribution point
/// (rcgen's defaults, valid for centuries and without revocation info, are
/// rated HIGH). Replaces `certs`'s server certificate and CA.
fn public_like_certs(dir: &Path, certs: &Certs) {
    let now =
        rcgen::date_time_ymd(1970, 1, 1) + SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let day = Duration::from_secs(86400);
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "audit test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - day;
    ca.not_after = now + 365 * day;
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.not_before = now - day;
    leaf.not_after = now + 90 * day;
    leaf.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec!["http://crl.audit.invalid/ca.crl".to_string()],
    }];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("audit-ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(&certs.cert, cert.pem()).unwrap();
    std::fs::write(&certs.key, key.serialize_pem()).unwrap();
}

const POLICY: &str = r#"[server.hsts]
max_age = "365d"
include_subdomains = true
"#;

const SUITES: &str = r#"tls_cipher_suites = ["TLS13_AES_256_GCM_SHA384", "TLS13_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]"#;

#[tokio::test]
async fn testssl_finds_nothing_high_or_critical() {
    // HSTS is sent by the hyper engine only (configuration.md).
    use_engine("hyper");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = make_certs(d);
    public_like_certs(d, &certs);
    let backend = start_backend(d).await;
    add_server_line(SUITES);
    // Readiness is probed with the test CA; this gateway serves another.
    let (addr, admin) = (ephemeral(), ephemeral());
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        gateway_config(
            &certs,
            addr,
            admin,
            &backend.url,
            &format!(
                "signing_key = \"file:{}\"",
                default_signing_key(d).display()
            ),
            POLICY,
        ),
    )
    .unwrap();
    let mut gw = Proc::spawn(
        "gateway",
        &bin("mft-gateway"),
        &["run", "--config", config.to_str().unwrap()],
        d,
    );
    let addr = Listeners::wait(&mut gw, &data_dir_of(&config))
        .await
        .get("https");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        gw.assert_running();
        assert!(Instant::now() < deadline, "gateway did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Protocols, ciphers per protocol, server defaults, HTTP headers and the
    // known vulnerabilities, each as testssl runs them (--fast skips only
    // the slowest re-checks of each cipher).
    let json = d.join("testssl.json");
    let started = Instant::now();
    let out = Command::new("testssl")
        .args([
            "--quiet",
            "--fast",
            "--warnings",
            "off",
            "--color",
            "0",
            "--ip",
            "127.0.0.1",
            "--add-ca",
        ])
        .arg(d.join("audit-ca.pem"))
        .arg("--jsonfile")
        .arg(&json)
        .args(["-p", "-e", "-S", "-h", "-U"])
        .arg(format!("localhost:{}", addr.port()))
        .stdin(Stdio::null())
        .output()
        .expect("run testssl (scripts/setup --test installs testssl.sh)");
    let took = started.elapsed();
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "testssl wrote no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(findings.len() > 20, "testssl checked too little: {text}");
    let bad: Vec<String> = findings
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("HIGH" | "CRITICAL")))
        .map(|f| format!("{} {}: {}", f["severity"], f["id"], f["finding"]))
        .collect();
    assert!(
        bad.is_empty(),
        "testssl findings rated HIGH or CRITICAL:\n{}",
        bad.join("\n")
    );
    // What the policy promises, as testssl saw it.
    let by_id = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .and_then(|f| f["finding"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let hsts: Vec<String> = findings
        .iter()
        .filter(|f| f["id"].as_str().is_some_and(|i| i.starts_with("HSTS")))
        .map(|f| format!("{} {}", f["id"], f["finding"]))
        .collect();
    assert!(by_id("HSTS_time").contains("365 days"), "{hsts:?} {text}");
    assert!(
        !by_id("heartbleed").is_empty(),
        "-U ran no vulnerability checks"
    );
    assert!(by_id("SSLv3").contains("not offered"), "{}", by_id("SSLv3"));
    assert!(
        by_id("TLS1_1").contains("not offered"),
        "{}",
        by_id("TLS1_1")
    );
    assert!(
        !text.contains("CHACHA20"),
        "a suite outside tls_cipher_suites was offered"
    );
    assert!(took < Duration::from_secs(180), "testssl took {took:?}");
    eprintln!("testssl took {took:?}");
}

#[tokio::test]
async fn hsts_on_every_answer_and_unknown_suites_refused_with_line() {
    use_engine("hyper");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = make_certs(d);
    let backend = start_backend(d).await;
    let gw = start_gateway_with(d, &certs, &backend.url, "", POLICY).await;
    let client = gw.client(&certs, Proto::Http2);
    // Proxied, answered by the gateway itself, and refused.
    for (url, status) in [
        (format!("{}/api/v1/files", gw.base), 200),
        (format!("{}/healthz", gw.base), 200),
        (format!("{}/nope", gw.base), 404),
    ] {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), status, "{url}");
        assert_eq!(
            r.headers()["strict-transport-security"],
            "max-age=31536000; includeSubDomains",
            "{url}"
        );
    }
    let r = client_with_key(&certs, Proto::Http1, "wrong")
        .get(format!("{}/api/v1/files", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("strict-transport-security"));

    let config = d.join("bad.toml");
    let text = std::fs::read_to_string(&gw.config).unwrap().replacen(
        "[server]\n",
        "[server]\ntls_cipher_suites = [\"TLS13_AES_128_GCM_SHA256\", \"TLS_RSA_WITH_RC4_128_SHA\"]\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let out = Command::new(bin("mft-gateway"))
        .args(["check", "--offline", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("bad.toml:2: server.tls_cipher_suites[1]: unknown cipher suite \"TLS_RSA_WITH_RC4_128_SHA\""),
        "{stdout}"
    );
}
