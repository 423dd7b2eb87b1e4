//! What both halves agree on: the attach request, the link protocol and
//! its settings.

use std::time::Duration;

/// Path of the one HTTP/1.1 request a connector sends before the roles flip.
pub const ATTACH_PATH: &str = "/connector/v1/attach";

/// The `Upgrade` protocol token of the attach request.
pub const UPGRADE_TOKEN: &str = "mft-connector/1";

/// Request header of the attach request: the link protocols the connector
/// speaks (`h2, http1`); answered on the `101` with the one the gateway
/// chose (`[connector] link`). A connector that names none speaks h2.
pub const LINK_HEADER: &str = "x-mft-link";

/// Header of the `101` on an HTTP/1.1 link: the gateway's heartbeat
/// interval in seconds, so the connector can call a link dead that heard
/// nothing for much longer ([`idle_deadline`]).
pub const HEARTBEAT_HEADER: &str = "x-mft-heartbeat";

/// The request the gateway sends on an idle HTTP/1.1 link to prove it is
/// alive (HTTP/1.1 has no PING). The connector answers it itself with
/// `204`; it never reaches the backend. A `Connection: close` on that
/// answer retires a surplus idle link without a race: the gateway sends
/// nothing more on it.
pub const HEARTBEAT_PATH: &str = "/connector/v1/heartbeat";

/// What the connector offers in [`LINK_HEADER`].
pub const OFFERED_LINKS: &str = "h2, http1";

/// How long a connector's idle HTTP/1.1 link may hear nothing before it is
/// taken for dead: three heartbeats missed, and at least 10 s.
pub fn idle_deadline(heartbeat: Duration) -> Duration {
    (heartbeat * 3).max(Duration::from_secs(10))
}

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
