//! Data survives a stop and a new start on the same directory.

use crate::support::*;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::json;

#[tokio::test]
async fn files_deliveries_and_partial_uploads_survive_a_restart() {
    let (_keep, dir) = data_dir();
    let data = pseudo_random(777_777, 1);
    let tail = pseudo_random(1000, 2);

    let s = Server::start(&dir).await;
    let rec = s.upload("kept.bin", data.clone()).await;
    let file_id = rec["id"].as_str().unwrap().to_string();
    let d: serde_json::Value = s
        .client
        .post(s.url("/api/v1/deliveries"))
        .header("Idempotency-Key", "restart-key")
        .json(&json!({"sender": "a@x", "recipients": ["b@y"], "files": [file_id]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = s
        .client
        .post(s.url("/api/v1/uploads"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "2000")
        .header(
            "Upload-Metadata",
            format!("filename {}", B64.encode("half.bin")),
        )
        .send()
        .await
        .unwrap();
    let upload = r.headers()["location"].to_str().unwrap().to_string();
    let r = s
        .client
        .patch(s.url(&upload))
        .header("Tus-Resumable", "1.0.0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", "0")
        .body(tail.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    s.stop().await;

    let s = Server::start(&dir).await;
    assert_eq!(s.download(&file_id).await, data);
    let again: serde_json::Value = s
        .client
        .get(s.url(&format!("/api/v1/deliveries/{}", d["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, d);
    // The idempotency key is persisted too.
    let r = s
        .client
        .post(s.url("/api/v1/deliveries"))
        .header("Idempotency-Key", "restart-key")
        .json(&json!({"sender": "a@x", "recipients": ["b@y"], "files": [file_id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let replay: serde_json::Value = r.json().await.unwrap();
    assert_eq!(replay["id"], d["id"]);

    let r = s
        .client
        .head(s.url(&upload))
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["upload-offset"], "1000");
    let r = s
        .client
        .patch(s.url(&upload))
        .header("Tus-Resumable", "1.0.0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", "1000")
        .body(tail.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let done_id = r.headers()["x-file-id"].to_str().unwrap().to_string();
    assert_eq!(s.download(&done_id).await, [tail.clone(), tail].concat());
    s.stop().await;
}

#[tokio::test]
async fn a_second_backend_on_the_same_directory_is_refused() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let second = mft_backend::router(mft_backend::BackendConfig::new(dir.clone())).await;
    match second {
        Err(e @ mft_backend::BackendError::DataDirInUse { .. }) => {
            assert!(e.to_string().contains("in use"), "{e}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a second backend opened a directory in use"),
    }
    s.stop().await;
    // Released at stop: the directory opens again.
    assert!(mft_backend::router(mft_backend::BackendConfig::new(dir))
        .await
        .is_ok());
}

#[tokio::test]
async fn startup_repairs_what_a_crash_left_behind() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let kept = s.upload("kept.txt", b"kept".to_vec()).await;
    let r = s
        .client
        .post(s.url("/api/v1/uploads"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "100")
        .header(
            "Upload-Metadata",
            format!("filename {}", B64.encode("p.bin")),
        )
        .send()
        .await
        .unwrap();
    let upload = r.headers()["location"].to_str().unwrap().to_string();
    let r = s
        .client
        .patch(s.url(&upload))
        .header("Tus-Resumable", "1.0.0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", "0")
        .body(vec![9u8; 30])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    s.stop().await;

    // What a power cut could leave: a half-received body in tmp/, a file
    // renamed into files/ whose row was never inserted, and bytes written
    // to a partial upload whose offset was never recorded.
    std::fs::write(dir.join("tmp/0000.tmp"), b"half").unwrap();
    let orphan = dir.join("files/01a20000-0000-7000-8000-0000000000aa");
    std::fs::write(&orphan, b"orphan").unwrap();
    let upload_id = upload.rsplit('/').next().unwrap();
    let partial = dir.join(format!("uploads/{upload_id}.part"));
    let mut bytes = std::fs::read(&partial).unwrap();
    bytes.extend_from_slice(&[1u8; 25]);
    std::fs::write(&partial, bytes).unwrap();

    let s = Server::start(&dir).await;
    assert_eq!(entries(&dir.join("tmp")), 0);
    assert!(!orphan.exists());
    assert_eq!(s.download(kept["id"].as_str().unwrap()).await, b"kept");
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 30);
    let r = s
        .client
        .head(s.url(&upload))
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["upload-offset"], "30");
    s.stop().await;
}

/// A database written before deliveries had a `seq` (the schema up to the
/// change feed), with two deliveries inserted out of id order.
async fn write_database_without_seq(dir: &std::path::Path) -> [&'static str; 2] {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};
    std::fs::create_dir_all(dir).unwrap();
    let mut conn = SqliteConnectOptions::new()
        .filename(dir.join("metadata.db"))
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE deliveries (
            id TEXT PRIMARY KEY NOT NULL,
            sender TEXT NOT NULL,
            recipients TEXT NOT NULL,
            subject TEXT NOT NULL,
            message TEXT NOT NULL,
            files TEXT NOT NULL,
            origin TEXT NOT NULL,
            created_by TEXT,
            created_at TEXT NOT NULL
        )",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let ids = [
        "01a20000-0000-7000-8000-000000000002",
        "01a20000-0000-7000-8000-000000000001",
    ];
    for id in ids {
        sqlx::query(
            "INSERT INTO deliveries VALUES (?, 'a@x', '[\"b@y\"]', 'old', '', '[]', 'api', NULL,
                                            '2026-01-01T00:00:00.000Z')",
        )
        .bind(id)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();
    ids
}

#[tokio::test]
async fn a_database_from_before_the_feed_gets_seqs_in_insertion_order() {
    let (_keep, dir) = data_dir();
    let old = write_database_without_seq(&dir).await;

    let s = Server::start(&dir).await;
    let list: serde_json::Value = s
        .client
        .get(s.url("/api/v1/deliveries?after_seq=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got: Vec<(&str, i64)> = list["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap(), d["seq"].as_i64().unwrap()))
        .collect();
    assert_eq!(got, [(old[0], 1), (old[1], 2)]);
    assert_eq!(list["deliveries"][0]["relay"], json!([]));
    let new: serde_json::Value = s
        .client
        .post(s.url("/api/v1/deliveries"))
        .json(&json!({"sender": "a@x", "recipients": ["b@y"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(new["seq"], 3);
    s.stop().await;

    // The migration ran once; a second start keeps every seq.
    let s = Server::start(&dir).await;
    let list: serde_json::Value = s
        .client
        .get(s.url("/api/v1/deliveries"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seqs: Vec<i64> = list["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(list["deliveries"][2]["id"], new["id"]);
    assert_eq!(list["next_after_seq"], 3);
    s.stop().await;
}
