//! The mft-gateway binary's library: server wiring, proxy phases, TLS, CLI commands.
#![forbid(unsafe_code)]

pub mod admin;
pub mod check;
pub mod cli;
pub mod demo;
pub mod drain;
pub mod proxy;
pub mod server;
pub mod telemetry;
pub mod tls;
