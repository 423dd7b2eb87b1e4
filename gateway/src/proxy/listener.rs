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
use futures_util::FutureExt as _;
use pingora_core::server::ExecutionPhase;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// How long the loop waits after a failed `accept` (e.g. out of file
/// descriptors) before trying again, so a full table does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How often, at most, the cap on connections is logged while reached.
const AT_CAP_LOG_EVERY: Duration = Duration::from_secs(10);

/// `limits.max_connections`: the HTTPS connections served at once, over
/// every worker. At the cap an accept loop holds the connection it just
/// accepted, before any TLS work, and accepts nothing more until a
/// connection ends (HAProxy's `maxconn`, nginx's `worker_connections`):
/// further clients wait in the kernel's listen queue, and memory stays
/// bounded however many addresses an attack comes from.
#[derive(Clone)]
pub struct ConnectionCap {
    slots: Option<Arc<Semaphore>>,
    max: u32,
    /// Seconds after the instant from which the cap may be logged again.
    next_log: Arc<(Instant, AtomicU64)>,
}

/// A connection's place under the cap, given back when it is dropped.
type Slot = Option<OwnedSemaphorePermit>;

impl ConnectionCap {
    /// `None`: no cap.
    pub fn new(max: Option<u32>) -> ConnectionCap {
        ConnectionCap {
            slots: max.map(|n| Arc::new(Semaphore::new(n as usize))),
            max: max.unwrap_or(0),
            next_log: Arc::new((Instant::now(), AtomicU64::new(0))),
        }
    }

    /// A slot at once, or `None` at the cap.
    fn try_slot(&self) -> Option<Slot> {
        let Some(slots) = &self.slots else {
            return Some(None);
        };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => Some(Some(permit)),
            Err(TryAcquireError::NoPermits) => None,
            // Never closed.
            Err(TryAcquireError::Closed) => Some(None),
        }
    }

    /// Waits for a connection to end.
    async fn slot(&self) -> Slot {
        match &self.slots {
            Some(slots) => slots.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    fn log_reached(&self) {
        let (start, next) = &*self.next_log;
        let now = start.elapsed().as_secs();
        let due = next.load(Ordering::Relaxed);
        // One of the accept loops logs; the others see the moved mark.
        if now >= due
            && next
                .compare_exchange(
                    due,
                    now + AT_CAP_LOG_EVERY.as_secs(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            tracing::warn!(
                max = self.max,
                "HTTPS connections at limits.max_connections: new connections wait until one closes"
            );
        }
    }
}

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
        // Passed in by an upgrade or systemd when there are (upgrade.rs).
        let https = crate::upgrade::names::HTTPS;
        let sockets = if per_core {
            let first = crate::upgrade::listener_with(https, addr, reuseport_socket)?;
            // Port 0: the others share the port the kernel gave the first.
            let addr = first.local_addr()?;
            let mut sockets = vec![first];
            for _ in 1..threads {
                sockets.push(crate::upgrade::listener_with(
                    https,
                    addr,
                    reuseport_socket,
                )?);
            }
            sockets
        } else {
            vec![crate::upgrade::listener(https, addr)?]
        };
        Ok(HttpsListener {
            sockets,
            threads,
            per_core,
        })
    }

    /// The one socket (without `per_core`), for the pingora engine.
    pub fn into_socket(self) -> Option<std::net::TcpListener> {
        self.sockets.into_iter().next()
    }

    /// The address the sockets are bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self.sockets.first() {
            Some(s) => s.local_addr(),
            None => Err(std::io::Error::other("no socket")),
        }
    }

    /// Starts the workers named `https` and their accept loops; returns at
    /// once. `phases` is pingora's execution phase feed. The answer moves
    /// the accepting to another address later ([`HttpsRuntime::switch`]).
    pub fn start(
        self,
        front: Arc<HyperFront>,
        cap: ConnectionCap,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> std::io::Result<HttpsRuntime> {
        let (stop_tx, stop) = watch::channel(false);
        let mut handles = Vec::new();
        let mut balance = None;
        if self.per_core {
            let (shared, mut inboxes) = Balance::new(self.threads);
            for index in 0..self.threads {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                handles.push(runtime.handle().clone());
                let passed = serve_passed(
                    inboxes.remove(0),
                    front.clone(),
                    shared.clone(),
                    index,
                    stop.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("https-{index}"))
                    .spawn(move || {
                        super::pool::set_worker(index);
                        // The worker lives as long as the process; its
                        // accept loops come and go with the address.
                        runtime.block_on(passed)
                    })?;
            }
            balance = Some(shared);
        } else {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(self.threads)
                .thread_name("https")
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            // The thread keeps the runtime (and so its workers) alive.
            std::thread::Builder::new()
                .name("https-accept".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        }
        let running = HttpsRuntime {
            handles,
            front,
            cap,
            balance,
            stop,
            accepting: None,
            addr: None,
        };
        let mut running = running;
        running.switch(self)?;
        // pingora's shutdown phases end every accept loop and tell open
        // connections to finish.
        std::thread::Builder::new()
            .name("phases-https".into())
            .spawn(move || follow_shutdown(phases, stop_tx))?;
        Ok(running)
    }
}

/// The running HTTPS workers and the address they accept on.
pub struct HttpsRuntime {
    /// One runtime, or one per per-core worker.
    handles: Vec<tokio::runtime::Handle>,
    front: Arc<HyperFront>,
    cap: ConnectionCap,
    balance: Option<Arc<Balance>>,
    /// pingora's graceful shutdown.
    stop: watch::Receiver<bool>,
    /// Ends the current accept loops.
    accepting: Option<watch::Sender<bool>>,
    addr: Option<SocketAddr>,
}

impl HttpsRuntime {
    /// Accepts on `sockets` from now on (bound before: a bind error changed
    /// nothing). The previous sockets close: new connections there are
    /// refused, connections already accepted finish on the workers.
    pub fn switch(&mut self, sockets: HttpsListener) -> std::io::Result<()> {
        let addr = sockets.local_addr()?;
        let (done_tx, done) = watch::channel(false);
        for (index, socket) in sockets.sockets.into_iter().enumerate() {
            let handle = self
                .handles
                .get(index)
                .or(self.handles.first())
                .ok_or_else(|| std::io::Error::other("no HTTPS runtime"))?;
            let worker = self.balance.clone().map(|b| (index, b));
            handle.spawn(accept_loop(
                socket,
                self.front.clone(),
                self.cap.clone(),
                self.stop.clone(),
                done.clone(),
                worker,
            ));
        }
        if let Some(previous) = self.accepting.replace(done_tx) {
            let _ = previous.send(true);
        }
        if let Some(old) = self.addr.replace(addr) {
            if old != addr {
                crate::upgrade::forget(crate::upgrade::names::HTTPS, old);
            }
        }
        Ok(())
    }

    /// The address accepted on.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The per-core workers' runtimes, in worker order (none with the
    /// work-stealing runtime): other listeners hand them connections whose
    /// requests those workers send.
    pub fn worker_handles(&self) -> Vec<tokio::runtime::Handle> {
        match self.balance {
            Some(_) => self.handles.clone(),
            None => Vec::new(),
        }
    }

    /// Whether the workers run per core (a rebind needs as many sockets).
    pub fn per_core(&self) -> Option<usize> {
        self.balance.as_ref().map(|_| self.handles.len())
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

/// Per-core workers' shared view of their load: open connections per
/// worker, and a way to hand a connection to another worker.
///
/// The kernel spreads connections over the `SO_REUSEPORT` sockets by a hash
/// of the addresses, not by load: a few long-lived h2 connections can land
/// on one worker while the other idles (h2 at 0.77x nginx, benches/run).
/// A worker that accepts while it holds more connections than the least
/// loaded one passes the socket on; the cost is two `epoll_ctl` calls per
/// passed connection, nothing per request.
struct Balance {
    open: Vec<AtomicUsize>,
    inboxes: Vec<mpsc::UnboundedSender<Passed>>,
}

/// A connection handed to another worker, with its place under the cap.
type Passed = (std::net::TcpStream, SocketAddr, Slot);

type Inbox = mpsc::UnboundedReceiver<Passed>;

impl Balance {
    fn new(workers: usize) -> (Arc<Balance>, Vec<Inbox>) {
        let (inboxes, receivers) = (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let balance = Balance {
            open: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            inboxes,
        };
        (Arc::new(balance), receivers)
    }

    /// Where a connection accepted by `me` should be served: `me` unless
    /// another worker holds fewer connections. Counts the connection there
    /// at once, so a burst of accepts spreads instead of all going to the
    /// same worker.
    fn place(&self, me: usize) -> usize {
        let loads = self.open.iter().map(|n| n.load(Ordering::Relaxed));
        let (least, fewest) = loads.enumerate().min_by_key(|(_, n)| *n).unwrap_or((me, 0));
        let mine = self.open.get(me).map_or(0, |n| n.load(Ordering::Relaxed));
        let target = if fewest < mine { least } else { me };
        if let Some(n) = self.open.get(target) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        target
    }
}

/// One connection counted on worker `index` until the connection ends.
struct Counted {
    balance: Arc<Balance>,
    index: usize,
}

/// What a connection holds while it is served.
struct Held {
    /// Per-core: its worker's count.
    _counted: Option<Counted>,
    _slot: Slot,
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(n) = self.balance.open.get(self.index) {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

async fn accept_loop(
    socket: std::net::TcpListener,
    front: Arc<HyperFront>,
    cap: ConnectionCap,
    stop: watch::Receiver<bool>,
    done: watch::Receiver<bool>,
    worker: Option<(usize, Arc<Balance>)>,
) {
    let listener = match tokio::net::TcpListener::from_std(socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "HTTPS listener cannot join the runtime");
            return;
        }
    };
    let (mut stopping, mut moved) = (stop.clone(), done);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let slot = match cap.try_slot() {
                        Some(slot) => slot,
                        None => {
                            cap.log_reached();
                            tokio::select! {
                                slot = cap.slot() => slot,
                                () = super::accept::stopped(&mut stopping) => break,
                                () = super::accept::stopped(&mut moved) => break,
                            }
                        }
                    };
                    // Responses are written whole; Nagle would only delay them.
                    let _ = tcp.set_nodelay(true);
                    let Some((me, balance)) = &worker else {
                        spawn_held(&front, tcp, peer, &stop, Held { _counted: None, _slot: slot });
                        continue;
                    };
                    let target = balance.place(*me);
                    let tcp = if target == *me { Ok((tcp, slot)) } else { pass(balance, target, tcp, peer, slot) };
                    if let Ok((tcp, slot)) = tcp {
                        let counted = Counted { balance: balance.clone(), index: *me };
                        spawn_held(&front, tcp, peer, &stop, Held { _counted: Some(counted), _slot: slot });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "HTTPS accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = super::accept::stopped(&mut stopping) => break,
            () = super::accept::stopped(&mut moved) => break,
        }
    }
    // Closing the socket refuses new connections; the ones open finish on
    // the workers (until the drain watcher ends the process at shutdown).
}

/// Hands `tcp` to worker `target`, already counted there. Gives the
/// connection back (counted here instead) if it cannot be passed.
fn pass(
    balance: &Balance,
    target: usize,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
) -> Result<(tokio::net::TcpStream, Slot), ()> {
    let uncount = || {
        if let Some(n) = balance.open.get(target) {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    };
    // Leaves this worker's reactor; the target registers it with its own.
    let std_tcp = match tcp.into_std() {
        Ok(s) => s,
        Err(e) => {
            uncount();
            tracing::debug!(error = %e, "cannot pass a connection to another worker");
            return Err(());
        }
    };
    let Some(inbox) = balance.inboxes.get(target) else {
        uncount();
        return tokio::net::TcpStream::from_std(std_tcp)
            .map(|tcp| (tcp, slot))
            .map_err(|_| ());
    };
    match inbox.send((std_tcp, peer, slot)) {
        Ok(()) => Err(()),
        Err(mpsc::error::SendError((std_tcp, _, slot))) => {
            uncount();
            tokio::net::TcpStream::from_std(std_tcp)
                .map(|tcp| (tcp, slot))
                .map_err(|_| ())
        }
    }
}

/// Serves the connections other workers pass to worker `index`.
async fn serve_passed(
    mut inbox: Inbox,
    front: Arc<HyperFront>,
    balance: Arc<Balance>,
    index: usize,
    stop: watch::Receiver<bool>,
) {
    while let Some((std_tcp, peer, slot)) = inbox.recv().await {
        // Counted by the worker that passed it.
        let counted = Counted {
            balance: balance.clone(),
            index,
        };
        let tcp = match tokio::net::TcpStream::from_std(std_tcp) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(error = %e, "a passed connection cannot join this worker");
                continue;
            }
        };
        let held = Held {
            _counted: Some(counted),
            _slot: slot,
        };
        spawn_held(&front, tcp, peer, &stop, held);
    }
}

/// Serves `tcp` on this worker; `held` (its worker's count, its place
/// under the cap) is given back when the connection ends.
fn spawn_held(
    front: &Arc<HyperFront>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    stop: &watch::Receiver<bool>,
    held: Held,
) {
    let serving = front.clone().serve(tcp, Some(peer), stop.clone());
    // A combinator, not an async block, which would keep `serving` twice.
    tokio::spawn(serving.map(move |()| drop(held)));
}

/// Turns pingora's shutdown phases into `stop` (on a plain thread).
fn follow_shutdown(mut phases: broadcast::Receiver<ExecutionPhase>, stop: watch::Sender<bool>) {
    loop {
        match phases.blocking_recv() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_core_sockets_on_port_0_share_the_port_the_kernel_gave_the_first() {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = HttpsListener::bind(any, 3, true).unwrap();
        let ports: Vec<u16> = listener
            .sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert_ne!(ports[0], 0);
        assert!(ports.iter().all(|p| *p == ports[0]), "{ports:?}");
    }

    #[test]
    fn a_worker_passes_connections_only_to_one_with_fewer() {
        let (balance, _inboxes) = Balance::new(2);
        // Even: kept.
        assert_eq!(balance.place(0), 0);
        assert_eq!(balance.place(1), 1);
        assert_eq!(balance.place(0), 0);
        // Worker 0 holds 2, worker 1 holds 1: passed on, and counted there.
        assert_eq!(balance.place(0), 1);
        let open: Vec<usize> = balance
            .open
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect();
        assert_eq!(open, [2, 2]);
        // A connection that ends frees its count.
        drop(Counted {
            balance: balance.clone(),
            index: 1,
        });
        assert_eq!(balance.place(0), 1);
        // A burst on one worker's socket ends up spread over both.
        let (balance, _inboxes) = Balance::new(2);
        let placed: Vec<usize> = (0..8).map(|_| balance.place(0)).collect();
        let on_1 = placed.iter().filter(|t| **t == 1).count();
        assert_eq!(on_1, 4, "{placed:?}");
    }
}
