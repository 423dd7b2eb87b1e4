//! OAuth2/OIDC access tokens through the running gateway, with a test
//! identity provider that serves its JWKS over HTTPS.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mft_e2e::*;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ISSUER: &str = "https://idp.test/";
const AUDIENCE: &str = "mft-gateway";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../filters/tests/fixtures")
        .join(name)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The public JWK of an RSA private key file, via the real `openssl` CLI.
fn rsa_jwk(private_pem: &std::path::Path, kid: &str) -> serde_json::Value {
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(private_pem)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let n = hex::decode(text.trim().trim_start_matches("Modulus=")).unwrap();
    serde_json::json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(&n), "e": "AQAB"})
}

/// A tiny HTTPS server answering every request with the current JWKS.
async fn serve_jwks(certs: &Certs, body: Arc<Mutex<Vec<u8>>>) -> std::net::SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(&certs.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&certs.key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let doc = body.lock().unwrap().clone();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    doc.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&doc).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str, aud: &str, exp: u64, scope: &str) -> serde_json::Value {
    serde_json::json!({"iss": ISSUER, "aud": aud, "sub": sub, "exp": exp, "iat": now(), "scope": scope})
}

fn rs256(kid: &str, key_file: &str, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture(key_file)).unwrap()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

#[tokio::test]
async fn jwt_from_a_trusted_issuer_is_accepted_and_forged_or_wrong_tokens_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let jwks = Arc::new(Mutex::new(
        serde_json::json!({"keys": [rsa_jwk(&fixture("rsa1_private.pem"), "rsa-1")]})
            .to_string()
            .into_bytes(),
    ));
    let idp = serve_jwks(&certs, jwks.clone()).await;
    let backend = start_backend(dir.path()).await;
    let tables = format!(
        "[[auth.jwt]]\nissuer = \"{ISSUER}\"\naudience = [\"{AUDIENCE}\"]\njwks = \"https://{idp}/jwks.json\"\nalgorithms = [\"RS256\"]\nca_file = \"{}\"\nleeway = \"5s\"\n",
        certs.ca.display()
    );
    let gw = start_gateway_with(dir.path(), &certs, &backend.url, "", &tables).await;
    let url = |p: &str| format!("{}{p}", gw.base);
    let with = |token: &str| client_with_key(&certs, Proto::Http2, token);
    let exp = now() + 600;

    // A valid token: the backend sees the token's subject as principal.
    let good = rs256(
        "rsa-1",
        "rsa1_private.pem",
        &claims("svc-reports", AUDIENCE, exp, "deliveries:write files:read"),
    );
    let r = with(&good)
        .post(url("/api/v1/deliveries"))
        .json(&serde_json::json!({"sender": "a@ourcorp.example", "recipients": ["b@ourcorp.example"], "subject": "s", "message": "m", "files": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let d: serde_json::Value = r.json().await.unwrap();
    assert_eq!(d["created_by"], "jwt:svc-reports");

    // A valid token without the route's scope: 403.
    let r = with(&good)
        .post(url("/api/v1/files"))
        .header("X-Filename", "x")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let rejected = |token: String, why: &'static str| {
        let c = with(&token);
        let u = url("/api/v1/files");
        async move {
            let r = c.get(u).send().await.unwrap();
            assert_eq!(r.status(), 401, "{why}");
            let challenge = r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(challenge.contains("invalid_token"), "{why}: {challenge}");
        }
    };
    // alg: none, with a signature-less token.
    let none_header = b64(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#);
    let payload = b64(claims("svc", AUDIENCE, exp, "files:read")
        .to_string()
        .as_bytes());
    rejected(format!("{none_header}.{payload}."), "alg none").await;
    rejected(
        rs256(
            "rsa-1",
            "rsa1_private.pem",
            &claims("svc", "someone-else", exp, "files:read"),
        ),
        "wrong audience",
    )
    .await;
    rejected(
        rs256(
            "rsa-1",
            "rsa1_private.pem",
            &claims("svc", AUDIENCE, now() - 60, "files:read"),
        ),
        "expired",
    )
    .await;
    // HS256 signed with the RSA public key as HMAC secret (key confusion).
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".to_string());
    let public_pem = std::fs::read(fixture("rsa1_public.pem")).unwrap();
    let confused = jsonwebtoken::encode(
        &header,
        &claims("svc", AUDIENCE, exp, "files:read"),
        &EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    rejected(confused, "HS256 with the RSA public key").await;
    // Signed by a key the issuer never published.
    rejected(
        rs256(
            "rsa-1",
            "rsa2_private.pem",
            &claims("svc", AUDIENCE, exp, "files:read"),
        ),
        "wrong key",
    )
    .await;

    // Key rotation: the issuer publishes a new key; a token naming it is
    // accepted at once (unknown kid triggers a refetch), no restart needed.
    *jwks.lock().unwrap() = serde_json::json!({"keys": [
        rsa_jwk(&fixture("rsa1_private.pem"), "rsa-1"),
        rsa_jwk(&fixture("rsa2_private.pem"), "rsa-2"),
    ]})
    .to_string()
    .into_bytes();
    let rotated = rs256(
        "rsa-2",
        "rsa2_private.pem",
        &claims("svc-rotated", AUDIENCE, exp, "files:read"),
    );
    let r = with(&rotated)
        .get(url("/api/v1/files"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "token signed with the rotated-in key");

    // The audit file is flushed once per tick: wait for it (as auth.rs does).
    for reason in ["alg_not_allowed", "wrong_audience", "expired"] {
        let needle = format!("\"reason\":\"{reason}\"");
        let mut found = false;
        for _ in 0..100 {
            let audit = std::fs::read_to_string(dir.path().join("gateway-data/audit.jsonl"))
                .unwrap_or_default();
            if audit.contains(&needle) {
                found = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(found, "audit lacks {reason}");
    }
    let audit = std::fs::read_to_string(dir.path().join("gateway-data/audit.jsonl")).unwrap();
    assert!(
        !audit.contains(&good),
        "a token was written to the audit log"
    );
    drop(backend);
}

/// Attack (security review, Medium): a user of issuer B whose `sub`
/// equals a user's of issuer A shared A's principal `jwt:<sub>`, so its
/// rate limit, idempotency scope and audit identity. Now with several
/// issuers each needs a name and principals are `jwt:<name>:<sub>`; a
/// config with two unnamed issuers is refused.
#[tokio::test]
async fn the_same_subject_from_two_issuers_is_two_principals() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let jwks = Arc::new(Mutex::new(
        serde_json::json!({"keys": [rsa_jwk(&fixture("rsa1_private.pem"), "rsa-1")]})
            .to_string()
            .into_bytes(),
    ));
    let idp = serve_jwks(&certs, jwks).await;
    let backend = start_backend(dir.path()).await;
    const OTHER: &str = "https://other-idp.test/";
    let issuer = |name: Option<&str>, iss: &str| {
        format!(
            "[[auth.jwt]]\n{}issuer = \"{iss}\"\naudience = [\"{AUDIENCE}\"]\njwks = \"https://{idp}/jwks.json\"\nalgorithms = [\"RS256\"]\nca_file = \"{}\"\n",
            name.map(|n| format!("name = \"{n}\"\n")).unwrap_or_default(),
            certs.ca.display()
        )
    };
    // Unnamed, both: a startup error naming the key.
    let unnamed = format!("{}{}", issuer(None, ISSUER), issuer(None, OTHER));
    let text = gateway_config(&certs, ephemeral(), ephemeral(), &backend.url, "", &unnamed);
    std::fs::write(dir.path().join("unnamed.toml"), text).unwrap();
    let out = std::process::Command::new(bin("mft-gateway"))
        .args(["check", "--config", "unnamed.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("auth.jwt[0].name: missing"), "{said}");

    let tables = format!(
        "{}{}",
        issuer(Some("corp"), ISSUER),
        issuer(Some("partners"), OTHER)
    );
    let gw = start_gateway_with(dir.path(), &certs, &backend.url, "", &tables).await;
    let exp = now() + 600;
    let mut seen = Vec::new();
    for iss in [ISSUER, OTHER] {
        let mut c = claims("alice", AUDIENCE, exp, "deliveries:write");
        c["iss"] = iss.into();
        let token = rs256("rsa-1", "rsa1_private.pem", &c);
        let r = client_with_key(&certs, Proto::Http1, &token)
            .post(format!("{}/api/v1/deliveries", gw.base))
            .json(&serde_json::json!({"sender": "a@ourcorp.example", "recipients": ["b@ourcorp.example"], "subject": "s", "message": "m", "files": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let d: serde_json::Value = r.json().await.unwrap();
        seen.push(d["created_by"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(seen, ["jwt:corp:alice", "jwt:partners:alice"]);
}
