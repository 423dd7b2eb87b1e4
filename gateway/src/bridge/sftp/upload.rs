//! One file being written: the client's WRITEs become a tus upload with a
//! deferred length. WRITEs are answered from memory (the client pipelines
//! them); a bounded channel to the PATCH task is the backpressure. The
//! file is published by the last PATCH, which declares the length, and
//! only counts as done once the backend's SHA-256 equals ours. An upload
//! dropped without [`Upload::finish`] (client gone) is terminated.

use super::fs::Fs;
use super::metrics::SftpMetrics;
use crate::backend_client::BackendError;
use crate::backend_client::FileInfo;
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Why a write or the close of an upload failed; the text goes to the client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UploadError {
    /// The client wrote somewhere the stream cannot go.
    #[error("{0}")]
    Order(String),
    /// The backend refused or failed.
    #[error("backend: {0}")]
    Backend(String),
}

enum Msg {
    Chunk(Bytes),
    Sync(oneshot::Sender<Result<(), UploadError>>),
    Finish {
        length: u64,
        sha256: String,
        reply: oneshot::Sender<Result<FileInfo, UploadError>>,
    },
}

/// Limits of one upload.
#[derive(Clone)]
pub struct UploadLimits {
    /// Bytes per PATCH.
    pub chunk: usize,
    /// Reorder window: how far ahead of the next expected offset a WRITE
    /// may end, and how many bytes (with [`PENDING_ENTRY_COST`] each) one
    /// upload may hold out of order.
    pub window: usize,
    /// Out-of-order bytes of all uploads together.
    pub budget: Arc<ReorderBudget>,
}

/// What one held WRITE costs beyond its bytes (map node, `Bytes` header),
/// so a flood of 1-byte WRITEs is bounded like a few large ones.
pub const PENDING_ENTRY_COST: usize = 128;

/// Out-of-order bytes held by all uploads of the process together: one
/// user's many handles and sessions cannot take the memory the HTTPS proxy,
/// SMTP and the other users need.
pub struct ReorderBudget {
    used: std::sync::atomic::AtomicUsize,
    limit: usize,
}

impl ReorderBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<ReorderBudget> {
        Arc::new(ReorderBudget {
            used: std::sync::atomic::AtomicUsize::new(0),
            limit,
        })
    }

    fn reserve(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, std::sync::atomic::Ordering::AcqRel);
    }

    /// Bytes held right now.
    pub fn used(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The session's side of an upload.
pub struct Upload {
    tx: mpsc::Sender<Msg>,
    failed: Arc<Mutex<Option<UploadError>>>,
    next: u64,
    pending: BTreeMap<u64, Bytes>,
    /// Bytes plus [`PENDING_ENTRY_COST`] per held WRITE; reserved in `budget`.
    pending_cost: usize,
    budget: Arc<ReorderBudget>,
    buf: BytesMut,
    hasher: Sha256,
    limits: UploadLimits,
}

impl Upload {
    /// Creates the tus upload for `name` in `folder`, starting empty.
    /// `replace` are the files this one replaces once it is complete.
    pub async fn start(
        fs: Fs,
        folder: &str,
        name: &str,
        replace: Vec<FileInfo>,
        limits: UploadLimits,
        metrics: Arc<SftpMetrics>,
        working: crate::drain::WorkGuard,
    ) -> Result<Upload, UploadError> {
        let location = fs
            .backend
            .tus_create(&fs.ctx, folder, name)
            .await
            .map_err(backend)?;
        let (tx, rx) = mpsc::channel(2);
        let failed = Arc::new(Mutex::new(None));
        let task = Task {
            fs: fs.clone(),
            location,
            offset: 0,
            failed: failed.clone(),
            replace,
            metrics,
            _working: working,
        };
        tokio::spawn(task.run(rx));
        Ok(Upload {
            tx,
            failed,
            next: 0,
            pending: BTreeMap::new(),
            pending_cost: 0,
            budget: limits.budget.clone(),
            buf: BytesMut::with_capacity(limits.chunk),
            hasher: Sha256::new(),
            limits,
        })
    }

    fn failure(&self) -> Option<UploadError> {
        self.failed.lock().ok().and_then(|f| f.clone())
    }

    /// Takes one WRITE. In order: hashed and buffered; ahead within the
    /// window: held; anything else fails with a clear message, and the
    /// upload with it (a file with a refused write is never published).
    pub async fn write(&mut self, offset: u64, data: Bytes) -> Result<(), UploadError> {
        let result = self.write_inner(offset, data).await;
        if let Err(e) = &result {
            if let Ok(mut f) = self.failed.lock() {
                f.get_or_insert_with(|| e.clone());
            }
        }
        result
    }

    async fn write_inner(&mut self, offset: u64, data: Bytes) -> Result<(), UploadError> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        if data.is_empty() {
            return Ok(());
        }
        if offset < self.next {
            return Err(UploadError::Order(format!(
                "write at offset {offset} goes back before {}: uploads are streamed, bytes already sent cannot be rewritten",
                self.next
            )));
        }
        if offset > self.next {
            self.hold(offset, data)?;
            return Ok(());
        }
        let end = offset.saturating_add(data.len() as u64);
        if let Some((&at, _)) = self.pending.range(offset..end).next() {
            return Err(UploadError::Order(format!(
                "write at offset {offset} ({} bytes) overlaps bytes already written at {at}",
                data.len()
            )));
        }
        self.push(data).await?;
        while let Some(data) = self.take_next() {
            self.push(data).await?;
        }
        Ok(())
    }

    /// Keeps a WRITE that lies ahead of the stream until the gap before it
    /// is filled. Refused: beyond the window, overlapping a held WRITE (a
    /// client never needs to send the same bytes twice before they are
    /// acknowledged), or past this upload's or the process's reorder budget.
    /// The session's reply waits for nothing here, so nothing may wait:
    /// the bounds are what keeps memory flat.
    fn hold(&mut self, offset: u64, data: Bytes) -> Result<(), UploadError> {
        let len = data.len() as u64;
        let end = offset.saturating_add(len);
        let ahead = end - self.next;
        if ahead > self.limits.window as u64 {
            return Err(UploadError::Order(format!(
                "write at offset {offset} is {ahead} bytes ahead of the next expected offset {}; at most {} may be out of order",
                self.next, self.limits.window
            )));
        }
        let before = self.pending.range(..=offset).next_back();
        let after = self.pending.range(offset..).next();
        let overlaps = before.is_some_and(|(&at, b)| at + b.len() as u64 > offset)
            || after.is_some_and(|(&at, _)| at < end);
        if overlaps {
            return Err(UploadError::Order(format!(
                "write at offset {offset} ({len} bytes) overlaps bytes already written and not yet stored"
            )));
        }
        let cost = data.len() + PENDING_ENTRY_COST;
        if self.pending_cost + cost > self.limits.window {
            return Err(UploadError::Order(format!(
                "more than {} bytes written out of order ahead of offset {}",
                self.limits.window, self.next
            )));
        }
        if !self.budget.reserve(cost) {
            return Err(UploadError::Order(
                "the server holds too many out-of-order writes right now; write in order or retry later".into(),
            ));
        }
        self.pending_cost += cost;
        self.pending.insert(offset, data);
        Ok(())
    }

    /// The held WRITE that continues the stream, if any; its budget is freed.
    fn take_next(&mut self) -> Option<Bytes> {
        let data = self.pending.remove(&self.next)?;
        let cost = data.len() + PENDING_ENTRY_COST;
        self.pending_cost -= cost;
        self.budget.release(cost);
        Some(data)
    }

    async fn push(&mut self, data: Bytes) -> Result<(), UploadError> {
        self.hasher.update(&data);
        self.next += data.len() as u64;
        self.buf.extend_from_slice(&data);
        if self.buf.len() >= self.limits.chunk {
            let chunk = self.buf.split().freeze();
            self.send(Msg::Chunk(chunk)).await?;
        }
        Ok(())
    }

    async fn send(&self, msg: Msg) -> Result<(), UploadError> {
        if self.tx.send(msg).await.is_err() {
            return Err(self
                .failure()
                .unwrap_or_else(|| UploadError::Backend("upload task ended".into())));
        }
        Ok(())
    }

    /// `fsync@openssh.com`: everything written so far is stored by the
    /// backend (in the unfinished upload) when this returns.
    pub async fn sync(&mut self) -> Result<(), UploadError> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.send(Msg::Chunk(chunk)).await?;
        }
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Sync(reply)).await?;
        rx.await
            .unwrap_or_else(|_| Err(UploadError::Backend("upload task ended".into())))
    }

    /// CLOSE: sends the rest, declares the length, and waits until the
    /// backend holds the complete file with our SHA-256.
    pub async fn finish(mut self) -> Result<FileInfo, UploadError> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        if let Some((&at, _)) = self.pending.iter().next() {
            return Err(UploadError::Order(format!(
                "closed with a gap: bytes {}..{at} were never written",
                self.next
            )));
        }
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.send(Msg::Chunk(chunk)).await?;
        }
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Finish {
            length: self.next,
            sha256,
            reply,
        })
        .await?;
        rx.await
            .unwrap_or_else(|_| Err(UploadError::Backend("upload task ended".into())))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.budget.release(self.pending_cost);
    }
}

fn backend(e: BackendError) -> UploadError {
    UploadError::Backend(e.to_string())
}

/// The PATCH side, one task per upload.
struct Task {
    fs: Fs,
    location: String,
    offset: u64,
    failed: Arc<Mutex<Option<UploadError>>>,
    replace: Vec<FileInfo>,
    metrics: Arc<SftpMetrics>,
    /// The process waits for this task (publish or terminate) at shutdown.
    _working: crate::drain::WorkGuard,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        loop {
            match rx.recv().await {
                Some(Msg::Chunk(bytes)) => {
                    if let Err(e) = self.patch(bytes, None).await {
                        self.fail(e, &mut rx).await;
                        return;
                    }
                }
                Some(Msg::Sync(reply)) => {
                    let _ = reply.send(Ok(()));
                }
                Some(Msg::Finish {
                    length,
                    sha256,
                    reply,
                }) => {
                    let result = self.finish(length, &sha256).await;
                    match &result {
                        Ok(_) => self.metrics.upload("completed"),
                        Err(_) => {
                            self.metrics.upload("failed");
                            self.terminate().await;
                        }
                    }
                    let _ = reply.send(result);
                    return;
                }
                None => {
                    // The session ended without CLOSE: never publish.
                    tracing::info!(upload = %self.location, bytes = self.offset,
                        "sftp upload abandoned by the client; terminating it");
                    self.metrics.upload("failed");
                    self.terminate().await;
                    return;
                }
            }
        }
    }

    async fn patch(
        &mut self,
        bytes: Bytes,
        length: Option<u64>,
    ) -> Result<Option<String>, UploadError> {
        let len = bytes.len() as u64;
        let patched = match self
            .fs
            .backend
            .tus_patch(&self.fs.ctx, &self.location, self.offset, bytes, length)
            .await
        {
            Ok(patched) => patched,
            // A retried PATCH whose first attempt was stored answers 409:
            // the backend's offset tells whether our bytes are in.
            Err(BackendError::Status { status: 409, .. })
                if self.stored_offset().await == Some(self.offset + len) && length.is_none() =>
            {
                self.offset += len;
                return Ok(None);
            }
            Err(e) => return Err(backend(e)),
        };
        self.offset += len;
        self.metrics.bytes("up", len);
        Ok(patched.file_id)
    }

    async fn stored_offset(&self) -> Option<u64> {
        self.fs
            .backend
            .tus_offset(&self.fs.ctx, &self.location)
            .await
            .ok()
            .flatten()
    }

    async fn finish(&mut self, length: u64, sha256: &str) -> Result<FileInfo, UploadError> {
        let file_id = self
            .patch(Bytes::new(), Some(length))
            .await?
            .ok_or_else(|| {
                UploadError::Backend("the last PATCH did not complete the upload".into())
            })?;
        let stored = self
            .fs
            .backend
            .file(&self.fs.ctx, &file_id)
            .await
            .map_err(backend)?;
        if stored.size != length || !stored.sha256.eq_ignore_ascii_case(sha256) {
            // Never leave a file that differs from what the client sent.
            let _ = self.fs.delete(&stored.id).await;
            return Err(UploadError::Backend(format!(
                "stored file differs from the bytes received (size {} vs {length}, sha256 {} vs {sha256})",
                stored.size, stored.sha256
            )));
        }
        for old in std::mem::take(&mut self.replace) {
            if old.id != stored.id {
                if let Err(e) = self.fs.delete(&old.id).await {
                    tracing::warn!(file_id = %old.id, error = %e, "cannot remove the replaced file");
                }
            }
        }
        Ok(stored)
    }

    async fn terminate(&self) {
        if let Err(e) = self
            .fs
            .backend
            .tus_terminate(&self.fs.ctx, &self.location)
            .await
        {
            tracing::warn!(upload = %self.location, error = %e, "cannot terminate the tus upload");
        }
    }

    /// Records the failure for the session, terminates, and answers
    /// whatever the session still sends.
    async fn fail(&self, e: UploadError, rx: &mut mpsc::Receiver<Msg>) {
        tracing::warn!(upload = %self.location, error = %e, "sftp upload failed");
        if let Ok(mut f) = self.failed.lock() {
            *f = Some(e.clone());
        }
        self.metrics.upload("failed");
        self.terminate().await;
        rx.close();
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Chunk(_) => {}
                Msg::Sync(reply) => {
                    let _ = reply.send(Err(e.clone()));
                }
                Msg::Finish { reply, .. } => {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
