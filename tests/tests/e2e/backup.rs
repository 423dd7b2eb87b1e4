//! `mft-gateway backup`: a copy taken while the gateway serves restores
//! into a second gateway whose keys work, and whose audit copy verifies.

use mft_e2e::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn backup(config: &Path, out: &Path) -> (bool, String) {
    let o = Command::new(bin("mft-gateway"))
        .args(["backup", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
    )
}

async fn status(gw: &Gateway, certs: &Certs, key: &str) -> u16 {
    // A client without the gateway's own default key: one credential only.
    client(certs, Proto::Http1)
        .get(format!("{}/api/v1/files", gw.base))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_into_a_gateway_whose_keys_work() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let a = dir.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::copy(
        dir.path().join("backend-signing.key"),
        a.join("backend-signing.key"),
    )
    .ok();
    let gw = start_gateway(&a, &certs, &backend.url, "").await;
    let (_, kept) = create_key(&gw.config, "kept", "files:read");
    let (revoked_id, revoked) = create_key(&gw.config, "revoked", "files:read");
    let out = Command::new(bin("mft-gateway"))
        .args(["keys", "revoke", &revoked_id, "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(status(&gw, &certs, &kept).await, 200);

    // Taken while the gateway serves (and writes its audit trail).
    let copy = dir.path().join("backup");
    let (ok, text) = backup(&gw.config, &copy);
    assert!(ok, "{text}");
    let keys = copy.join("keys.sqlite");
    let mode = std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the copy holds key hashes and sealed secrets");
    let audit = copy.join("audit").join("audit.jsonl");
    let verified = Command::new(bin("mft-gateway"))
        .args(["audit", "verify"])
        .arg(&audit)
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );

    // A second backup into the same, now non-empty, directory is refused.
    let (ok, text) = backup(&gw.config, &copy);
    assert!(!ok && text.contains("not empty"), "{text}");

    // Restore: a new gateway whose data_dir holds only the copied store.
    let b = dir.path().join("b");
    std::fs::create_dir_all(b.join("gateway-data")).unwrap();
    std::fs::copy(&keys, b.join("gateway-data").join("keys.sqlite")).unwrap();
    let (addr, admin) = (ephemeral(), ephemeral());
    let signing = format!(
        "signing_key = \"file:{}\"",
        dir.path().join("backend-signing.key").display()
    );
    let config = b.join("gateway.toml");
    std::fs::write(
        &config,
        gateway_config(&certs, addr, admin, &backend.url, &signing, ""),
    )
    .unwrap();
    let restored = launch_gateway(&b, &certs, config, addr, admin, kept.clone()).await;
    assert_eq!(status(&restored, &certs, &kept).await, 200);
    assert_eq!(status(&restored, &certs, &revoked).await, 401);
    assert_eq!(
        status(&restored, &certs, "mgw_0000000000000000_nope").await,
        401
    );
}
