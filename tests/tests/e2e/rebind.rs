//! A changed `server.https_listen` is rebound by a reload
//! (docs/operations.md, "Reload"): the new address is bound first (a taken
//! port fails the reload and changes nothing), then served; the old one
//! refuses new connections while an upload in flight there finishes.

use futures_util::StreamExt;
use mft_e2e::smtp::RawSmtp;
use mft_e2e::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "rebind-test-admin-token-0123456789abcdef";

fn write_config(dir: &Path, certs: &Certs, addr: SocketAddr, admin: SocketAddr, backend: &str) {
    let signing = format!(
        "signing_key = \"file:{}\"",
        default_signing_key(dir).display()
    );
    std::fs::write(
        dir.join("gateway.toml"),
        gateway_config(
            certs,
            addr,
            admin,
            backend,
            &signing,
            "[admin]\ntoken = \"file:admin.token\"\n",
        ),
    )
    .unwrap();
}

fn reload(config: &Path) -> (i32, String) {
    let out = Command::new(bin("mft-gateway"))
        .args(["reload", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn rebind(per_core: bool) {
    use_engine("hyper");
    if per_core {
        add_server_line("runtime = \"per-core\"");
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).unwrap();
    let (old_addr, admin) = (ephemeral(), ephemeral());
    write_config(dir.path(), &certs, old_addr, admin, &backend.url);
    let config = dir.path().join("gateway.toml");
    let (_, key) = create_key(&config, "e2e", ALL_SCOPES);
    let mut gateway =
        launch_gateway(dir.path(), &certs, config.clone(), old_addr, admin, key).await;
    let old_addr = gateway.addr;
    let client = gateway.client(&certs, Proto::Http1);

    // A paced upload on the old address, in flight during the reload.
    let size: u64 = 96 << 20;
    let content = Arc::new(Content::new(size, 33));
    let sent = Arc::new(AtomicUsize::new(0));
    let body = {
        let (content, sent) = (content.clone(), sent.clone());
        reqwest::Body::wrap_stream(
            futures_util::stream::iter(0..content.chunks()).then(move |i| {
                let (content, sent) = (content.clone(), sent.clone());
                async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, std::io::Error>(content.chunk(i))
                }
            }),
        )
    };
    let upload = {
        let (client, url) = (client.clone(), format!("{}/api/v1/files", gateway.base));
        tokio::spawn(async move {
            client
                .post(url)
                .header("X-Filename", "rebind.bin")
                .header("Content-Length", size)
                .body(body)
                .send()
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent.load(Ordering::Relaxed) < 32 {
        assert!(Instant::now() < deadline, "the upload did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A taken port: the reload fails and nothing changes.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    write_config(dir.path(), &certs, taken_addr, admin, &backend.url);
    let (code, stdout) = tokio::task::spawn_blocking({
        let config = config.clone();
        move || reload(&config)
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!("server.https_listen {taken_addr}: cannot listen")),
        "{stdout}"
    );
    let fresh = || client_with_key(&certs, Proto::Http1, &gateway.key);
    let r = fresh()
        .get(format!("https://{old_addr}/healthz"))
        .send()
        .await
        .expect("the old address stopped serving after a failed rebind");
    assert_eq!(r.status(), 200);
    drop(taken);

    // A free port: served at once; the old address refuses new connections.
    // (A named port is the case under test, so it comes from free_addr.)
    let new_addr = free_addr();
    write_config(dir.path(), &certs, new_addr, admin, &backend.url);
    let (code, stdout) = tokio::task::spawn_blocking({
        let config = config.clone();
        move || reload(&config)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stdout}\n{}", gateway.proc.stderr());
    assert!(stdout.contains("server.https_listen"), "{stdout}");
    assert!(!stdout.contains("after a restart"), "{stdout}");
    let data_dir = data_dir_of(&config);
    let record = Listeners::read(&data_dir).expect("listeners.json");
    assert_eq!(record.pid, gateway.proc.child.id());
    assert_eq!(
        record.get("https"),
        new_addr,
        "listeners.json after the move"
    );
    assert_eq!(record.get("admin"), gateway.admin);
    assert!(
        (sent.load(Ordering::Relaxed) as u64) < content.chunks(),
        "the upload finished before the rebind"
    );
    for _ in 0..4 {
        let r = fresh()
            .get(format!("https://{new_addr}/healthz"))
            .send()
            .await
            .expect("the new address does not serve");
        assert_eq!(r.status(), 200);
        assert!(
            fresh()
                .get(format!("https://{old_addr}/healthz"))
                .send()
                .await
                .is_err(),
            "the old address still accepts"
        );
    }

    // The upload in flight on the old address finished there, whole.
    let response = upload.await.unwrap().expect("upload cut by the rebind");
    assert_eq!(response.status(), 201);
    let meta: serde_json::Value = response.json().await.unwrap();
    assert_eq!(meta["sha256"], content.sha256().as_str());
    gateway.proc.assert_running();
    let _ = &backend;
}

#[tokio::test]
async fn a_reload_moves_the_https_listener_and_finishes_uploads_on_the_old_one() {
    rebind(false).await;
}

#[tokio::test]
async fn a_reload_moves_every_per_core_socket() {
    rebind(true).await;
}

async fn reloads(admin: SocketAddr, result: &str) -> f64 {
    metric(
        &metrics(admin).await,
        &format!("mft_config_reloads_total{{result=\"{result}\"}}"),
    )
    .unwrap_or(0.0)
}

/// SIGHUP, then waits until the reload counted `result`.
async fn sighup(gateway: &Gateway, result: &str) {
    let before = reloads(gateway.admin, result).await;
    gateway.proc.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reloads(gateway.admin, result).await < before + 1.0 {
        assert!(Instant::now() < deadline, "no {result} reload counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn greeting(addr: SocketAddr) -> Option<RawSmtp<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut smtp = RawSmtp::new(tcp);
    let hello = smtp.reply().await;
    assert!(hello[0].starts_with("220"), "{hello:?}");
    Some(smtp)
}

#[tokio::test]
async fn a_reload_moves_the_smtp_listeners_and_open_sessions_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let backend = start_backend(dir.path()).await;
    let s = mft_e2e::smtp::start_smtp_gateway(dir.path(), &certs, &backend.url, "").await;
    let mut session = greeting(s.smtp).await.expect("smtp listener");

    // A taken port: nothing changes.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let text = std::fs::read_to_string(&s.gw.config).unwrap();
    std::fs::write(
        &s.gw.config,
        set_key(&text, "listen", &taken_addr.to_string()),
    )
    .unwrap();
    sighup(&s.gw, "failure").await;
    assert!(s
        .gw
        .proc
        .stderr()
        .contains(&format!("smtp.listen {taken_addr}: cannot listen")));
    assert!(greeting(s.smtp).await.is_some(), "the old listener stopped");
    drop(taken);

    // Named ports are the case under test.
    let (smtp, smtps) = (free_addr(), free_addr());
    let moved = set_key(&text, "listen", &smtp.to_string());
    std::fs::write(
        &s.gw.config,
        set_key(&moved, "tls_listen", &smtps.to_string()),
    )
    .unwrap();
    sighup(&s.gw, "success").await;
    let record = Listeners::read(&data_dir_of(&s.gw.config)).expect("listeners.json");
    assert_eq!((record.get("smtp"), record.get("smtps")), (smtp, smtps));
    let log = s.gw.proc.stderr();
    assert!(log.contains("smtp.listen,smtp.tls_listen"), "{log}");
    assert!(!log.contains("take effect only after a restart"), "{log}");
    assert!(
        greeting(smtp).await.is_some(),
        "the new listener does not serve"
    );
    assert!(
        refused_soon(s.smtp).await,
        "the old SMTP address still accepts"
    );
    let tls = tokio::net::TcpStream::connect(smtps).await;
    assert!(tls.is_ok(), "the new SMTPS address does not accept");
    assert!(
        refused_soon(s.smtps).await,
        "the old SMTPS address still accepts"
    );
    // The session opened on the old address before the move goes on.
    session.send("EHLO client.example\r\n").await;
    let ehlo = session.reply().await;
    assert!(ehlo.last().unwrap().starts_with("250"), "{ehlo:?}");
    let _ = &backend;
}

/// True once `addr` refuses connections. A reload reports success when the
/// new listener is bound; the old accept loop lets go of its socket on its
/// next poll, a moment later.
async fn refused_soon(addr: SocketAddr) -> bool {
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// The SSH identification line a server sends first.
async fn ssh_banner(addr: SocketAddr) -> Option<String> {
    use tokio::io::AsyncBufReadExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut line = String::new();
    tokio::io::BufReader::new(tcp)
        .read_line(&mut line)
        .await
        .ok()?;
    Some(line)
}

#[tokio::test]
async fn a_reload_moves_the_sftp_listener() {
    let dir = tempfile::tempdir().unwrap();
    let users = "[[sftp.users]]\nname = \"bob\"\nauthorized_keys = [\"{KEY}\"]\nfolder = \"partners/bob\"\npermissions = [\"upload\", \"list\"]\n";
    let env = mft_e2e::sftp::start(dir.path(), users, "").await;
    let banner = ssh_banner(env.sftp).await.expect("sftp listener");
    assert!(banner.starts_with("SSH-2.0-"), "{banner}");
    let moved = free_addr();
    let text = std::fs::read_to_string(&env.gateway.config).unwrap();
    std::fs::write(
        &env.gateway.config,
        set_key(&text, "listen", &moved.to_string()),
    )
    .unwrap();
    sighup(&env.gateway, "success").await;
    let log = env.gateway.proc.stderr();
    assert!(log.contains("sftp.listen"), "{log}");
    assert!(!log.contains("take effect only after a restart"), "{log}");
    let banner = ssh_banner(moved)
        .await
        .expect("the new address does not serve");
    assert!(banner.starts_with("SSH-2.0-"), "{banner}");
    assert!(
        refused_soon(env.sftp).await,
        "the old SFTP address still accepts"
    );
}

/// `server.admin_listen` and `connector.listen` move on reload too; the
/// `reload` command finds the process at the admin address it has now
/// (recorded in `data_dir/listeners.json`), not the one the edited file names.
#[tokio::test]
async fn a_reload_moves_the_admin_and_connector_listeners() {
    use mft_e2e::dmz::{connector_config, gateway_tables, VIA_CONNECTOR};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let certs = make_certs(path);
    let backend = start_backend(path).await;
    std::fs::write(path.join("admin.token"), ADMIN_TOKEN).unwrap();
    let mut gw = start_gateway_with(
        path,
        &certs,
        "http://mft.internal:8080",
        VIA_CONNECTOR,
        &format!(
            "{}\n[admin]\ntoken = \"file:{}\"\n",
            gateway_tables(ephemeral()),
            path.join("admin.token").display()
        ),
    )
    .await;
    let old_connector = gw.listeners.get("connector");
    let healthz = |admin: SocketAddr| async move {
        reqwest::Client::new()
            .get(format!("http://{admin}/healthz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    };
    assert_eq!(healthz(gw.admin).await.unwrap(), 200);
    let (new_admin, new_connector) = (free_addr(), free_addr());
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let moved = set_key(
        &set_key(&text, "admin_listen", &new_admin.to_string()),
        "listen",
        &new_connector.to_string(),
    );
    assert_ne!(moved, text);
    std::fs::write(&gw.config, moved).unwrap();
    let (code, stdout) = tokio::task::spawn_blocking({
        let config = gw.config.clone();
        move || reload(&config)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stdout}\n{}", gw.proc.stderr());
    assert!(stdout.contains("server.admin_listen"), "{stdout}");
    assert!(stdout.contains("connector.listen"), "{stdout}");
    assert!(!stdout.contains("after a restart"), "{stdout}");

    assert_eq!(healthz(new_admin).await.unwrap(), 200);
    assert!(
        tokio::net::TcpStream::connect(gw.admin).await.is_err(),
        "the old admin address still accepts"
    );
    assert!(
        tokio::net::TcpStream::connect(old_connector).await.is_err(),
        "the old connector address still accepts"
    );
    // The admin API works at the new address; a connector enrolled there
    // authenticates at the new connector address.
    let r = reqwest::Client::new()
        .post(format!("http://{new_admin}/admin/v1/connectors"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"name": "lan-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let added: serde_json::Value = r.json().await.unwrap();
    let key = added["key"].as_str().unwrap().to_string();
    let ca = format!("ca_file = \"{}\"", certs.ca.display());
    let connector = connector_config(
        path,
        "lan-1",
        &key,
        &format!("https://{new_connector}"),
        &ca,
        &backend.url,
        1,
    );
    let out = Command::new(bin("mft-gateway"))
        .args(["connector", "--check", "--config"])
        .arg(&connector)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A second reload finds the process at its new admin address.
    let (code, stdout) = tokio::task::spawn_blocking({
        let config = gw.config.clone();
        move || reload(&config)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stdout}");
    gw.proc.assert_running();
}
