//! Logging setup: pretty or JSON lines, filter from config or `RUST_LOG`.

use mft_config::model::{LogFormat, Logging};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `RUST_LOG` overrides `logging.level`.
///
/// pingora logs through the `log` crate; tracing-subscriber's log bridge
/// forwards those records so there is one stream.
pub fn init(logging: &Logging) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&logging.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests, demo after run) is harmless: keep the first.
    let _ = match logging.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
