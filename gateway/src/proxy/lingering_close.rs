//! Lingering close for HTTP/1.1 (nginx's `lingering_close`): a connection
//! that closes while the client may still be sending its request body is
//! first shut for writing, then read and discarded for up to [`LINGER`],
//! and only then closed.
//!
//! Why: closing a socket with unread bytes in its receive queue makes the
//! kernel answer with a reset, and a reset arriving at the client before it
//! read our answer discards that answer from its receive queue. A client
//! streaming an upload when the backend failed would then see "connection
//! reset" instead of its 502 problem+json.

use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::body::LINGER;

/// Where a lingering close is.
#[derive(Default)]
pub enum Lingering {
    /// Not started: the next shutdown lingers only if asked to.
    #[default]
    No,
    /// Our side is shut (TLS close_notify, TCP FIN); reading until the
    /// client's end or the deadline.
    Draining,
    /// Done: shutdown answers at once.
    Closed,
}

impl Lingering {
    /// `poll_shutdown` of a connection: with `linger`, shuts `io` for
    /// writing, then discards what it still reads until its end, an error
    /// or `deadline` (reset here to [`LINGER`] from now).
    pub fn poll_shutdown<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        linger: bool,
        deadline: &mut Pin<Box<Sleep>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            match self {
                Lingering::No => {
                    ready!(Pin::new(&mut *io).poll_shutdown(cx))?;
                    if !linger {
                        *self = Lingering::Closed;
                        return Poll::Ready(Ok(()));
                    }
                    deadline.as_mut().reset(Instant::now() + LINGER);
                    *self = Lingering::Draining;
                }
                Lingering::Draining => {
                    let mut scratch = [MaybeUninit::<u8>::uninit(); 4096];
                    let mut buf = ReadBuf::uninit(&mut scratch);
                    match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                        Poll::Ready(_) => *self = Lingering::Closed,
                        Poll::Pending => {
                            ready!(deadline.as_mut().poll(cx));
                            *self = Lingering::Closed;
                        }
                    }
                }
                Lingering::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// Shuts `ours` as a connection does, lingering or not; how long it took.
    async fn close(ours: &mut DuplexStream, linger: bool) -> Duration {
        let mut state = Lingering::default();
        let mut deadline = Box::pin(tokio::time::sleep(LINGER));
        let started = Instant::now();
        std::future::poll_fn(|cx| state.poll_shutdown(ours, linger, &mut deadline, cx))
            .await
            .unwrap();
        assert!(matches!(state, Lingering::Closed));
        started.elapsed()
    }

    /// The peer keeps writing after our answer: a plain close would reset
    /// the connection; lingering reads until the peer is done, so the peer
    /// then reads our whole answer and a clean end.
    #[tokio::test]
    async fn a_lingering_close_reads_what_the_peer_still_sends_then_ends() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        ours.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            .await
            .unwrap();
        let peer = tokio::spawn(async move {
            // More than the pipe holds: blocks unless we read it.
            theirs.write_all(&[7u8; 64 * 1024]).await.unwrap();
            theirs.shutdown().await.unwrap();
            let mut answer = Vec::new();
            theirs.read_to_end(&mut answer).await.unwrap();
            answer
        });
        assert!(
            close(&mut ours, true).await < LINGER,
            "ended at the peer's end, not the deadline"
        );
        assert_eq!(peer.await.unwrap(), b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_stops_is_cut_off_at_the_deadline() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        let peer = tokio::spawn(async move {
            let chunk = [1u8; 512];
            let mut sent = 0usize;
            while theirs.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            sent
        });
        let took = close(&mut ours, true).await;
        assert!(took >= LINGER && took < LINGER + Duration::from_millis(50));
        drop(ours);
        // Read while lingering: ~20 chunks in 2 s, far more than the pipe holds.
        assert!(peer.await.unwrap() > 4 * 1024);
    }

    #[tokio::test]
    async fn without_linger_shutdown_does_not_read() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        theirs.write_all(b"unread").await.unwrap();
        close(&mut ours, false).await;
        let mut left = [0u8; 6];
        ours.read_exact(&mut left).await.unwrap();
        assert_eq!(&left, b"unread");
    }
}
