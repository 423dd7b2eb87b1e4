//! One file being read: a streaming GET of its content, kept open while
//! the client reads on in order (clients pipeline READs at increasing
//! offsets); a READ elsewhere (a seek, `reget`) reopens it with a Range.

use super::fs::Fs;
use super::metrics::SftpMetrics;
use crate::backend_client::BackendError;
use crate::backend_client::FileInfo;
use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use std::sync::{Arc, Mutex};

/// An open file for reading.
pub struct Download {
    fs: Fs,
    /// The file.
    pub entry: FileInfo,
    // In a Mutex only to be Sync (the session is borrowed across awaits);
    // always reached through `get_mut`, never locked.
    stream: Option<Mutex<BoxStream<'static, reqwest::Result<Bytes>>>>,
    /// Offset of the first byte in `leftover`/the stream.
    position: u64,
    leftover: Bytes,
    metrics: Arc<SftpMetrics>,
}

impl Download {
    /// Opens `entry` for reading; nothing is fetched until the first READ.
    pub fn new(fs: Fs, entry: FileInfo, metrics: Arc<SftpMetrics>) -> Download {
        Download {
            fs,
            entry,
            stream: None,
            position: 0,
            leftover: Bytes::new(),
            metrics,
        }
    }

    async fn open_at(&mut self, offset: u64) -> Result<(), BackendError> {
        let resp = self
            .fs
            .backend
            .file_content(&self.fs.ctx, &self.entry.id, offset, 0)
            .await?;
        self.stream = Some(Mutex::new(resp.bytes_stream().boxed()));
        self.position = offset;
        self.leftover = Bytes::new();
        Ok(())
    }

    /// Up to `len` bytes at `offset`; empty at the end of the file.
    pub async fn read(&mut self, offset: u64, len: u32) -> Result<Bytes, BackendError> {
        if offset >= self.entry.size {
            return Ok(Bytes::new());
        }
        if self.stream.is_none() || offset != self.position {
            self.open_at(offset).await?;
        }
        let want = (len as u64).min(self.entry.size - offset) as usize;
        let mut out = BytesMut::with_capacity(want);
        let mut reopened = 0;
        while out.len() < want {
            if self.leftover.is_empty() {
                let Some(Ok(stream)) = self.stream.as_mut().map(Mutex::get_mut) else {
                    break;
                };
                match stream.next().await {
                    Some(Ok(b)) => self.leftover = b,
                    // The backend client's request timeout also bounds the
                    // body, and a slow reader outlives it: reopen where we
                    // are with a Range, a few times per READ at most.
                    Some(Err(e)) if reopened < 3 => {
                        reopened += 1;
                        tracing::debug!(file_id = %self.entry.id, error = %e, "download stream broke; reopening");
                        self.open_at(offset + out.len() as u64).await?;
                    }
                    Some(Err(e)) => {
                        self.stream = None;
                        return Err(BackendError::Decode {
                            what: "GET file content".into(),
                            reason: e.to_string(),
                        });
                    }
                    None => {
                        self.stream = None;
                        break;
                    }
                }
            }
            let take = (want - out.len()).min(self.leftover.len());
            out.extend_from_slice(&self.leftover.split_to(take));
        }
        self.position = offset + out.len() as u64;
        self.metrics.bytes("down", out.len() as u64);
        Ok(out.freeze())
    }
}
