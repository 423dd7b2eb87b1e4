//! Connecting to a POP3 server and logging in: TCP, TLS (implicit or STLS,
//! RFC 2595), USER/PASS or SASL XOAUTH2 (RFC 5034), each step under the
//! command timeout. The line protocol itself is `mft_protocols::pop3`.
//!
//! The XOAUTH2 failure continuation (`+ <base64 JSON>`) must be answered
//! with an empty line and must not be taken for `+OK`.

use crate::bridge::mailbox::connect::{self, ConnectFailure};
use crate::bridge::mailbox::tls::MailTls;
use crate::bridge::oauth2::{xoauth2_base64, OAuth2Error, TokenSource};
use mft_config::mailbox::{Connection, MailboxAuth, TlsMode};
use mft_protocols::pop3::{protocol, status_error};
pub use mft_protocols::pop3::{Wire, WireError, RETR_CHUNK};
use tokio::net::TcpStream;

/// What went wrong talking POP3.
#[derive(Debug, thiserror::Error)]
pub enum Pop3Error {
    /// TCP connect failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// host:port
        addr: String,
        /// The failure.
        source: std::io::Error,
    },
    /// TLS handshake failed.
    #[error("TLS with {addr}: {}", crate::bridge::mailbox::tls::describe(.source))]
    Tls {
        /// host:port
        addr: String,
        /// The failure.
        source: std::io::Error,
    },
    /// No connection or TLS handshake in time.
    #[error("{what}: no answer within {secs} s")]
    Timeout {
        /// The command.
        what: String,
        /// The timeout.
        secs: u64,
    },
    /// The POP3 exchange failed (I/O, timeout, -ERR, not POP3, too large).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// No access token.
    #[error(transparent)]
    OAuth2(#[from] OAuth2Error),
}

/// A logged-in POP3 session (TRANSACTION state).
pub type Pop3 = Wire<tokio_rustls::client::TlsStream<TcpStream>>;

/// Connects, secures, logs in.
pub async fn open(
    conn: &Connection,
    tls: &MailTls,
    tokens: Option<&mut TokenSource>,
) -> Result<Pop3, Pop3Error> {
    let limit = conn.command_timeout;
    let addr = format!("{}:{}", conn.host, conn.port);
    let tcp = connect::tcp(conn, limit).await.map_err(|f| match f {
        ConnectFailure::Io { addr, source } => Pop3Error::Connect { addr, source },
        ConnectFailure::Timeout { what, secs } => Pop3Error::Timeout { what, secs },
    })?;
    let tcp = match conn.tls {
        TlsMode::Implicit => tcp,
        TlsMode::StartTls => {
            let mut plain = Wire::new(tcp, limit);
            plain.ok("greeting").await?;
            plain.command("STLS", "STLS").await?;
            plain.into_inner("STLS")?
        }
    };
    let stream = match tokio::time::timeout(
        limit,
        tls.connector.connect(tls.server_name.clone(), tcp),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(Pop3Error::Tls { addr, source }),
        Err(_) => {
            return Err(Pop3Error::Timeout {
                what: format!("TLS handshake with {addr}"),
                secs: limit.as_secs(),
            })
        }
    };
    let mut s = Wire::new(stream, limit);
    if conn.tls == TlsMode::Implicit {
        s.ok("greeting").await?;
    }
    let unsafe_text = |t: &str| t.contains(['\r', '\n']);
    match (&conn.auth, tokens) {
        (MailboxAuth::Password(p), _) => {
            if unsafe_text(&conn.username) || unsafe_text(p.expose()) {
                return Err(Pop3Error::Wire(protocol(
                    "USER/PASS",
                    "user name or password contains a line break",
                )));
            }
            s.command(&format!("USER {}", conn.username), "USER")
                .await?;
            s.command(&format!("PASS {}", p.expose()), "PASS").await?;
        }
        (MailboxAuth::OAuth2(_), Some(tokens)) => {
            let token = tokens.access_token().await?;
            let initial = xoauth2_base64(&conn.username, &token);
            s.send(&format!("AUTH XOAUTH2 {initial}"), "AUTH XOAUTH2")
                .await?;
            let line = s.line("AUTH XOAUTH2").await?;
            if line.starts_with("+ ") || line == "+" {
                // The failure continuation: answer empty, then -ERR follows.
                s.send("", "AUTH XOAUTH2").await?;
                tokens.invalidate();
                let end = s.line("AUTH XOAUTH2").await?;
                return Err(status_error("AUTH XOAUTH2", &end).into());
            }
            if !line.starts_with("+OK") {
                tokens.invalidate();
                return Err(status_error("AUTH XOAUTH2", &line).into());
            }
        }
        (MailboxAuth::OAuth2(_), None) => {
            return Err(Pop3Error::OAuth2(OAuth2Error::Malformed {
                url: "(no token source configured)".into(),
            }))
        }
    }
    Ok(s)
}
