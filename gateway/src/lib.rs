//! The mft-gateway binary's library: server wiring, proxy phases, TLS, CLI commands.
#![forbid(unsafe_code)]

/// jemalloc instead of glibc's malloc: a proxied request makes ~150 small
/// allocations, often freed on another worker thread than the one that made
/// them; glibc then takes the other arena's lock. Measured, this cut the CPU
/// per proxied request by about a fifth at the same idle-connection RSS
/// (docs/benchmarks.md). Declared here, once, so the binary and everything
/// built on this library (the bare pingora floor in `benches/run`) allocate
/// alike.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Lets jemalloc return freed memory to the system from a thread of its
/// own, for the long-running commands (`run`, `connector`). Without it
/// jemalloc purges dirty pages only while the process allocates, so memory
/// freed after a burst (640 h2 streams in flight: ~80 MiB) stays resident
/// while the process idles or streams a transfer with few allocations
/// (measured: 82 MiB resident 12 s after an h2 burst, 56 MiB with the
/// thread; docs/benchmarks.md). Failure only costs that memory: logged.
pub fn purge_freed_memory_in_background() {
    #[cfg(not(target_env = "msvc"))]
    if let Err(e) = tikv_jemalloc_ctl::max_background_threads::write(1)
        .and_then(|()| tikv_jemalloc_ctl::background_thread::write(true))
    {
        tracing::warn!(error = %e, "jemalloc background purging could not be switched on");
    }
}

pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod auth;
pub mod backend_client;
pub mod backoff;
pub mod bridge;
pub mod cli;
pub mod conn_guard;
pub(crate) mod connector;

pub(crate) mod drain;
mod error_chain;
pub(crate) mod listeners;
pub(crate) mod metrics;
pub mod proxy;
pub(crate) mod ratelimit;
pub(crate) mod reload;
pub mod runtime;
pub(crate) mod server;
pub(crate) mod service;
pub mod store;
pub(crate) mod telemetry;
pub mod tls;
pub(crate) mod transports;
pub mod trust;
pub(crate) mod upgrade;
pub(crate) mod webhooks;
