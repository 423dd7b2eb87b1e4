//! The bridges' backend client against the real reference backend (in
//! process, verifying signatures): signed calls, idempotent deliveries,
//! retries across an outage, the circuit breaker.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed unwrap is a failed run

use mft_config::model::{Backend, SigningAlgorithm};
use mft_config::secret::Secret;
use mft_gateway::backend_client::{BackendClient, BackendError, Body, CallContext, NewDelivery};
use mft_gateway::proxy::sign::RequestSigner;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "a test secret that is long enough for hmac-sha256 ok";

fn backend_config(addr: SocketAddr, signed: bool) -> Backend {
    Backend {
        url: format!("http://{addr}").parse().unwrap(),
        via: Default::default(),
        signing_key: signed.then(|| Secret::new(SECRET)),
        signing_algorithm: SigningAlgorithm::HmacSha256,
        signing_key_id: None,
        signature_ttl: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        pool_size: 4,
        pool_purge_delay: Duration::from_secs(5),
        retry_attempts: 8,
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        breaker_threshold: 3,
        breaker_cooldown: Duration::from_millis(300),
    }
}

fn client(config: &Backend) -> BackendClient {
    let signer = RequestSigner::from_config(config).unwrap().map(Arc::new);
    BackendClient::new(config, signer).unwrap()
}

/// Starts the reference backend on `listener`, verifying our HMAC key.
fn serve(listener: tokio::net::TcpListener, dir: &std::path::Path) {
    let key = mft_backend::VerifyingKey::hmac(SECRET.as_bytes(), None).unwrap();
    let verifier =
        mft_backend::Verifier::new(vec![key], mft_backend::VerifyPolicy::default()).unwrap();
    let mut config = mft_backend::BackendConfig::new(dir.to_path_buf());
    config.signatures = Some(verifier);
    tokio::spawn(async move {
        let _ = mft_backend::serve(listener, config, std::future::pending()).await;
    });
}

fn ctx() -> CallContext {
    CallContext::new("smtp:test", "files:write deliveries:write", Some("smtp"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_upload_and_idempotent_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve(listener, dir.path());
    let c = client(&backend_config(addr, true));

    let file = c
        .upload_file(
            &ctx(),
            Some("inbox/mail"),
            "Bericht Übersicht.pdf",
            Body::Bytes(bytes::Bytes::from_static(b"%PDF-1.4 hello")),
        )
        .await
        .unwrap();
    assert_eq!(file.name, "Bericht Übersicht.pdf");
    assert_eq!(file.folder, "inbox/mail");
    assert_eq!(file.size, 14);

    let d = NewDelivery {
        sender: "alice@partner.example".into(),
        recipients: vec!["bob@ourcorp.example".into()],
        subject: "report".into(),
        message: "see attached".into(),
        files: vec![file.id.clone()],
    };
    let first = c.create_delivery(&ctx(), "smtp:msg-1", &d).await.unwrap();
    let again = c.create_delivery(&ctx(), "smtp:msg-1", &d).await.unwrap();
    assert_eq!(first.id, again.id, "same idempotency key, same delivery");
    assert_eq!(first.origin, "smtp");
    assert_eq!(first.files, [file.id]);

    // A file body from disk, at an offset.
    let path = dir.path().join("part.bin");
    std::fs::write(&path, b"xxxxHELLO").unwrap();
    let f2 = c
        .upload_file(
            &ctx(),
            None,
            "hello.txt",
            Body::File {
                path,
                offset: 4,
                len: 5,
            },
        )
        .await
        .unwrap();
    assert_eq!(f2.size, 5);
    assert_eq!(
        f2.sha256,
        "3733cd977ff8eb18b987357e22ced99f46097f31ecb239e878ae63760e83e4d5"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_calls_are_refused_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve(listener, dir.path());
    let c = client(&backend_config(addr, false));
    let started = std::time::Instant::now();
    let err = c
        .upload_file(&ctx(), None, "a.txt", Body::Bytes("x".into()))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(!err.is_transient());
    // Not retried: a permanent error returns at once.
    assert!(started.elapsed() < Duration::from_millis(500));
    // A 4xx means the backend is up: the breaker stays closed.
    assert!(!c.is_circuit_open());
}

/// A loopback port held by a socket that is bound but not listening:
/// connections to it are refused, and no other test process can take it
/// (binding a port, closing it and binding it again later races them).
fn reserved_port() -> (socket2::Socket, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, addr)
}

/// The backend comes up on the port [`reserved_port`] held.
fn listen_on(socket: socket2::Socket) -> tokio::net::TcpListener {
    socket.listen(128).unwrap();
    socket.set_nonblocking(true).unwrap();
    tokio::net::TcpListener::from_std(socket.into()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_the_backend_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (reserved, addr) = reserved_port();
    let mut config = backend_config(addr, true);
    // Enough attempts and a breaker that does not give up first.
    config.breaker_threshold = 100;
    let c = client(&config);
    let call = tokio::spawn({
        let c = c.clone();
        async move {
            c.upload_file(&ctx(), None, "late.txt", Body::Bytes("late".into()))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !call.is_finished(),
        "still retrying while the backend is down"
    );
    serve(listen_on(reserved), dir.path());
    let file = call.await.unwrap().unwrap();
    assert_eq!(file.name, "late.txt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_on_an_outage_and_closes_after_a_probe() {
    let dir = tempfile::tempdir().unwrap();
    let (reserved, addr) = reserved_port();
    let mut config = backend_config(addr, true);
    config.retry_attempts = 1;
    let c = client(&config);
    for _ in 0..3 {
        let e = c.health().await.unwrap_err();
        assert!(
            matches!(
                e,
                BackendError::Transport { .. } | BackendError::Timeout { .. }
            ),
            "{e}"
        );
    }
    let e = c.health().await.unwrap_err();
    assert!(matches!(e, BackendError::CircuitOpen { .. }), "{e}");
    assert!(e.is_transient());
    assert!(c.is_circuit_open());

    serve(listen_on(reserved), dir.path());
    tokio::time::sleep(Duration::from_millis(350)).await;
    c.health().await.unwrap();
    assert!(!c.is_circuit_open());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_repeated_after_a_crash_delivers_once() {
    use mft_gateway::bridge::pipeline::{DeliveryPipeline, DeliveryRequest};
    use mft_protocols::mime as message;
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve(listener, dir.path());
    let c = client(&backend_config(addr, true));
    let registry = prometheus::Registry::new();
    let pipeline = DeliveryPipeline::new(c.clone(), &registry).unwrap();

    let raw = "From: alice@partner.example\r\nTo: bob@ourcorp.example\r\nSubject: two files\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--b\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nAAA\r\n\
--b\r\nContent-Disposition: attachment; filename=b.txt\r\n\r\nBBB\r\n--b--\r\n";
    let m = message::parse(raw.as_bytes()).unwrap();
    let req = DeliveryRequest {
        ctx: ctx(),
        idempotency_key: "smtp:spool-42".into(),
        sender: m.from.clone().unwrap(),
        recipients: m.to.clone(),
        subject: m.subject.clone(),
        message: m.text.clone(),
        stored_files: Vec::new(),
        attachments: &m.attachments,
        folder: Some("mail".into()),
    };
    let first = pipeline.deliver(&req).await.unwrap();
    // The same message again, as after a crash between the backend's answer
    // and the removal of the spool entry.
    let second = pipeline.deliver(&req).await.unwrap();
    assert_eq!(first.id, second.id);
    assert_eq!(first.files, second.files);
    assert_eq!(first.files.len(), 2);

    let call =
        mft_gateway::backend_client::Call::new(http::Method::GET, "/api/v1/files?folder=mail");
    let resp = c.send(&ctx(), &call).await.unwrap();
    let list: serde_json::Value = resp.json().await.unwrap();
    let files = list["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "no attachment stored twice: {list}");
    let out = registry.gather();
    let delivered = out
        .iter()
        .find(|f| f.name() == "mft_bridge_deliveries_total")
        .unwrap();
    assert_eq!(delivered.get_metric()[0].get_counter().get_value(), 2.0);
}
