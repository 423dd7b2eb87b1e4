//! Configuration and admin-listener hardening from the security review
//! (Low): a short admin token, an OAuth2 token endpoint over plain http to
//! another host, and `/metrics` read by a web page through DNS rebinding.

use mft_e2e::*;
use std::process::Command;

/// `mft-gateway check` with `tables`; exit code and everything it printed.
fn run_with(tables: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    std::fs::write(dir.path().join("admin.token"), "short").unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret").unwrap();
    let text = gateway_config(
        &certs,
        ephemeral(),
        ephemeral(),
        "http://127.0.0.1:1",
        "",
        tables,
    );
    std::fs::write(dir.path().join("gateway.toml"), text).unwrap();
    let out = Command::new(bin("mft-gateway"))
        .args(["check", "--config", "gateway.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_short_admin_token_is_a_startup_error() {
    let (code, stderr) = run_with("[admin]\ntoken = \"file:admin.token\"\n");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("admin.token: shorter than 32 characters"),
        "{stderr}"
    );
}

#[test]
fn an_oauth2_token_url_in_clear_to_another_host_is_refused() {
    let mailbox = |url: &str| {
        format!(
            "[[imap]]\nname = \"m\"\nhost = \"127.0.0.1\"\nusername = \"u\"\n\
             [imap.oauth2]\ntoken_url = \"{url}\"\nclient_id = \"c\"\n\
             client_secret = \"file:secret\"\nrefresh_token = \"file:secret\"\n"
        )
    };
    let (code, stderr) = run_with(&mailbox("http://login.example/token"));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("imap[0].oauth2.token_url") && stderr.contains("in clear"),
        "{stderr}"
    );
    // On this host it is allowed (a local token service): the config loads
    // and `check` goes on to probe the (unreachable) backend and mailbox.
    let (_, out) = run_with(&mailbox("http://127.0.0.1:9/token"));
    assert!(!out.contains("token_url"), "{out}");
    assert!(out.contains("backend"), "{out}");
}

/// Attack: a page in a browser on the gateway host, served from a name the
/// attacker resolves to 127.0.0.1, reads `/metrics` (no token needed) from
/// the admin listener. Now a request whose Host is not an IP literal,
/// `localhost` or an allowed name gets 421 and no data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_answers_only_its_own_host_names() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let gw = start_gateway_with(
        dir.path(),
        &certs,
        &backend.url,
        "",
        "[admin]\nallowed_hosts = [\"gw1.internal\"]\n",
    )
    .await;
    let port = gw.admin.port();
    let client = reqwest::Client::new();
    let get = |host: String| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .header("host", host)
                .send()
                .await
                .unwrap()
        }
    };
    let r = get(format!("attacker.example:{port}")).await;
    assert_eq!(r.status(), 421);
    let body = r.text().await.unwrap();
    assert!(!body.contains("mft_"), "{body}");
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("gw1.internal:{port}"),
    ] {
        let r = get(host.clone()).await;
        assert_eq!(r.status(), 200, "{host}");
        assert!(r.text().await.unwrap().contains("mft_"), "{host}");
    }
}
