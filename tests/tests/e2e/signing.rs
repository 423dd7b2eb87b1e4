//! RFC 9421 signing between gateway and backend: the backend refuses what
//! did not come through the gateway, the gateway's signatures verify with an
//! independent implementation (PyPI `http-message-signatures`), and ours
//! verifies that library's.

use mft_e2e::*;
use mft_filters::signing::keys::hmac_secret_from_text;
use mft_filters::signing::{RequestView, Signer, SigningKey};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// The venv `scripts/setup --test` creates; `MFT_TEST_PYTHON` overrides it.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("MFT_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let target = bin("mft-backend")
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let python = target.join("pyenv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import http_message_signatures, requests"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} with http-message-signatures is missing: run scripts/setup --test",
        python.display()
    );
    python
}

fn py_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py").join(name)
}

fn new_hmac_key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let secret = mft_filters::signing::keys::generate_hmac_secret().unwrap();
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

fn hmac_signer(key_file: &Path, ttl: Duration) -> Signer {
    let text = std::fs::read_to_string(key_file).unwrap();
    let secret = hmac_secret_from_text(text.trim_end()).unwrap();
    Signer::new(SigningKey::hmac(&secret, None).unwrap(), ttl)
}

/// A GET to the backend signed with `signer` as of `now`; returns the request.
fn signed_get(
    client: &reqwest::Client,
    backend: &Backend,
    signer: &Signer,
    path_and_query: &str,
    request_id: &str,
    now: SystemTime,
) -> reqwest::Request {
    let authority = backend.url.strip_prefix("http://").unwrap();
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let fields = [("x-request-id", request_id)];
    let h = signer
        .sign(
            &RequestView {
                method: "GET",
                authority,
                path,
                query,
                fields: &fields,
            },
            now,
        )
        .unwrap();
    client
        .get(format!("{}{path_and_query}", backend.url))
        .header("x-request-id", request_id)
        .header("signature-input", h.signature_input)
        .header("signature", h.signature)
        .build()
        .unwrap()
}

async fn assert_401(r: reqwest::Response, reason: &str) {
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(reason),
        "detail {detail:?} lacks {reason:?}"
    );
}

#[tokio::test]
async fn backend_refuses_direct_unsigned_tampered_expired_and_replayed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let backend = start_backend(dir.path()).await;
    let client = reqwest::Client::new();

    let r = client
        .get(format!("{}/api/v1/files", backend.url))
        .send()
        .await
        .unwrap();
    assert_401(r, "not signed").await;
    let r = client
        .get(format!("{}/healthz", backend.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "health stays open");

    let signer = hmac_signer(&default_signing_key(dir.path()), Duration::from_secs(30));
    let now = SystemTime::now();
    let good = signed_get(&client, &backend, &signer, "/api/v1/files", "req-1", now);
    let replay = good.try_clone().unwrap();
    assert_eq!(client.execute(good).await.unwrap().status(), 200);
    assert_401(client.execute(replay).await.unwrap(), "replay").await;

    // Signed for one path, sent to another.
    let mut moved = signed_get(&client, &backend, &signer, "/api/v1/files", "req-2", now);
    *moved.url_mut() = format!("{}/api/v1/deliveries", backend.url)
        .parse()
        .unwrap();
    assert_401(client.execute(moved).await.unwrap(), "does not verify").await;
    // A query added after signing.
    let mut queried = signed_get(&client, &backend, &signer, "/api/v1/files", "req-3", now);
    *queried.url_mut() = format!("{}/api/v1/files?folder=x", backend.url)
        .parse()
        .unwrap();
    assert_401(client.execute(queried).await.unwrap(), "does not verify").await;
    // A covered header changed, and an identity header slipped in unsigned.
    let mut changed = signed_get(&client, &backend, &signer, "/api/v1/files", "req-4", now);
    changed
        .headers_mut()
        .insert("x-request-id", "req-other".parse().unwrap());
    assert_401(client.execute(changed).await.unwrap(), "does not verify").await;
    let mut added = signed_get(&client, &backend, &signer, "/api/v1/files", "req-5", now);
    added
        .headers_mut()
        .insert("x-mft-principal", "key:forged".parse().unwrap());
    assert_401(client.execute(added).await.unwrap(), "x-mft-principal").await;

    let mut doubled = signed_get(&client, &backend, &signer, "/api/v1/files", "req-9", now);
    doubled
        .headers_mut()
        .append("signature", "mft=:AAAA:".parse().unwrap());
    assert_401(client.execute(doubled).await.unwrap(), "repeated").await;

    let old = now - Duration::from_secs(120);
    let expired = signed_get(&client, &backend, &signer, "/api/v1/files", "req-6", old);
    assert_401(client.execute(expired).await.unwrap(), "expired").await;
    let future = now + Duration::from_secs(120);
    let early = signed_get(&client, &backend, &signer, "/api/v1/files", "req-7", future);
    assert_401(client.execute(early).await.unwrap(), "not valid yet").await;
    let other = hmac_signer(
        &new_hmac_key(dir.path(), "other.key"),
        Duration::from_secs(30),
    );
    let foreign = signed_get(&client, &backend, &other, "/api/v1/files", "req-8", now);
    assert_401(client.execute(foreign).await.unwrap(), "does not verify").await;

    let log = backend.proc.stderr();
    assert!(log.contains("request refused: signature"), "{log}");
    let secret = std::fs::read_to_string(default_signing_key(dir.path())).unwrap();
    assert!(!log.contains(secret.trim().trim_start_matches("base64:")));
}

/// Uploads and lists a file through `gateway`.
async fn upload_and_list(certs: &Certs, gateway: &Gateway) -> reqwest::StatusCode {
    let client = gateway.client(certs, Proto::Http2);
    let r = client
        .post(format!("{}/api/v1/files", gateway.base))
        .header("X-Filename", "signed.txt")
        .body("signed upload")
        .send()
        .await
        .unwrap();
    let status = r.status();
    if status != 201 {
        return status;
    }
    client
        .get(format!("{}/api/v1/files?folder=", gateway.base))
        .send()
        .await
        .unwrap()
        .status()
}

fn generate_key(dir: &Path, algorithm: &str, out: &Path) -> String {
    let o = Command::new(bin("mft-gateway"))
        .args(["signing-key", "generate", "--algorithm", algorithm, "--out"])
        .arg(out)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key file mode");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("key id: "))
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn gateway_signs_with_ed25519_for_a_backend_holding_only_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let key = dir.path().join("gw-ed25519.pem");
    let key_id = generate_key(dir.path(), "ed25519", &key);
    let public = format!("file:{}.pub", key.display());
    let backend = start_backend_with(dir.path(), ephemeral(), &["--verify-key", &public]).await;
    let extra = format!(
        "signing_algorithm = \"ed25519\"\nsigning_key = \"file:{}\"",
        key.display()
    );
    let gateway = start_gateway(dir.path(), &certs, &backend.url, &extra).await;
    assert_eq!(upload_and_list(&certs, &gateway).await, 200);

    let o = Command::new(bin("mft-gateway"))
        .args(["check", "--config"])
        .arg(&gateway.config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!("ok    signing: ed25519 key id {key_id}")),
        "{stdout}"
    );
    assert!(gateway
        .proc
        .stderr()
        .contains("signing requests to the backend"));
}

#[tokio::test]
async fn rotation_backend_accepts_old_and_new_key_and_refuses_a_third() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let keys: Vec<PathBuf> = ["old.key", "new.key", "stranger.key"]
        .iter()
        .map(|n| new_hmac_key(dir.path(), n))
        .collect();
    let (old, new) = (
        format!("file:{}", keys[0].display()),
        format!("file:{}", keys[1].display()),
    );
    let backend = start_backend_with(
        dir.path(),
        ephemeral(),
        &["--signing-key", &old, "--signing-key", &new],
    )
    .await;
    for (i, key) in keys.iter().enumerate() {
        let gw_dir = dir.path().join(format!("gw{i}"));
        std::fs::create_dir(&gw_dir).unwrap();
        let extra = format!("signing_key = \"file:{}\"", key.display());
        let gateway = start_gateway(&gw_dir, &certs, &backend.url, &extra).await;
        let status = upload_and_list(&certs, &gateway).await;
        let want = if i < 2 { 200 } else { 401 };
        assert_eq!(status, want, "gateway signing with {}", key.display());
    }
}

#[tokio::test]
async fn gateway_signatures_verify_with_the_python_library() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    for algorithm in ["hmac-sha256", "ed25519"] {
        let sub = dir.path().join(algorithm);
        std::fs::create_dir(&sub).unwrap();
        let (extra, verify_key) = if algorithm == "hmac-sha256" {
            let key = new_hmac_key(&sub, "hmac.key");
            (format!("signing_key = \"file:{}\"", key.display()), key)
        } else {
            let key = sub.join("ed.pem");
            generate_key(&sub, "ed25519", &key);
            (
                format!(
                    "signing_algorithm = \"ed25519\"\nsigning_key = \"file:{}\"",
                    key.display()
                ),
                sub.join("ed.pem.pub"),
            )
        };
        let addr = free_addr();
        let mut upstream = Proc::spawn(
            "verify_upstream",
            &python,
            &[
                py_script("verify_upstream.py").to_str().unwrap(),
                "--listen",
                &addr.to_string(),
                "--alg",
                algorithm,
                "--key-file",
                verify_key.to_str().unwrap(),
            ],
            &sub,
        );
        let url = format!("http://{addr}");
        wait_ready(
            &mut upstream,
            &reqwest::Client::new(),
            &format!("{url}/healthz"),
        )
        .await;
        let gateway = start_gateway(&sub, &certs, &url, &extra).await;
        for proto in [Proto::Http1, Proto::Http2] {
            let client = gateway.client(&certs, proto);
            // A client's own signature headers are replaced, not passed along.
            let r = client
                .get(format!("{}/api/v1/files?folder=a%20b&x=1", gateway.base))
                .header(
                    "signature-input",
                    "evil=(\"@method\");created=1;tag=\"mft-gateway\"",
                )
                .header("signature", "evil=:AAAA:")
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(status, 200, "{algorithm} {proto:?}: {body}");
            assert_eq!(body["verified"], true);
            assert_eq!(body["label"], "mft");
            assert_eq!(body["parameters"]["alg"], algorithm);
            assert_eq!(body["parameters"]["tag"], "mft-gateway");
            // The documented key-id formula, recomputed by the Python side.
            assert_eq!(body["parameters"]["keyid"], body["expected_keyid"]);
            let r = client
                .post(format!("{}/api/v1/files", gateway.base))
                .header("X-Filename", "py.txt")
                .header("Content-Length", "11")
                .body("hello world")
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(status, 200, "{algorithm} {proto:?} POST: {body}");
            let covered = body["covered"].to_string();
            assert!(covered.contains("content-length"), "{covered}");
            assert_eq!(body["body_bytes"], 11);
        }
    }
}

#[tokio::test]
async fn backend_verifies_requests_signed_by_the_python_library() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let backend = start_backend(dir.path()).await;
    let o = Command::new(&python)
        .arg(py_script("sign_and_send.py"))
        .args(["--url", &backend.url, "--key-file"])
        .arg(default_signing_key(dir.path()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let status = |case: &str| {
        results
            .iter()
            .find(|r| r["case"] == case)
            .unwrap_or_else(|| panic!("no {case} in {stdout}"))["status"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(status("valid"), 200, "{stdout}\n{}", backend.proc.stderr());
    assert_eq!(status("replayed"), 401, "{stdout}");
    assert_eq!(status("tampered-query"), 401, "{stdout}");
    assert_eq!(status("tampered-header"), 401, "{stdout}");
    // The key id is only a hint: a signature by a key we hold still verifies.
    assert_eq!(status("unknown-key-id"), 200, "{stdout}");
}

#[tokio::test]
async fn an_unusable_signing_key_is_a_startup_error_that_names_the_key_not_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    std::fs::write(dir.path().join("short.key"), "hunter2-too-short\n").unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        gateway_config(
            &certs,
            ephemeral(),
            ephemeral(),
            "http://127.0.0.1:9",
            "signing_key = \"file:short.key\"",
            "",
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(bin("mft-gateway"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let o = run(&["run", "--config", "gateway.toml"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("backend.signing_key (hmac-sha256): HMAC secret has 17 bytes"),
        "{stderr}"
    );
    let o = run(&["check", "--config", "gateway.toml"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("FAIL  signing: backend.signing_key"),
        "{stdout}"
    );
    for out in [&stderr, &stdout] {
        assert!(!out.contains("hunter2"), "the secret leaked: {out}");
    }
}
