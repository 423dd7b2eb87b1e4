//! The SFTP bridge with the real OpenSSH `sftp` client (batch mode):
//! logins, chroot, streaming uploads and downloads, resume, permissions,
//! on_upload deliveries, interrupted uploads.

use mft_e2e::sftp::{self, ok, random_file, sha256_file, SftpEnv};
use std::time::Duration;

const ALICE: &str = r#"
[[sftp.users]]
name = "alice"
authorized_keys = ["{KEY}"]
password_hash = "{HASH}"
folder = "partners/alice"
permissions = ["upload", "download", "list", "delete"]
"#;

const BOB: &str = r#"
[[sftp.users]]
name = "bob"
authorized_keys = ["{KEY}"]
folder = "partners/bob"
permissions = ["upload", "list"]
max_connections = 2
[sftp.users.on_upload]
deliver_to = ["ops@ourcorp.example"]
"#;

async fn env(dir: &std::path::Path) -> SftpEnv {
    let users = format!(
        "{}{}",
        ALICE.replace("{HASH}", &sftp::hash_password("s3cret pass")),
        BOB
    );
    sftp::start(dir, &users, "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_and_password_login_put_get_ls() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path()).await;
    let local = dir.path().join("report.csv");
    let sum = random_file(&local, 3 * 1024 * 1024 + 17, 1);

    // Key login, upload, listing.
    let out = env.batch("alice", "put report.csv\nls -l\n");
    let listing = ok(&out);
    assert!(listing.contains("report.csv"), "{listing}");
    let stored = env
        .file("partners/alice", "report.csv")
        .await
        .expect("stored");
    assert_eq!(stored["sha256"], sum.as_str());
    assert_eq!(stored["size"], 3 * 1024 * 1024 + 17);

    // Password login, download, SHA-256 equality.
    let out = env.batch_with_password("alice", "s3cret pass", "get report.csv back.csv\n");
    ok(&out);
    assert_eq!(sha256_file(&dir.path().join("back.csv")), sum);

    // Wrong password and a wrong key are refused.
    let out = env.batch_with_password("alice", "wrong", "ls\n");
    assert!(!out.status.success());
    let other = dir.path().join("other_key");
    sftp::keygen(&other);
    let out = env.batch_with_key("alice", &other, "ls\n");
    assert!(
        !out.status.success(),
        "a key not in authorized_keys must be refused"
    );
    let m = mft_e2e::metrics(env.gateway.admin).await;
    assert!(
        mft_e2e::metric(&m, "mft_sftp_auth_failures_total").unwrap_or(0.0) >= 2.0,
        "{m}"
    );
    assert!(
        mft_e2e::metric(&m, "mft_sftp_uploads_total{outcome=\"completed\"}").unwrap_or(0.0) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chroot_cannot_be_left() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path()).await;
    std::fs::write(dir.path().join("x.txt"), b"inside").unwrap();
    ok(&env.batch("alice", "put x.txt\n"));
    // `cd ..` at the root stays at the root: the listing still shows alice's file.
    let out = ok(&env.batch("alice", "cd ..\ncd ..\npwd\nls\n"));
    assert!(out.contains("Remote working directory: /"), "{out}");
    assert!(out.contains("x.txt"), "{out}");
    // Absolute paths are inside the root: /etc/passwd does not exist there.
    let out = env.batch("alice", "get /etc/passwd stolen\n");
    assert!(!out.status.success());
    assert!(!dir.path().join("stolen").exists());
    // `../bob` from the root is alice's /bob, not bob's folder.
    std::fs::write(dir.path().join("b.txt"), b"bob's").unwrap();
    ok(&env.batch("bob", "put b.txt\n"));
    let out = env.batch("alice", "get ../bob/b.txt got.txt\n");
    assert!(!out.status.success());
    assert!(!dir.path().join("got.txt").exists());
    // Symlinks cannot be made.
    let out = env.batch("alice", "symlink /etc/passwd link\n");
    assert!(!out.status.success());
    // Nothing landed outside partners/alice and partners/bob.
    for f in env.files().await {
        let folder = f["folder"].as_str().unwrap();
        assert!(
            folder == "partners/alice" || folder == "partners/bob",
            "{f}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_and_on_upload_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path()).await;
    std::fs::write(dir.path().join("inv.pdf"), b"%PDF-1.7 invoice").unwrap();
    ok(&env.batch("bob", "put inv.pdf\n"));
    // bob may not delete nor download.
    let out = env.batch("bob", "rm inv.pdf\n");
    assert!(!out.status.success());
    let out = env.batch("bob", "get inv.pdf x\n");
    assert!(!out.status.success());
    let stored = env
        .file("partners/bob", "inv.pdf")
        .await
        .expect("still stored");
    // The upload made a delivery with origin sftp:bob.
    let client = env.gateway.client(&env.certs, mft_e2e::Proto::Http1);
    let v: serde_json::Value = client
        .get(format!("{}/api/v1/deliveries", env.gateway.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let deliveries = v["deliveries"].as_array().cloned().unwrap_or_default();
    let d = deliveries
        .iter()
        .find(|d| d["origin"] == "sftp:bob")
        .unwrap_or_else(|| panic!("no sftp:bob delivery in {v}"));
    assert_eq!(d["files"][0], stored["id"]);
    assert_eq!(d["recipients"][0], "ops@ourcorp.example");
    // alice may delete, mkdir and rename.
    std::fs::write(dir.path().join("a.txt"), b"a").unwrap();
    let out = ok(&env.batch(
        "alice",
        "mkdir in\nput a.txt in/a.txt\nrename in/a.txt in/b.txt\nls in\nrm in/b.txt\nls\n",
    ));
    assert!(out.contains("b.txt"), "{out}");
    assert!(env.file("partners/alice/in", "b.txt").await.is_none());
    assert!(env.file("partners/alice/in", "a.txt").await.is_none());
}

/// An OPEN without TRUNCATE of a stored file (`reput`, `put -a`, paramiko
/// append) used to copy the whole stored file through the gateway before
/// the OPEN was answered: one small request, a whole file's transfer. It is
/// refused at once with OP_UNSUPPORTED; a full `put` replaces the file, and
/// `reget` (a Range read, no copy) still resumes a download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_without_truncate_of_a_stored_file_is_refused_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path()).await;
    let full = dir.path().join("big.bin");
    let sum = random_file(&full, 5 * 1024 * 1024 + 3, 7);
    let bytes = std::fs::read(&full).unwrap();
    std::fs::write(dir.path().join("part.bin"), &bytes[..2 * 1024 * 1024]).unwrap();
    let part_sum = sha256_file(&dir.path().join("part.bin"));
    ok(&env.batch("alice", "put part.bin big.bin\n"));

    // OpenSSH: reput opens without TRUNCATE and is told why it cannot.
    let out = env.batch("alice", "reput big.bin\n");
    assert!(!out.status.success(), "reput must fail");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("unsupported"), "{err}");
    let stored = env.file("partners/alice", "big.bin").await.unwrap();
    assert_eq!(
        stored["sha256"],
        part_sum.as_str(),
        "the stored file changed"
    );

    // paramiko: append to the stored file is refused, append to a new file
    // and a truncating open work.
    let script = r#"
import sys, paramiko
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.connect(username="alice", password=sys.argv[2])
s = paramiko.SFTPClient.from_transport(t)
try:
    with s.open("big.bin", "a") as f:
        f.write(b"more")
    print("appended")
except IOError as e:
    print("refused: " + str(e))
with s.open("fresh.txt", "a") as f:
    f.write(b"new file")
print("new")
with s.open("fresh.txt", "w") as f:
    f.write(b"replaced!")
print("truncated")
t.close()
"#;
    let out = std::process::Command::new(mft_e2e::python())
        .args(["-c", script, &env.sftp.port().to_string(), "s3cret pass"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("refused") && lines[0].contains("not supported"),
        "{stdout}"
    );
    assert_eq!(&lines[1..], ["new", "truncated"], "{stdout}");
    let fresh = env.file("partners/alice", "fresh.txt").await.unwrap();
    assert_eq!(fresh["size"], 9);
    let stored = env.file("partners/alice", "big.bin").await.unwrap();
    assert_eq!(stored["sha256"], part_sum.as_str());

    // A whole put (TRUNCATE) replaces the file.
    ok(&env.batch("alice", "put big.bin\n"));
    let stored = env.file("partners/alice", "big.bin").await.unwrap();
    assert_eq!(stored["sha256"], sum.as_str());
    assert_eq!(
        env.files()
            .await
            .iter()
            .filter(|f| f["name"] == "big.bin")
            .count(),
        1
    );
    // reget continues a partial local copy (a Range read from its size).
    std::fs::write(dir.path().join("down.bin"), &bytes[..1024 * 1024 + 5]).unwrap();
    ok(&env.batch("alice", "reget big.bin down.bin\n"));
    assert_eq!(sha256_file(&dir.path().join("down.bin")), sum);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_client_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path()).await;
    let big = dir.path().join("huge.bin");
    random_file(&big, 32 * 1024 * 1024, 3);
    let mut child = std::process::Command::new("sftp")
        // -l: 8 Mbit/s, so the upload is surely still running when killed.
        .args(["-l", "8000", "-b", "-", "-i"])
        .arg(&env.key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentityAgent=none",
            "-P",
            &env.sftp.port().to_string(),
            "alice@127.0.0.1",
        ])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"put huge.bin\n").unwrap();
    }
    // Wait until bytes flow, then kill the client mid-upload.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = mft_e2e::metrics(env.gateway.admin).await;
        if mft_e2e::metric(&m, "mft_sftp_bytes_total{direction=\"up\"}").unwrap_or(0.0) > 0.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "upload never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The gateway notices the dead connection and counts a failed upload.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = mft_e2e::metrics(env.gateway.admin).await;
        if mft_e2e::metric(&m, "mft_sftp_uploads_total{outcome=\"failed\"}").unwrap_or(0.0) >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "abandoned upload not noticed: {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(env.file("partners/alice", "huge.bin").await.is_none());
    assert!(env.files().await.is_empty());
}

/// A large upload and download stream through: SHA-256 equal both ways and
/// the gateway's memory stays flat, for the 1 GiB the issue asks for (the
/// local copy is deleted after the upload to keep the disk use at 2 GiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_file_streams_with_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path()).await;
    let size: u64 = 1024 * 1024 * 1024;
    let local = dir.path().join("large.bin");
    let sum = random_file(&local, size, 11);
    let pid = env.gateway.proc.child.id();
    let before = mft_e2e::rss_kib(pid).unwrap();
    let sampler = {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let h = std::thread::spawn(move || {
            let mut peak = 0;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(mft_e2e::rss_kib(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        (stop, h)
    };
    let started = std::time::Instant::now();
    ok(&env.batch("alice", "put large.bin\n"));
    let up = started.elapsed();
    std::fs::remove_file(&local).unwrap();
    let started = std::time::Instant::now();
    ok(&env.batch("alice", "get large.bin large.back\n"));
    let down = started.elapsed();
    sampler.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.1.join().unwrap();
    let stored = env.file("partners/alice", "large.bin").await.unwrap();
    assert_eq!(stored["sha256"], sum.as_str());
    assert_eq!(sha256_file(&dir.path().join("large.back")), sum);
    eprintln!(
        "1 GiB: up {:.1} MiB/s, down {:.1} MiB/s, rss {before} KiB -> peak {peak} KiB",
        1024.0 / up.as_secs_f64(),
        1024.0 / down.as_secs_f64()
    );
    // Bounded per upload (chunk + queue + reorder window, ~16 MiB), never the file.
    assert!(
        peak < before + 96 * 1024,
        "gateway RSS grew from {before} KiB to {peak} KiB for a 1 GiB transfer"
    );
}

/// 50 files put in parallel by 5 sessions of 10 files each, all stored intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_put_of_50_files() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path()).await;
    let mut sums = std::collections::HashMap::new();
    for i in 0..50u64 {
        let name = format!("f{i:02}.dat");
        sums.insert(
            name.clone(),
            random_file(&dir.path().join(&name), 64 * 1024 + i * 4099, i),
        );
    }
    let env = std::sync::Arc::new(env);
    let mut threads = Vec::new();
    for s in 0..5 {
        let env = env.clone();
        threads.push(std::thread::spawn(move || {
            let batch: String = (0..10)
                .map(|j| format!("put f{:02}.dat\n", s * 10 + j))
                .collect();
            env.batch("alice", &batch)
        }));
    }
    for t in threads {
        ok(&t.join().unwrap());
    }
    let files = env.files().await;
    assert_eq!(files.len(), 50, "{files:?}");
    for f in files {
        let name = f["name"].as_str().unwrap();
        assert_eq!(f["sha256"], sums[name].as_str(), "{name}");
    }
}

/// paramiko (an independent client): password login, an API key as the
/// password, out-of-order writes reordered, a write beyond the window
/// refused, ten parallel connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paramiko_client() {
    let python = mft_e2e::python();
    let dir = tempfile::tempdir().unwrap();
    let carol = "\n[[sftp.users]]\nname = \"carol\"\napi_key_login = true\nfolder = \"svc\"\n";
    let users = format!(
        "{}{carol}",
        ALICE.replace("{HASH}", &sftp::hash_password("s3cret pass"))
    );
    // carol's own key: the key of the service account named like the user.
    let carol_key = std::sync::Mutex::new(String::new());
    let env = sftp::start_with(dir.path(), &users, "", |config| {
        *carol_key.lock().unwrap() =
            mft_e2e::create_key(config, "carol", "files:read,files:write").1;
        Vec::new()
    })
    .await;
    let carol_key = carol_key.into_inner().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("py/sftp_paramiko.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .args([
            "127.0.0.1",
            &env.sftp.port().to_string(),
            "alice",
            "s3cret pass",
            "carol",
        ])
        .arg(&carol_key)
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup --test)", python.display()));
    assert!(
        out.status.success(),
        "paramiko script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ooo = env.file("partners/alice", "ooo.bin").await.unwrap();
    assert_eq!(ooo["sha256"], v["ooo_sha256"]);
    let far = v["far_error"].as_str().expect("far write must fail");
    assert!(far.contains("ahead"), "{far}");
    assert!(env.file("partners/alice", "far.bin").await.is_none());
    assert!(env.file("svc", "via-key.txt").await.is_some());
    for (name, sum) in v["parallel"].as_object().unwrap() {
        let f = env.file("partners/alice", name).await.unwrap();
        assert_eq!(&f["sha256"], sum, "{name}");
    }
    // A wrong API key is refused.
    let bad = std::process::Command::new(&python)
        .args(["-c", "import paramiko,sys; t=paramiko.Transport(('127.0.0.1', int(sys.argv[1]))); t.connect(username='carol', password='mgw_nope_nope')"])
        .arg(env.sftp.port().to_string())
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

/// A folder of more entries than one backend page (100) lists completely
/// and in name order, one page per READDIR batch, with OpenSSH `sftp ls`
/// and paramiko's `listdir_iter`; a name stored twice shows once, as its
/// newest file, even where its two files fall on two pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_larger_than_one_page_lists_completely_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path()).await;
    let api = env.gateway.client(&env.certs, mft_e2e::Proto::Http1);
    let upload = |name: String, folder: &'static str, body: Vec<u8>| {
        let r = api
            .post(format!("{}/api/v1/files", env.gateway.base))
            .header("x-filename", name)
            .header("x-folder", folder)
            .body(body)
            .send();
        async move {
            let r = r.await.unwrap();
            assert_eq!(r.status(), 201);
        }
    };
    // f-0099 twice: sorted by name and the newest first, its older file
    // is the first of the second page.
    upload("f-0099.txt".into(), "partners/alice/big", vec![b'o'; 3]).await;
    let mut names = Vec::new();
    for i in 0..250 {
        let name = format!("f-{i:04}.txt");
        upload(name.clone(), "partners/alice/big", vec![b'x'; 10 + (i % 7)]).await;
        names.push(name);
    }
    upload("inner.txt".into(), "partners/alice/big/sub", b"in".to_vec()).await;
    let mut expected = vec!["sub".to_string()];
    expected.extend(names.iter().cloned());

    let pages = |page: &str| mft_e2e::metric(page, "mft_sftp_listing_pages_total").unwrap_or(0.0);
    let before = pages(&mft_e2e::metrics(env.gateway.admin).await);
    // OpenSSH, unsorted (-f): the server's order.
    let out = env.batch("alice", "ls -1 -f big\n");
    let text = ok(&out);
    let listed: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("sftp>"))
        .map(|l| l.rsplit('/').next().unwrap_or(l).to_string())
        .collect();
    assert_eq!(listed, expected, "{text}");
    let after = pages(&mft_e2e::metrics(env.gateway.admin).await);
    assert!(after - before >= 3.0, "pages read: {before} -> {after}");

    // paramiko, pipelining READDIRs.
    let script = r#"
import json, sys, paramiko
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.connect(username="alice", password=sys.argv[2])
s = paramiko.SFTPClient.from_transport(t)
print(json.dumps([[a.filename, a.st_size] for a in s.listdir_iter("big", read_aheads=8) if a.filename not in (".", "..")]))
"#;
    let out = std::process::Command::new(mft_e2e::python())
        .args(["-c", script, &env.sftp.port().to_string(), "s3cret pass"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<(String, u64)> = serde_json::from_slice(&out.stdout).unwrap();
    let got_names: Vec<String> = got.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(got_names, expected);
    // Sizes of the newest file per name: f-0099.txt is 10 + 99 % 7 = 11
    // bytes, not its older 3-byte file.
    for (i, (_, size)) in got.iter().skip(1).enumerate() {
        assert_eq!(*size, 10 + (i as u64 % 7), "{}", names[i]);
    }
}

/// Only modern algorithms: a client limited to CBC, SHA-1 key exchange or
/// SHA-1 MACs with a non-AEAD cipher cannot connect; the defaults can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_algorithms_refused() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path()).await;
    let port = env.sftp.port().to_string();
    let attempt = |extra: &[&str]| {
        std::process::Command::new("ssh")
            .args(["-i"])
            .arg(&env.key)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "IdentityAgent=none",
                "-o",
                "IdentitiesOnly=yes",
                "-p",
                &port,
                "-s",
            ])
            .args(extra)
            .args(["alice@127.0.0.1", "sftp"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    for weak in [
        ["-o", "Ciphers=aes128-cbc"],
        ["-o", "KexAlgorithms=diffie-hellman-group14-sha1"],
        ["-o", "HostKeyAlgorithms=ssh-rsa"],
    ] {
        let out = attempt(&weak);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no matching"),
            "{weak:?} must not negotiate: {err}"
        );
    }
    ok(&env.batch("alice", "pwd\n"));
}
