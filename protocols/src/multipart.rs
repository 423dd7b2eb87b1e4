//! File names inside a streaming multipart/form-data body.
//!
//! The body is forwarded chunk by chunk as it arrives, so the part headers
//! are checked on the side: each chunk (a cheap `Bytes` clone, no copy) goes
//! to a task that runs `multer` over the stream. The last chunk is held back
//! until that task's verdict is in, so a refused name means the backend sees
//! a cut-off body (which it discards), never a complete one.

use bytes::Bytes;
use mft_filters::decision::Rejection;
use mft_filters::validation::filename::validate_filename;
use mft_filters::validation::folder::validate_folder;
use mft_filters::validation::upload_names::extended_filename;
use tokio::sync::{mpsc, oneshot};

/// The longest `folder` field read into memory.
const MAX_FOLDER_FIELD: usize = 4096;

/// The boundary of a `multipart/form-data` Content-Type, `None` when it
/// has none or one that is not valid.
pub fn parse_boundary(content_type: &str) -> Option<String> {
    multer::parse_boundary(content_type).ok()
}

/// The side task checking one multipart body.
pub struct MultipartGuard {
    tx: Option<mpsc::Sender<Bytes>>,
    /// The checker came back for more: it is done with the chunk before.
    pulled: mpsc::UnboundedReceiver<()>,
    verdict: Option<oneshot::Receiver<Result<(), Rejection>>>,
}

impl MultipartGuard {
    /// Starts checking a body with `boundary`.
    pub fn start(boundary: String) -> Self {
        let (tx, mut rx) = mpsc::channel::<Bytes>(1);
        let (pulled_tx, pulled) = mpsc::unbounded_channel();
        let (verdict_tx, verdict_rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut owed = false;
            let stream = futures_util::stream::poll_fn(move |cx| {
                if owed {
                    owed = false;
                    let _ = pulled_tx.send(());
                }
                let next = rx.poll_recv(cx);
                if matches!(next, std::task::Poll::Ready(Some(_))) {
                    owed = true;
                }
                next.map(|c| c.map(Ok::<Bytes, std::io::Error>))
            });
            let mut multipart = multer::Multipart::new(stream, boundary);
            let _ = verdict_tx.send(check_parts(&mut multipart).await);
        });
        MultipartGuard {
            tx: Some(tx),
            pulled,
            verdict: Some(verdict_rx),
        }
    }

    /// Hands one chunk to the checker and returns once it has looked at it,
    /// so no chunk goes upstream before the part headers in it were checked.
    /// At the end of the body, waits for the verdict.
    pub async fn feed(&mut self, chunk: Option<&Bytes>, end: bool) -> Result<(), Rejection> {
        if let (Some(tx), Some(chunk)) = (self.tx.as_ref(), chunk.filter(|c| !c.is_empty())) {
            if tx.send(chunk.clone()).await.is_err() {
                // The checker finished; its verdict says how.
                return self.conclude().await;
            }
            let Some(verdict) = self.verdict.as_mut() else {
                return Ok(());
            };
            tokio::select! {
                biased;
                result = verdict => {
                    self.verdict = None;
                    self.tx = None;
                    // Closed without a verdict means the checker died: the
                    // backend validates names too, so let the body through.
                    return result.unwrap_or(Ok(()));
                }
                _ = self.pulled.recv() => {}
            }
        }
        if end {
            return self.conclude().await;
        }
        Ok(())
    }

    async fn conclude(&mut self) -> Result<(), Rejection> {
        self.tx = None;
        match self.verdict.take() {
            Some(rx) => rx.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

fn refused(field: &str, reason: &dyn std::fmt::Display) -> Rejection {
    Rejection::invalid_name(field, reason)
}

fn malformed(e: multer::Error) -> Rejection {
    Rejection::bad_request(
        format!("multipart body is malformed: {e}"),
        "malformed_multipart",
    )
}

async fn check_parts(multipart: &mut multer::Multipart<'_>) -> Result<(), Rejection> {
    loop {
        let Some(mut field) = multipart.next_field().await.map_err(malformed)? else {
            return Ok(());
        };
        if let Some(name) = field.file_name() {
            validate_filename(name).map_err(|e| refused("multipart filename", &e))?;
        }
        let disposition = field
            .headers()
            .get(http::header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok());
        if let Some(extended) = disposition.and_then(extended_filename) {
            let name = extended.map_err(|e| refused("multipart filename*", &e))?;
            validate_filename(&name).map_err(|e| refused("multipart filename*", &e))?;
        }
        if field.name() == Some("folder") {
            let mut text = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                if text.len() + chunk.len() > MAX_FOLDER_FIELD {
                    return Err(refused("multipart folder", &"longer than 4096 bytes"));
                }
                text.extend_from_slice(&chunk);
            }
            let text =
                String::from_utf8(text).map_err(|_| refused("multipart folder", &"not UTF-8"))?;
            validate_folder(&text).map_err(|e| refused("multipart folder", &e))?;
            continue;
        }
        while field.chunk().await.map_err(malformed)?.is_some() {}
    }
}
