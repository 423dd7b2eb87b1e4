//! `[server.acme]` against Pebble (Debian package `pebble`), the ACME test
//! CA: its validator really connects to the gateway's HTTPS port with
//! TLS-ALPN-01 (`PEBBLE_VA_ALWAYS_VALID` is not set; names resolve through
//! `pebble-challtestsrv`'s DNS to 127.0.0.1). Certificates live 30 s
//! (`certificateValidityPeriod`), so the gateway renews within the test:
//! an upload running over an ACME-served connection survives the renewal
//! with an equal SHA-256, and new connections get the new certificate.

use futures_util::StreamExt;
use mft_e2e::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NAME: &str = "gw.acme.test";
/// `[trust] encryption_key` for the test that seals the ACME account.
const ENCRYPTION_KEY: &str = "acme-e2e-encryption-key-of-32-bytes-or-more";

struct Pebble {
    _dns: Proc,
    proc: Proc,
    directory: String,
    management: SocketAddr,
}

/// Starts challtestsrv (DNS only: every name is 127.0.0.1) and Pebble, whose
/// TLS-ALPN-01 validator dials `tls_port`.
async fn start_pebble(dir: &Path, certs: &Certs, tls_port: u16, validity_secs: u64) -> Pebble {
    start_pebble_with(dir, certs, tls_port, free_addr().port(), validity_secs).await
}

/// [`start_pebble`] whose HTTP-01 validator dials `http_port`.
async fn start_pebble_with(
    dir: &Path,
    certs: &Certs,
    tls_port: u16,
    http_port: u16,
    validity_secs: u64,
) -> Pebble {
    let dns = free_addr();
    let dns_proc = Proc::spawn(
        "challtestsrv",
        Path::new("/usr/bin/pebble-challtestsrv"),
        &[
            "-dns01",
            &dns.to_string(),
            "-management",
            &free_addr().to_string(),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-defaultIPv6",
            "",
            "-defaultIPv4",
            "127.0.0.1",
        ],
        dir,
    );
    let listen = free_addr();
    let management = free_addr();
    let config = serde_json::json!({
        "pebble": {
            "listenAddress": listen.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": certs.cert,
            "privateKey": certs.key,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_secs,
        }
    });
    let path = dir.join("pebble.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut proc = Proc::spawn_with_env(
        "pebble",
        Path::new("/usr/bin/pebble"),
        &[
            "-config",
            path.to_str().unwrap(),
            "-dnsserver",
            &dns.to_string(),
        ],
        dir,
        &[
            ("PEBBLE_VA_NOSLEEP", "1"),
            // Every order validates again (no reused authorizations), and
            // no injected bad nonces: the test is about validation.
            ("PEBBLE_AUTHZREUSE", "0"),
            ("PEBBLE_WFE_NONCEREJECT", "0"),
        ],
    );
    let directory = format!("https://{listen}/dir");
    let client = client(certs, Proto::Http1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(&directory).send().await {
            if r.status().is_success() {
                break;
            }
        }
        proc.assert_running();
        assert!(
            Instant::now() < deadline,
            "pebble did not start: {}",
            proc.stdout()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Pebble {
        _dns: dns_proc,
        proc,
        directory,
        management,
    }
}

/// Pebble's root, from its management interface, written to `dir/pebble-root.pem`.
async fn pebble_root(p: &Pebble, certs: &Certs, dir: &Path) -> PathBuf {
    let pem = client(certs, Proto::Http1)
        .get(format!("https://{}/roots/0", p.management))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE"), "{pem}");
    let path = dir.join("pebble-root.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

/// What `openssl s_client -servername NAME -CAfile root` sees: (verified,
/// `openssl x509 -serial -issuer -ext subjectAltName` of the leaf).
fn served(addr: SocketAddr, root: &Path) -> (bool, String) {
    served_for(addr, root, NAME)
}

/// [`served`] for SNI `name`.
fn served_for(addr: SocketAddr, root: &Path, name: &str) -> (bool, String) {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            name,
        ])
        .arg("-CAfile")
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some(start) = text.find("-----BEGIN CERTIFICATE-----") else {
        return (false, text);
    };
    let end = text[start..]
        .find("-----END CERTIFICATE-----")
        .map(|e| e + start + 25)
        .unwrap_or(text.len());
    let mut x509 = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-serial",
            "-issuer",
            "-ext",
            "subjectAltName",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    x509.stdin
        .take()
        .unwrap()
        .write_all(&text.as_bytes()[start..end])
        .unwrap();
    let info = String::from_utf8_lossy(&x509.wait_with_output().unwrap().stdout).into_owned();
    (text.contains("Verify return code: 0 (ok)"), info)
}

/// Waits until the gateway serves a Pebble-issued certificate for NAME
/// that is not `other`; returns its `served` description.
async fn wait_acme_cert(gw: &mut Gateway, root: &Path, other: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (ok, info) = served(gw.addr, root);
        if ok && info.contains("Pebble Intermediate") && Some(info.as_str()) != other {
            return info;
        }
        gw.proc.assert_running();
        assert!(
            Instant::now() < deadline,
            "no (new) ACME certificate served: {info}\n{}",
            gw.proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn acme_certificate_from_pebble_is_served_and_renewed_during_an_upload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = make_certs(d);
    let backend = start_backend(d).await;
    let addr = free_addr();
    let admin = ephemeral();
    let pebble = start_pebble(d, &certs, addr.port(), 30).await;
    let tables = format!(
        "[server.acme]\ndirectory = \"{}\"\ncontact = [\"mailto:ops@acme.test\"]\nnames = [\"{NAME}\"]\nca_file = \"{}\"\n",
        pebble.directory,
        certs.ca.display()
    );
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
            &tables,
        ),
    )
    .unwrap();
    // `check` before the first start: nothing obtained yet.
    let out = Command::new(bin("mft-gateway"))
        .args(["check", "--offline", "--config"])
        .arg(&config)
        .current_dir(d)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("acme: no certificate obtained yet"),
        "{stdout}"
    );
    // Without [trust] encryption_key the account key cannot be sealed: said.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        format!("{stdout}{stderr}").contains("stored unsealed"),
        "{stdout}{stderr}"
    );
    let (_, key) = create_key(&config, "e2e", ALL_SCOPES);
    let mut gw = launch_gateway(d, &certs, config.clone(), addr, admin, key.clone()).await;

    let root = pebble_root(&pebble, &certs, d).await;
    let first = wait_acme_cert(&mut gw, &root, None).await;
    assert!(first.contains(&format!("DNS:{NAME}")), "{first}");
    // Other names still get the configured default certificate.
    let (_, default) = served_for(gw.addr, &certs.ca, "localhost");
    assert!(!default.contains("Pebble"), "{default}");
    // Account key and certificate key stored, readable by the owner only.
    let acme_dir = d.join("gateway-data/acme");
    for f in ["account.json", "key.pem"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(acme_dir.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f}: mode {mode:o}");
    }
    assert!(!gw.proc.stderr().contains("BEGIN PRIVATE KEY"));

    // An upload over a connection that got the ACME certificate, whose
    // second half waits until a renewed certificate is served.
    let pebble_ca = reqwest::Certificate::from_pem(&std::fs::read(&root).unwrap()).unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
    let client = reqwest::Client::builder()
        .add_root_certificate(pebble_ca)
        .tls_built_in_root_certs(false)
        .resolve(NAME, gw.addr)
        .default_headers(headers)
        .http1_only()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let content = Arc::new(Content::new(16 << 20, 3));
    let half = content.chunks() / 2;
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    let gate = futures_util::future::FutureExt::shared(async move {
        let _ = gate.await;
    });
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
    let url = format!("https://{NAME}:{}/api/v1/files", gw.addr.port());
    let long = tokio::spawn(
        client
            .post(&url)
            .header("X-Filename", "renewal.bin")
            .header("Content-Length", content.size)
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    if tokio::time::timeout(Duration::from_secs(30), halfway)
        .await
        .expect("the upload's first half went out")
        .is_err()
    {
        panic!("upload ended early: {:?}", long.await);
    }

    // Renewal at two thirds of 30 s, without a restart.
    let renewed = wait_acme_cert(&mut gw, &root, Some(&first)).await;
    assert!(renewed.contains(&format!("DNS:{NAME}")), "{renewed}");
    let _ = release.send(());
    let r = long.await.unwrap().unwrap();
    assert_eq!(r.status(), 201);
    let stored: serde_json::Value = r.json().await.unwrap();
    assert_eq!(stored["size"], content.size);
    assert_eq!(stored["sha256"], content.sha256());

    let page = metrics(gw.admin).await;
    let ok = metric(&page, "mft_acme_renewals_total{result=\"success\"}").unwrap_or(0.0);
    assert!(ok >= 2.0, "{page}");
    let expiry = metric(&page, "mft_tls_certificate_expiry_seconds{name=\"acme\"}")
        .expect("expiry gauge for the ACME certificate");
    assert!(expiry > 0.0 && expiry <= 30.0, "{expiry}");
    assert!(gw.proc.stderr().contains("ACME certificate obtained"));

    // `check` now reports the stored certificate and when it renews.
    let out = Command::new(bin("mft-gateway"))
        .args(["check", "--offline", "--config"])
        .arg(&config)
        .current_dir(d)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("acme: certificate for {NAME}")),
        "{stdout}"
    );
    drop(pebble.proc);
}

#[tokio::test]
async fn an_unreachable_ca_is_logged_counted_and_retried_while_the_default_certificate_serves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = make_certs(d);
    let backend = start_backend(d).await;
    // Nothing listens there: every order fails at the directory.
    // Held until the test ends: nothing can listen there meanwhile.
    let held = refused();
    let nowhere = held.addr;
    let tables = format!(
        "[server.acme]\ndirectory = \"https://{nowhere}/dir\"\nnames = [\"{NAME}\"]\nca_file = \"{}\"\n",
        certs.ca.display()
    );
    let gw = start_gateway_with(d, &certs, &backend.url, "", &tables).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = metrics(gw.admin).await;
        let failed = metric(&page, "mft_acme_renewals_total{result=\"failure\"}").unwrap_or(0.0);
        // The first attempt and the retry after the 5 s backoff.
        if failed >= 2.0 {
            assert_eq!(
                metric(&page, "mft_acme_renewals_total{result=\"success\"}"),
                Some(0.0)
            );
            break;
        }
        assert!(Instant::now() < deadline, "no retried failure: {page}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = gw.proc.stderr();
    assert!(log.contains("ACME order failed"), "{log}");
    assert!(
        log.contains(&nowhere.to_string()),
        "the log names the CA: {log}"
    );
    // Meanwhile the name gets the default certificate, and requests work.
    let (ok, info) = served(gw.addr, &certs.ca);
    assert!(ok && !info.contains("Pebble"), "{info}");
    let r = gw
        .client(&certs, Proto::Http1)
        .get(format!("{}/api/v1/files", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// `challenge = "http-01"`: Pebble's validator fetches the key
/// authorization from the gateway's plain-HTTP listener (its `httpPort`);
/// that listener answers nothing else; the certificate is renewed too.
#[tokio::test]
async fn http01_certificate_from_pebble_is_served_and_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = make_certs(d);
    let backend = start_backend(d).await;
    let http = free_addr();
    // Pebble's TLS-ALPN-01 validator would find nothing at this port: only
    // HTTP-01 can succeed.
    let pebble = start_pebble_with(d, &certs, free_addr().port(), http.port(), 30).await;
    let tables = format!(
        "[server.acme]\ndirectory = \"{}\"\nnames = [\"{NAME}\"]\nca_file = \"{}\"\nchallenge = \"http-01\"\nhttp_listen = \"{http}\"\n\
         [trust]\nencryption_key = \"{ENCRYPTION_KEY}\"\n",
        pebble.directory,
        certs.ca.display()
    );
    let mut gw = start_gateway_with(
        d,
        &certs,
        &backend.url,
        &format!(
            "signing_key = \"file:{}\"",
            default_signing_key(d).display()
        ),
        &tables,
    )
    .await;
    let root = pebble_root(&pebble, &certs, d).await;
    let first = wait_acme_cert(&mut gw, &root, None).await;
    assert!(first.contains(&format!("DNS:{NAME}")), "{first}");
    let renewed = wait_acme_cert(&mut gw, &root, Some(&first)).await;
    assert!(renewed.contains(&format!("DNS:{NAME}")), "{renewed}");
    // With an encryption key the account's private key is sealed at rest.
    let account = std::fs::read_to_string(d.join("gateway-data/acme/account.json")).unwrap();
    let account: serde_json::Value = serde_json::from_str(&account).unwrap();
    assert!(account["sealed"].is_string(), "{account}");
    assert!(account.get("credentials").is_none(), "{account}");
    let page = metrics(gw.admin).await;
    let ok = metric(&page, "mft_acme_renewals_total{result=\"success\"}").unwrap_or(0.0);
    assert!(ok >= 2.0, "{page}");

    // The plain-HTTP listener exposes nothing but challenges in progress.
    let plain = reqwest::Client::new();
    for path in [
        "/api/v1/files",
        "/healthz",
        "/.well-known/acme-challenge/not-a-token",
    ] {
        let r = plain
            .get(format!("http://{http}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
    }
    drop(pebble.proc);
}

/// Issue 16's "a 1 GiB transfer survives a reload and a certificate
/// renewal": one upload over an ACME-served connection is held at a third
/// until a config reload (SIGHUP, `logging.access_log` changed) has been
/// applied, and at two thirds until a renewed certificate is served; the
/// backend stores it with the source's SHA-256. Streamed, never held in
/// memory. `MFT_ACME_RELOAD_TEST_BYTES` sets the size (default 256 MiB; the
/// issue's 1 GiB: `MFT_ACME_RELOAD_TEST_BYTES=1073741824`).
#[tokio::test]
async fn an_upload_survives_a_reload_and_an_acme_renewal() {
    let size: u64 = std::env::var("MFT_ACME_RELOAD_TEST_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256 << 20);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = make_certs(d);
    let backend = start_backend(d).await;
    let addr = free_addr();
    let pebble = start_pebble(d, &certs, addr.port(), 30).await;
    let tables = format!(
        "[server.acme]\ndirectory = \"{}\"\nnames = [\"{NAME}\"]\nca_file = \"{}\"\n",
        pebble.directory,
        certs.ca.display()
    );
    let (admin, config) = (ephemeral(), d.join("gateway.toml"));
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
            &tables,
        ),
    )
    .unwrap();
    let (_, key) = create_key(&config, "e2e", ALL_SCOPES);
    let mut gw = launch_gateway(d, &certs, config, addr, admin, key).await;
    let root = pebble_root(&pebble, &certs, d).await;
    let first = wait_acme_cert(&mut gw, &root, None).await;

    let pebble_ca = reqwest::Certificate::from_pem(&std::fs::read(&root).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(pebble_ca)
        .tls_built_in_root_certs(false)
        .resolve(NAME, gw.addr)
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", gw.key).parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .http1_only()
        .build()
        .unwrap();
    let content = Arc::new(Content::new(size, 16));
    let marks = [content.chunks() / 3, content.chunks() * 2 / 3];
    // One gate per mark: the body stops there until the test releases it.
    let mut reached = Vec::new();
    let mut releases = Vec::new();
    let mut gates = Vec::new();
    for _ in marks {
        let (at_tx, at_rx) = tokio::sync::oneshot::channel::<()>();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        reached.push(at_rx);
        releases.push(go_tx);
        gates.push(Arc::new(std::sync::Mutex::new(Some((at_tx, go_rx)))));
    }
    let c = content.clone();
    let body = futures_util::stream::iter(0..content.chunks()).then(move |i| {
        let (c, gates) = (c.clone(), gates.clone());
        async move {
            if let Some(k) = marks.iter().position(|m| *m == i) {
                let gate = gates[k].lock().unwrap().take();
                if let Some((at, go)) = gate {
                    let _ = at.send(());
                    let _ = go.await;
                }
            }
            Ok::<_, std::io::Error>(c.chunk(i))
        }
    });
    let url = format!("https://{NAME}:{}/api/v1/files", gw.addr.port());
    let upload = tokio::spawn(
        client
            .post(&url)
            .header("X-Filename", "reload-renewal.bin")
            .header("Content-Length", content.size)
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    let mut reached = reached.into_iter();
    let mut releases = releases.into_iter();
    let at = |rx: tokio::sync::oneshot::Receiver<()>| async move {
        tokio::time::timeout(Duration::from_secs(300), rx)
            .await
            .expect("the upload reached its mark")
            .expect("the upload ended before its mark");
    };

    // A third in: reload a changed config.
    at(reached.next().unwrap()).await;
    let reloads =
        |page: &str| metric(page, "mft_config_reloads_total{result=\"success\"}").unwrap_or(0.0);
    let before = reloads(&metrics(gw.admin).await);
    let text = std::fs::read_to_string(&gw.config).unwrap();
    std::fs::write(
        &gw.config,
        text.replace("format = \"json\"", "format = \"json\"\naccess_log = false"),
    )
    .unwrap();
    gw.proc.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reloads(&metrics(gw.admin).await) < before + 1.0 {
        assert!(Instant::now() < deadline, "{}", gw.proc.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gw.proc.stderr().contains("logging.access_log"));
    let _ = releases.next().unwrap().send(());

    // Two thirds in: wait for the renewal (two thirds of 30 s).
    at(reached.next().unwrap()).await;
    let renewed = wait_acme_cert(&mut gw, &root, Some(&first)).await;
    assert!(renewed.contains(&format!("DNS:{NAME}")), "{renewed}");
    let _ = releases.next().unwrap().send(());

    let r = upload.await.unwrap().expect("upload cut");
    assert_eq!(r.status(), 201);
    let stored: serde_json::Value = r.json().await.unwrap();
    assert_eq!(stored["size"], content.size);
    assert_eq!(stored["sha256"], content.sha256());
    gw.proc.assert_running();
    drop(pebble.proc);
}
