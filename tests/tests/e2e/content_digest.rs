//! A client's `Content-Digest` (RFC 9530) on an upload is checked while the
//! body streams, on both HTTP engines: a body tampered with on its way
//! (or a lying client) is refused with 400 and the backend stores nothing.

use super::proxy::{stack, Stack};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mft_e2e::*;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};
use std::sync::Arc;

fn sha256_field(c: &Content) -> String {
    let mut h = Sha256::new();
    for i in 0..c.chunks() {
        h.update(c.chunk(i));
    }
    format!("sha-256=:{}:", STANDARD.encode(h.finalize()))
}

fn sha512_field(c: &Content) -> String {
    let mut h = Sha512::new();
    for i in 0..c.chunks() {
        h.update(c.chunk(i));
    }
    format!("sha-512=:{}:", STANDARD.encode(h.finalize()))
}

/// Streams `content` as an upload named `name` with `digest` claimed;
/// `sized` sends a Content-Length, otherwise HTTP/1.1 goes chunked.
async fn send(
    s: &Stack,
    proto: Proto,
    name: &str,
    content: &Arc<Content>,
    digest: &str,
    sized: bool,
) -> reqwest::Response {
    let mut r = s
        .gateway
        .client(&s.certs, proto)
        .post(format!("{}/api/v1/files", s.gateway.base))
        .header("x-filename", name)
        .header("content-digest", digest)
        .body(content.body());
    if sized {
        r = r.header("content-length", content.size);
    }
    r.send().await.unwrap()
}

async fn listing(s: &Stack) -> String {
    let r = s
        .gateway
        .client(&s.certs, Proto::Http1)
        .get(format!("{}/api/v1/files", s.gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

async fn problem(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_body_that_does_not_match_its_content_digest_is_refused_and_not_stored() {
    for engine in ["hyper", "pingora"] {
        use_engine(engine);
        let s = stack().await;
        let real = Arc::new(Content::new(3 << 20, 41));
        let other = Content::new(3 << 20, 42);
        for (proto, sized) in [
            (Proto::Http1, true),
            (Proto::Http1, false),
            (Proto::Http2, true),
        ] {
            let tag = format!("{engine}-{proto:?}-{sized}");
            // The claimed digest is of other bytes: the attack is a body
            // swapped or altered after the client computed its digest.
            let name = format!("tampered-{tag}.bin");
            let r = send(&s, proto, &name, &real, &sha256_field(&other), sized).await;
            let p = problem(r, 400).await;
            assert_eq!(p["type"], "urn:mft:problem:digest-mismatch", "{tag}: {p}");
            let r = send(&s, proto, &name, &real, &sha512_field(&other), sized).await;
            let p = problem(r, 400).await;
            assert_eq!(p["type"], "urn:mft:problem:digest-mismatch", "{tag}: {p}");
            // One good and one wrong member: still refused.
            let both = format!("{}, {}", sha256_field(&real), sha512_field(&other));
            let r = send(&s, proto, &name, &real, &both, sized).await;
            problem(r, 400).await;
            let list = listing(&s).await;
            assert!(!list.contains("tampered-"), "{tag}: stored {list}");

            // The true digests pass, the bytes arrive whole.
            let good = format!("good-{tag}.bin");
            let both = format!("{}, {}", sha256_field(&real), sha512_field(&real));
            for digest in [sha256_field(&real), sha512_field(&real), both] {
                let r = send(&s, proto, &good, &real, &digest, sized).await;
                assert_eq!(r.status(), 201, "{tag} {digest}");
                let meta: Value = r.json().await.unwrap();
                assert_eq!(meta["sha256"], real.sha256().as_str(), "{tag}");
            }
        }
        // A digest the gateway cannot check is not passed on as if checked.
        let tiny = Arc::new(Content::new(10, 1));
        for digest in [
            "md5=:AAAAAAAAAAAAAAAAAAAAAA==:",
            "sha-256=abc",
            "sha-256=:AAAA:",
        ] {
            let r = send(&s, Proto::Http1, "odd.bin", &tiny, digest, true).await;
            let p = problem(r, 400).await;
            assert_eq!(
                p["type"], "urn:mft:problem:invalid-digest",
                "{engine} {digest}: {p}"
            );
        }
        assert!(!listing(&s).await.contains("odd.bin"), "{engine}");
    }
}
