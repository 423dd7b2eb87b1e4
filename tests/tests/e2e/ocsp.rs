//! OCSP stapling (docs/operations.md, "OCSP stapling"): a certificate whose
//! AIA names an OCSP responder is served with the responder's answer
//! stapled. The responder is OpenSSL's (`openssl ocsp -index`) for a test
//! CA made with the openssl CLI; the client is `openssl s_client -status`.

use mft_e2e::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for localhost whose AIA names the OCSP
/// responder at `responder`; the chain file holds leaf and CA. Also the
/// responder's index (the certificate valid) as `index.txt`.
fn make_ocsp_certs(dir: &Path, responder: std::net::SocketAddr) -> Certs {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=mft OCSP test CA",
            "-keyout",
            "ocsp-ca.key",
            "-out",
            "ocsp-ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
        ],
    );
    std::fs::write(
        dir.join("leaf.ext"),
        format!(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
             authorityInfoAccess=OCSP;URI:http://{responder}\n\
             basicConstraints=critical,CA:FALSE\n\
             extendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ocsp-ca.pem",
            "-CAkey",
            "ocsp-ca.key",
            "-set_serial",
            "0x4d4654",
            "-days",
            "10",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    );
    let ca_pem = std::fs::read_to_string(dir.join("ocsp-ca.pem")).unwrap();
    let leaf = std::fs::read_to_string(dir.join("leaf.pem")).unwrap();
    std::fs::write(dir.join("chain.pem"), format!("{leaf}{ca_pem}")).unwrap();
    // openssl ca's index: status, expiry, revocation, serial, file, subject.
    std::fs::write(
        dir.join("index.txt"),
        "V\t351231000000Z\t\t4D4654\tunknown\t/CN=localhost\n",
    )
    .unwrap();
    Certs {
        ca_pem,
        ca: dir.join("ocsp-ca.pem"),
        cert: dir.join("chain.pem"),
        key: dir.join("leaf.key"),
    }
}

fn start_responder(dir: &Path, at: std::net::SocketAddr) -> Proc {
    Proc::spawn(
        "ocsp-responder",
        Path::new("/usr/bin/openssl"),
        &[
            "ocsp",
            "-index",
            "index.txt",
            "-port",
            &at.port().to_string(),
            "-rsigner",
            "ocsp-ca.pem",
            "-rkey",
            "ocsp-ca.key",
            "-CA",
            "ocsp-ca.pem",
            "-nmin",
            "1",
            "-ignore_err",
        ],
        dir,
    )
}

/// What `openssl s_client -status` prints about the stapled response.
fn s_client_status(addr: std::net::SocketAddr, ca: &Path) -> String {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
            "-status",
            "-CAfile",
        ])
        .arg(ca)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn series(admin: std::net::SocketAddr, name: &str) -> f64 {
    metric(&metrics(admin).await, name).unwrap_or(0.0)
}

async fn wait_for(admin: std::net::SocketAddr, name: &str, want: f64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while series(admin, name).await < want {
        assert!(Instant::now() < deadline, "{name} did not reach {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_responders_answer_is_stapled_and_a_failing_responder_costs_only_the_staple() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let responder_addr = free_addr();
    let certs = make_ocsp_certs(path, responder_addr);
    let backend = start_backend(path).await;
    // The responder is not up yet: the gateway serves, without a staple.
    let gw = start_gateway(path, &certs, &backend.url, "").await;
    wait_for(
        gw.admin,
        "mft_tls_ocsp_fetches_total{result=\"failure\"}",
        1.0,
        Duration::from_secs(20),
    )
    .await;
    let status = tokio::task::spawn_blocking({
        let ca = certs.ca.clone();
        let addr = gw.addr;
        move || s_client_status(addr, &ca)
    })
    .await
    .unwrap();
    assert!(
        status.contains("OCSP response: no response sent"),
        "{status}"
    );
    assert!(status.contains("Verify return code: 0 (ok)"), "{status}");
    assert_eq!(
        series(gw.admin, "mft_tls_ocsp_stapled{name=\"default\"}").await,
        0.0
    );

    // The responder comes up: the next retry staples its answer.
    let responder = start_responder(path, responder_addr);
    wait_for(
        gw.admin,
        "mft_tls_ocsp_stapled{name=\"default\"}",
        1.0,
        Duration::from_secs(30),
    )
    .await;
    let status = tokio::task::spawn_blocking({
        let ca = certs.ca.clone();
        let addr = gw.addr;
        move || s_client_status(addr, &ca)
    })
    .await
    .unwrap();
    assert!(
        status.contains("OCSP Response Status: successful"),
        "{status}\n{}",
        gw.proc.stderr()
    );
    assert!(status.contains("Cert Status: good"), "{status}");
    assert!(status.contains("Serial Number: 4D4654"), "{status}");
    assert!(status.contains("Next Update:"), "{status}");
    assert!(
        metric(
            &metrics(gw.admin).await,
            "mft_tls_ocsp_fetches_total{result=\"success\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );

    // The responder goes away: the staple, still current, stays served.
    drop(responder);
    let status = tokio::task::spawn_blocking({
        let ca = certs.ca.clone();
        let addr = gw.addr;
        move || s_client_status(addr, &ca)
    })
    .await
    .unwrap();
    assert!(status.contains("Cert Status: good"), "{status}");
    let _ = &backend;
}
