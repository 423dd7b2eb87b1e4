//! The tamper-evident audit trail (issue 21): the hash chain across
//! restarts, `mft-gateway audit verify` naming the first altered, missing
//! or moved record, the head metric as an anchor,
//! `audit.on_failure = "deny"` when the data_dir's disk is full, and a
//! stop on a full disk keeping its records for the next start.

use mft_e2e::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn verify(config: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(bin("mft-gateway"))
        .args(["audit", "verify", "--config"])
        .arg(config)
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

async fn requests(gw: &Gateway, certs: &Certs, n: usize) {
    let c = gw.client(certs, Proto::Http1);
    for _ in 0..n {
        let r = c
            .get(format!("{}/api/v1/files", gw.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

async fn stop(mut gw: Gateway) {
    gw.proc.signal("TERM");
    assert!(gw.proc.wait_exit(Duration::from_secs(30)).is_some());
}

fn edit(path: &Path, change: impl FnOnce(&mut Vec<String>)) {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    change(&mut lines);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn audit_verify_names_the_first_altered_missing_or_moved_record() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let gw = start_gateway(dir.path(), &certs, &backend.url, "").await;
    let config = gw.config.clone();
    requests(&gw, &certs, 5).await;
    stop(gw).await;
    let (ok, out) = verify(&config, &[]);
    assert!(ok, "{out}");
    assert!(out.starts_with("ok    audit: "), "{out}");

    // A restart continues the chain from the last line.
    let gw = launch_gateway(
        dir.path(),
        &certs,
        config.clone(),
        free_addr_of(&config, "https_listen"),
        free_addr_of(&config, "admin_listen"),
        String::new(),
    )
    .await;
    let key = create_key(&config, "second", ALL_SCOPES).1;
    let c = client_with_key(&certs, Proto::Http1, &key);
    for _ in 0..5 {
        let r = c
            .get(format!("{}/api/v1/files", gw.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The head metric, once the records are on disk (one writer tick):
    // 5 requests before the restart and 5 after.
    let page = wait_metrics(gw.admin, Duration::from_secs(10), "10 records", |p| {
        metric(p, "mft_audit_chain_records_total").unwrap_or(0.0) >= 10.0
    })
    .await;
    let head_line = page
        .lines()
        .find(|l| l.starts_with("mft_audit_chain_head_info{"))
        .unwrap_or_else(|| panic!("no head metric in\n{page}"))
        .to_string();
    let label = |name: &str| {
        let start = head_line.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        head_line[start..].split('"').next().unwrap().to_string()
    };
    let (seq, hash) = (label("seq"), label("hash"));
    assert_eq!(hash.len(), 64);
    let records = metric(&page, "mft_audit_chain_records_total").unwrap();
    assert_eq!(records.to_string(), seq);
    stop(gw).await;

    let file = dir.path().join("gateway-data/audit.jsonl");
    let anchor = format!("{seq}:{hash}");
    let (ok, out) = verify(&config, &["--anchor", &anchor]);
    assert!(ok, "{out}");
    let total = std::fs::read_to_string(&file).unwrap().lines().count();
    assert!(out.contains(&format!("{total} records")), "{out}");
    assert!(total >= 10, "{out}");
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["seq"], i as u64 + 1, "{line}");
    }
    let pristine = std::fs::read(&file).unwrap();
    let at = |line: usize| format!("{}:{line}: ", file.display());

    // An altered record: line 3's status.
    edit(&file, |l| {
        l[2] = l[2].replace("\"status\":200", "\"status\":201");
    });
    let (ok, out) = verify(&config, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&at(3)) && out.contains("seq 3 was altered"),
        "{out}"
    );

    // A deleted record: line 6.
    std::fs::write(&file, &pristine).unwrap();
    edit(&file, |l| {
        l.remove(5);
    });
    let (ok, out) = verify(&config, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&at(6)) && out.contains("record seq 6 is missing"),
        "{out}"
    );

    // Two records swapped: lines 8 and 9.
    std::fs::write(&file, &pristine).unwrap();
    edit(&file, |l| l.swap(7, 8));
    let (ok, out) = verify(&config, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&at(8)) && out.contains("seq 8 is missing"),
        "{out}"
    );

    // The last record cut: only the anchor shows it.
    std::fs::write(&file, &pristine).unwrap();
    edit(&file, |l| {
        l.pop();
    });
    assert!(
        verify(&config, &[]).0,
        "without an anchor a cut end is invisible"
    );
    let (ok, out) = verify(&config, &["--anchor", &anchor]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("anchored record seq {seq} is missing")),
        "{out}"
    );

    // An explicit file list.
    std::fs::write(&file, &pristine).unwrap();
    let out = Command::new(bin("mft-gateway"))
        .args(["audit", "verify"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The `https_listen` / `admin_listen` address in a test config.
fn free_addr_of(config: &Path, key: &str) -> std::net::SocketAddr {
    let text = std::fs::read_to_string(config).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("{key} not in {text}"));
    line.split('"').nth(1).unwrap().parse().unwrap()
}

/// A tmpfs mounted by the test (as root), unmounted when dropped.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mounts a `size` tmpfs at `at`; `None` (after saying why) where the
    /// test may not mount.
    pub fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(at.to_path_buf())),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs at {} (the fault tests need root): {}",
                    at.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    /// Fills the file system up with `name`; returns its path.
    pub fn fill(&self, name: &str) -> PathBuf {
        use std::io::Write;
        let path = self.0.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.flush();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn get_status(c: &reqwest::Client, url: &str) -> (u16, String, String) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ct, r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_full_data_dir_denies_requests_with_503_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("gateway-data"), "16m") else {
        return;
    };
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let mut gw = start_gateway(dir.path(), &certs, &backend.url, "").await;
    let c = gw.client(&certs, Proto::Http1);
    let url = format!("{}/api/v1/files", gw.base);
    let mut served = 0;
    for _ in 0..3 {
        assert_eq!(get_status(&c, &url).await.0, 200);
        served += 1;
    }
    let filler = fs.fill("filler");
    // Within a writer tick or two the failed write turns requests away.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (ct, body) = loop {
        let (status, ct, body) = get_status(&c, &url).await;
        match status {
            200 => served += 1,
            503 => break (ct, body),
            other => panic!("{other}: {body}"),
        }
        assert!(Instant::now() < deadline, "never refused with a full disk");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ct, "application/problem+json", "{body}");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["status"], 503);
    assert!(
        problem["detail"].as_str().unwrap().contains("audit"),
        "{body}"
    );
    for _ in 0..5 {
        assert_eq!(get_status(&c, &url).await.0, 503);
    }
    let page = metrics(gw.admin).await;
    assert_eq!(
        metric(&page, "mft_audit_write_failing"),
        Some(1.0),
        "{page}"
    );
    gw.proc.assert_running();
    assert!(gw.proc.stderr().contains("cannot write audit records"));

    // Space returns: served again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_status(&c, &url).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "not recovered after space returned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    served += 1;
    for _ in 0..3 {
        assert_eq!(get_status(&c, &url).await.0, 200);
        served += 1;
    }
    let page = wait_metrics(gw.admin, Duration::from_secs(10), "writes again", |p| {
        metric(p, "mft_audit_write_failing") == Some(0.0)
    })
    .await;
    assert_eq!(
        metric(&page, "mft_audit_dropped_records_total"),
        Some(0.0),
        "{page}"
    );
    stop(gw).await;

    // Nothing lost: every served request has its record (the refusals come
    // before authentication, so they have none, as other early refusals),
    // and the chain is whole (no torn line from the failed writes).
    let (ok, out) = verify(&dir.path().join("gateway.toml"), &[]);
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(dir.path().join("gateway-data/audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |status: u64| {
        records
            .iter()
            .filter(|r| r["event"] == "request" && r["status"] == status)
            .count()
    };
    assert_eq!(count(200), served, "{text}");
}

/// The `request` records with `status` in the trail's current file.
fn records_with_status(data_dir: &Path, status: u64) -> usize {
    std::fs::read_to_string(data_dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "request" && r["status"] == status)
        .count()
}

#[tokio::test]
async fn a_stop_while_the_data_dir_is_full_loses_no_audited_request() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("gateway-data");
    // Room for the shutdown reserve (9 MiB) and the rest of a start.
    let Some(fs) = Tmpfs::mount(&data_dir, "16m") else {
        return;
    };
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    // "allow": requests are served (and answered 200) while their records
    // can only wait in memory.
    let mut gw = start_gateway_with(
        dir.path(),
        &certs,
        &backend.url,
        "",
        "[audit]\non_failure = \"allow\"\n",
    )
    .await;
    let c = gw.client(&certs, Proto::Http1);
    let url = format!("{}/api/v1/files", gw.base);
    let mut served = 0;
    for _ in 0..3 {
        assert_eq!(get_status(&c, &url).await.0, 200);
        served += 1;
    }
    let filler = fs.fill("filler");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(get_status(&c, &url).await.0, 200, "allow keeps serving");
        served += 1;
        let page = metrics(gw.admin).await;
        if metric(&page, "mft_audit_write_failing") == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "writes never failed: {page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..20 {
        assert_eq!(get_status(&c, &url).await.0, 200);
        served += 1;
    }
    let page = metrics(gw.admin).await;
    assert_eq!(
        metric(&page, "mft_audit_dropped_records_total"),
        Some(0.0),
        "{page}"
    );

    // SIGTERM while the disk is still full.
    gw.proc.signal("TERM");
    assert!(gw.proc.wait_exit(Duration::from_secs(30)).is_some());
    let stderr = gw.proc.stderr();
    assert!(stderr.contains("shutdown reserve"), "{stderr}");
    let on_disk = records_with_status(&data_dir, 200);
    assert!(
        on_disk + 20 <= served,
        "the last records were only in memory: {on_disk} of {served} on disk"
    );
    // What is on disk verifies; verify names what waits in the reserve.
    let (ok, out) = verify(&dir.path().join("gateway.toml"), &[]);
    assert!(ok && out.contains("more record(s) in"), "{out}");

    // Space returns; the next start appends the reserved records first.
    std::fs::remove_file(&filler).unwrap();
    // The same address: relaunch names it in the config.
    let gw = gw.relaunch(dir.path(), &certs).await;
    let c = gw.client(&certs, Proto::Http1);
    assert_eq!(url, format!("{}/api/v1/files", gw.base));
    for _ in 0..3 {
        assert_eq!(get_status(&c, &url).await.0, 200);
        served += 1;
    }
    stop(gw).await;

    let (ok, out) = verify(&dir.path().join("gateway.toml"), &[]);
    assert!(ok, "{out}");
    assert_eq!(records_with_status(&data_dir, 200), served);
    let reserve = std::fs::read(data_dir.join("audit.jsonl.pending")).unwrap();
    assert_eq!(reserve.first(), Some(&0), "the reserve is empty again");
}
