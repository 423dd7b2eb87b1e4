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

pub mod admin;
pub mod audit;
pub mod auth;
pub mod backend_client;
pub mod backoff;
pub mod bridge;
pub mod cli;
pub mod conn_guard;
pub mod connector;
pub mod control;
pub mod drain;
mod error_chain;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod transports;
pub mod trust;
pub mod upgrade;
pub mod webhooks;
