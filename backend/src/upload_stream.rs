//! Copies a request body into a file chunk by chunk.
//!
//! Bodies are never collected in memory: each chunk is handed to an observer
//! (hashing) and written through a bounded buffer. How the body ended is
//! reported separately from I/O errors, because the callers treat a client
//! that went away differently from a disk that failed.

use crate::storage::CHUNK;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufWriter};

/// A body that sends nothing for this long counts as broken. Without it a
/// client whose network vanished silently (no FIN, no RST) would keep a tus
/// upload locked and a temp file open for as long as the socket lives.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How the body stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// The stream ended normally.
    Complete,
    /// The stream failed, usually because the connection broke; the bytes
    /// before the failure are written.
    Broken(String),
    /// More than the allowed number of bytes arrived; the excess is not written.
    Overflow,
}

/// Bytes written and how the body ended.
#[derive(Debug)]
pub struct Received {
    /// Bytes written to the file (and shown to the observer).
    pub written: u64,
    /// Why reading stopped.
    pub end: BodyEnd,
}

/// Writes `stream` into `file` at its current position, at most `limit`
/// bytes, passing each written chunk to `observe`. The data is flushed to
/// the file but not fsynced; that is the caller's decision.
pub async fn receive<S, E>(
    stream: S,
    file: &mut tokio::fs::File,
    limit: u64,
    observe: impl FnMut(&[u8]),
) -> std::io::Result<Received>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    receive_with_idle(stream, file, limit, IDLE_TIMEOUT, observe).await
}

async fn receive_with_idle<S, E>(
    mut stream: S,
    file: &mut tokio::fs::File,
    limit: u64,
    idle: Duration,
    mut observe: impl FnMut(&[u8]),
) -> std::io::Result<Received>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut out = BufWriter::with_capacity(CHUNK, file);
    let mut written = 0u64;
    let end = loop {
        let Ok(next) = tokio::time::timeout(idle, stream.next()).await else {
            break BodyEnd::Broken(format!("no data for {} s", idle.as_secs()));
        };
        match next {
            None => break BodyEnd::Complete,
            Some(Err(e)) => break BodyEnd::Broken(e.to_string()),
            Some(Ok(chunk)) => {
                if chunk.len() as u64 > limit - written {
                    break BodyEnd::Overflow;
                }
                out.write_all(&chunk).await?;
                observe(&chunk);
                written += chunk.len() as u64;
            }
        }
    };
    out.flush().await?;
    Ok(Received { written, end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn chunks(
        parts: Vec<Result<&'static str, &'static str>>,
    ) -> impl Stream<Item = Result<Bytes, &'static str>> + Unpin {
        stream::iter(
            parts
                .into_iter()
                .map(|p| p.map(|s| Bytes::from_static(s.as_bytes()))),
        )
    }

    async fn run(
        parts: Vec<Result<&'static str, &'static str>>,
        limit: u64,
    ) -> (Received, Vec<u8>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = tokio::fs::File::create(&path).await.unwrap();
        let mut seen = Vec::new();
        let r = receive(chunks(parts), &mut file, limit, |c| {
            seen.extend_from_slice(c)
        })
        .await
        .unwrap();
        drop(file);
        let on_disk = tokio::fs::read(&path).await.unwrap();
        (r, on_disk, seen)
    }

    #[tokio::test]
    async fn writes_every_chunk_and_reports_completion() {
        let (r, disk, seen) = run(vec![Ok("hello "), Ok("world")], u64::MAX).await;
        assert_eq!(r.end, BodyEnd::Complete);
        assert_eq!(r.written, 11);
        assert_eq!(disk, b"hello world");
        assert_eq!(seen, disk);
    }

    #[tokio::test]
    async fn keeps_bytes_before_a_broken_stream() {
        let (r, disk, _) = run(vec![Ok("abc"), Err("reset"), Ok("never")], u64::MAX).await;
        assert_eq!(r.end, BodyEnd::Broken("reset".to_string()));
        assert_eq!(disk, b"abc");
    }

    #[tokio::test]
    async fn a_stalled_body_counts_as_broken() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = tokio::fs::File::create(dir.path().join("f")).await.unwrap();
        let stalled =
            stream::iter(vec![Ok::<_, &str>(Bytes::from_static(b"xy"))]).chain(stream::pending());
        let r = receive_with_idle(
            Box::pin(stalled),
            &mut file,
            u64::MAX,
            Duration::from_millis(50),
            |_| {},
        )
        .await
        .unwrap();
        assert!(matches!(r.end, BodyEnd::Broken(_)), "{:?}", r.end);
        assert_eq!(r.written, 2);
    }

    #[tokio::test]
    async fn stops_before_exceeding_the_limit() {
        let (r, disk, _) = run(vec![Ok("abcd"), Ok("efgh")], 6).await;
        assert_eq!(r.end, BodyEnd::Overflow);
        assert_eq!(r.written, 4);
        assert_eq!(disk, b"abcd");
    }
}
