//! The mft-gateway binary's library: server wiring, proxy phases, TLS, CLI commands.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admin_partners;
pub mod audit;
pub mod auth;
pub mod backend_client;
pub mod bridge;
pub mod check;
pub mod cli;
pub mod conn_guard;
pub mod control;
pub mod demo;
pub mod drain;
pub mod keys_cli;
pub mod metrics;
pub mod partners_cli;
pub mod proxy;
pub mod ratelimit;
pub mod server;
pub mod sftp_cli;
pub mod signing_cli;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tls_client_auth;
pub mod trust;
