//! TLS as a real OpenSSL client sees it: versions, ALPN, session resumption.

use super::proxy::stack;
use std::io::Write;
use std::process::{Command, Stdio};

fn s_client(addr: &str, ca: &std::path::Path, extra: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-ign_eof",
            "-connect",
            addr,
            "-servername",
            "localhost",
            "-CAfile",
        ])
        .arg(ca)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl installed");
    // An HTTP request keeps the connection open long enough to receive the
    // TLS 1.3 tickets, which arrive after the handshake.
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test]
async fn tls13_session_is_resumed_from_a_ticket() {
    let s = stack().await;
    let addr = s.gateway.addr.to_string();
    let sess = s.dir.path().join("session.pem");
    let first = s_client(
        &addr,
        &s.certs.ca,
        &["-tls1_3", "-sess_out", sess.to_str().unwrap()],
    );
    assert!(first.contains("Verify return code: 0 (ok)"), "{first}");
    assert!(first.contains("New, TLSv1.3"), "{first}");
    let second = s_client(
        &addr,
        &s.certs.ca,
        &["-tls1_3", "-sess_in", sess.to_str().unwrap()],
    );
    assert!(
        second.contains("Reused, TLSv1.3"),
        "session was not resumed:\n{second}"
    );
}

#[tokio::test]
async fn tls12_is_accepted_and_alpn_offers_h2() {
    let s = stack().await;
    let addr = s.gateway.addr.to_string();
    let out = s_client(&addr, &s.certs.ca, &["-tls1_2", "-alpn", "h2,http/1.1"]);
    assert!(out.contains("New, TLSv1.2"), "{out}");
    assert!(out.contains("ALPN protocol: h2"), "{out}");
}
