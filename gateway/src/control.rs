//! The control plane: one small runtime, alive for the whole process, for
//! everything that is not request forwarding — key-store queries, revocation
//! polling, JWKS refresh, audit of admin actions.
//!
//! pingora gives each service its own runtime; a database pool or HTTP client
//! created on one of them would be tied to it. Keeping that I/O here means the
//! proxy's workers only await a join handle, and a slow database cannot starve
//! request forwarding of worker threads.

use std::future::Future;
use tokio::runtime::Handle;
use tokio::task::JoinError;

/// Handle to the control-plane runtime; cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    handle: Handle,
}

impl ControlPlane {
    /// Starts the runtime on its own threads; it lives until the process exits.
    pub fn start() -> std::io::Result<ControlPlane> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("control")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("control-main".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        Ok(ControlPlane { handle })
    }

    /// Runs `fut` on the control plane and waits for it from any runtime.
    pub async fn run<F>(&self, fut: F) -> Result<F::Output, JoinError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(fut).await
    }

    /// Runs `fut` to completion from a thread that is not inside a runtime (startup, CLI).
    pub fn block_on<F>(&self, fut: F) -> Result<F::Output, JoinError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = self.handle.clone();
        handle.block_on(self.handle.spawn(fut))
    }

    /// Starts a background task.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(fut);
    }
}
