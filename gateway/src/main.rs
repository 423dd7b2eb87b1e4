//! `mft-gateway`: the command line.
#![forbid(unsafe_code)]

use clap::Parser;
use std::process::ExitCode;

/// jemalloc instead of glibc's malloc: a proxied request makes ~150 small
/// allocations, often freed on another worker thread than the one that made
/// them; glibc then takes the other arena's lock. Measured, this cut the CPU
/// per proxied request by about a fifth at the same idle-connection RSS
/// (docs/benchmarks.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = mft_gateway::cli::Cli::parse();
    match mft_gateway::cli::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
