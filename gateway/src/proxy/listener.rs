//! Step 1 of the hyper engine: the HTTPS listening socket and its accept
//! loop, on a tokio runtime of its own.
//!
//! Not a pingora `Service`: the same hyper floor inside pingora's `Server`
//! held ~36 KiB per idle TLS connection against ~25 KiB in plain tokio
//! (benches/run, 2,000 connections, docs/benchmarks.md), at equal CPU per
//! request. pingora's `Server` still runs the process: its phases (SIGTERM,
//! SIGINT) reach this loop, which then stops accepting and lets every
//! connection finish what is in flight.

use super::accept::HyperFront;
use pingora_core::server::ExecutionPhase;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// How long the loop waits after a failed `accept` (e.g. out of file
/// descriptors) before trying again, so a full table does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The bound HTTPS socket, not yet accepting.
pub struct HttpsListener {
    socket: std::net::TcpListener,
    threads: usize,
}

impl HttpsListener {
    /// Binds `addr` now, so a taken port fails start-up with its own error.
    pub fn bind(addr: SocketAddr, threads: usize) -> std::io::Result<Self> {
        let socket = std::net::TcpListener::bind(addr)?;
        socket.set_nonblocking(true)?;
        Ok(HttpsListener { socket, threads })
    }

    /// Starts `threads` workers named `https` and the accept loop; returns
    /// at once. `phases` is pingora's execution phase feed.
    pub fn start(
        self,
        front: Arc<HyperFront>,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads.max(1))
            .thread_name("https")
            .enable_all()
            .build()?;
        let socket = self.socket;
        std::thread::Builder::new()
            .name("https-accept".into())
            .spawn(move || runtime.block_on(accept_loop(socket, front, phases)))?;
        Ok(())
    }
}

async fn accept_loop(
    socket: std::net::TcpListener,
    front: Arc<HyperFront>,
    phases: broadcast::Receiver<ExecutionPhase>,
) {
    let listener = match tokio::net::TcpListener::from_std(socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "HTTPS listener cannot join the runtime");
            return;
        }
    };
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(follow_shutdown(phases, stop_tx));
    let mut stopping = stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // Responses are written whole; Nagle would only delay them.
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(front.clone().serve(tcp, Some(peer), stop.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "HTTPS accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = super::accept::stopped(&mut stopping) => break,
        }
    }
    // Closing the socket refuses new connections; the ones open finish on
    // the workers until the drain watcher ends the process.
    drop(listener);
    std::future::pending::<()>().await;
}

/// Turns pingora's shutdown phases into `stop`.
async fn follow_shutdown(
    mut phases: broadcast::Receiver<ExecutionPhase>,
    stop: watch::Sender<bool>,
) {
    loop {
        match phases.recv().await {
            Ok(
                ExecutionPhase::GracefulTerminate
                | ExecutionPhase::GracefulUpgradeCloseTimeout
                | ExecutionPhase::ShutdownStarted,
            )
            | Err(broadcast::error::RecvError::Closed) => {
                let _ = stop.send(true);
                return;
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
        }
    }
}
