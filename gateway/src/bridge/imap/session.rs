//! One IMAP connection: TCP, TLS (implicit or STARTTLS), login with a
//! password or XOAUTH2, every step under the command timeout. async-imap
//! has no timeouts of its own, so a server that stops answering would hang
//! the poller forever without [`timed`].

use crate::bridge::mailbox::connect::{self, ConnectFailure};
use crate::bridge::mailbox::tls::MailTls;
use crate::bridge::oauth2::{xoauth2_raw, OAuth2Error, TokenSource};
use mft_config::mailbox::{Connection, MailboxAuth, TlsMode};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpStream;

/// The stream under every session.
pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;
/// A logged-in session.
pub type Session = async_imap::Session<Tls>;

/// Why a session could not be had or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
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
        /// The failure (certificate, protocol).
        source: std::io::Error,
    },
    /// The server did not answer in time.
    #[error("{what}: no answer within {secs} s")]
    Timeout {
        /// The command.
        what: String,
        /// The timeout.
        secs: u64,
    },
    /// A command failed (NO, BAD, connection lost, parse error).
    #[error("{what}: {source}")]
    Command {
        /// The command.
        what: String,
        /// async-imap's error.
        source: async_imap::error::Error,
    },
    /// Login refused.
    #[error("login as {user} refused: {source}")]
    Login {
        /// The user name.
        user: String,
        /// The server's answer.
        source: async_imap::error::Error,
    },
    /// No access token.
    #[error(transparent)]
    OAuth2(#[from] OAuth2Error),
    /// The server sent no UIDVALIDITY for the folder.
    #[error("SELECT {0}: the server sent no UIDVALIDITY")]
    NoUidValidity(String),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl ImapError {
    /// A NO/BAD answer to a command (as opposed to a dead connection).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ImapError::Command {
                source: async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_),
                ..
            }
        )
    }
}

/// Runs `fut` under `limit`; `what` names the command in the error.
pub async fn timed<T, E, F>(limit: Duration, what: &str, fut: F) -> Result<T, ImapError>
where
    F: Future<Output = Result<T, E>>,
    E: Into<async_imap::error::Error>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ImapError::Command {
            what: what.to_string(),
            source: e.into(),
        }),
        Err(_) => Err(ImapError::Timeout {
            what: what.to_string(),
            secs: limit.as_secs(),
        }),
    }
}

/// Feeds the XOAUTH2 string to the first challenge (`+ `) and an empty
/// answer to the second, which is how a failure is reported (a base64 JSON
/// error), so the server can finish with NO instead of waiting.
struct XOAuth2 {
    first: Option<String>,
}

impl async_imap::Authenticator for XOAuth2 {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        self.first.take().unwrap_or_default()
    }
}

/// Connects, secures and logs in.
pub async fn open(
    conn: &Connection,
    tls: &MailTls,
    tokens: Option<&mut TokenSource>,
) -> Result<Session, ImapError> {
    let limit = conn.command_timeout;
    let addr = format!("{}:{}", conn.host, conn.port);
    let tcp = connect::tcp(conn, limit).await.map_err(|f| match f {
        ConnectFailure::Io { addr, source } => ImapError::Connect { addr, source },
        ConnectFailure::Timeout { what, secs } => ImapError::Timeout { what, secs },
    })?;
    let tcp = match conn.tls {
        TlsMode::Implicit => tcp,
        TlsMode::StartTls => {
            let mut plain = async_imap::Client::new(tcp);
            greeting(&mut plain, limit).await?;
            timed(
                limit,
                "STARTTLS",
                plain.run_command_and_check_ok("STARTTLS", None),
            )
            .await?;
            plain.into_inner()
        }
    };
    let stream = match tokio::time::timeout(
        limit,
        tls.connector.connect(tls.server_name.clone(), tcp),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(ImapError::Tls { addr, source }),
        Err(_) => {
            return Err(ImapError::Timeout {
                what: format!("TLS handshake with {addr}"),
                secs: limit.as_secs(),
            })
        }
    };
    let mut client = async_imap::Client::new(stream);
    if conn.tls == TlsMode::Implicit {
        // After STARTTLS there is no second greeting.
        greeting(&mut client, limit).await?;
    }
    let user = conn.username.clone();
    let login = match (&conn.auth, tokens) {
        (MailboxAuth::Password(p), _) => {
            tokio::time::timeout(limit, client.login(&user, p.expose())).await
        }
        (MailboxAuth::OAuth2(_), Some(tokens)) => {
            let token = tokens.access_token().await?;
            let auth = XOAuth2 {
                first: Some(xoauth2_raw(&user, &token)),
            };
            let r = tokio::time::timeout(limit, client.authenticate("XOAUTH2", auth)).await;
            if !matches!(r, Ok(Ok(_))) {
                // Maybe revoked early: fetch a new one next time.
                tokens.invalidate();
            }
            r
        }
        (MailboxAuth::OAuth2(_), None) => unreachable_oauth2()?,
    };
    match login {
        Ok(Ok(session)) => Ok(session),
        Ok(Err((source, _client))) => Err(ImapError::Login { user, source }),
        Err(_) => Err(ImapError::Timeout {
            what: "login".to_string(),
            secs: limit.as_secs(),
        }),
    }
}

/// The caller passes a token source whenever the mailbox uses OAuth2; this
/// is the typed error for the case it did not (a bug, not a panic).
fn unreachable_oauth2<T>() -> Result<T, ImapError> {
    Err(ImapError::OAuth2(OAuth2Error::Malformed {
        url: "(no token source configured)".to_string(),
    }))
}

/// Runs `fut`, turning a panic inside it into an error: a hostile or
/// broken mail server costs one session and a back-off, not the poller
/// (`mft_protocols::panic_guard`).
pub async fn guarded<T, F>(what: &str, fut: F) -> Result<T, ImapError>
where
    F: std::future::Future<Output = Result<T, ImapError>>,
{
    match mft_protocols::panic_guard::caught(fut).await {
        Ok(r) => r,
        Err(_) => Err(ImapError::Command {
            what: format!("{what}: the server's answer broke the IMAP parser"),
            source: async_imap::error::Error::ConnectionLost,
        }),
    }
}

async fn greeting<T>(client: &mut async_imap::Client<T>, limit: Duration) -> Result<(), ImapError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    match timed(limit, "greeting", client.read_response()).await? {
        Some(_) => Ok(()),
        None => Err(ImapError::Command {
            what: "greeting".to_string(),
            source: async_imap::error::Error::ConnectionLost,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `imap` fuzz target: `OK [CAPABILITY ...]` followed by a
    /// non-ASCII byte instead of a space panics inside imap-proto.
    const CRASHING_ANSWER: &[u8] =
        b"* OK ready\r\nA0001 OK [CAPABILITY IMAP4rev1]\x92 Logged in\r\n";

    #[tokio::test]
    async fn a_parser_panic_is_a_session_error() {
        let stream = tokio::io::join(CRASHING_ANSWER, tokio::io::sink());
        let r = guarded("login", async {
            let mut client = async_imap::Client::new(stream);
            let _ = client.read_response().await;
            client
                .login("user", "password")
                .await
                .map(|_| ())
                .map_err(|(source, _)| ImapError::Command {
                    what: "login".into(),
                    source,
                })
        })
        .await;
        match r {
            Err(ImapError::Command { what, .. }) => assert!(what.contains("broke"), "{what}"),
            other => panic!("expected the guarded error, got {:?}", other.map(|_| ())),
        }
    }
}
