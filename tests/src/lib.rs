//! Harness for end-to-end tests: certificates, free ports, the real
//! `mft-gateway` and `mft-backend` binaries as child processes that are
//! killed when dropped, readiness by polling, and HTTP clients that trust
//! the test CA.
//!
//! The binaries come from the same target directory as the test executable;
//! `scripts/test` builds them first.

pub mod dmz;
pub mod dovecot;
pub mod outbox;
pub mod run;
pub mod sftp;
pub mod smtp;
pub mod trust;

pub use run::record_secret;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use sha2::{Digest, Sha256};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary next to the running test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-xxxx -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (scripts/test does: cargo build --bins)",
        path.display()
    );
    path
}

/// The Python of the venv `scripts/setup --test` makes (paramiko,
/// http-message-signatures); `MFT_TEST_PYTHON` overrides it.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("MFT_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let target = bin("mft-backend")
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    target.join("pyenv/bin/python")
}

/// `mft-gateway keys revoke ID` against `config`; panics if it fails.
pub fn revoke_key(config: &Path, id: &str) {
    let out = Command::new(bin("mft-gateway"))
        .args(["keys", "revoke", id, "--config"])
        .arg(config)
        .output()
        .expect("mft-gateway keys revoke");
    assert!(out.status.success(), "keys revoke: {out:?}");
}

/// The secret part of an API key, cut where the key format puts it (the
/// secret's alphabet includes `_`, so splitting on `_` would cut it short).
pub fn key_secret(key: &str) -> &str {
    use mft_filters::auth::api_key::{parse, ID_LEN, PREFIX};
    parse(key).expect("a well-formed API key");
    &key[PREFIX.len() + ID_LEN + 1..]
}

/// `127.0.0.1:0`: our binaries bind it, the kernel picks a free port, and
/// the process reports it in `data_dir/listeners.json` ([`Listeners`]).
/// No race with another test for a port, unlike [`free_addr`].
pub fn ephemeral() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The addresses a process recorded in `data_dir/listeners.json`
/// (docs/operations.md, "Where the gateway listens"), read here as any
/// script would read them.
#[derive(Debug, Clone)]
pub struct Listeners {
    /// The process that wrote the file.
    pub pid: u32,
    /// Listener name (`https`, `admin`, `smtp`, `smtps`, `sftp`,
    /// `connector`, `acme-http`; `http` for the backend) to its address.
    pub addrs: std::collections::BTreeMap<String, SocketAddr>,
}

impl Listeners {
    /// The file in `data_dir`, if there is a complete one.
    pub fn read(data_dir: &Path) -> Option<Listeners> {
        let text = std::fs::read_to_string(data_dir.join("listeners.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let pid = u32::try_from(v["pid"].as_u64()?).ok()?;
        let addrs = v["listeners"]
            .as_object()?
            .iter()
            .map(|(name, addr)| Some((name.clone(), addr.as_str()?.parse().ok()?)))
            .collect::<Option<_>>()?;
        Some(Listeners { pid, addrs })
    }

    /// Waits until the process `proc` wrote its file in `data_dir` (a file
    /// of an earlier process there does not count), at most 30 s.
    pub async fn wait(proc: &mut Proc, data_dir: &Path) -> Listeners {
        let pid = proc.child.id();
        Listeners::wait_for(data_dir, |l| l.pid == pid, || proc.assert_running()).await
    }

    /// Waits until the file in `data_dir` satisfies `done`, calling
    /// `alive` between looks (it panics when the writer died), at most 30 s.
    pub async fn wait_for(
        data_dir: &Path,
        done: impl Fn(&Listeners) -> bool,
        mut alive: impl FnMut(),
    ) -> Listeners {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            alive();
            if let Some(l) = Listeners::read(data_dir).filter(&done) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "{} not written after 30 s (last: {:?})",
                data_dir.join("listeners.json").display(),
                Listeners::read(data_dir)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address of listener `name`, reached through loopback when it is
    /// bound to a wildcard address.
    pub fn get(&self, name: &str) -> SocketAddr {
        let addr = *self
            .addrs
            .get(name)
            .unwrap_or_else(|| panic!("no listener {name} in {:?}", self.addrs));
        if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        }
    }
}

/// A loopback port where nothing listens, for as long as this lives: a
/// socket bound to it but not listening holds it, so connections are
/// refused and no other test (in any process) can start a server there,
/// unlike a port [`free_addr`] found free a moment ago.
pub struct Refused {
    _held: socket2::Socket,
    /// The address.
    pub addr: SocketAddr,
}

/// A [`Refused`] loopback port.
pub fn refused() -> Refused {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind 127.0.0.1:0");
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("an IPv4 address");
    Refused {
        _held: socket,
        addr,
    }
}

/// A loopback address that was free a moment ago, never one this process
/// handed out before: the kernel may give a just-released port again, and
/// two listeners of one test (Dovecot's IMAP and POP3) must not collide.
/// Only for servers that cannot report the port they bound (Redis, Dovecot,
/// Pebble, test peers): another test process may take it in between; our
/// binaries bind [`ephemeral`] instead.
pub fn free_addr() -> SocketAddr {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = l.local_addr().expect("local addr");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return addr;
        }
    }
}

/// Test PKI: a CA and a certificate for localhost / 127.0.0.1 signed by it.
pub struct Certs {
    /// CA certificate (PEM) to trust in clients.
    pub ca_pem: String,
    /// CA file.
    pub ca: PathBuf,
    /// Server chain file.
    pub cert: PathBuf,
    /// Server key file.
    pub key: PathBuf,
}

/// Writes a fresh CA and server certificate into `dir`.
pub fn make_certs(dir: &Path) -> Certs {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mft test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let certs = Certs {
        ca_pem: ca_cert.pem(),
        ca: dir.join("ca.pem"),
        cert: dir.join("gateway.pem"),
        key: dir.join("gateway.key"),
    };
    std::fs::write(&certs.ca, &certs.ca_pem).unwrap();
    std::fs::write(&certs.cert, cert.pem()).unwrap();
    std::fs::write(&certs.key, key.serialize_pem()).unwrap();
    certs
}

/// A child process that is killed when dropped; its output goes to files.
/// With `MFT_E2E_RUN_DIR` set, what it wrote (its output, and a gateway's
/// data_dir) is kept there for the suite-wide secrets scan ([`run`]).
pub struct Proc {
    /// The child.
    pub child: Child,
    name: String,
    stdout: PathBuf,
    stderr: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    cwd: PathBuf,
}

impl Proc {
    /// Starts `program` with `args`, output captured under `dir`.
    pub fn spawn(name: &str, program: &Path, args: &[&str], dir: &Path) -> Proc {
        Proc::spawn_with_env(name, program, args, dir, &[])
    }

    /// [`Proc::spawn`] with more environment variables (`RUST_LOG` is
    /// `info` unless `env` sets it).
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[&str],
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Proc {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc {
            child,
            name: name.to_string(),
            stdout,
            stderr,
            program: program.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            cwd: dir.to_path_buf(),
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Panics with the process's output if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early with {status}\n--- stdout\n{}\n--- stderr\n{}",
                self.name,
                self.stdout(),
                self.stderr()
            );
        }
    }

    /// Sends a signal by name (TERM, INT, KILL) with the system's `kill`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for exit up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        run::keep_outputs(
            &self.name,
            &self.program,
            &self.args,
            &self.cwd,
            &[&self.stdout, &self.stderr],
        );
    }
}

/// Polls `url` until it answers 200, the process dies, or 30 s pass.
pub async fn wait_ready(proc: &mut Proc, client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        proc.assert_running();
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready after 30 s\n{}",
            proc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running reference backend.
pub struct Backend {
    /// The process.
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Its address (from its `listeners.json`).
    pub addr: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
}

/// The HMAC key the default test backend verifies and the default test
/// gateway signs with: `dir/backend-signing.key`, created on first use.
pub fn default_signing_key(dir: &Path) -> PathBuf {
    let path = dir.join("backend-signing.key");
    if !path.exists() {
        let secret = mft_filters::signing::keys::generate_hmac_secret().unwrap();
        record_secret("backend signing key", &secret);
        std::fs::write(&path, format!("{secret}\n")).unwrap();
    }
    path
}

/// Starts `mft-backend` with data under `dir/backend-data`, verifying
/// signatures with [`default_signing_key`].
pub async fn start_backend(dir: &Path) -> Backend {
    start_backend_at(dir, ephemeral()).await
}

/// Starts `mft-backend` on `addr` ([`ephemeral`], or the address of one
/// that ran before, to restart it where it was).
pub async fn start_backend_at(dir: &Path, addr: SocketAddr) -> Backend {
    let key = format!("file:{}", default_signing_key(dir).display());
    start_backend_with(dir, addr, &["--signing-key", &key]).await
}

/// Starts `mft-backend` on `addr` with `extra` flags (signature keys of the
/// test's choosing; none for an unsigned backend); its address is what it
/// reports in `listeners.json`.
pub async fn start_backend_with(dir: &Path, addr: SocketAddr, extra: &[&str]) -> Backend {
    let data_dir = dir.join("backend-data");
    let addr_s = addr.to_string();
    let mut args = vec![
        "--listen",
        &addr_s,
        "--data-dir",
        data_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn("backend", &bin("mft-backend"), &args, dir);
    let addr = Listeners::wait(&mut proc, &data_dir).await.get("http");
    let url = format!("http://{addr}");
    wait_ready(
        &mut proc,
        &reqwest::Client::new(),
        &format!("{url}/healthz"),
    )
    .await;
    Backend {
        proc,
        url,
        addr,
        data_dir,
    }
}

/// Every scope of the default route policy.
pub const ALL_SCOPES: &str =
    "files:read,files:write,deliveries:read,deliveries:write,transfers:read,transfers:write";

/// A running gateway.
pub struct Gateway {
    /// The process.
    pub proc: Proc,
    /// An API key with [`ALL_SCOPES`], created with `mft-gateway keys create`.
    pub key: String,
    /// `https://127.0.0.1:PORT`
    pub base: String,
    /// Public address.
    pub addr: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// The config file.
    pub config: PathBuf,
    /// Every listener's address, as the process reported them.
    pub listeners: Listeners,
}

/// The HTTP engine test gateways run on: `MFT_TEST_HTTP_ENGINE` (`pingora`
/// or `hyper`), so the whole suite can run on either; unset: the default.
pub fn test_engine() -> Option<String> {
    std::env::var("MFT_TEST_HTTP_ENGINE")
        .ok()
        .filter(|e| !e.is_empty())
}

thread_local! {
    static ENGINE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs the gateways this test (thread) starts on `engine`, whatever
/// `MFT_TEST_HTTP_ENGINE` says. Tests are `#[tokio::test]` (current thread).
pub fn use_engine(engine: &str) {
    ENGINE.with(|e| *e.borrow_mut() = Some(engine.to_string()));
}

thread_local! {
    static SERVER_LINES: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Adds `line` to the `[server]` table of the gateways this test starts.
pub fn add_server_line(line: &str) {
    SERVER_LINES.with(|l| {
        let mut l = l.borrow_mut();
        l.push_str(line);
        l.push('\n');
    });
}

fn engine_line() -> String {
    let engine = ENGINE
        .with(|e| e.borrow().clone())
        .or_else(test_engine)
        .map(|e| format!("http_engine = \"{e}\"\n"))
        .unwrap_or_default();
    engine + &SERVER_LINES.with(|l| l.borrow().clone())
}

/// The config a test gateway runs with; `extra` is appended (more tables).
pub fn gateway_config(
    certs: &Certs,
    addr: SocketAddr,
    admin: SocketAddr,
    backend_url: &str,
    backend_extra: &str,
    tables: &str,
) -> String {
    let engine = engine_line();
    format!(
        r#"[server]
{engine}https_listen = "{addr}"
admin_listen = "{admin}"
tls_cert = "{cert}"
tls_key = "{key}"
data_dir = "gateway-data"
threads = 2
shutdown_timeout = "20s"

[backend]
url = "{backend_url}"
{backend_extra}

[logging]
format = "json"

{tables}
"#,
        cert = certs.cert.display(),
        key = certs.key.display(),
    )
}

/// The sealing key every test gateway with stored secrets uses.
pub const TRUST_KEY: &str = "0123456789abcdef0123456789abcdef";

/// Writes `path/trust.key` ([`TRUST_KEY`]) and `path/admin.token`
/// (`admin_token`); returns the `[trust]` table sealing stored secrets with
/// that key (`trust_lines` appended to it) and the `[admin]` table taking
/// that token.
pub fn sealed_admin_tables(path: &Path, admin_token: &str, trust_lines: &str) -> String {
    std::fs::write(path.join("trust.key"), format!("{TRUST_KEY}\n")).unwrap();
    std::fs::write(path.join("admin.token"), admin_token).unwrap();
    format!(
        "[trust]\nencryption_key = \"file:{}\"\n{trust_lines}\n\n[admin]\ntoken = \"file:{}\"\n",
        path.join("trust.key").display(),
        path.join("admin.token").display()
    )
}

/// Runs `mft-gateway keys create --json` against `config`; returns (id, key).
pub fn create_key(config: &Path, name: &str, scopes: &str) -> (String, String) {
    create_key_with(config, name, scopes, &[])
}

/// Like [`create_key`] with more options, e.g. `["--rate-limit", "1/m burst 2"]`.
pub fn create_key_with(
    config: &Path,
    name: &str,
    scopes: &str,
    extra: &[&str],
) -> (String, String) {
    let out = Command::new(bin("mft-gateway"))
        .args([
            "keys", "create", "--name", name, "--scopes", scopes, "--json", "--config",
        ])
        .arg(config)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keys create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "--json prints one line: {stdout}"
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let key = v["key"].as_str().unwrap().to_string();
    record_secret("API key", &key);
    record_secret("API key secret", key_secret(&key));
    (v["id"].as_str().unwrap().to_string(), key)
}

/// Starts `mft-gateway run` in front of `backend_url`; `backend_extra` adds lines to `[backend]`.
pub async fn start_gateway(
    dir: &Path,
    certs: &Certs,
    backend_url: &str,
    backend_extra: &str,
) -> Gateway {
    start_gateway_with(dir, certs, backend_url, backend_extra, "").await
}

/// Like [`start_gateway`], with extra config tables.
pub async fn start_gateway_with(
    dir: &Path,
    certs: &Certs,
    backend_url: &str,
    backend_extra: &str,
    tables: &str,
) -> Gateway {
    let addr = ephemeral();
    let admin = ephemeral();
    let config = dir.join("gateway.toml");
    // Sign with the default test key unless the test chose its own, so every
    // suite runs through signing like a real deployment.
    let default_key = dir.join("backend-signing.key");
    let backend_extra = if !backend_extra.contains("signing_key") && default_key.exists() {
        format!(
            "{backend_extra}\nsigning_key = \"file:{}\"\n",
            default_key.display()
        )
    } else {
        backend_extra.to_string()
    };
    std::fs::write(
        &config,
        gateway_config(certs, addr, admin, backend_url, &backend_extra, tables),
    )
    .unwrap();
    let (_, key) = create_key(&config, "e2e", ALL_SCOPES);
    launch_gateway(dir, certs, config, addr, admin, key).await
}

/// Runs `mft-gateway run` with an existing `config` and waits until it is
/// ready; `key` is what [`Gateway::client`] sends. `addr` and `admin`:
/// [`ephemeral`] keeps what the config names; a concrete address (of a
/// gateway that ran before, to restart it where partners and clients know
/// it) is written into the config's `https_listen`/`admin_listen` first.
/// The [`Gateway`] holds the addresses the process reports.
pub async fn launch_gateway(
    dir: &Path,
    certs: &Certs,
    config: PathBuf,
    addr: SocketAddr,
    admin: SocketAddr,
    key: String,
) -> Gateway {
    launch_gateway_env(dir, certs, config, addr, admin, key, &[]).await
}

/// [`launch_gateway`] with more environment variables (e.g. `RUST_LOG`).
pub async fn launch_gateway_env(
    dir: &Path,
    certs: &Certs,
    config: PathBuf,
    addr: SocketAddr,
    admin: SocketAddr,
    key: String,
    env: &[(&str, &str)],
) -> Gateway {
    let text = std::fs::read_to_string(&config).expect("read the gateway config");
    let mut pinned = text.clone();
    for (key, named) in [("https_listen", addr), ("admin_listen", admin)] {
        if named.port() != 0 {
            pinned = set_key(&pinned, key, &named.to_string());
        }
    }
    if pinned != text {
        std::fs::write(&config, pinned).expect("write the gateway config");
    }
    let mut proc = Proc::spawn_with_env(
        "gateway",
        &bin("mft-gateway"),
        &["run", "--config", config.to_str().unwrap()],
        dir,
        env,
    );
    let listeners = Listeners::wait(&mut proc, &data_dir_of(&config)).await;
    let (named, named_admin) = (addr, admin);
    let (addr, admin) = (listeners.get("https"), listeners.get("admin"));
    for (name, named, got) in [("https", named, addr), ("admin", named_admin, admin)] {
        assert!(
            named.port() == 0 || named.port() == got.port(),
            "{name}: the config names {named}, the gateway reports {got}"
        );
    }
    let base = format!("https://{addr}");
    wait_ready(
        &mut proc,
        &client(certs, Proto::Http1),
        &format!("{base}/healthz"),
    )
    .await;
    Gateway {
        proc,
        key,
        base,
        addr,
        admin,
        config,
        listeners,
    }
}

/// `text` (a config file) with its one line `key = ...` made `key =
/// "value"`: a listener's line, whatever address it names (port 0 in
/// most tests), without touching `tls_listen` when `key` is `listen`.
pub fn set_key(text: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key} = ");
    let mut found = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with(&prefix) {
                found += 1;
                format!("{key} = \"{value}\"")
            } else {
                line.to_string()
            }
        })
        .collect();
    assert_eq!(found, 1, "want one line {prefix}... in\n{text}");
    lines.join("\n") + "\n"
}

/// `[server] data_dir` of the gateway config file `config`, resolved
/// against the file's folder as the gateway does.
pub fn data_dir_of(config: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config).expect("read the gateway config");
    let table: toml::Table = text.parse().expect("the gateway config is TOML");
    let data_dir = table
        .get("server")
        .and_then(|s| s.get("data_dir"))
        .and_then(|d| d.as_str())
        .unwrap_or("data");
    config.parent().unwrap_or(Path::new(".")).join(data_dir)
}

impl Gateway {
    /// Starts this gateway's config again in `dir` once it stopped: at the
    /// HTTPS and admin addresses it had (partners and clients know them),
    /// with its data_dir and key.
    pub async fn relaunch(&self, dir: &Path, certs: &Certs) -> Gateway {
        launch_gateway(
            dir,
            certs,
            self.config.clone(),
            self.addr,
            self.admin,
            self.key.clone(),
        )
        .await
    }

    /// A client that sends this gateway's all-scopes key as a Bearer token.
    pub fn client(&self, certs: &Certs, proto: Proto) -> reqwest::Client {
        client_with_key(certs, proto, &self.key)
    }
}

/// A client that sends `key` as `Authorization: Bearer`.
pub fn client_with_key(certs: &Certs, proto: Proto, key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
    );
    client_builder(certs, proto)
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Which HTTP version a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 via ALPN.
    Http2,
}

/// A client that trusts the test CA and sends no credential.
pub fn client(certs: &Certs, proto: Proto) -> reqwest::Client {
    client_builder(certs, proto).build().unwrap()
}

fn client_builder(certs: &Certs, proto: Proto) -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).unwrap();
    let b = reqwest::Client::builder()
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(600));
    match proto {
        Proto::Http1 => b.http1_only(),
        Proto::Http2 => b,
    }
}

/// Deterministic pseudo-random content of any size, streamed in 64 KiB chunks
/// without holding the whole body, with its SHA-256 computed on the side.
pub struct Content {
    block: Vec<u8>,
    /// Total size.
    pub size: u64,
}

impl Content {
    /// Content of `size` bytes derived from `seed`.
    pub fn new(size: u64, seed: u64) -> Content {
        let mut x = seed | 1;
        let mut block = Vec::with_capacity(1 << 16);
        while block.len() < 1 << 16 {
            // xorshift64*: fast, and different seeds give different bytes.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            block.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        Content { block, size }
    }

    /// Chunk `i` (64 KiB, the last one shorter); each chunk differs by its index.
    pub fn chunk(&self, i: u64) -> bytes::Bytes {
        let start = i * self.block.len() as u64;
        let len = (self.size - start).min(self.block.len() as u64) as usize;
        let mut c = self.block[..len].to_vec();
        for (b, k) in c.iter_mut().zip(i.to_le_bytes()) {
            *b ^= k;
        }
        bytes::Bytes::from(c)
    }

    /// Number of chunks.
    pub fn chunks(&self) -> u64 {
        self.size.div_ceil(self.block.len() as u64)
    }

    /// Bytes `range` of the content.
    pub fn slice(&self, start: u64, end_inclusive: u64) -> Vec<u8> {
        let bs = self.block.len() as u64;
        (start..=end_inclusive)
            .map(|pos| {
                let i = pos / bs;
                let b = self.block[(pos % bs) as usize];
                let off = (pos % bs) as usize;
                if off < 8 {
                    b ^ i.to_le_bytes()[off]
                } else {
                    b
                }
            })
            .collect()
    }

    /// SHA-256 of the whole content (hex).
    pub fn sha256(&self) -> String {
        let mut h = Sha256::new();
        for i in 0..self.chunks() {
            h.update(self.chunk(i));
        }
        hex::encode(h.finalize())
    }

    /// A streaming request body.
    pub fn body(self: &std::sync::Arc<Self>) -> reqwest::Body {
        let me = self.clone();
        let stream = futures_util::stream::iter(0..me.chunks())
            .map(move |i| Ok::<_, std::io::Error>(me.chunk(i)));
        reqwest::Body::wrap_stream(stream)
    }
}

use futures_util::StreamExt;

/// Streams a response body, returning (bytes, SHA-256 hex) without buffering it.
pub async fn sha256_of(response: reqwest::Response) -> (u64, String) {
    let mut h = Sha256::new();
    let mut n = 0u64;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("body chunk");
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    (n, hex::encode(h.finalize()))
}

/// Resident set size of a process in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Peak resident set size of a process in KiB (`VmHWM` from /proc).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A throwaway `redis-server` on a free loopback port, with no persistence.
pub struct Redis {
    /// The process; dropping it stops the server.
    pub proc: Proc,
    /// `redis://127.0.0.1:PORT/0`
    pub url: String,
    /// Its address.
    pub addr: SocketAddr,
}

/// Where `redis-server` is, or a panic that says how to get it: the
/// cluster-wide rate-limit tests need the real server and must not pass
/// silently without it.
pub fn redis_server_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "redis-server not found in PATH: install it with scripts/setup --test \
                 (Debian package redis-server); the rate-limit tests need a real Redis"
            )
        })
}

/// Starts `redis-server` with its files under `dir/redis` and waits for PONG.
pub fn start_redis(dir: &Path) -> Redis {
    start_redis_at(dir, free_addr())
}

/// Like [`start_redis`] on a given address (to restart one where it was).
pub fn start_redis_at(dir: &Path, addr: SocketAddr) -> Redis {
    let data = dir.join("redis");
    std::fs::create_dir_all(&data).unwrap();
    let port = addr.port().to_string();
    let mut proc = Proc::spawn(
        "redis",
        &redis_server_binary(),
        &[
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            data.to_str().unwrap(),
        ],
        dir,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        proc.assert_running();
        if redis_ping(addr) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "redis-server not answering PING after 10 s\n{}",
            proc.stdout()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Redis {
        proc,
        url: format!("redis://{addr}/0"),
        addr,
    }
}

/// Whether a Redis server at `addr` answers PING.
pub fn redis_ping(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// The admin listener's `/metrics` page.
pub async fn metrics(admin: SocketAddr) -> String {
    let r = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// Polls the admin listener's `/metrics` until `done(page)` holds, at most
/// `limit`; returns that page. Waits on what the gateway reports instead of
/// sleeping for a time that is too long on a fast machine and too short on
/// a loaded one.
pub async fn wait_metrics(
    admin: SocketAddr,
    limit: Duration,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let page = metrics(admin).await;
        if done(&page) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen within {limit:?}\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it holds, at most `limit`; panics naming `what`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the sample `series` (name with labels, as printed) on a
/// `/metrics` page; `None` if absent.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The value of the sample of metric `name` whose labels include every
/// pair of `labels`, whatever order the page prints them in; `None` if
/// absent.
pub fn metric_with(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let prefix = format!("{name}{{");
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(&prefix)?;
        let (set, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|(k, v)| set.split(',').any(|pair| pair == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

/// A raw TLS connection to the gateway speaking HTTP/1.1 (by ALPN), for
/// tests that write bytes by hand (slow headers, cut connections).
pub async fn tls_connect(
    certs: &Certs,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::AsyncWriteExt;
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(certs.ca_pem.as_bytes()).unwrap();
    roots.add(ca).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    // A TLS 1.3 server may close right after the handshake; a zero-byte
    // flush makes such a close visible to the caller's next read.
    tls.flush().await?;
    Ok(tls)
}
