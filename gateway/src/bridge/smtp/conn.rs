//! Buffered reading and writing for one SMTP connection, with the idle
//! limits that keep a silent client from holding a session forever.
//!
//! Replies are collected and written before the next read, which is what
//! PIPELINING needs (one write per batch of pipelined commands).

use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Most bytes read at once.
const READ_CHUNK: usize = 64 * 1024;
/// Longest line accepted in an AUTH exchange.
const MAX_LINE: usize = 4096;

/// What a read produced.
pub enum Read {
    /// New bytes are in `pending`.
    Data,
    /// The client closed the connection.
    Eof,
    /// Nothing arrived within the limit.
    Timeout,
}

/// A stream with its unconsumed input and unsent replies.
pub struct Conn<S> {
    /// The transport.
    pub stream: S,
    /// Bytes read and not consumed yet.
    pub pending: Vec<u8>,
    out: Vec<u8>,
    write_timeout: Duration,
    /// No read waits past this (the session's or the DATA transfer's
    /// deadline): a client that trickles bytes resets every idle timer.
    deadline: Option<Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Wraps `stream`; writes that stall longer than `write_timeout` fail.
    pub fn new(stream: S, write_timeout: Duration) -> Self {
        Conn {
            stream,
            pending: Vec::new(),
            out: Vec::new(),
            write_timeout,
            deadline: None,
        }
    }

    /// Queues a reply.
    pub fn send(&mut self, reply: &str) {
        self.out.extend_from_slice(reply.as_bytes());
    }

    /// Writes the queued replies.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let write = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        }
    }

    /// Reads end at `deadline` at the latest; the previous deadline is returned.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) -> Option<Instant> {
        std::mem::replace(&mut self.deadline, deadline)
    }

    /// Whether the deadline has passed (a read timed out because of it).
    pub fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Flushes replies, then reads more input, waiting at most `idle` and
    /// never past the deadline.
    pub async fn fill(&mut self, idle: Duration) -> io::Result<Read> {
        self.flush().await?;
        let wait = match self.deadline {
            Some(d) => idle.min(d.saturating_duration_since(Instant::now())),
            None => idle,
        };
        if wait.is_zero() {
            return Ok(Read::Timeout);
        }
        let start = self.pending.len();
        self.pending.resize(start + READ_CHUNK, 0);
        let read = tokio::time::timeout(wait, self.stream.read(&mut self.pending[start..])).await;
        match read {
            Err(_) => {
                self.pending.truncate(start);
                Ok(Read::Timeout)
            }
            Ok(Err(e)) => {
                self.pending.truncate(start);
                Err(e)
            }
            Ok(Ok(0)) => {
                self.pending.truncate(start);
                Ok(Read::Eof)
            }
            Ok(Ok(n)) => {
                self.pending.truncate(start + n);
                Ok(Read::Data)
            }
        }
    }

    /// Like [`Conn::fill`], but gives up waiting (`Ok(None)`) when `stop`
    /// resolves first. The queued replies are written before: a reply is
    /// never cut by the stop.
    pub async fn fill_unless(
        &mut self,
        idle: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> io::Result<Option<Read>> {
        self.flush().await?;
        let start = self.pending.len();
        let read = tokio::select! {
            r = self.fill(idle) => Some(r?),
            () = stop => None,
        };
        if read.is_none() {
            // The cancelled read may have left its zeroed buffer behind.
            self.pending.truncate(start);
        }
        Ok(read)
    }

    /// One line (without CRLF) for an AUTH exchange; `None` when the client
    /// went away, timed out or sent an over-long line.
    pub async fn read_line(&mut self, idle: Duration) -> io::Result<Option<String>> {
        loop {
            if let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                let text = String::from_utf8_lossy(&line);
                return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
            }
            if self.pending.len() > MAX_LINE {
                return Ok(None);
            }
            match self.fill(idle).await? {
                Read::Data => {}
                Read::Eof | Read::Timeout => return Ok(None),
            }
        }
    }

    /// Sends what is queued and closes the write side.
    pub async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = tokio::time::timeout(self.write_timeout, self.stream.shutdown()).await;
    }
}
