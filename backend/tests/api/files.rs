//! One-shot uploads, downloads, ranges, listing and deletion.

use crate::support::*;

const BOUNDARY: &str = "----mft-test-boundary-7MA4YWxkTrZu0gW";

/// A multipart/form-data body from (name, filename, content) parts.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, content) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn post_multipart(s: &Server, body: Vec<u8>) -> reqwest::Response {
    s.client
        .post(s.url("/api/v1/files"))
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn file_count(s: &Server) -> usize {
    let list: serde_json::Value = s
        .client
        .get(s.url("/api/v1/files"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["files"].as_array().unwrap().len()
}

#[tokio::test]
async fn raw_upload_of_5_mib_downloads_with_the_same_sha256() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let data = pseudo_random(5 * 1024 * 1024 + 13, 42);
    let want = sha256_hex(&data);

    let r = s
        .client
        .post(s.url("/api/v1/files"))
        .header("X-Filename", "r%C3%A9sum%C3%A9%20final.bin")
        .header("X-Folder", "/inbox//partner/")
        .header("X-MFT-Principal", "key:test")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let rec: serde_json::Value = r.json().await.unwrap();
    let id = rec["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/v1/files/{id}"));
    assert_eq!(rec["name"], "résumé final.bin");
    assert_eq!(rec["folder"], "inbox/partner");
    assert_eq!(rec["size"], data.len() as u64);
    assert_eq!(rec["sha256"], want.as_str());
    assert_eq!(rec["created_by"], "key:test");
    assert!(time_is_rfc3339(rec["created_at"].as_str().unwrap()));

    let meta: serde_json::Value = s
        .client
        .get(s.url(&location))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta, rec);

    let r = s
        .client
        .get(s.url(&format!("{location}/content")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(
        h["content-disposition"],
        "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9%20final.bin"
    );
    assert_eq!(h["etag"].to_str().unwrap(), format!("\"{want}\""));
    assert_eq!(h["accept-ranges"], "bytes");
    let body = r.bytes().await.unwrap();
    assert_eq!(sha256_hex(&body), want);

    // A cached copy is confirmed without the body.
    let r = s
        .client
        .get(s.url(&format!("{location}/content")))
        .header("If-None-Match", format!("\"{want}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    let in_folder: serde_json::Value = s
        .client
        .get(s.url("/api/v1/files?folder=inbox/partner"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(in_folder["files"][0]["id"], id);
    let elsewhere: serde_json::Value = s
        .client
        .get(s.url("/api/v1/files?folder=outbox"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(elsewhere["files"].as_array().unwrap().len(), 0);
    assert!(elsewhere.get("folders").is_none(), "only on request");
    // One level of folders, without listing the files below it.
    let get = |q: &'static str| {
        let r = s.client.get(s.url(q)).send();
        async move { r.await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let root = get("/api/v1/files?subfolders=true").await;
    assert_eq!(root["folders"], serde_json::json!(["inbox"]));
    assert_eq!(root["files"].as_array().unwrap().len(), 0);
    let inbox = get("/api/v1/files?folder=inbox&subfolders=true").await;
    assert_eq!(inbox["folders"], serde_json::json!(["partner"]));
    let leaf = get("/api/v1/files?folder=inbox/partner&subfolders=true").await;
    assert_eq!(leaf["folders"], serde_json::json!([]));
    assert_eq!(leaf["files"][0]["id"], id);
    let near = get("/api/v1/files?folder=inbo&subfolders=true").await;
    assert_eq!(near["folders"], serde_json::json!([]));
    s.stop().await;
}

fn time_is_rfc3339(t: &str) -> bool {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
}

#[tokio::test]
async fn multipart_upload_with_folder_after_the_file_part() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let data = pseudo_random(300_000, 7);
    let body = multipart(&[
        ("note", None, b"ignored"),
        ("file", Some("report.pdf"), &data),
        ("folder", None, b"outbox/q3"),
    ]);
    let r = post_multipart(&s, body).await;
    assert_eq!(r.status(), 201);
    let rec: serde_json::Value = r.json().await.unwrap();
    assert_eq!(rec["name"], "report.pdf");
    assert_eq!(rec["folder"], "outbox/q3");
    assert_eq!(rec["sha256"], sha256_hex(&data).as_str());
    let got = s.download(rec["id"].as_str().unwrap()).await;
    assert_eq!(got, data);

    let no_file = post_multipart(&s, multipart(&[("folder", None, b"x")])).await;
    let p = assert_problem(no_file, 400).await;
    assert_eq!(p["field"], "file");
    s.stop().await;
}

#[tokio::test]
async fn traversal_and_bad_names_are_refused_with_problem_json() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let long = "a".repeat(256);
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("..%2F..%2Fetc%2Fpasswd", None),
        ("a/b.txt", None),
        ("..", None),
        ("nul%00byte", None),
        (long.as_str(), None),
        ("ok.txt", Some("a/../b")),
    ];
    for (name, folder) in cases {
        let mut req = s
            .client
            .post(s.url("/api/v1/files"))
            .header("X-Filename", name)
            .header("X-Request-Id", "req-traversal");
        if let Some(f) = folder {
            req = req.header("X-Folder", f);
        }
        let r = req.body("x").send().await.unwrap();
        let p = assert_problem(r, 400).await;
        assert_eq!(p["request_id"], "req-traversal", "case {name:?}");
        assert!(p["detail"].as_str().unwrap().len() > 5);
    }
    let r = post_multipart(&s, multipart(&[("file", Some("../evil.sh"), b"x")])).await;
    assert_problem(r, 400).await;

    let r = s
        .client
        .post(s.url("/api/v1/files"))
        .body("no name")
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 400).await;
    assert_eq!(p["field"], "X-Filename");

    assert_eq!(file_count(&s).await, 0);
    let stored = std::fs::read_dir(dir.join("files")).unwrap().count();
    assert_eq!(stored, 0);
    s.stop().await;
}

#[tokio::test]
async fn range_requests_give_206_with_exact_bytes_and_416_outside() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let data = pseudo_random(10_000, 3);
    let rec = s.upload("r.bin", data.clone()).await;
    let url = s.url(&format!(
        "/api/v1/files/{}/content",
        rec["id"].as_str().unwrap()
    ));

    let r = s
        .client
        .get(&url)
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 1000-1999/10000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[1000..2000]);

    let r = s
        .client
        .get(&url)
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[9990..]);

    let r = s
        .client
        .get(&url)
        .header("Range", "bytes=20000-30000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-range"], "bytes */10000");
    assert_problem(r, 416).await;

    // A stale If-Range means the whole file comes back.
    let r = s
        .client
        .get(&url)
        .header("Range", "bytes=0-9")
        .header("If-Range", "\"not-the-etag\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 10_000);

    let r = s.client.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "10000");
    assert!(r.bytes().await.unwrap().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn delete_removes_row_and_bytes_then_404() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let rec = s.upload("gone.txt", b"bye".to_vec()).await;
    let id = rec["id"].as_str().unwrap();
    assert!(dir.join("files").join(id).exists());

    let r = s
        .client
        .delete(s.url(&format!("/api/v1/files/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(!dir.join("files").join(id).exists());
    for path in [
        format!("/api/v1/files/{id}"),
        format!("/api/v1/files/{id}/content"),
    ] {
        let r = s.client.get(s.url(&path)).send().await.unwrap();
        assert_problem(r, 404).await;
    }
    let r = s
        .client
        .delete(s.url(&format!("/api/v1/files/{id}")))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    s.stop().await;
}

#[tokio::test]
async fn a_body_cut_short_stores_nothing() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let head = "POST /api/v1/files HTTP/1.1\r\nHost: t\r\nX-Filename: cut.bin\r\n\
                Content-Length: 100000\r\n\r\n";
    let conn = send_partial(s.addr(), head, &[7u8; 40_000]).await;
    let tmp = dir.join("tmp");
    // The body is being received into tmp/ ...
    eventually("the temp file", || {
        let tmp = tmp.clone();
        async move { entries(&tmp) == 1 }
    })
    .await;
    // ... and once the connection dies it is removed and nothing is stored.
    drop(conn);
    eventually("temp file removal", || {
        let tmp = tmp.clone();
        async move { entries(&tmp) == 0 }
    })
    .await;
    assert_eq!(file_count(&s).await, 0);
    assert_eq!(std::fs::read_dir(dir.join("files")).unwrap().count(), 0);
    s.stop().await;
}

#[tokio::test]
async fn patch_renames_and_moves_a_file() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let rec = s.upload("draft.txt", b"text".to_vec()).await;
    let id = rec["id"].as_str().unwrap();
    let r = s
        .client
        .patch(s.url(&format!("/api/v1/files/{id}")))
        .json(&serde_json::json!({"name": "final.txt", "folder": "/done//2026/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["name"], "final.txt");
    assert_eq!(v["folder"], "done/2026");
    assert_eq!(v["sha256"], rec["sha256"]);
    assert_eq!(s.download(id).await, b"text".to_vec());
    let r = s
        .client
        .patch(s.url(&format!("/api/v1/files/{id}")))
        .json(&serde_json::json!({"name": "../x"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400).await;
    s.stop().await;
}

#[tokio::test]
async fn a_folder_lists_page_by_page_by_name_newest_first() {
    let (_keep, dir) = data_dir();
    let s = Server::start(&dir).await;
    let upload = |name: &'static str, folder: &'static str| {
        let r = s
            .client
            .post(s.url("/api/v1/files"))
            .header("X-Filename", name)
            .header("X-Folder", folder)
            .body(name.as_bytes().to_vec())
            .send();
        async move {
            let r = r.await.unwrap();
            assert_eq!(r.status(), 201);
            r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let c = upload("c.txt", "box").await;
    let a_old = upload("a.txt", "box").await;
    let b = upload("b.txt", "box").await;
    let a_new = upload("a.txt", "box").await;
    let d = upload("d.txt", "box").await;
    upload("x.txt", "box/sub").await;
    upload("y.txt", "other").await;
    let get = |q: String| {
        let r = s.client.get(s.url(&q)).send();
        async move { r.await.unwrap() }
    };
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            None => "/api/v1/files?folder=box&subfolders=true&limit=2".to_string(),
            Some(c) => format!("/api/v1/files?folder=box&subfolders=true&limit=2&cursor={c}"),
        };
        let page: serde_json::Value = get(q).await.json().await.unwrap();
        pages += 1;
        // Sub-folders come with the first page only.
        if pages == 1 {
            assert_eq!(page["folders"], serde_json::json!(["sub"]));
        } else {
            assert!(page.get("folders").is_none(), "{page}");
        }
        let files = page["files"].as_array().unwrap();
        assert!(files.len() <= 2);
        ids.extend(files.iter().map(|f| f["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => {
                assert!(page["next_cursor"].is_null(), "{page}");
                break;
            }
        }
    }
    // By name; the newer a.txt before the older one.
    assert_eq!(ids, [a_new.clone(), a_old.clone(), b, c, d]);
    assert_eq!(pages, 3);
    // One name only, upload order (the SFTP bridge's lookups).
    let named: serde_json::Value = get("/api/v1/files?folder=box&name=a.txt".into())
        .await
        .json()
        .await
        .unwrap();
    let named: Vec<&str> = named["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(named, [a_old.as_str(), a_new.as_str()]);
    // Without limit nothing changes: no next_cursor, upload order.
    let all: serde_json::Value = get("/api/v1/files?folder=box".into())
        .await
        .json()
        .await
        .unwrap();
    assert!(all.get("next_cursor").is_none(), "{all}");
    assert_eq!(all["files"].as_array().unwrap().len(), 5);
    // Bad parameters are 400 problems naming the parameter.
    for q in [
        "/api/v1/files?folder=box&limit=0",
        "/api/v1/files?folder=box&limit=1001",
        "/api/v1/files?folder=box&limit=-1",
        "/api/v1/files?folder=box&limit=2&cursor=garbage!",
        "/api/v1/files?folder=box&cursor=eyJ9",
        "/api/v1/files?folder=box&name=a.txt&limit=2",
    ] {
        let r = get(q.to_string()).await;
        assert_eq!(r.status(), 400, "{q}");
        let p: serde_json::Value = r.json().await.unwrap();
        assert_eq!(p["type"], "urn:mft:problem:invalid-parameter", "{q}: {p}");
    }
    s.stop().await;
}
