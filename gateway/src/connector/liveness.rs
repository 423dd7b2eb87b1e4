//! TCP keepalive and `TCP_USER_TIMEOUT` on link sockets, so a connection
//! whose path goes silent (no FIN, no RST: a dropped flow, a frozen host)
//! is found dead within seconds whatever it is doing.
//!
//! The application-level checks do not cover every state: HTTP/2 PINGs and
//! HTTP/1.1 heartbeats prove an idle link alive, but a busy HTTP/1.1 link
//! carries no heartbeat, and one waiting for a response head, streaming an
//! upload or a download would otherwise wait for `[backend] read_timeout`
//! (60 s by default).
//! The kernel sees every state:
//!
//! - nothing unacknowledged (idle, waiting for the head, receiving a body
//!   that stopped): keepalive probes start after `idle` without a packet
//!   from the peer and repeat every `interval`; with a user timeout set,
//!   Linux ends the connection at the first probe that finds the peer
//!   silent for `user_timeout`;
//! - data unacknowledged (sending a body, a request): the connection ends
//!   when data stayed unacknowledged for `user_timeout` (the retransmission
//!   timer is clamped to it);
//! - the peer's window closed (it acknowledges but stopped reading): the
//!   same `user_timeout` bounds how long it may stay closed (Linux checks
//!   it on window probes too).
//!   That also ends a live link whose reader stalls that long: a hung
//!   connector, or a backend that stops reading an upload mid-body.
//!
//! A live peer's kernel answers probes and acknowledges data even when its
//! process is busy, so none of this fires on a slow backend: it only sees
//! the path, not the program.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

/// Keepalive probes never go out faster than this.
const MIN_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The connector's silence bound when it does not know the gateway's
/// heartbeat yet (the socket is set up before the attach answers).
const CONNECTOR_IDLE: Duration = Duration::from_secs(5);

/// When the kernel calls a link socket's peer gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLiveness {
    /// Silence before the first keepalive probe.
    pub idle: Duration,
    /// Between keepalive probes.
    pub interval: Duration,
    /// Probes before giving up where no user timeout exists.
    pub retries: u32,
    /// Longest silence, unacknowledged data or closed window.
    pub user_timeout: Duration,
}

impl TcpLiveness {
    /// `idle` of silence starts probing; `dead_after` of it ends the link.
    fn new(idle: Duration, dead_after: Duration) -> TcpLiveness {
        let interval = (idle / 4).max(MIN_PROBE_INTERVAL);
        let probes = (dead_after.saturating_sub(idle)).as_millis() / interval.as_millis().max(1);
        TcpLiveness {
            idle,
            interval,
            retries: u32::try_from(probes).unwrap_or(u32::MAX).max(1),
            user_timeout: dead_after,
        }
    }

    /// The gateway's side: dead after 2 × `ping_interval` of silence, the
    /// bound an idle link's heartbeat or PING already gives (8 s with the
    /// default 4 s), now in every state. A probe goes out at most
    /// `interval` after that bound, so death is seen within
    /// 2 × `ping_interval` + `interval` (9 s by default).
    pub fn gateway(ping_interval: Duration) -> TcpLiveness {
        TcpLiveness::new(ping_interval, ping_interval * 2)
    }

    /// The connector's side: dead after [`super::wire::idle_deadline`] of
    /// its own PING interval, as long as an idle link may stay unheard
    /// there. Longer than the gateway's: the gateway is the one whose
    /// clients wait, and a client that pauses reading a download closes
    /// this side's window, which must not end the link as quickly.
    pub fn connector() -> TcpLiveness {
        TcpLiveness::new(CONNECTOR_IDLE, super::wire::idle_deadline(CONNECTOR_IDLE))
    }

    /// Sets keepalive and the user timeout on `socket`.
    pub fn apply(&self, socket: &impl AsFd) -> io::Result<()> {
        let socket = socket2::SockRef::from(socket);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(self.idle)
            .with_interval(self.interval)
            .with_retries(self.retries);
        socket.set_tcp_keepalive(&keepalive)?;
        socket.set_keepalive(true)?;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        socket.set_tcp_user_timeout(Some(self.user_timeout))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_finds_a_silent_link_dead_within_10_s_with_the_default_ping_interval() {
        let default = mft_config::defaults::connector::PING_INTERVAL;
        let l = TcpLiveness::gateway(default);
        assert_eq!(l.user_timeout, default * 2);
        // The last probe before the bound, plus the one that sees it.
        assert!(
            l.user_timeout + l.interval <= Duration::from_secs(10),
            "{l:?}"
        );
        // Without a user timeout (other systems) the probes alone end it in time.
        assert!(
            l.idle + l.interval * l.retries <= Duration::from_secs(10),
            "{l:?}"
        );
        assert!(l.interval >= MIN_PROBE_INTERVAL);
    }

    #[test]
    fn the_connector_waits_longer_than_the_gateway() {
        let c = TcpLiveness::connector();
        let g = TcpLiveness::gateway(mft_config::defaults::connector::PING_INTERVAL);
        assert!(c.user_timeout > g.user_timeout, "{c:?} {g:?}");
        assert!(c.user_timeout >= Duration::from_secs(10));
    }

    #[tokio::test]
    async fn the_settings_reach_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let l = TcpLiveness::gateway(Duration::from_secs(2));
        l.apply(&client).unwrap();
        let s = socket2::SockRef::from(&client);
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(2));
        assert_eq!(s.tcp_keepalive_interval().unwrap(), Duration::from_secs(1));
        assert_eq!(s.tcp_user_timeout().unwrap(), Some(Duration::from_secs(4)));
    }
}
