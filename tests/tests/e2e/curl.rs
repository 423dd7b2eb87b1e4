//! The real curl binary, as the README tells users to use it.

use super::proxy::stack;
use sha2::Digest;
use std::process::Command;

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body"])
        .args(args)
        .output()
        .expect("curl installed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn curl_uploads_and_downloads_over_http1_and_http2() {
    let s = stack().await;
    let dir = s.dir.path();
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let src = dir.join("curl-src.bin");
    std::fs::write(&src, &data).unwrap();
    let want = hex::encode(sha2::Sha256::digest(&data));
    let ca = s.certs.ca.to_str().unwrap();
    let key_header = format!("X-API-Key: {}", s.gateway.key);
    for proto in ["--http1.1", "--http2"] {
        let (ok, out) = curl(&[
            proto,
            "--cacert",
            ca,
            "-H",
            &key_header,
            "-H",
            "X-Filename: curl.bin",
            "--data-binary",
            &format!("@{}", src.display()),
            &format!("{}/api/v1/files", s.gateway.base),
        ]);
        assert!(ok, "{out}");
        let meta: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(meta["sha256"], want.as_str());
        let dst = dir.join(format!("curl-dst{proto}.bin"));
        let (ok, out) = curl(&[
            proto,
            "--cacert",
            ca,
            "-H",
            &key_header,
            "-o",
            dst.to_str().unwrap(),
            &format!(
                "{}/api/v1/files/{}/content",
                s.gateway.base,
                meta["id"].as_str().unwrap()
            ),
        ]);
        assert!(ok, "{out}");
        assert_eq!(
            hex::encode(sha2::Sha256::digest(std::fs::read(&dst).unwrap())),
            want
        );
    }
}
