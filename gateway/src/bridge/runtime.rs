//! The bridge runtime: its own threads, alive for the whole process.

use std::future::Future;
use tokio::runtime::Handle;

/// Handle to the bridge runtime; cheap to clone.
#[derive(Clone)]
pub struct BridgeRuntime {
    handle: Handle,
}

impl BridgeRuntime {
    /// Starts the runtime with `threads` workers on its own threads.
    pub fn start(threads: usize) -> std::io::Result<BridgeRuntime> {
        Self::start_named(threads, "bridge")
    }

    /// Like [`BridgeRuntime::start`], with threads called `name`.
    pub fn start_named(threads: usize, name: &str) -> std::io::Result<BridgeRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name(format!("{name}-main"))
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        Ok(BridgeRuntime { handle })
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Starts a background task.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(fut);
    }

    /// Runs `fut` to completion from a thread outside any runtime (startup, CLI).
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.handle.block_on(fut)
    }
}
