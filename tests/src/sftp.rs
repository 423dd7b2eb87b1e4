//! Helpers for the SFTP bridge tests: a backend, a gateway with `[sftp]`
//! users, client keys made with `ssh-keygen`, and the real OpenSSH `sftp`
//! client in batch mode.

use crate::{
    create_key, ephemeral, launch_gateway, make_certs, start_backend, Backend, Certs, Gateway,
    Proto,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A running backend + gateway with the SFTP bridge.
pub struct SftpEnv {
    /// Test directory.
    pub dir: PathBuf,
    /// TLS material of the gateway.
    pub certs: Certs,
    /// The backend.
    pub backend: Backend,
    /// The gateway.
    pub gateway: Gateway,
    /// SFTP address.
    pub sftp: SocketAddr,
    /// A client private key (`ssh-keygen -t ed25519`), authorised for the
    /// users whose config says `{KEY}`.
    pub key: PathBuf,
}

/// Makes an ed25519 key pair at `path` / `path.pub`; returns the public line.
pub fn keygen(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {out:?}");
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

/// Argon2id hash made with the gateway's own CLI.
pub fn hash_password(password: &str) -> String {
    crate::record_secret("SFTP password", password);
    use std::io::Write;
    let mut child = Command::new(crate::bin("mft-gateway"))
        .args(["sftp", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Starts backend and gateway; `users` is the `[[sftp.users]]` TOML, where
/// `{KEY}` becomes the client's public key line. `sftp_extra` adds keys to `[sftp]`.
pub async fn start(dir: &Path, users: &str, sftp_extra: &str) -> SftpEnv {
    start_with(dir, users, sftp_extra, |_| Vec::new()).await
}

/// Like [`start`]; before the gateway starts, `prepare(config)` may make
/// keys with the written config and returns `(placeholder, value)` pairs
/// replaced in it (e.g. a key id in `api_key_ids`).
pub async fn start_with(
    dir: &Path,
    users: &str,
    sftp_extra: &str,
    prepare: impl FnOnce(&Path) -> Vec<(String, String)>,
) -> SftpEnv {
    let certs = make_certs(dir);
    let backend = start_backend(dir).await;
    let key = dir.join("id_ed25519");
    let public = keygen(&key);
    let tables = format!(
        "[organization]\nname = \"ourcorp\"\nemail_domains = [\"ourcorp.example\"]\n\n[sftp]\nlisten = \"{sftp}\"\n{sftp_extra}\n\n{}",
        users.replace("{KEY}", &public),
        sftp = ephemeral(),
    );
    let (addr, admin) = (ephemeral(), ephemeral());
    let config = dir.join("gateway.toml");
    let signing = format!(
        "signing_key = \"file:{}\"",
        crate::default_signing_key(dir).display()
    );
    std::fs::write(
        &config,
        crate::gateway_config(&certs, addr, admin, &backend.url, &signing, &tables),
    )
    .unwrap();
    let (_, api_key) = create_key(&config, "e2e", crate::ALL_SCOPES);
    let replacements = prepare(&config);
    if !replacements.is_empty() {
        let mut text = std::fs::read_to_string(&config).unwrap();
        for (from, to) in replacements {
            text = text.replace(&from, &to);
        }
        std::fs::write(&config, text).unwrap();
    }
    let gateway = launch_gateway(dir, &certs, config, addr, admin, api_key).await;
    // Bound before the file was written: it accepts from now on.
    let sftp = gateway.listeners.get("sftp");
    SftpEnv {
        dir: dir.to_path_buf(),
        certs,
        backend,
        gateway,
        sftp,
        key,
    }
}

impl SftpEnv {
    /// `sftp` arguments shared by every call (no host key prompts, no agent).
    fn base_args(&self, user: &str) -> Vec<String> {
        vec![
            "-P".into(),
            self.sftp.port().to_string(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
            "-o".into(),
            "IdentityAgent=none".into(),
            "-o".into(),
            "ConnectTimeout=20".into(),
            format!("{user}@127.0.0.1"),
        ]
    }

    /// Runs `sftp -b -` with `batch` as `user`, logging in with `key`.
    pub fn batch_with_key(&self, user: &str, key: &Path, batch: &str) -> Output {
        let mut cmd = Command::new("sftp");
        cmd.args(["-b", "-", "-i"])
            .arg(key)
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "PasswordAuthentication=no",
            ])
            .args(self.base_args(user))
            .current_dir(&self.dir);
        run_with_stdin(cmd, batch)
    }

    /// Runs `sftp -b -` as `user` with the environment's key.
    pub fn batch(&self, user: &str, batch: &str) -> Output {
        self.batch_with_key(user, &self.key, batch)
    }

    /// Runs `sftp -b -` as `user`, logging in with `password` (given by an
    /// SSH_ASKPASS script, OpenSSH's way to script a password).
    pub fn batch_with_password(&self, user: &str, password: &str, batch: &str) -> Output {
        let askpass = self.dir.join(format!("askpass-{user}.sh"));
        std::fs::write(
            &askpass,
            format!("#!/bin/sh\nprintf '%s\\n' '{password}'\n"),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let mut cmd = Command::new("setsid");
        // `-b` turns BatchMode on (no password prompts) unless an earlier
        // option already set it: the first value wins in ssh.
        cmd.args(["-w", "sftp", "-o", "BatchMode=no", "-b", "-"])
            .args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "NumberOfPasswordPrompts=1",
            ])
            .args(self.base_args(user))
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .current_dir(&self.dir);
        run_with_stdin(cmd, batch)
    }

    /// The files the backend holds, through the gateway's HTTPS API.
    pub async fn files(&self) -> Vec<serde_json::Value> {
        let client = self.gateway.client(&self.certs, Proto::Http1);
        let v: serde_json::Value = client
            .get(format!("{}/api/v1/files", self.gateway.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["files"].as_array().cloned().unwrap_or_default()
    }

    /// The stored file called `name` in `folder`, if any.
    pub async fn file(&self, folder: &str, name: &str) -> Option<serde_json::Value> {
        self.files()
            .await
            .into_iter()
            .rev()
            .find(|f| f["folder"] == folder && f["name"] == name)
    }
}

/// The stdout of a successful `sftp` run; panics with its output otherwise.
pub fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "sftp failed: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sftp client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Writes `size` pseudo-random bytes to `path`; returns their SHA-256 hex.
pub fn random_file(path: &Path, size: u64, seed: u64) -> String {
    use sha2::Digest;
    use std::io::Write;
    let content = crate::Content::new(size, seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut h = sha2::Sha256::new();
    for i in 0..content.chunks() {
        let c = content.chunk(i);
        h.update(&c);
        f.write_all(&c).unwrap();
    }
    f.flush().unwrap();
    hex::encode(h.finalize())
}

/// SHA-256 hex of a local file.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}
