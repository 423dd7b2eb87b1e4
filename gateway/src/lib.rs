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
pub(crate) mod memory;
pub(crate) mod metrics;
pub mod proxy;
pub(crate) mod ratelimit;
pub(crate) mod reload;
pub(crate) mod retention;
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
