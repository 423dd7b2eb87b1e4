//! tus resumable upload through the gateway, resumed after the client's
//! connection broke in the middle of a PATCH.

use super::proxy::stack;
use base64::Engine;
use mft_e2e::*;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Opens a raw TLS connection to the gateway (HTTP/1.1 by ALPN).
async fn raw_tls(
    certs: &Certs,
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_connect(certs, addr).await.unwrap()
}

async fn offset(client: &reqwest::Client, url: &str) -> u64 {
    let r = client
        .head(url)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn tus_upload_resumes_after_an_interrupted_connection() {
    let s = stack().await;
    let client = s.gateway.client(&s.certs, Proto::Http2);
    let content = Content::new(8 << 20, 11);
    let total = content.size;
    let b64 = base64::engine::general_purpose::STANDARD;
    let r = client
        .post(format!("{}/api/v1/uploads", s.gateway.base))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", total)
        .header(
            "Upload-Metadata",
            format!("filename {}", b64.encode("resumed.bin")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/api/v1/uploads/"),
        "relative Location expected, got {location}"
    );
    let url = format!("{}{location}", s.gateway.base);

    // First attempt: declare the whole body, send 3 MiB, then the connection dies.
    let mut tls = raw_tls(&s.certs, s.gateway.addr).await;
    let key = &s.gateway.key;
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {key}\r\nTus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: {total}\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let sent_chunks = 48; // 48 x 64 KiB = 3 MiB
    for i in 0..sent_chunks {
        tls.write_all(&content.chunk(i)).await.unwrap();
    }
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(tls);

    // The backend keeps what arrived; wait until it has settled on an offset.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut resumed_at = 0;
    while Instant::now() < deadline {
        let now = offset(&client, &url).await;
        if now > 0 && now == resumed_at {
            break;
        }
        resumed_at = now;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        resumed_at > 0,
        "no bytes of the interrupted PATCH were kept"
    );
    assert!(
        resumed_at <= sent_chunks * 65536,
        "offset {resumed_at} beyond what was sent"
    );

    // Second attempt: the rest, from the server's offset, with a checksum.
    let rest: Vec<u8> = content.slice(resumed_at, total - 1);
    let digest_b64 = {
        use sha2::Digest;
        b64.encode(sha2::Sha256::digest(&rest))
    };
    let r = client
        .patch(&url)
        .header("Tus-Resumable", "1.0.0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", resumed_at)
        .header("Upload-Checksum", format!("sha256 {digest_b64}"))
        .body(rest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["upload-offset"].to_str().unwrap(),
        total.to_string()
    );
    let file_id = r.headers()["x-file-id"].to_str().unwrap().to_string();

    let meta: serde_json::Value = client
        .get(format!("{}/api/v1/files/{file_id}", s.gateway.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["name"], "resumed.bin");
    assert_eq!(meta["sha256"], content.sha256().as_str());
}
