//! In-flight request accounting, so SIGTERM ends the process as soon as the
//! last request finished instead of after a fixed grace period.

use pingora_core::server::ExecutionPhase;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Counts requests being served.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

/// Held by a request for its lifetime; dropping it ends the request's count.
#[derive(Debug)]
pub struct InFlightGuard(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one more request until the guard is dropped.
    pub fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    /// Requests currently being served.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Watches pingora's execution phases on a plain thread. Once the graceful
/// shutdown started (listeners closed, keep-alive connections told to close),
/// it waits until no request is in flight, or `limit`, then exits the process.
///
/// pingora itself would sleep the whole grace period even with nothing to do.
pub fn exit_when_drained(
    mut phases: broadcast::Receiver<ExecutionPhase>,
    in_flight: InFlight,
    limit: Duration,
    before_exit: impl FnOnce() + Send + 'static,
) {
    let watch = move || {
        loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
        let deadline = Instant::now() + limit;
        while in_flight.count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = in_flight.count();
        if left > 0 {
            tracing::warn!(left, "shutdown timeout reached with requests in flight");
        } else {
            tracing::info!("all in-flight requests finished; exiting");
        }
        before_exit();
        std::process::exit(0);
    };
    if let Err(e) = std::thread::Builder::new()
        .name("drain-watch".into())
        .spawn(watch)
    {
        tracing::warn!(error = %e, "cannot start drain watcher; shutdown will use the full grace period");
    }
}
