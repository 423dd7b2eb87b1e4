//! The trust network's connection setup, driven exactly as two admins would:
//! two organisations (gateway + backend + own CA each) on one machine,
//! connected with `mft-gateway partners ...`.

pub(crate) use mft_e2e::trust::{
    org, org_with, two_orgs, two_orgs_with, two_orgs_with_tables, Org, ADMIN_TOKEN,
};
use mft_e2e::*;
use std::process::Command;

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
