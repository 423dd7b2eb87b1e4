//! Helpers for the DMZ-mode tests: a "lan" network namespace whose
//! firewall drops every connection initiated from outside (made with
//! `ip netns`, a veth pair and nftables; needs root), connectors enrolled
//! with the real CLI, and the real `mft-gateway connector` process.

use crate::{bin, Proc};
use sha2::{Digest, Sha256};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The port the backend listens on inside a [`Lan`] namespace.
pub const LAN_BACKEND_PORT: u16 = 8080;

/// A network namespace joined to the test's own by a veth pair: the test's
/// side is [`Lan::outside`], the namespace's [`Lan::inside`]. Its nftables
/// input policy is drop, except for replies to connections it initiated:
/// what runs inside can dial out, nothing outside can dial in.
pub struct Lan {
    /// Namespace name.
    pub name: String,
    /// Our end of the veth pair (the "DMZ" side).
    pub outside: Ipv4Addr,
    /// The namespace's end (the "LAN" side).
    pub inside: Ipv4Addr,
    veth: String,
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} {args:?}: {e} (scripts/setup --test installs iproute2 and nftables)")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed (the DMZ tests need root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const FIREWALL: &str = "table inet lan {
  chain input {
    type filter hook input priority 0; policy drop;
    iif lo accept
    ct state established,related accept
  }
}
";

impl Lan {
    /// Creates a fresh namespace, its veth pair and its firewall.
    pub fn new() -> Lan {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("mftlan{pid}-{n}");
        let veth = format!("mv{}x{n}", pid % 10_000_000);
        let peer = format!("mv{}y{n}", pid % 10_000_000);
        // A /30 per namespace, spread by pid so parallel runs do not collide.
        let b = 16 + (pid % 200) as u8;
        let c = (n % 64) as u8 * 4;
        let outside = Ipv4Addr::new(10, b, c, 1);
        let inside = Ipv4Addr::new(10, b, c, 2);
        run("ip", &["netns", "add", &name]);
        let lan = Lan {
            name: name.clone(),
            outside,
            inside,
            veth: veth.clone(),
        };
        run(
            "ip",
            &["link", "add", &veth, "type", "veth", "peer", "name", &peer],
        );
        run("ip", &["link", "set", &peer, "netns", &name]);
        run(
            "ip",
            &["addr", "add", &format!("{outside}/30"), "dev", &veth],
        );
        run("ip", &["link", "set", &veth, "up"]);
        lan.exec_ok(&["ip", "addr", "add", &format!("{inside}/30"), "dev", &peer]);
        lan.exec_ok(&["ip", "link", "set", &peer, "up"]);
        lan.exec_ok(&["ip", "link", "set", "lo", "up"]);
        let rules = std::env::temp_dir().join(format!("{name}.nft"));
        std::fs::write(&rules, FIREWALL).unwrap();
        lan.exec_ok(&["nft", "-f", rules.to_str().unwrap()]);
        let _ = std::fs::remove_file(rules);
        lan
    }

    fn exec_ok(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// Whether `args` succeeds inside the namespace.
    pub fn exec_status(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Runs `program args` inside the namespace as a [`Proc`].
    pub fn spawn(&self, name: &str, program: &Path, args: &[&str], dir: &Path) -> Proc {
        let program = program.to_string_lossy().into_owned();
        let mut all = vec!["netns", "exec", &self.name, program.as_str()];
        all.extend_from_slice(args);
        Proc::spawn(name, Path::new("ip"), &all, dir)
    }

    /// From now on every packet leaving the namespace is dropped: no FIN,
    /// no RST, the path just goes silent (a dead link or a firewall reset).
    pub fn go_silent(&self) {
        self.exec_ok(&[
            "nft",
            "add chain inet lan output { type filter hook output priority 0; policy drop; }",
        ]);
    }

    /// Undoes [`Lan::go_silent`]: packets leave the namespace again.
    pub fn speak_again(&self) {
        self.exec_ok(&["nft", "delete chain inet lan output"]);
    }

    /// The backend's address as seen from outside (unreachable by design).
    pub fn backend_addr(&self) -> SocketAddr {
        SocketAddr::from((self.inside, LAN_BACKEND_PORT))
    }

    /// Starts `mft-backend` inside on all addresses, port
    /// [`LAN_BACKEND_PORT`], verifying the default test signing key; waits
    /// until it answers from inside.
    pub fn start_backend(&self, dir: &Path) -> Proc {
        let key = format!("file:{}", crate::default_signing_key(dir).display());
        let data = dir.join("backend-data");
        let listen = format!("0.0.0.0:{LAN_BACKEND_PORT}");
        let mut proc = self.spawn(
            "backend",
            &bin("mft-backend"),
            &[
                "--listen",
                &listen,
                "--data-dir",
                data.to_str().unwrap(),
                "--signing-key",
                &key,
            ],
            dir,
        );
        let url = format!("http://127.0.0.1:{LAN_BACKEND_PORT}/healthz");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.exec_status(&["curl", "-sf", "-o", "/dev/null", &url]) {
            proc.assert_running();
            assert!(
                Instant::now() < deadline,
                "backend in {} not ready",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        proc
    }
}

impl Default for Lan {
    fn default() -> Self {
        Lan::new()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both.
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Lower-case hex SHA-256 of the first certificate in a PEM file.
pub fn cert_pin(pem_file: &Path) -> String {
    use base64::Engine;
    let text = std::fs::read_to_string(pem_file).unwrap();
    let b64: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    hex::encode(Sha256::digest(der))
}

/// `mft-gateway connectors add NAME --json`; returns the key.
pub fn add_connector(config: &Path, name: &str) -> String {
    let out = Command::new(bin("mft-gateway"))
        .args(["connectors", "add", name, "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "connectors add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["key"].as_str().unwrap().to_string()
}

/// `mft-gateway connectors list --json`.
pub fn list_connectors(config: &Path) -> serde_json::Value {
    let out = Command::new(bin("mft-gateway"))
        .args(["connectors", "list", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(out.status.success(), "connectors list: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `mft-gateway connectors remove NAME`; whether it succeeded.
pub fn remove_connector(config: &Path, name: &str) -> bool {
    Command::new(bin("mft-gateway"))
        .args(["connectors", "remove", name, "--config"])
        .arg(config)
        .output()
        .unwrap()
        .status
        .success()
}

/// Writes `dir/NAME.toml` for a connector of `gateway` (`https://IP:PORT`)
/// whose key is in `dir/NAME.key`; `trust` is the `ca_file = ...` or
/// `gateway_pin_sha256 = ...` line.
pub fn connector_config(
    dir: &Path,
    name: &str,
    key: &str,
    gateway: &str,
    trust: &str,
    backend: &str,
    connections: u32,
) -> std::path::PathBuf {
    let key_file = dir.join(format!("{name}.key"));
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[connector]\ngateway = \"{gateway}\"\n{trust}\nkey = \"file:{}\"\nbackend = \"{backend}\"\n\
             connections = {connections}\nreconnect_base = \"100ms\"\nreconnect_max = \"1s\"\n\n\
             [logging]\nformat = \"json\"\n",
            key_file.display()
        ),
    )
    .unwrap();
    config
}

/// Polls `/metrics` until connector `name` has `want` connections.
pub async fn wait_connections(admin: SocketAddr, name: &str, want: f64, limit: Duration) {
    let series = format!("mft_connector_connections{{name=\"{name}\"}}");
    let deadline = Instant::now() + limit;
    loop {
        let page = crate::metrics(admin).await;
        let n = crate::metric(&page, &series).unwrap_or(0.0);
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {n}, want {want} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `[connector]` table and the `[backend]` line of a DMZ-mode gateway.
pub fn gateway_tables(listen: SocketAddr) -> String {
    format!("[connector]\nlisten = \"{listen}\"\nping_interval = \"2s\"\n")
}

/// [`gateway_tables`] with `[connector] link = LINK` (`"h2"` or `"http1"`).
pub fn gateway_tables_with_link(listen: SocketAddr, link: &str) -> String {
    format!("{}link = \"{link}\"\n", gateway_tables(listen))
}

/// The `[backend]` lines of a DMZ-mode gateway.
pub const VIA_CONNECTOR: &str = "via = \"connector\"";
