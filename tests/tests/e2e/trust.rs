//! The trust network's connection setup, driven exactly as two admins would:
//! two organisations (gateway + backend + own CA each) on one machine,
//! connected with `mft-gateway partners ...`.

use mft_e2e::*;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) const ADMIN_TOKEN: &str = "an admin token for the trust tests 0123456789";

pub(crate) struct Org {
    pub(crate) path: PathBuf,
    pub(crate) certs: Certs,
    pub(crate) gateway: Gateway,
    pub(crate) _backend: Backend,
    /// Last: fields drop in order, and the processes above keep their
    /// output in this directory until they are dropped (tests/src/run.rs).
    pub(crate) _dir: tempfile::TempDir,
}

impl Org {
    pub(crate) fn partners(&self, args: &[&str]) -> (i32, String, String) {
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
    pub(crate) async fn partners_live(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.partners(args);
        let checks =
            |page: &str| mft_e2e::metric(page, "mft_trust_partner_checks_total").unwrap_or(0.0);
        let start = checks(&mft_e2e::metrics(self.gateway.admin).await);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while checks(&mft_e2e::metrics(self.gateway.admin).await) < start + 2.0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the gateway's partner cache did not check the store within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        out
    }

    /// `partners add --json`; returns the key for the partner.
    pub(crate) fn add(&self, name: &str, other: &Org, domain: &str) -> String {
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

    pub(crate) fn set_key(&self, name: &str, key: &str) -> (i32, String, String) {
        let file = self.path.join(format!("{name}.key"));
        std::fs::write(&file, format!("{key}\n")).unwrap();
        self.partners(&["set-key", name, "--key-file", file.to_str().unwrap()])
    }
}

/// An organisation; `other_ca` is the CA the partner's certificate chains to.
pub(crate) async fn org(name: &str, domain: &str, other_ca: &Path, trust_extra: &str) -> Org {
    org_with(name, domain, other_ca, trust_extra, "").await
}

/// [`org`] with more config tables (e.g. `[auth]` with a PostgreSQL store).
pub(crate) async fn org_with(
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
    std::fs::write(path.join("trust.key"), "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::write(path.join("admin.token"), ADMIN_TOKEN).unwrap();
    record_secret("trust encryption key", "0123456789abcdef0123456789abcdef");
    record_secret("admin token", ADMIN_TOKEN);
    let tables = format!(
        "[organization]\nname = \"{name}\"\nemail_domains = [\"{domain}\"]\n\n\
         [trust]\nencryption_key = \"file:{}\"\nca_file = \"{}\"\n\
         relay_poll_interval = \"500ms\"\nrelay_retry_base = \"300ms\"\nrelay_retry_max = \"2s\"\n{}\n\n\
         [admin]\ntoken = \"file:{}\"\n\n{tables}\n",
        path.join("trust.key").display(),
        other_ca.display(),
        trust_extra,
        path.join("admin.token").display()
    );
    let gateway = start_gateway_with(&path, &certs, &backend.url, "", &tables).await;
    Org {
        _dir: dir,
        path,
        certs,
        gateway,
        _backend: backend,
    }
}

/// Two organisations whose gateways trust each other's CA.
pub(crate) async fn two_orgs() -> (Org, Org) {
    two_orgs_with("").await
}

/// [`two_orgs`] with `trust_extra` lines in both `[trust]` tables.
pub(crate) async fn two_orgs_with(trust_extra: &str) -> (Org, Org) {
    two_orgs_with_tables(trust_extra, "").await
}

/// [`two_orgs_with`] with more config tables in both gateways.
pub(crate) async fn two_orgs_with_tables(trust_extra: &str, tables: &str) -> (Org, Org) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_connect_two_organisations_and_test_says_connected() {
    let (a, b) = two_orgs().await;

    let key_for_b = a.add("beta", &b, "beta.example");
    let key_for_a = b.add("acme", &a, "acme.example");

    // Nothing works before the keys are exchanged.
    let (code, out, _) = a.partners(&["test", "beta"]);
    assert_eq!(code, 1);
    assert!(out.contains("not connected: their key is not set"), "{out}");

    // A stores B's key; B has not stored A's yet: B refuses to talk.
    let (code, out, err) = a.set_key("beta", &key_for_a);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = a.partners(&["test", "beta"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("has not completed the connection"), "{out}");

    let (code, out, err) = b.set_key("acme", &key_for_b);
    assert_eq!(code, 0, "{out}{err}");
    for (org, name, partner) in [(&a, "beta", "beta"), (&b, "acme", "acme")] {
        let (code, out, err) = org.partners(&["test", name]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.starts_with(&format!("connected: {partner}")), "{out}");
    }

    // `check` tests every connection, one line each.
    let out = Command::new(bin("mft-gateway"))
        .args(["check", "--config"])
        .arg(&a.gateway.config)
        .current_dir(&a.path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok    partner beta: connected to beta"),
        "{stdout}"
    );

    // The list shows the connection, never a key.
    let (code, out, _) = a.partners(&["list", "--json"]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(list[0]["name"], "beta");
    assert_eq!(list[0]["status"], "configured");
    assert_eq!(list[0]["email_domains"][0], "beta.example");
    assert!(!out.contains(&key_for_b) && !out.contains(&key_for_a));
    let store = std::fs::read(a.path.join("gateway-data/keys.sqlite")).unwrap();
    assert!(
        !store.windows(20).any(|w| w == &key_for_a.as_bytes()[..20]),
        "their key is stored encrypted"
    );

    // Removing the connection on B (the CLI, another process) refuses A
    // once B's partner cache has checked the store (about a second).
    let (code, _, _) = b.partners_live(&["remove", "acme"]).await;
    assert_eq!(code, 0);
    let (code, out, _) = a.partners(&["test", "beta"]);
    assert_eq!(code, 1);
    assert!(out.contains("refused by the partner (401)"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_and_replays_are_refused() {
    use mft_filters::auth::partner_key;
    use mft_filters::signing::RequestView;
    use mft_gateway::trust::wire;

    let (a, b) = two_orgs().await;
    let key_for_b = a.add("beta", &b, "beta.example");
    let key_for_a = b.add("acme", &a, "acme.example");
    assert_eq!(b.set_key("acme", &key_for_b).0, 0);

    // A key of the right shape that B never issued.
    let (code, out, err) = a.set_key(
        "beta",
        "mgp_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = a.partners(&["test", "beta"]);
    assert_eq!(code, 1);
    assert!(out.contains("refused by the partner (401)"), "{out}");

    // A's own key for B is not a key B accepts from A.
    assert_eq!(a.set_key("beta", &key_for_b).0, 0);
    let (code, out, _) = a.partners(&["test", "beta"]);
    assert_eq!(code, 1);
    assert!(out.contains("refused by the partner (401)"), "{out}");

    // A service-account key is not a partner key, on either side.
    let (code, _, err) = a.set_key("beta", &a.gateway.key);
    assert_ne!(code, 0);
    assert!(err.contains("not a partner key"), "{err}");
    let client = client(&b.certs, Proto::Http1);
    let url = format!("{}{}", b.gateway.base, wire::PING_PATH);
    let r = client
        .get(&url)
        .bearer_auth(&b.gateway.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // The right key without a signature, then a signed request sent twice.
    let r = client
        .get(&url)
        .bearer_auth(&key_for_a)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let parsed = partner_key::parse(&key_for_a).unwrap();
    let authority = b.gateway.addr.to_string();
    let view = RequestView {
        method: "GET",
        authority: &authority,
        path: wire::PING_PATH,
        query: None,
        fields: &[("x-request-id", "replay-1")],
    };
    let signed = wire::sign_request(&partner_key::signing_key(&parsed), parsed.id, &view).unwrap();
    let send = || {
        client
            .get(&url)
            .bearer_auth(&key_for_a)
            .header("x-request-id", "replay-1")
            .header("signature-input", &signed.signature_input)
            .header("signature", &signed.signature)
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().contains_key("signature"));
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["organization"], "beta");
    assert_eq!(body["connection"], "acme");
    let replayed = send().await.unwrap();
    assert_eq!(replayed.status(), 401, "a replayed request is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_manages_connections_like_the_cli() {
    let (a, b) = two_orgs().await;
    let admin = reqwest::Client::new();
    let base = format!("http://{}/admin/v1/partners", a.gateway.admin);

    let r = admin.get(&base).send().await.unwrap();
    assert_eq!(r.status(), 401, "the admin token is required");

    let r = admin
        .post(&base)
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({
            "name": "beta",
            "url": format!("https://{}", b.gateway.addr),
            "email_domains": ["acme.example"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "our own domain is not the partner's");

    let r = admin
        .post(&base)
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({
            "name": "beta",
            "url": format!("https://{}", b.gateway.addr),
            "email_domains": ["Beta.Example"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    assert_eq!(created["status"], "pending");
    assert_eq!(created["email_domains"][0], "beta.example");
    let key_for_b = created["key"].as_str().unwrap().to_string();

    // B's admin uses the CLI.
    let key_for_a = b.add("acme", &a, "acme.example");
    assert_eq!(b.set_key("acme", &key_for_b).0, 0);

    let r = admin
        .put(format!("{base}/beta/key"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"key": "not a key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = admin
        .put(format!("{base}/beta/key"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"key": key_for_a}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = admin
        .post(format!("{base}/beta/test"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: serde_json::Value = r.json().await.unwrap();
    assert_eq!(t["connected"], true, "{t}");
    assert_eq!(t["organization"], "beta");

    let r = admin
        .get(&base)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("\"configured\""), "{text}");
    assert!(!text.contains(&key_for_a) && !text.contains(&key_for_b));

    let r = admin
        .delete(format!("{base}/beta"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // B can no longer reach A with the key A issued.
    let (code, out, _) = b.partners(&["test", "acme"]);
    assert_eq!(code, 1);
    assert!(out.contains("refused by the partner (401)"), "{out}");
}
