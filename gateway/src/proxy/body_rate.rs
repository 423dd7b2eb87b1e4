//! `[limits] min_body_rate`: the floor under a request body's speed. The
//! body idle timeout alone lets a client trickle one byte just inside it
//! for ever; this cuts off a body that, over a window of time spent waiting
//! on the client, brings fewer than `rate × window` bytes. Only time spent
//! waiting on the client counts: a backend that reads slowly (back
//! pressure) is not the client's fault.

use super::limits::MinBodyRate;
use mft_filters::decision::Rejection;
use mft_filters::problem_types as pt;
use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The request body came in more slowly than `min_body_rate`.
pub fn too_slow() -> Rejection {
    Rejection::new(
        408,
        pt::BODY_TOO_SLOW,
        "the request body arrived more slowly than the gateway's minimum body rate",
        "body_too_slow",
    )
}

/// One body's progress against the floor.
pub struct RateFloor {
    window: Duration,
    /// Bytes a window must bring.
    need: u64,
    /// Bytes in the current window.
    got: u64,
    /// Time waited on the client in the current window, up to `since`.
    waited: Duration,
    /// Since when we have been waiting on the client, if we are.
    since: Option<Instant>,
    /// When the current wait fills the window; made on the first wait.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl RateFloor {
    /// A fresh window.
    pub fn new(rate: MinBodyRate) -> Self {
        RateFloor {
            window: rate.window,
            need: rate.bytes_per_window(),
            got: 0,
            waited: Duration::ZERO,
            since: None,
            deadline: None,
        }
    }

    /// The client has nothing for us now. `Err` once the wait fills the
    /// window with too few bytes in it; otherwise the waker is registered
    /// for when it would.
    pub fn poll_waiting(&mut self, cx: &mut Context<'_>) -> Result<(), Rejection> {
        loop {
            let since = match self.since {
                Some(since) => since,
                None => {
                    let now = Instant::now();
                    self.since = Some(now);
                    let at = now + self.window.saturating_sub(self.waited);
                    match self.deadline.as_mut() {
                        Some(d) => d.as_mut().reset(at),
                        None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
                    }
                    now
                }
            };
            let Some(deadline) = self.deadline.as_mut() else {
                return Ok(());
            };
            if deadline.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            self.waited += since.elapsed();
            self.since = None;
            self.end_window()?;
        }
    }

    /// `n` bytes came in.
    pub fn arrived(&mut self, n: usize) -> Result<(), Rejection> {
        if let Some(since) = self.since.take() {
            self.waited += since.elapsed();
        }
        self.got = self.got.saturating_add(n as u64);
        if self.waited >= self.window {
            self.end_window()?;
        }
        Ok(())
    }

    /// The window's waiting time is over: enough bytes start the next one.
    fn end_window(&mut self) -> Result<(), Rejection> {
        if self.got < self.need {
            return Err(too_slow());
        }
        self.got = 0;
        self.waited = Duration::ZERO;
        Ok(())
    }
}

/// Why [`next_frame`] gave up waiting on the client.
#[derive(Debug)]
pub enum Waited {
    /// Nothing came within the body idle timeout.
    Idle,
    /// Bytes came, but under `min_body_rate` (the 408 to answer).
    TooSlow(Rejection),
}

/// The next frame of a body read outside [`super::body::GuardedBody`] (the
/// sender-binding read-ahead, federation deliveries and receipts), under
/// the same two bounds: each wait within `idle`, and the whole body at no
/// less than the floor's rate (`None`: `min_body_rate` is off).
pub async fn next_frame<B>(
    body: &mut B,
    idle: Duration,
    mut floor: Option<&mut RateFloor>,
) -> Result<Option<Result<http_body::Frame<B::Data>, B::Error>>, Waited>
where
    B: http_body::Body + Unpin,
{
    use bytes::Buf as _;
    use std::task::Poll;
    let read = std::future::poll_fn(|cx| match Pin::new(&mut *body).poll_frame(cx) {
        Poll::Pending => match floor.as_deref_mut().map(|f| f.poll_waiting(cx)) {
            Some(Err(r)) => Poll::Ready(Err(r)),
            _ => Poll::Pending,
        },
        Poll::Ready(Some(Ok(frame))) => {
            let n = frame.data_ref().map_or(0, |d| d.remaining());
            match floor.as_deref_mut().map(|f| f.arrived(n)) {
                Some(Err(r)) => Poll::Ready(Err(r)),
                _ => Poll::Ready(Ok(Some(Ok(frame)))),
            }
        }
        Poll::Ready(other) => Poll::Ready(Ok(other)),
    });
    match tokio::time::timeout(idle, read).await {
        Err(_) => Err(Waited::Idle),
        Ok(Err(r)) => Err(Waited::TooSlow(r)),
        Ok(Ok(frame)) => Ok(frame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Poll;

    fn floor(bytes_per_sec: u64, window_ms: u64) -> RateFloor {
        RateFloor::new(MinBodyRate {
            bytes_per_sec,
            window: Duration::from_millis(window_ms),
        })
    }

    /// Waits on the client (nothing arrives) for `d`, as hyper would poll.
    async fn wait(f: &mut RateFloor, d: Duration) -> Result<(), Rejection> {
        let end = Instant::now() + d;
        loop {
            std::future::poll_fn(|cx| Poll::Ready(f.poll_waiting(cx))).await?;
            if Instant::now() >= end {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_trickle_is_cut_once_its_waiting_time_fills_a_window() {
        let mut f = floor(1000, 100); // 100 bytes per 100 ms of waiting
        let mut cut = false;
        for _ in 0..20 {
            if wait(&mut f, Duration::from_millis(20)).await.is_err() || f.arrived(1).is_err() {
                cut = true;
                break;
            }
        }
        assert!(cut, "1 byte per 20 ms is under 1000 B/s");
        assert_eq!(too_slow().status, 408);
    }

    #[tokio::test]
    async fn a_body_at_the_rate_passes_window_after_window() {
        let mut f = floor(1000, 50);
        for _ in 0..12 {
            wait(&mut f, Duration::from_millis(20)).await.unwrap();
            f.arrived(100).unwrap(); // 100 bytes per 20 ms: 5000 B/s
        }
    }

    #[test]
    fn time_not_spent_waiting_on_the_client_does_not_count() {
        // Chunks that were ready whenever polled (a slow reader upstream):
        // no waiting time, so no window ends, however few the bytes.
        let mut f = floor(1_000_000, 1);
        std::thread::sleep(Duration::from_millis(5));
        for _ in 0..10 {
            f.arrived(1).unwrap();
        }
    }
}
