//! Graceful shutdown on SIGTERM for every part of the process.
//!
//! The HTTPS listener counts its requests in [`InFlight`]. Everything else
//! (the bridges, the trust-network workers) shares one [`Drain`]: on SIGTERM
//! its first stage ([`Drain::stopping`]) tells every part to take no new
//! work (listeners close, SMTP answers `421 4.3.2` between messages,
//! pollers and workers stop between messages), while work already taken
//! (a DATA transfer, an open SFTP upload, a message being delivered) holds a
//! [`WorkGuard`] and finishes. When nothing is held, or when
//! `server.shutdown_timeout` passed, the process exits; at the timeout the
//! second stage ([`Drain::aborting`]) first lets the parts still busy
//! abandon their work cleanly (an unfinished SFTP upload is terminated,
//! nothing half-stored; a claimed queue entry gets its lease released) for
//! at most [`ABORT_CLEANUP`].

use pingora_core::server::ExecutionPhase;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

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

/// How long HTTP/1.1 connections stay open at the start of a drain, each
/// response closing its connection, before idle ones are closed; the
/// process does not exit before it passed.
pub const DRAIN_LINGER: Duration = Duration::from_secs(1);

/// How long the parts still busy at the shutdown timeout get to abandon
/// their work cleanly (terminate uploads, release leases) before the exit.
pub const ABORT_CLEANUP: Duration = Duration::from_secs(2);

/// The shutdown state the bridges and workers share; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    stop: CancellationToken,
    abort: CancellationToken,
    work: InFlight,
}

/// Held while a piece of accepted work runs; the process does not exit
/// (before the timeout) while one is alive.
#[derive(Debug)]
pub struct WorkGuard {
    _held: InFlightGuard,
}

impl Drain {
    /// A drain that has not started.
    pub fn new() -> Drain {
        Drain::default()
    }

    /// Marks work in progress until the guard is dropped.
    pub fn work(&self) -> WorkGuard {
        WorkGuard {
            _held: self.work.enter(),
        }
    }

    /// Work in progress.
    pub fn busy(&self) -> usize {
        self.work.count()
    }

    /// Whether the shutdown started: take no new work.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Resolves when the shutdown starts.
    pub async fn stopping(&self) {
        self.stop.cancelled().await
    }

    /// Whether the shutdown timeout passed: abandon what is left.
    pub fn is_aborting(&self) -> bool {
        self.abort.is_cancelled()
    }

    /// Resolves when the shutdown timeout passed.
    pub async fn aborting(&self) {
        self.abort.cancelled().await
    }

    /// Starts the shutdown (first stage).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Ends the grace period (second stage; implies the first).
    pub fn abort(&self) {
        self.stop.cancel();
        self.abort.cancel();
    }

    /// Sleeps `d`; `false` when the shutdown started first.
    pub async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = self.stopping() => false,
        }
    }
}

/// Waits, polling every 20 ms, until `done` or `deadline`; whether it is done.
fn wait_until(deadline: Instant, done: impl Fn() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Watches pingora's execution phases on a plain thread. Once the graceful
/// shutdown started (listeners closed, keep-alive connections told to close),
/// it starts `drain`, waits until no request and no bridge work is in
/// flight, or `limit`, then exits the process.
///
/// pingora itself would sleep the whole grace period even with nothing to do;
/// its grace period must be at least `limit` + [`ABORT_CLEANUP`].
pub fn exit_when_drained(
    mut phases: broadcast::Receiver<ExecutionPhase>,
    in_flight: InFlight,
    drain: Drain,
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
        drain.stop();
        tracing::info!(
            requests = in_flight.count(),
            bridge_work = drain.busy(),
            "shutdown: draining"
        );
        let started = Instant::now();
        let idle =
            || in_flight.count() == 0 && drain.busy() == 0 && started.elapsed() >= DRAIN_LINGER;
        if wait_until(started + limit.max(DRAIN_LINGER), idle) {
            tracing::info!("all in-flight work finished; exiting");
        } else {
            tracing::warn!(
                requests = in_flight.count(),
                bridge_work = drain.busy(),
                "shutdown timeout reached with work in flight; abandoning it"
            );
            drain.abort();
            if !wait_until(Instant::now() + ABORT_CLEANUP, || drain.busy() == 0) {
                tracing::warn!(
                    bridge_work = drain.busy(),
                    "bridge work not cleaned up in time"
                );
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stages_and_guards() {
        let d = Drain::new();
        assert!(!d.is_stopping() && !d.is_aborting());
        let g = d.work();
        let g2 = d.clone().work();
        assert_eq!(d.busy(), 2);
        drop(g);
        assert_eq!(d.busy(), 1);
        let sleeper = {
            let d = d.clone();
            tokio::spawn(async move { d.sleep(Duration::from_secs(60)).await })
        };
        d.stop();
        assert!(!sleeper.await.unwrap(), "sleep ends early at the stop");
        assert!(d.is_stopping() && !d.is_aborting());
        d.abort();
        assert!(d.is_aborting());
        d.aborting().await;
        drop(g2);
        assert_eq!(d.busy(), 0);
    }
}
