//! The shared set-up of the trust-network tests: two organisations, each
//! with its own gateway, backend and CA on this machine, connected as
//! partners with `mft-gateway partners ...` exactly as two admins would.

use crate::{
    bin, make_certs, metric, metrics, record_secret, sealed_admin_tables, start_backend,
    start_gateway_with, Backend, Certs, Gateway, TRUST_KEY,
};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const ADMIN_TOKEN: &str = "an admin token for the trust tests 0123456789";

pub struct Org {
    pub path: PathBuf,
    pub certs: Certs,
    pub gateway: Gateway,
    pub _backend: Backend,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    pub _dir: tempfile::TempDir,
}

impl Org {
    pub fn partners(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin("mft-gateway"))
            .arg("partners")
            .args(args)
            .arg("--config")
            .arg(&self.gateway.config)
            .current_dir(&self.path)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `partners ARGS`, then waits until this org's running gateway has
    /// the change: it caches the connections and checks the store once a
    /// second, so two checks counted after the command are enough.
    pub async fn partners_live(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.partners(args);
        let checks = |page: &str| metric(page, "mft_trust_partner_checks_total").unwrap_or(0.0);
        let start = checks(&metrics(self.gateway.admin).await);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while checks(&metrics(self.gateway.admin).await) < start + 2.0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the gateway's partner cache did not check the store within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        out
    }

    /// `partners add --json`; returns the key for the partner.
    pub fn add(&self, name: &str, other: &Org, domain: &str) -> String {
        let url = format!("https://{}", other.gateway.addr);
        let (code, out, err) = self.partners(&[
            "add",
            "--name",
            name,
            "--url",
            &url,
            "--email-domain",
            domain,
            "--json",
        ]);
        assert_eq!(code, 0, "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let key = v["key"].as_str().unwrap().to_string();
        assert!(key.starts_with("mgp_"), "{key}");
        record_secret("partner key", &key);
        key
    }

    pub fn set_key(&self, name: &str, key: &str) -> (i32, String, String) {
        let file = self.path.join(format!("{name}.key"));
        std::fs::write(&file, format!("{key}\n")).unwrap();
        self.partners(&["set-key", name, "--key-file", file.to_str().unwrap()])
    }
}

/// An organisation; `other_ca` is the CA the partner's certificate chains to.
pub async fn org(name: &str, domain: &str, other_ca: &Path, trust_extra: &str) -> Org {
    org_with(name, domain, other_ca, trust_extra, "").await
}

/// [`org`] with more config tables (e.g. `[auth]` with a PostgreSQL store).
pub async fn org_with(
    name: &str,
    domain: &str,
    other_ca: &Path,
    trust_extra: &str,
    tables: &str,
) -> Org {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let certs = make_certs(&path);
    let backend = start_backend(&path).await;
    record_secret("trust encryption key", TRUST_KEY);
    record_secret("admin token", ADMIN_TOKEN);
    let sealed = sealed_admin_tables(
        &path,
        ADMIN_TOKEN,
        &format!(
            "ca_file = \"{}\"\n\
             relay_poll_interval = \"500ms\"\nrelay_retry_base = \"300ms\"\nrelay_retry_max = \"2s\"\n{trust_extra}",
            other_ca.display()
        ),
    );
    let tables = format!(
        "[organization]\nname = \"{name}\"\nemail_domains = [\"{domain}\"]\n\n{sealed}\n{tables}\n"
    );
    let gateway = start_gateway_with(&path, &certs, &backend.url, "", &tables).await;
    Org {
        path,
        certs,
        gateway,
        _backend: backend,
        _dir: dir,
    }
}

/// Two organisations whose gateways trust each other's CA.
pub async fn two_orgs() -> (Org, Org) {
    two_orgs_with("").await
}

/// [`two_orgs`] with `trust_extra` lines in both `[trust]` tables.
pub async fn two_orgs_with(trust_extra: &str) -> (Org, Org) {
    two_orgs_with_tables(trust_extra, "").await
}

/// [`two_orgs_with`] with more config tables in both gateways.
pub async fn two_orgs_with_tables(trust_extra: &str, tables: &str) -> (Org, Org) {
    // Each side must trust the other's CA, which exists only once the other
    // side made its certificates: write both CAs into a shared place first.
    let shared = tempfile::tempdir().unwrap();
    let ca_a = shared.path().join("a-ca.pem");
    let ca_b = shared.path().join("b-ca.pem");
    // Placeholders, replaced below before anyone connects.
    std::fs::write(&ca_a, "").unwrap();
    std::fs::write(&ca_b, "").unwrap();
    let a = org_with("acme", "acme.example", &ca_b, trust_extra, tables).await;
    let b = org_with("beta", "beta.example", &ca_a, trust_extra, tables).await;
    std::fs::write(&ca_a, &a.certs.ca_pem).unwrap();
    std::fs::write(&ca_b, &b.certs.ca_pem).unwrap();
    // The CLI reads ca_file at each call; keep the files alive with the orgs.
    std::mem::forget(shared);
    (a, b)
}

/// Connects `a` (acme) and `b` (beta) both ways: each adds the other,
/// sets the key the other made for it, and `partners test` says
/// connected. Returns (the key for beta, the key for acme).
pub fn connect(a: &Org, b: &Org) -> (String, String) {
    let key_for_b = a.add("beta", b, "beta.example");
    let key_for_a = b.add("acme", a, "acme.example");
    assert_eq!(a.set_key("beta", &key_for_a).0, 0);
    assert_eq!(b.set_key("acme", &key_for_b).0, 0);
    let (code, out, err) = a.partners(&["test", "beta"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("connected: beta"), "{out}");
    (key_for_b, key_for_a)
}
