//! Logging setup: pretty or JSON lines, filter from config or `RUST_LOG`.

use mft_config::model::{LogFormat, Logging};
use tracing_subscriber::EnvFilter;

/// Most pingora may log. Below `info` pingora writes what a client sent in
/// full (an unparsable request head with its `Authorization` or
/// `X-API-Key`), so no setting can turn its debug or trace lines on.
const PINGORA_CAP: &str = "pingora=info";

/// Installs the global subscriber; `RUST_LOG` overrides `logging.level`.
///
/// pingora logs through the `log` crate; tracing-subscriber's log bridge
/// forwards those records so there is one stream.
pub fn init(logging: &Logging) {
    let wanted = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| EnvFilter::try_new(v).is_ok())
        .unwrap_or_else(|| logging.level.clone());
    let filter =
        EnvFilter::try_new(capped(&wanted)).unwrap_or_else(|_| EnvFilter::new(capped("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests, demo after run) is harmless: keep the first.
    let _ = match logging.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// `directives` without any that name a pingora target, plus
/// [`PINGORA_CAP`]: a directive for `pingora` covers every `pingora_*`
/// target (targets match by prefix), and with no more specific one left it
/// decides for all of them.
fn capped(directives: &str) -> String {
    let mut kept: Vec<&str> = directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter(|d| !d.trim_start_matches('[').starts_with("pingora"))
        .collect();
    kept.push(PINGORA_CAP);
    kept.join(",")
}

#[cfg(test)]
mod tests {
    use super::capped;

    #[test]
    fn pingora_is_capped_at_info_whatever_is_asked() {
        assert_eq!(capped("debug"), "debug,pingora=info");
        assert_eq!(
            capped("info,pingora_proxy=trace, pingora_core::protocols=debug,mft_gateway=debug"),
            "info,mft_gateway=debug,pingora=info"
        );
        assert_eq!(capped(""), "pingora=info");
    }
}
