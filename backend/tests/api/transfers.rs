//! Transfers: accepted with 202, copied in the background.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn transfer_completes_with_an_identical_copy() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let data = pseudo_random(3 * 1024 * 1024, 99);
    let src = s.upload("source.bin", data.clone()).await;
    let r = s
        .client
        .post(s.url("/api/v1/transfers"))
        .json(&json!({"file_id": src["id"], "folder": "archive/2026", "name": "copy.bin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let t: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/transfers/{}", t["id"].as_str().unwrap())
    );
    assert_eq!(t["status"], "queued");

    // Bounded poll: 500 x 20 ms.
    let mut last = serde_json::Value::Null;
    for _ in 0..500 {
        last = s
            .client
            .get(s.url(&location))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if last["status"] == "completed" || last["status"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(last["status"], "completed", "{last}");
    let copy_id = last["result_file_id"].as_str().unwrap();
    assert_ne!(copy_id, src["id"].as_str().unwrap());
    let copy: serde_json::Value = s
        .client
        .get(s.url(&format!("/api/v1/files/{copy_id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(copy["sha256"], src["sha256"]);
    assert_eq!(copy["folder"], "archive/2026");
    assert_eq!(copy["name"], "copy.bin");
    assert_eq!(sha256_hex(&s.download(copy_id).await), sha256_hex(&data));
    s.stop().await;
}

#[tokio::test]
async fn transfer_of_an_unknown_file_or_into_a_bad_folder_is_refused() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let r = s
        .client
        .post(s.url("/api/v1/transfers"))
        .json(&json!({"file_id": "01a20000-0000-7000-8000-000000000000", "folder": "x"}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 422).await;
    assert_eq!(p["field"], "file_id");
    let src = s.upload("s.txt", b"abc".to_vec()).await;
    let r = s
        .client
        .post(s.url("/api/v1/transfers"))
        .json(&json!({"file_id": src["id"], "folder": "../../etc"}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 400).await;
    assert_eq!(p["field"], "folder");
    s.stop().await;
}
