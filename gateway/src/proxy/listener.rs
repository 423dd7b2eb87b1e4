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

/// The bound HTTPS socket(s), not yet accepting.
pub struct HttpsListener {
    /// One socket; with `per_core`, one per worker sharing the port.
    sockets: Vec<std::net::TcpListener>,
    threads: usize,
    per_core: bool,
}

impl HttpsListener {
    /// Binds `addr` now, so a taken port fails start-up with its own error:
    /// one socket for one work-stealing runtime of `threads` workers, or
    /// with `per_core` one `SO_REUSEPORT` socket per worker.
    pub fn bind(addr: SocketAddr, threads: usize, per_core: bool) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let sockets = if per_core {
            (0..threads)
                .map(|_| reuseport_socket(addr))
                .collect::<std::io::Result<Vec<_>>>()?
        } else {
            let socket = std::net::TcpListener::bind(addr)?;
            socket.set_nonblocking(true)?;
            vec![socket]
        };
        Ok(HttpsListener {
            sockets,
            threads,
            per_core,
        })
    }

    /// Starts the workers named `https` and their accept loops; returns at
    /// once. `phases` is pingora's execution phase feed.
    pub fn start(
        self,
        front: Arc<HyperFront>,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> std::io::Result<()> {
        if self.per_core {
            for (index, socket) in self.sockets.into_iter().enumerate() {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let (front, phases) = (front.clone(), phases.resubscribe());
                std::thread::Builder::new()
                    .name(format!("https-{index}"))
                    .spawn(move || {
                        super::pool::set_worker(index);
                        runtime.block_on(accept_loop(socket, front, phases))
                    })?;
            }
            return Ok(());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            .thread_name("https")
            .enable_all()
            .build()?;
        // One socket without `per_core`. The thread keeps the runtime (and
        // so its workers) alive: the accept loop never returns.
        if let Some(socket) = self.sockets.into_iter().next() {
            std::thread::Builder::new()
                .name("https-accept".into())
                .spawn(move || runtime.block_on(accept_loop(socket, front, phases)))?;
        }
        Ok(())
    }
}

/// A listening socket that shares its port with the other workers'; the
/// kernel spreads new connections over them. Also the floor's (`bare_hyper`).
pub fn reuseport_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
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
