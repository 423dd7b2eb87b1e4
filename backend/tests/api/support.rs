//! Starting and stopping a backend, and small helpers shared by the tests.

use mft_backend::{serve, BackendConfig, BackendError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A backend serving on 127.0.0.1 with its own data directory.
pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), BackendError>>,
}

impl Server {
    /// Serves `dir` on a free port and waits until /healthz answers.
    pub async fn start(dir: &Path) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let config = BackendConfig::new(dir);
        let task = tokio::spawn(serve(listener, config, async {
            let _ = rx.await;
        }));
        let server = Server {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            stop: Some(tx),
            task,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = self.client.get(self.url("/healthz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "backend did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Asks for shutdown and waits until `serve` returned.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("backend did not stop")
            .unwrap()
            .unwrap();
    }

    /// Uploads `data` raw as `name`; returns the created record.
    pub async fn upload(&self, name: &str, data: Vec<u8>) -> serde_json::Value {
        let r = self
            .client
            .post(self.url("/api/v1/files"))
            .header("X-Filename", name)
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }

    /// Downloads a stored file's content.
    pub async fn download(&self, id: &str) -> Vec<u8> {
        let r = self
            .client
            .get(self.url(&format!("/api/v1/files/{id}/content")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap().to_vec()
    }
}

/// A temp data dir plus its path, kept alive by the test.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    (dir, path)
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Asserts an RFC 9457 body with `status`; returns it.
pub async fn assert_problem(r: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(r.status(), status, "unexpected status");
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "problem content type"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string());
    body
}

/// Polls `check` every 20 ms for at most 10 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `head` and only `body_part` of the body over a raw socket and
/// returns the open connection; dropping it is the client's network dying.
pub async fn send_partial(addr: &str, head: &str, body_part: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body_part).await.unwrap();
    s.flush().await.unwrap();
    s
}

/// Number of entries in a directory.
pub fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}
