//! HTTP tests against the real router on a loopback port with a temp data dir.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed unwrap is a failed run

mod deliveries;
mod errors;
mod files;
mod relay;
mod restart;
mod support;
mod transfers;
mod tus;
