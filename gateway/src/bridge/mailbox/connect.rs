//! The TCP connection to a mail server, bounded like every other step.

use mft_config::mailbox::Connection;
use std::time::Duration;
use tokio::net::TcpStream;

/// Why no TCP connection was made.
pub enum ConnectFailure {
    /// Refused, unreachable, DNS.
    Io {
        /// host:port
        addr: String,
        /// The failure.
        source: std::io::Error,
    },
    /// No answer within `limit`.
    Timeout {
        /// `connect to host:port`
        what: String,
        /// The limit.
        secs: u64,
    },
}

/// Connects to `conn`'s host and port within `limit`, with Nagle off
/// (commands are small and answered one by one).
pub async fn tcp(conn: &Connection, limit: Duration) -> Result<TcpStream, ConnectFailure> {
    let addr = format!("{}:{}", conn.host, conn.port);
    match tokio::time::timeout(limit, TcpStream::connect((conn.host.as_str(), conn.port))).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(source)) => Err(ConnectFailure::Io { addr, source }),
        Err(_) => Err(ConnectFailure::Timeout {
            what: format!("connect to {addr}"),
            secs: limit.as_secs(),
        }),
    }
}
