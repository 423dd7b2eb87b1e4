//! What both halves agree on: the attach request and the HTTP/2 settings.

use std::time::Duration;

/// Path of the one HTTP/1.1 request a connector sends before the roles flip.
pub const ATTACH_PATH: &str = "/connector/v1/attach";

/// The `Upgrade` protocol token of the attach request.
pub const UPGRADE_TOKEN: &str = "mft-connector/1";

/// h2 flow-control window per stream. Large enough that one stream is not
/// limited by round trips on a LAN-to-DMZ path (1 MiB per millisecond of
/// round trip is 1 GiB/s), small enough that a stalled reader holds little.
pub const STREAM_WINDOW: u32 = 2 * 1024 * 1024;

/// h2 flow-control window per connection: a few streams at full speed; it
/// also bounds what one connection can make the other side buffer.
pub const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// Largest h2 frame either side sends: fewer frames per GiB than the 16 KiB default.
pub const MAX_FRAME: u32 = 256 * 1024;

/// Streams one connection carries at once.
pub const MAX_STREAMS: u32 = 256;

/// How long either side waits for a PING answer before it calls the
/// connection dead, given the interval between PINGs.
pub fn ping_timeout(interval: Duration) -> Duration {
    interval
}
