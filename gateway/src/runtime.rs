//! The process's service runtimes: tokio runtimes on threads of their own,
//! alive for the whole process, one per room that must not take threads
//! from another: the control plane (key-store queries, revocation polling,
//! JWKS refresh, admin audit, the pollers of caches), the protocol bridges
//! and the trust network.
//!
//! pingora gives each service its own runtime; a database pool or HTTP
//! client created on one of them would be tied to it. Keeping that I/O on
//! a runtime of its own means the proxy's workers only await a join handle,
//! a slow database cannot starve request forwarding of worker threads, and
//! a stalled mailbox or SFTP client cannot take the control plane's.

use std::future::Future;
use tokio::runtime::Handle;
use tokio::task::JoinError;

/// Handle to a service runtime; cheap to clone.
#[derive(Clone)]
pub struct ServiceRuntime {
    handle: Handle,
}

impl ServiceRuntime {
    /// Starts a runtime of `threads` workers called `name` (and a thread
    /// `name-main` that keeps it alive); it lives until the process exits.
    pub fn start(name: &str, threads: usize) -> std::io::Result<ServiceRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name(format!("{name}-main"))
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        Ok(ServiceRuntime { handle })
    }

    /// The runtime's handle (to enter it, or to hand it to a listener).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `fut` on this runtime and waits for it from any runtime.
    pub async fn run<F>(&self, fut: F) -> Result<F::Output, JoinError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(fut).await
    }

    /// Runs `fut` to completion on this runtime from a thread that is not
    /// inside a runtime (startup, CLI).
    pub fn block_on<F>(&self, fut: F) -> Result<F::Output, JoinError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.block_on(self.handle.spawn(fut))
    }

    /// Starts a background task.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(fut);
    }
}
