//! HTTP tests against the real router on a loopback port with a temp data dir.

mod deliveries;
mod errors;
mod files;
mod relay;
mod restart;
mod support;
mod transfers;
mod tus;
