//! tus 1.0.0: creation, PATCH with and without checksums, HEAD, termination.

use crate::support::*;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

const TUS: (&str, &str) = ("Tus-Resumable", "1.0.0");

async fn create(s: &Server, length: usize, metadata: &str) -> reqwest::Response {
    s.client
        .post(s.url("/api/v1/uploads"))
        .header(TUS.0, TUS.1)
        .header("Upload-Length", length.to_string())
        .header("Upload-Metadata", metadata)
        .send()
        .await
        .unwrap()
}

async fn patch(
    s: &Server,
    location: &str,
    offset: usize,
    body: &[u8],
    checksum: Option<String>,
) -> reqwest::Response {
    let mut req = s
        .client
        .patch(s.url(location))
        .header(TUS.0, TUS.1)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", offset.to_string());
    if let Some(c) = checksum {
        req = req.header("Upload-Checksum", c);
    }
    req.body(body.to_vec()).send().await.unwrap()
}

async fn head_offset(s: &Server, location: &str) -> u64 {
    let r = s
        .client
        .head(s.url(location))
        .header(TUS.0, TUS.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn sha256_b64(data: &[u8]) -> String {
    format!("sha256 {}", B64.encode(Sha256::digest(data)))
}

fn meta(name: &str, folder: &str) -> String {
    format!(
        "filename {},folder {}",
        B64.encode(name),
        B64.encode(folder)
    )
}

#[tokio::test]
async fn options_advertises_version_extensions_and_algorithms() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let r = s
        .client
        .request(reqwest::Method::OPTIONS, s.url("/api/v1/uploads"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["tus-resumable"], "1.0.0");
    assert_eq!(h["tus-version"], "1.0.0");
    assert_eq!(
        h["tus-extension"],
        "creation,creation-defer-length,checksum,termination"
    );
    assert_eq!(h["tus-checksum-algorithm"], "sha1,sha256");
    assert!(h["tus-max-size"].to_str().unwrap().parse::<u64>().unwrap() > 1 << 30);
    s.stop().await;
}

#[tokio::test]
async fn create_patch_twice_with_checksums_and_complete() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let data = pseudo_random(1_500_000, 11);
    let (first, second) = data.split_at(600_000);

    // Without Tus-Resumable the request is refused, and still says which version we speak.
    let r = s
        .client
        .post(s.url("/api/v1/uploads"))
        .header("Upload-Length", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    assert_problem(r, 412).await;

    let r = create(&s, data.len(), &meta("big data.bin", "in/tus")).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/api/v1/uploads/"),
        "relative: {location}"
    );
    assert_eq!(head_offset(&s, &location).await, 0);

    let r = patch(&s, &location, 0, first, Some(sha256_b64(first))).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["upload-offset"], "600000");
    assert!(r.headers().get("x-file-id").is_none());

    // A corrupted chunk is refused with 460 and leaves the offset alone.
    let mut corrupted = second.to_vec();
    corrupted[10] ^= 0xff;
    let r = patch(&s, &location, 600_000, &corrupted, Some(sha256_b64(second))).await;
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    let p = assert_problem(r, 460).await;
    assert_eq!(p["title"], "Checksum Mismatch");
    assert_eq!(head_offset(&s, &location).await, 600_000);
    let partial_len = std::fs::read_dir(dir.join("uploads"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum::<u64>();
    assert_eq!(partial_len, 600_000, "discarded chunk must be cut off disk");

    // Wrong offset and wrong media type.
    let r = patch(&s, &location, 0, second, None).await;
    assert_eq!(r.headers()["upload-offset"], "600000");
    assert_problem(r, 409).await;
    let r = s
        .client
        .patch(s.url(&location))
        .header(TUS.0, TUS.1)
        .header("Content-Type", "application/json")
        .header("Upload-Offset", "600000")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(r, 415).await;

    let sha1 = {
        use sha1::Digest as _;
        format!("sha1 {}", B64.encode(sha1::Sha1::digest(second)))
    };
    let r = patch(&s, &location, 600_000, second, Some(sha1)).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["upload-offset"], "1500000");
    let file_id = r.headers()["x-file-id"].to_str().unwrap().to_string();

    let h = s
        .client
        .head(s.url(&location))
        .header(TUS.0, TUS.1)
        .send()
        .await
        .unwrap();
    assert_eq!(h.headers()["x-file-id"].to_str().unwrap(), file_id);
    assert_eq!(h.headers()["upload-length"], "1500000");

    let rec: serde_json::Value = s
        .client
        .get(s.url(&format!("/api/v1/files/{file_id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rec["name"], "big data.bin");
    assert_eq!(rec["folder"], "in/tus");
    assert_eq!(rec["size"], 1_500_000);
    assert_eq!(rec["sha256"], sha256_hex(&data).as_str());
    assert_eq!(s.download(&file_id).await, data);
    assert_eq!(entries(&dir.join("uploads")), 0);
    s.stop().await;
}

#[tokio::test]
async fn creation_validates_length_and_metadata() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let r = create(&s, 10, &format!("folder {}", B64.encode("x"))).await;
    assert_problem(r, 400).await;
    let r = create(&s, 10, &meta("../escape", "")).await;
    let p = assert_problem(r, 400).await;
    assert_eq!(p["type"], "urn:mft:problem:invalid-filename");
    let r = s
        .client
        .post(s.url("/api/v1/uploads"))
        .header(TUS.0, TUS.1)
        .header("Upload-Metadata", meta("a.txt", ""))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400).await;
    assert_eq!(entries(&dir.join("uploads")), 0);

    // A zero-length upload is complete at creation.
    let r = create(&s, 0, &meta("empty.txt", "")).await;
    assert_eq!(r.status(), 201);
    let file_id = r.headers()["x-file-id"].to_str().unwrap().to_string();
    assert_eq!(s.download(&file_id).await, Vec::<u8>::new());
    s.stop().await;
}

#[tokio::test]
async fn a_broken_patch_keeps_the_bytes_that_arrived() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let data = pseudo_random(200_000, 5);
    let r = create(&s, data.len(), &meta("resume.bin", "")).await;
    let location = r.headers()["location"].to_str().unwrap().to_string();

    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n\
         Content-Length: {}\r\n\r\n",
        data.len()
    );
    let conn = send_partial(s.addr(), &head, &data[..70_000]).await;
    drop(conn);
    eventually("offset 70000 after the broken PATCH", || async {
        head_offset(&s, &location).await == 70_000
    })
    .await;

    // While the PATCH was being written the upload was locked; now resume.
    let mut r = patch(&s, &location, 70_000, &data[70_000..], None).await;
    for _ in 0..100 {
        if r.status() != 423 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        r = patch(&s, &location, 70_000, &data[70_000..], None).await;
    }
    assert_eq!(r.status(), 204);
    let file_id = r.headers()["x-file-id"].to_str().unwrap().to_string();
    assert_eq!(sha256_hex(&s.download(&file_id).await), sha256_hex(&data));
    s.stop().await;
}

#[tokio::test]
async fn termination_removes_the_upload() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let r = create(&s, 100, &meta("t.bin", "")).await;
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let r = patch(&s, &location, 0, &[1u8; 40], None).await;
    assert_eq!(r.status(), 204);
    assert_eq!(entries(&dir.join("uploads")), 1);

    let r = s
        .client
        .delete(s.url(&location))
        .header(TUS.0, TUS.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    assert_eq!(entries(&dir.join("uploads")), 0);
    let r = s
        .client
        .head(s.url(&location))
        .header(TUS.0, TUS.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = patch(&s, &location, 40, &[1u8; 10], None).await;
    assert_problem(r, 404).await;
    s.stop().await;
}

#[tokio::test]
async fn deferred_length_is_declared_by_the_last_patch() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let r = s
        .client
        .post(s.url("/api/v1/uploads"))
        .header(TUS.0, TUS.1)
        .header("Upload-Defer-Length", "1")
        .header("Upload-Metadata", meta("stream.bin", "in"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let r = patch(&s, &location, 0, b"hello ", None).await;
    assert_eq!(r.status(), 204);
    assert!(r.headers().get("x-file-id").is_none());
    let head = s
        .client
        .head(s.url(&location))
        .header(TUS.0, TUS.1)
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["upload-defer-length"], "1");
    assert!(head.headers().get("upload-length").is_none());
    // A length below what is stored is refused.
    let r = s
        .client
        .patch(s.url(&location))
        .header(TUS.0, TUS.1)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", "6")
        .header("Upload-Length", "3")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_problem(r, 400).await;
    // The last PATCH declares the length and completes the upload.
    let r = s
        .client
        .patch(s.url(&location))
        .header(TUS.0, TUS.1)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", "6")
        .header("Upload-Length", "11")
        .body(b"world".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let file_id = r.headers()["x-file-id"].to_str().unwrap().to_string();
    assert_eq!(s.download(&file_id).await, b"hello world".to_vec());
    // Both headers at creation is an error.
    let r = s
        .client
        .post(s.url("/api/v1/uploads"))
        .header(TUS.0, TUS.1)
        .header("Upload-Defer-Length", "1")
        .header("Upload-Length", "5")
        .header("Upload-Metadata", meta("x.bin", ""))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400).await;
    s.stop().await;
}
