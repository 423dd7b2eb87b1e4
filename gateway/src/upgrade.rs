//! Zero-downtime binary upgrade and systemd socket activation
//! (docs/operations.md "Upgrade the binary", docs/architecture.md).
//!
//! Every listening socket of the process (HTTPS, including each per-core
//! socket, admin, SMTP, SMTPS, SFTP, connector) is bound through
//! [`listener`] and kept in one registry by name. An upgrade (SIGUSR2,
//! `POST /admin/v1/upgrade`, `mft-gateway upgrade`) starts the binary at
//! the path this process was started from (so the new file on disk is what
//! runs) with the same arguments and the sockets as systemd passes them
//! (`LISTEN_FDS`, `LISTEN_FDNAMES`, fds from 3 on). The new process takes
//! them instead of binding ([`adopt_inherited`]), so the kernel's accept
//! queues are never closed and no connection is refused. It reports ready
//! on a datagram socket named in `MFT_UPGRADE_NOTIFY` once it serves; only
//! then does this process tell systemd the new main PID and start its own
//! graceful shutdown (drain.rs). If the new process exits or is not ready
//! in time, it is stopped and this process keeps serving.

use command_fds::{CommandFdExt, FdMapping};
use pingora_core::server::ExecutionPhase;
use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::broadcast;

/// The socket names (`LISTEN_FDNAMES`) of the listeners.
pub mod names {
    /// `server.https_listen` (one per worker with `runtime = "per-core"`).
    pub const HTTPS: &str = "https";
    /// `server.admin_listen`.
    pub const ADMIN: &str = "admin";
    /// `smtp.listen`.
    pub const SMTP: &str = "smtp";
    /// `smtp.tls_listen`.
    pub const SMTPS: &str = "smtps";
    /// `sftp.listen`.
    pub const SFTP: &str = "sftp";
    /// `connector.listen`.
    pub const CONNECTOR: &str = "connector";
    /// `server.acme.http_listen` (HTTP-01).
    pub const ACME_HTTP: &str = "acme-http";
}

/// The environment variable naming the new process's readiness socket.
pub const NOTIFY_ENV: &str = "MFT_UPGRADE_NOTIFY";

/// How long the new process gets to start serving.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long both processes serve side by side before the old one stops
/// accepting: long enough for the answer to the upgrade request to leave.
const OVERLAP: Duration = Duration::from_millis(500);

/// Why an upgrade did not happen; the old process keeps serving.
#[derive(Debug, Error)]
pub enum UpgradeError {
    /// The process was not started by `run` (no registry of sockets).
    #[error("upgrade is not available in this process")]
    Unavailable,
    /// An upgrade is running, or this process already handed over.
    #[error("an upgrade is already in progress or this process is draining")]
    Busy,
    /// Preparing or starting the new process failed.
    #[error("cannot start the new process {exe}: {source}")]
    Spawn {
        /// The binary.
        exe: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The new process exited before it was ready.
    #[error("the new process (pid {pid}) exited before it was ready: {status}; see its log lines")]
    Exited {
        /// Its pid.
        pid: u32,
        /// How it ended.
        status: std::process::ExitStatus,
    },
    /// The new process did not report ready in time; it was stopped.
    #[error("the new process (pid {pid}) was not ready within {}s; it was stopped", .timeout.as_secs())]
    Timeout {
        /// Its pid.
        pid: u32,
        /// The limit.
        timeout: Duration,
    },
}

/// What a successful upgrade did.
#[derive(Debug, Clone, Copy)]
pub struct Handover {
    /// This (old) process, now draining.
    pub old_pid: u32,
    /// The new process, serving.
    pub new_pid: u32,
    /// How many sockets were handed over.
    pub sockets: usize,
}

struct Registry {
    /// Sockets received at start-up and not claimed yet.
    inherited: Vec<(String, TcpListener)>,
    /// A duplicate of every socket this process serves, by name.
    serving: Vec<(String, TcpListener)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    inherited: Vec::new(),
    serving: Vec::new(),
});

/// The binary and arguments this process was started with.
static STARTED_AS: OnceLock<(PathBuf, Vec<OsString>, PathBuf)> = OnceLock::new();
static UPGRADING: AtomicBool = AtomicBool::new(false);
static HANDED_OVER: AtomicBool = AtomicBool::new(false);

/// Whether this process handed its sockets to a new one (it drains; the
/// new process is the service now, so this one must not tell systemd it
/// stops).
pub fn handed_over() -> bool {
    HANDED_OVER.load(Ordering::SeqCst)
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes the sockets passed by systemd or by the process being upgraded
/// and records how this process was started. Call first in `run`, before
/// any thread starts (it clears the `LISTEN_*` variables). Returns how many
/// sockets were received.
pub fn adopt_inherited(data_dir: &Path) -> usize {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let args = std::env::args_os().skip(1).collect();
    let _ = STARTED_AS.set((exe, args, data_dir.to_path_buf()));
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    std::env::remove_var("LISTEN_FDNAMES");
    let mut fds = listenfd::ListenFd::from_env();
    let mut reg = registry();
    for index in 0..fds.len() {
        let name = names
            .get(index)
            .cloned()
            .unwrap_or_else(|| "unknown".into());
        match fds.take_tcp_listener(index) {
            Ok(Some(l)) => reg.inherited.push((name, l)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(index, name, error = %e, "passed fd is not a TCP listener; ignored")
            }
        }
    }
    reg.inherited.len()
}

/// Whether inherited socket address `got` serves configured address `want`
/// (port 0 in the config: whatever port the first process got).
fn serves(got: SocketAddr, want: SocketAddr) -> bool {
    got == want || (want.port() == 0 && got.ip() == want.ip())
}

fn take_inherited(name: &str, addr: SocketAddr) -> Option<TcpListener> {
    let mut reg = registry();
    let at = reg
        .inherited
        .iter()
        .position(|(n, l)| n == name && l.local_addr().is_ok_and(|got| serves(got, addr)))?;
    Some(reg.inherited.remove(at).1)
}

/// Records `socket` as served under `name`, for the next upgrade.
fn register(name: &str, socket: &TcpListener) -> std::io::Result<()> {
    let copy = socket.try_clone()?;
    registry().serving.push((name.to_string(), copy));
    Ok(())
}

/// The listening socket `name` on `addr`, non-blocking: the one passed
/// in, or a new one bound now.
pub fn listener(name: &str, addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match take_inherited(name, addr) {
        Some(s) => {
            tracing::info!(name, %addr, "listening on a passed socket");
            s
        }
        None => TcpListener::bind(addr)?,
    };
    socket.set_nonblocking(true)?;
    register(name, &socket)?;
    Ok(socket)
}

/// Like [`listener`], with `bind` for a socket that was not passed in
/// (the per-core `SO_REUSEPORT` sockets).
pub fn listener_with(
    name: &str,
    addr: SocketAddr,
    bind: impl FnOnce(SocketAddr) -> std::io::Result<TcpListener>,
) -> std::io::Result<TcpListener> {
    let socket = match take_inherited(name, addr) {
        Some(s) => s,
        None => bind(addr)?,
    };
    socket.set_nonblocking(true)?;
    register(name, &socket)?;
    Ok(socket)
}

/// The address each listener serves now, by name (the per-core HTTPS
/// sockets share one), for `data_dir/listeners.json` (listeners.rs).
pub fn serving_addresses() -> std::collections::BTreeMap<String, SocketAddr> {
    let mut out = std::collections::BTreeMap::new();
    for (name, socket) in &registry().serving {
        if let Ok(addr) = socket.local_addr() {
            out.entry(name.clone()).or_insert(addr);
        }
    }
    out
}

/// Lets go of this process's copy of the sockets `name` on `addr` (a
/// listener moved to another address): the next upgrade does not pass them.
pub fn forget(name: &str, addr: SocketAddr) {
    registry()
        .serving
        .retain(|(n, l)| !(n == name && l.local_addr().is_ok_and(|a| a == addr)));
}

/// Ends an accept loop whose listener a reload moved to another address.
#[derive(Debug, Clone)]
pub struct Moved(tokio::sync::watch::Receiver<bool>);

impl Moved {
    /// Resolves when the listener moved (never otherwise).
    pub async fn wait(&mut self) {
        if self.0.wait_for(|moved| *moved).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

type Serve = std::sync::Arc<dyn Fn(TcpListener, Moved) + Send + Sync>;

/// A listener a reload can move (`smtp.listen`, `smtp.tls_listen`,
/// `sftp.listen`, `server.admin_listen`, `connector.listen`): how to serve
/// a socket, and how to end the current loop.
struct Movable {
    name: String,
    addr: SocketAddr,
    serve: Serve,
    moved: tokio::sync::watch::Sender<bool>,
}

static MOVABLE: Mutex<Vec<Movable>> = Mutex::new(Vec::new());

fn movable() -> std::sync::MutexGuard<'static, Vec<Movable>> {
    MOVABLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Binds (or takes over) `name` on `addr` and serves it with `serve`, which
/// must start an accept loop that ends when its [`Moved`] resolves; a
/// reload can then move the listener ([`rebind`]).
pub fn serve_movable(
    name: &str,
    addr: SocketAddr,
    serve: impl Fn(TcpListener, Moved) + Send + Sync + 'static,
) -> std::io::Result<()> {
    let socket = listener(name, addr)?;
    serve_movable_bound(name, socket, serve)
}

/// [`serve_movable`] for a socket already bound with [`listener`] (bound
/// early, so a taken port is a startup error before anything starts).
pub fn serve_movable_bound(
    name: &str,
    socket: TcpListener,
    serve: impl Fn(TcpListener, Moved) + Send + Sync + 'static,
) -> std::io::Result<()> {
    let bound = socket.local_addr()?;
    let (moved, rx) = tokio::sync::watch::channel(false);
    let serve: Serve = std::sync::Arc::new(serve);
    serve(socket, Moved(rx));
    movable().push(Movable {
        name: name.to_string(),
        addr: bound,
        serve,
        moved,
    });
    Ok(())
}

/// A movable listener bound at its new address, not serving yet. Dropped
/// without [`Rebound::switch`], the socket closes and nothing changed.
#[derive(Debug)]
pub struct Rebound {
    name: String,
    addr: SocketAddr,
    socket: Option<TcpListener>,
}

/// Binds the new address of the running listener `name`: `None` when no
/// such listener runs (the change needs a restart).
pub fn rebind(name: &str, addr: SocketAddr) -> Option<std::io::Result<Rebound>> {
    if !movable().iter().any(|m| m.name == name) {
        return None;
    }
    Some(listener(name, addr).and_then(|socket| {
        Ok(Rebound {
            name: name.to_string(),
            addr: socket.local_addr()?,
            socket: Some(socket),
        })
    }))
}

impl Rebound {
    /// Serves the new socket, then ends the old accept loop (its socket
    /// closes; connections it accepted finish).
    pub fn switch(mut self) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        let mut all = movable();
        let Some(entry) = all.iter_mut().find(|m| m.name == self.name) else {
            return;
        };
        let (moved, rx) = tokio::sync::watch::channel(false);
        (entry.serve)(socket, Moved(rx));
        let _ = entry.moved.send(true);
        entry.moved = moved;
        let old = std::mem::replace(&mut entry.addr, self.addr);
        if old != self.addr {
            forget(&self.name, old);
        }
        tracing::info!(name = self.name, from = %old, to = %self.addr, "listener moved; connections on the old address finish there");
    }
}

impl Drop for Rebound {
    fn drop(&mut self) {
        if self.socket.take().is_some() {
            forget(&self.name, self.addr);
        }
    }
}

/// Closes passed sockets no listener claimed (e.g. a listener removed from
/// the config, or fewer per-core workers), with a warning each.
pub fn close_unclaimed() {
    for (name, l) in registry().inherited.drain(..) {
        tracing::warn!(name, addr = ?l.local_addr().ok(), "a passed socket is not in the config; closed");
    }
}

/// Once the shutdown starts, this process lets go of its copies, so a
/// closed listener refuses connections again; and from then on refuses to
/// upgrade. Also reports readiness to the process that started this one
/// for an upgrade, if any.
pub fn start(mut phases: broadcast::Receiver<ExecutionPhase>) {
    let notify = std::env::var_os(NOTIFY_ENV).map(PathBuf::from);
    std::env::remove_var(NOTIFY_ENV);
    let follow = move || loop {
        match phases.blocking_recv() {
            Ok(ExecutionPhase::Running) => {
                if let Some(path) = &notify {
                    report_ready(path);
                }
            }
            Ok(
                ExecutionPhase::GracefulTerminate
                | ExecutionPhase::ShutdownStarted
                | ExecutionPhase::GracefulUpgradeTransferringFds,
            ) => {
                UPGRADING.store(true, Ordering::SeqCst);
                registry().serving.clear();
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("upgrade-phases".into())
        .spawn(follow)
    {
        tracing::warn!(error = %e, "cannot follow the server phases for upgrades");
    }
}

fn report_ready(path: &Path) {
    let sent = UnixDatagram::unbound().and_then(|s| {
        s.send_to(
            format!("READY=1\nPID={}", std::process::id()).as_bytes(),
            path,
        )
    });
    match sent {
        Ok(_) => tracing::info!("reported ready to the process being upgraded"),
        Err(e) => tracing::error!(error = %e, "cannot report ready to the process being upgraded"),
    }
}

/// Runs an upgrade on a thread of its own and waits for the outcome
/// without blocking the caller's runtime. `trigger` goes into the log.
pub async fn upgrade(trigger: String) -> Result<Handover, UpgradeError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("upgrade".into())
        .spawn(move || {
            let _ = tx.send(upgrade_blocking(&trigger));
        })
        .map_err(|source| UpgradeError::Spawn {
            exe: PathBuf::from("(thread)"),
            source,
        })?;
    rx.await.unwrap_or(Err(UpgradeError::Unavailable))
}

/// [`upgrade`] on the calling thread; never call it on a runtime worker.
pub fn upgrade_blocking(trigger: &str) -> Result<Handover, UpgradeError> {
    if UPGRADING.swap(true, Ordering::SeqCst) {
        return Err(UpgradeError::Busy);
    }
    tracing::info!(trigger, "binary upgrade: starting the new process");
    let result = hand_over();
    match &result {
        Ok(h) => {
            tracing::info!(
                trigger,
                old_pid = h.old_pid,
                new_pid = h.new_pid,
                sockets = h.sockets,
                "binary upgrade: the new process serves; this one drains and exits"
            );
            HANDED_OVER.store(true, Ordering::SeqCst);
            notify_systemd(h.new_pid);
            // After the caller had the time to answer the upgrade request.
            let drain = || {
                std::thread::sleep(OVERLAP);
                if let Err(e) = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM) {
                    tracing::error!(error = %e, "cannot start the drain after the upgrade");
                }
            };
            if let Err(e) = std::thread::Builder::new()
                .name("upgrade-drain".into())
                .spawn(drain)
            {
                tracing::error!(error = %e, "cannot start the drain after the upgrade; send SIGTERM");
            }
        }
        Err(e) => {
            tracing::error!(
                trigger,
                "binary upgrade failed, this process keeps serving: {e}"
            );
            UPGRADING.store(false, Ordering::SeqCst);
        }
    }
    result
}

/// systemd follows the new process (the unit has `NotifyAccess=all`).
fn notify_systemd(pid: u32) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let states = [
        sd_notify::NotifyState::MainPid(pid),
        sd_notify::NotifyState::Status("upgraded: the old process drains"),
    ];
    if let Err(e) = sd_notify::notify(&states) {
        tracing::warn!(error = %e, "cannot tell systemd the new main PID");
    }
}

fn hand_over() -> Result<Handover, UpgradeError> {
    let Some((exe, args, data_dir)) = STARTED_AS.get() else {
        return Err(UpgradeError::Unavailable);
    };
    let spawn_error = |source| UpgradeError::Spawn {
        exe: exe.clone(),
        source,
    };
    let (names, mappings) = {
        let reg = registry();
        let mut names = Vec::new();
        let mut mappings = Vec::new();
        for (index, (name, socket)) in reg.serving.iter().enumerate() {
            let fd: OwnedFd = socket.try_clone().map_err(spawn_error)?.into();
            names.push(name.clone());
            mappings.push(FdMapping {
                parent_fd: fd,
                child_fd: 3 + i32::try_from(index).unwrap_or(i32::MAX - 3),
            });
        }
        (names, mappings)
    };
    let sockets = mappings.len();
    let notify_path = data_dir.join(format!("upgrade-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&notify_path);
    let notify = UnixDatagram::bind(&notify_path).map_err(spawn_error)?;
    let _cleanup = RemoveOnDrop(notify_path.clone());
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(spawn_error)?;

    let mut command = std::process::Command::new(exe);
    command
        .args(args)
        .env("LISTEN_FDS", sockets.to_string())
        .env("LISTEN_FDNAMES", names.join(":"))
        .env_remove("LISTEN_PID")
        .env(NOTIFY_ENV, &notify_path)
        .stdin(std::process::Stdio::null());
    command
        .fd_mappings(mappings)
        .map_err(|e| spawn_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    let mut child = command.spawn().map_err(spawn_error)?;
    let pid = child.id();
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut buf = [0u8; 256];
    loop {
        if let Ok(n) = notify.recv(&mut buf) {
            if buf.get(..n).is_some_and(|m| m.starts_with(b"READY=1")) {
                break;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(UpgradeError::Exited { pid, status });
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(UpgradeError::Timeout {
                pid,
                timeout: READY_TIMEOUT,
            });
        }
    }
    Ok(Handover {
        old_pid: std::process::id(),
        new_pid: pid,
        sockets,
    })
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// SIGUSR2 upgrades, like `mft-gateway upgrade`. Registered before serving:
/// SIGUSR2's default action would end the process.
pub fn upgrade_on_sigusr2(control: &crate::runtime::ServiceRuntime) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr2 = control
        .block_on(async { signal(SignalKind::user_defined2()) })
        .context("cannot watch SIGUSR2")?
        .context("cannot watch SIGUSR2")?;
    control.spawn(async move {
        while usr2.recv().await.is_some() {
            // The outcome is logged by the upgrade.
            let _ = upgrade("signal:SIGUSR2".to_string()).await;
        }
    });
    Ok(())
}

/// Serves a pingora app (`ServeHttp` service, the connector listener, the
/// pingora engine's HTTPS front) on `socket`, on a runtime of its own with
/// `threads` workers, until pingora's graceful shutdown starts. pingora's
/// `Service` would bind its sockets itself; this keeps them in the
/// registry so an upgrade can hand them over.
pub fn serve_pingora_app<A>(
    name: &'static str,
    socket: TcpListener,
    app: std::sync::Arc<A>,
    threads: usize,
    phases: broadcast::Receiver<ExecutionPhase>,
) -> std::io::Result<()>
where
    A: pingora_core::apps::ServerApp + Send + Sync + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("{name}-accept"))
        .spawn(move || runtime.block_on(accept_app(name, socket, app, phases, None)))?;
    Ok(())
}

/// [`serve_pingora_app`] for a listener a reload can move to another
/// address ([`rebind`]; `server.admin_listen`, `connector.listen`): the
/// connections the old socket accepted finish on the same runtime.
pub fn serve_pingora_app_movable<A>(
    name: &'static str,
    socket: TcpListener,
    app: std::sync::Arc<A>,
    threads: usize,
    phases: broadcast::Receiver<ExecutionPhase>,
) -> std::io::Result<()>
where
    A: pingora_core::apps::ServerApp + Send + Sync + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name(format!("{name}-runtime"))
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    serve_movable_bound(name, socket, move |socket, moved| {
        handle.spawn(accept_app(
            name,
            socket,
            app.clone(),
            phases.resubscribe(),
            Some(moved),
        ));
    })
}

async fn accept_app<A>(
    name: &'static str,
    socket: TcpListener,
    app: std::sync::Arc<A>,
    mut phases: broadcast::Receiver<ExecutionPhase>,
    mut moved: Option<Moved>,
) where
    A: pingora_core::apps::ServerApp + Send + Sync + 'static,
{
    use pingora_core::protocols::l4::listener::Listener;
    let listener: Listener = match tokio::net::TcpListener::from_std(socket) {
        Ok(l) => l.into(),
        Err(e) => {
            tracing::error!(name, error = %e, "listener cannot join the runtime");
            return;
        }
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let moved_away = async {
        match moved.as_mut() {
            Some(m) => m.wait().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(moved_away);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(mut stream) => {
                    let _ = stream.set_nodelay();
                    let (app, shutdown) = (app.clone(), stop.clone());
                    tokio::spawn(async move {
                        let mut next: Option<pingora_core::protocols::Stream> = Some(Box::new(stream));
                        while let Some(s) = next {
                            next = app.process_new(s, &shutdown).await;
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut moved_away => break,
            phase = phases.recv() => if is_shutdown(phase) {
                shutting_down = true;
                break;
            },
        }
    }
    // Closing the socket refuses new connections (or leaves them to the
    // new process after an upgrade, or to the new address after a move);
    // open ones finish.
    drop(listener);
    // Moved: the connections this socket accepted go on as usual until
    // the process shuts down.
    while !shutting_down {
        shutting_down = is_shutdown(phases.recv().await);
    }
    let _ = stop_tx.send(true);
    std::future::pending::<()>().await;
}

/// Whether `phase` means this process stops serving.
fn is_shutdown(phase: Result<ExecutionPhase, broadcast::error::RecvError>) -> bool {
    matches!(
        phase,
        Ok(ExecutionPhase::GracefulTerminate | ExecutionPhase::ShutdownStarted)
            | Err(broadcast::error::RecvError::Closed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(name: &str) -> Vec<SocketAddr> {
        registry()
            .serving
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, l)| l.local_addr().ok())
            .collect()
    }

    #[tokio::test]
    async fn a_moved_listener_ends_the_old_loop_and_only_the_new_socket_is_passed_on() {
        let name = "test-movable";
        let loops = std::sync::Arc::new(Mutex::new(Vec::<Moved>::new()));
        let kept = loops.clone();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        serve_movable(name, any, move |_socket, moved| {
            kept.lock().unwrap().push(moved);
        })
        .unwrap();
        let before = serving(name);
        assert_eq!(before.len(), 1);

        // Bound but dropped (a later step of the reload failed): nothing changed.
        let dropped = rebind(name, any).unwrap().unwrap();
        assert_eq!(serving(name).len(), 2);
        drop(dropped);
        assert_eq!(serving(name), before);

        let moved = rebind(name, any).unwrap().unwrap();
        let to = moved.addr;
        moved.switch();
        assert_eq!(serving(name), vec![to]);
        let mut first = loops.lock().unwrap().remove(0);
        tokio::time::timeout(Duration::from_secs(5), first.wait())
            .await
            .expect("the old accept loop was not told");
        assert!(rebind("no-such-listener", any).is_none());
    }

    #[test]
    fn a_passed_socket_serves_its_configured_address() {
        let a: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        assert!(serves(a, a));
        assert!(serves(a, "127.0.0.1:0".parse().unwrap()));
        assert!(!serves(a, "127.0.0.1:9443".parse().unwrap()));
        assert!(!serves(a, "0.0.0.0:0".parse().unwrap()));
    }
}
