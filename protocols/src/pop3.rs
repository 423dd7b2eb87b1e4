//! The POP3 wire (RFC 1939) as the poller speaks it, over any stream:
//! every read and write under the command timeout, lines and listings
//! size-capped, RETR streamed out dot-unstuffed and capped, so a hostile
//! server can neither hang the poller nor make it buffer without bound.
//! Connecting, TLS and login (password or XOAUTH2) are the gateway's
//! (`bridge/pop3/client.rs`).
//!
//! Hand-rolled instead of async-pop 1.1.3: the protocol subset is small,
//! and owning the line reader gives us the per-command timeout and the cap
//! on RETR without wrapping another crate's state machine.

use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Longest status or listing line accepted.
const MAX_LINE: usize = 4096;
/// Most bytes of a multi-line listing (UIDL) kept: ~200,000 messages.
const MAX_LISTING_BYTES: usize = 16 << 20;
/// Most bytes of a message read at once by `RETR`.
pub const RETR_CHUNK: usize = 64 << 10;

/// What went wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Read or write failed, or the server closed the connection.
    #[error("{what}: {source}")]
    Io {
        /// The command.
        what: String,
        /// The failure.
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("{what}: no answer within {secs} s")]
    Timeout {
        /// The command.
        what: String,
        /// The timeout.
        secs: u64,
    },
    /// `-ERR` (the server's text, which never echoes our credentials).
    #[error("{what}: server answered -ERR {text}")]
    Refused {
        /// The command.
        what: String,
        /// The server's text.
        text: String,
    },
    /// Something that is not POP3.
    #[error("{what}: unexpected answer {line:?}")]
    Protocol {
        /// The command.
        what: String,
        /// The line, cut to 100 characters.
        line: String,
    },
    /// A message bigger than allowed.
    #[error("message {n} is larger than {max} bytes")]
    TooLarge {
        /// Message number.
        n: u32,
        /// The cap.
        max: u64,
    },
}

/// The line-level protocol over any stream (plain before STLS, TLS after).
pub struct Wire<S> {
    io: BufReader<S>,
    limit: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    /// The protocol over an already secured (or, in tests and the fuzzer,
    /// in-memory) stream, each read and write bounded by `limit`.
    pub fn new(stream: S, limit: Duration) -> Self {
        Wire {
            io: BufReader::new(stream),
            limit,
        }
    }

    /// The stream, for the TLS upgrade after STLS; refused when the server
    /// sent anything past the `+OK` (the TLS hello must come next).
    pub fn into_inner(self, what: &str) -> Result<S, WireError> {
        if !self.io.buffer().is_empty() {
            return Err(protocol(what, "data after +OK"));
        }
        Ok(self.io.into_inner())
    }

    /// Reads the server's greeting (`+OK`).
    pub async fn greeting(&mut self) -> Result<String, WireError> {
        self.ok("greeting").await
    }

    /// `STAT`: message count and total size.
    pub async fn stat(&mut self) -> Result<(u32, u64), WireError> {
        let line = self.command("STAT", "STAT").await?;
        let mut it = line.split_whitespace().skip(1);
        let n = it.next().and_then(|v| v.parse().ok());
        let size = it.next().and_then(|v| v.parse().ok());
        match (n, size) {
            (Some(n), Some(size)) => Ok((n, size)),
            _ => Err(protocol("STAT", &line)),
        }
    }

    /// `UIDL`: (message number, unique id) of every message.
    pub async fn uidl(&mut self) -> Result<Vec<(u32, String)>, WireError> {
        self.command("UIDL", "UIDL").await?;
        let mut out = Vec::new();
        for line in self.multiline_lines("UIDL").await? {
            let mut it = line.split_whitespace();
            match (it.next().and_then(|n| n.parse().ok()), it.next()) {
                (Some(n), Some(uid)) => out.push((n, uid.to_string())),
                _ => return Err(protocol("UIDL", &line)),
            }
        }
        Ok(out)
    }

    /// `LIST n`: the size of message `n`.
    pub async fn size(&mut self, n: u32) -> Result<u64, WireError> {
        let line = self.command(&format!("LIST {n}"), "LIST").await?;
        line.split_whitespace()
            .nth(2)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| protocol("LIST", &line))
    }

    /// `RETR n` in memory (tests and the fuzzer; the poller uses
    /// [`retr_to`](Self::retr_to) with a file).
    pub async fn retr(&mut self, n: u32, max: u64) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        self.retr_to(n, max, &mut out).await?;
        Ok(out)
    }

    /// `RETR n` into `out`, dot-unstuffed, CRLF line ends; refuses past
    /// `max` bytes. Read and written in pieces of at most [`RETR_CHUNK`]
    /// (a line longer than that is passed on in parts), so the message is
    /// never whole in memory. Returns the bytes written.
    pub async fn retr_to<W>(&mut self, n: u32, max: u64, out: &mut W) -> Result<u64, WireError>
    where
        W: AsyncWrite + Unpin,
    {
        self.command(&format!("RETR {n}"), "RETR").await?;
        let mut written: u64 = 0;
        let mut piece = Vec::with_capacity(RETR_CHUNK);
        let mut line_start = true;
        loop {
            piece.clear();
            self.read_line_into(&mut piece, RETR_CHUNK, "RETR").await?;
            if line_start && (piece == b".\r\n" || piece == b".\n") {
                out.flush().await.map_err(|source| WireError::Io {
                    what: "RETR (temporary file)".into(),
                    source,
                })?;
                return Ok(written);
            }
            let body: &[u8] = if line_start && piece.starts_with(b"..") {
                &piece[1..]
            } else {
                &piece
            };
            written += body.len() as u64;
            if written > max + 2 {
                return Err(WireError::TooLarge { n, max });
            }
            out.write_all(body).await.map_err(|source| WireError::Io {
                what: "RETR (temporary file)".into(),
                source,
            })?;
            line_start = piece.ends_with(b"\n");
        }
    }

    /// `DELE n` (takes effect at QUIT).
    pub async fn dele(&mut self, n: u32) -> Result<(), WireError> {
        self.command(&format!("DELE {n}"), "DELE").await.map(|_| ())
    }

    /// `QUIT`: commits the deletions (UPDATE state).
    pub async fn quit(mut self) -> Result<(), WireError> {
        self.command("QUIT", "QUIT").await.map(|_| ())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    /// Sends one command line.
    pub async fn send(&mut self, line: &str, what: &str) -> Result<(), WireError> {
        let data = format!("{line}\r\n");
        let io = self.io.get_mut();
        match tokio::time::timeout(self.limit, async {
            io.write_all(data.as_bytes()).await?;
            io.flush().await
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(WireError::Io {
                what: what.into(),
                source,
            }),
            Err(_) => Err(timeout(what, self.limit)),
        }
    }

    /// Reads one line (without its end), at most 4 KiB.
    pub async fn line(&mut self, what: &str) -> Result<String, WireError> {
        let mut buf = Vec::new();
        self.read_line_into(&mut buf, MAX_LINE, what).await?;
        if !buf.ends_with(b"\n") {
            return Err(protocol(what, &String::from_utf8_lossy(&buf)));
        }
        Ok(String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_string())
    }

    /// Appends to `buf` up to `cap` bytes through the next line break,
    /// under the command timeout; the server closing is an error.
    async fn read_line_into(
        &mut self,
        buf: &mut Vec<u8>,
        cap: usize,
        what: &str,
    ) -> Result<(), WireError> {
        let read = tokio::time::timeout(
            self.limit,
            (&mut self.io).take(cap as u64).read_until(b'\n', buf),
        )
        .await;
        match read {
            Err(_) => Err(timeout(what, self.limit)),
            Ok(Err(source)) => Err(WireError::Io {
                what: what.into(),
                source,
            }),
            Ok(Ok(0)) => Err(closed(what)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Reads one status line and requires `+OK`.
    pub async fn ok(&mut self, what: &str) -> Result<String, WireError> {
        let line = self.line(what).await?;
        if line.starts_with("+OK") {
            Ok(line)
        } else {
            Err(status_error(what, &line))
        }
    }

    /// Sends a command and requires `+OK`.
    pub async fn command(&mut self, line: &str, what: &str) -> Result<String, WireError> {
        self.send(line, what).await?;
        self.ok(what).await
    }

    async fn multiline_lines(&mut self, what: &str) -> Result<Vec<String>, WireError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        loop {
            let line = self.line(what).await?;
            if line == "." {
                return Ok(out);
            }
            // A hostile server could otherwise send ~4 GiB of lines.
            bytes += line.len() + 2;
            if bytes > MAX_LISTING_BYTES {
                return Err(protocol(what, "listing too long"));
            }
            // Dot-stuffing: a line starting with '.' was sent with one more.
            out.push(match line.strip_prefix("..") {
                Some(rest) => format!(".{rest}"),
                None => line,
            });
            if out.len() > 1_000_000 {
                return Err(protocol(what, "too many lines"));
            }
        }
    }
}

/// `-ERR` as [`WireError::Refused`], anything else as a protocol error.
pub fn status_error(what: &str, line: &str) -> WireError {
    match line.strip_prefix("-ERR") {
        Some(text) => WireError::Refused {
            what: what.into(),
            text: text.trim().chars().take(200).collect(),
        },
        None => protocol(what, line),
    }
}

/// A protocol error on `line` (cut to 100 characters).
pub fn protocol(what: &str, line: &str) -> WireError {
    WireError::Protocol {
        what: what.into(),
        line: line.chars().take(100).collect(),
    }
}

fn timeout(what: &str, limit: Duration) -> WireError {
    WireError::Timeout {
        what: what.into(),
        secs: limit.as_secs(),
    }
}

fn closed(what: &str) -> WireError {
    WireError::Io {
        what: what.into(),
        source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(script: &'static [u8]) -> Wire<tokio::io::Join<&'static [u8], tokio::io::Sink>> {
        Wire::new(
            tokio::io::join(script, tokio::io::sink()),
            Duration::from_secs(5),
        )
    }

    #[tokio::test]
    async fn a_poll_over_an_in_memory_server() {
        let mut w = server(
            b"+OK ready\r\n+OK 2 320\r\n+OK\r\n1 u1\r\n2 u2\r\n.\r\n+OK 1 120\r\n\
              +OK\r\nSubject: x\r\n\r\n..stuffed\r\n.\r\n+OK\r\n",
        );
        w.greeting().await.unwrap();
        assert_eq!(w.stat().await.unwrap(), (2, 320));
        assert_eq!(
            w.uidl().await.unwrap(),
            vec![(1, "u1".to_string()), (2, "u2".to_string())]
        );
        assert_eq!(w.size(1).await.unwrap(), 120);
        assert_eq!(
            w.retr(1, 1024).await.unwrap(),
            b"Subject: x\r\n\r\n.stuffed\r\n".to_vec()
        );
        w.quit().await.unwrap();
    }

    #[tokio::test]
    async fn hostile_answers_are_typed_errors() {
        let mut w = server(b"+OK ready\r\n+OK many\r\n-ERR no\r\n+OK\r\n1\r\n.\r\n");
        w.greeting().await.unwrap();
        assert!(matches!(w.stat().await, Err(WireError::Protocol { .. })));
        assert!(w.size(1).await.is_err());
        assert!(matches!(w.uidl().await, Err(WireError::Protocol { .. })));
        // The stream ended: closed, not a hang or a panic.
        assert!(w.retr(1, 10).await.is_err());
    }

    #[tokio::test]
    async fn retr_streams_lines_longer_than_a_chunk_and_unstuffs_only_line_starts() {
        let long = "a".repeat(RETR_CHUNK * 2 + 5);
        let script = format!(
            "+OK ready\r\n+OK\r\nSubject: x\r\n\r\n{long}..not-stuffed\r\n..stuffed\r\n.\r\n"
        );
        let mut w = server(script.leak().as_bytes());
        w.greeting().await.unwrap();
        let mut out = Vec::new();
        let n = w.retr_to(1, 1 << 20, &mut out).await.unwrap();
        let want = format!("Subject: x\r\n\r\n{long}..not-stuffed\r\n.stuffed\r\n");
        assert_eq!(n, want.len() as u64);
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[tokio::test]
    async fn a_message_past_the_cap_is_refused_while_streaming() {
        let long = "b".repeat(RETR_CHUNK * 3);
        let script = format!("+OK ready\r\n+OK\r\nSubject: x\r\n\r\n{long}\r\n.\r\n");
        let mut w = server(script.leak().as_bytes());
        w.greeting().await.unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            w.retr_to(1, RETR_CHUNK as u64, &mut out).await,
            Err(WireError::TooLarge { .. })
        ));
        assert!(out.len() <= RETR_CHUNK * 2, "{}", out.len());
    }

    #[tokio::test]
    async fn a_listing_without_end_is_cut_at_its_byte_bound() {
        let mut script = b"+OK ready\r\n+OK\r\n".to_vec();
        let line = format!("1 {}\r\n", "u".repeat(MAX_LINE - 8));
        while script.len() < MAX_LISTING_BYTES + 2 * MAX_LINE {
            script.extend_from_slice(line.as_bytes());
        }
        let mut w = server(script.leak());
        w.greeting().await.unwrap();
        assert!(matches!(w.uidl().await, Err(WireError::Protocol { .. })));
    }
}
