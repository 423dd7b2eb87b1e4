//! One SMTP session: the state machine over any `AsyncRead + AsyncWrite`.
//!
//! The plain listener runs it once before STARTTLS; the caller then does
//! the TLS handshake and runs it again with everything the client said
//! before forgotten (RFC 3207 4.2). Nothing here calls the backend: a
//! message is parsed, spooled durably and only then answered with 250.

use super::auth::{self, Outcome, Principal};
use super::conn::{Conn, Read};
use super::reply;
use super::{policy, Shared};
use crate::bridge::spool::{Spool, SpoolMeta};
use mft_filters::auth::scope::has_scope;
use mft_protocols::mime as message;
use mft_protocols::smtp::command::{next_command, Cmd};
use mft_protocols::smtp::sasl::{self, Credentials};
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver, RequestReceiver};
use smtp_proto::{Error as ProtoError, AUTH_LOGIN, AUTH_PLAIN};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncWrite};

/// Errors tolerated before the connection is closed.
const MAX_ERRORS: u32 = 10;
/// Failed AUTH attempts tolerated per session.
const MAX_AUTH_FAILURES: u32 = 3;

/// How a run of the state machine ended.
pub enum Exit {
    /// The session is over (QUIT, EOF, timeout, too many errors).
    Close,
    /// STARTTLS was accepted: the caller upgrades the stream.
    StartTls,
}

/// Per-connection state.
pub struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Whether the stream is encrypted.
    pub tls: bool,
    helo: Option<String>,
    identity: Option<Principal>,
    mail_from: Option<String>,
    rcpts: Vec<String>,
    errors: u32,
    auth_failures: u32,
    /// `max_session_time` after the connection was accepted.
    deadline: tokio::time::Instant,
}

impl Session {
    /// A session for a client at `peer`.
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, tls: bool) -> Self {
        Session {
            peer,
            tls,
            helo: None,
            identity: None,
            mail_from: None,
            rcpts: Vec::new(),
            errors: 0,
            auth_failures: 0,
            deadline: tokio::time::Instant::now() + shared.cfg.max_session_time,
            shared,
        }
    }

    /// The reply to a read that timed out: idle, or past a deadline
    /// (counted apart, so an operator sees trickling clients).
    fn timed_out(&self, past_deadline: bool) -> &'static str {
        if past_deadline {
            self.shared.metrics.session.cut_deadline.inc();
            reply::TIME_LIMIT
        } else {
            reply::TIMEOUT
        }
    }

    /// The gateway is shutting down: `421 4.3.2`, and the session ends.
    fn shutting_down<S>(&self, conn: &mut Conn<S>) -> Exit
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.shared.metrics.session.cut_shutdown.inc();
        conn.send(&reply::shutting_down(&self.shared.cfg.hostname));
        Exit::Close
    }

    /// After the TLS handshake: forget everything learnt in clear (RFC 3207).
    pub fn upgraded(&mut self) {
        self.tls = true;
        self.helo = None;
        self.identity = None;
        self.reset_transaction();
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpts.clear();
    }

    /// Counts a refusal; `true` when the client has had too many.
    fn refuse<S>(&mut self, conn: &mut Conn<S>, reason: &str, text: &str) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.shared.metrics.reject(reason);
        conn.send(text);
        self.errors += 1;
        self.errors >= MAX_ERRORS
    }

    /// Runs commands until the session ends or asks for TLS.
    pub async fn run<S>(&mut self, conn: &mut Conn<S>) -> io::Result<Exit>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let cfg = self.shared.cfg.clone();
        let mut receiver = RequestReceiver::default();
        conn.set_deadline(Some(self.deadline));
        let drain = self.shared.ctx.drain.clone();
        loop {
            // Between commands, so between messages: a message in DATA
            // was finished (and spooled) before the session gets here.
            if drain.is_stopping() {
                return Ok(self.shutting_down(conn));
            }
            if conn.pending.is_empty() {
                match conn
                    .fill_unless(cfg.command_timeout, drain.stopping())
                    .await?
                {
                    Some(Read::Data) => {}
                    Some(Read::Eof) => return Ok(Exit::Close),
                    Some(Read::Timeout) => {
                        conn.send(self.timed_out(conn.past_deadline()));
                        return Ok(Exit::Close);
                    }
                    None => return Ok(self.shutting_down(conn)),
                }
            }
            let Some(parsed) = next_command(&mut receiver, &mut conn.pending) else {
                continue;
            };
            let too_many = match parsed {
                Ok(cmd) => match self.command(conn, cmd).await? {
                    Some(exit) => return Ok(exit),
                    None => self.errors >= MAX_ERRORS,
                },
                Err(e) => self.protocol_error(conn, e),
            };
            if too_many {
                conn.send(reply::TOO_MANY_ERRORS);
                return Ok(Exit::Close);
            }
        }
    }

    fn protocol_error<S>(&mut self, conn: &mut Conn<S>, e: ProtoError) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match e {
            ProtoError::UnknownCommand => self.refuse(conn, "syntax", reply::UNKNOWN_COMMAND),
            ProtoError::InvalidSenderAddress => {
                self.refuse(conn, "syntax", reply::BAD_SENDER_SYNTAX)
            }
            ProtoError::InvalidRecipientAddress => {
                self.refuse(conn, "syntax", reply::BAD_RECIPIENT_SYNTAX)
            }
            ProtoError::SyntaxError { syntax } => {
                self.refuse(conn, "syntax", &reply::syntax(syntax))
            }
            ProtoError::InvalidParameter { param } => {
                self.refuse(conn, "syntax", &reply::syntax(param))
            }
            ProtoError::UnsupportedParameter { param } => {
                self.refuse(conn, "syntax", &reply::unsupported_parameter(&param))
            }
            ProtoError::ResponseTooLong => {
                // The rest of the over-long line is garbage.
                conn.pending.clear();
                self.refuse(conn, "line_too_long", reply::LINE_TOO_LONG)
            }
            ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
                self.refuse(conn, "syntax", reply::UNKNOWN_COMMAND)
            }
        }
    }

    /// Handles one command; `Some` ends this run.
    async fn command<S>(&mut self, conn: &mut Conn<S>, cmd: Cmd) -> io::Result<Option<Exit>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let cfg = self.shared.cfg.clone();
        match cmd {
            Cmd::Ehlo(host) => {
                self.reset_transaction();
                self.helo = Some(host);
                conn.send(&reply::ehlo(
                    &cfg.hostname,
                    cfg.max_message_bytes,
                    self.tls,
                    self.identity.is_some(),
                ));
            }
            Cmd::Helo(host) => {
                self.reset_transaction();
                self.helo = Some(host);
                conn.send(&reply::helo(&cfg.hostname));
            }
            Cmd::StartTls => {
                if self.tls {
                    self.refuse(conn, "bad_sequence", reply::ALREADY_TLS);
                } else {
                    conn.send(reply::START_TLS);
                    conn.flush().await?;
                    return Ok(Some(Exit::StartTls));
                }
            }
            Cmd::Auth { mechanism, initial } => {
                if let Some(exit) = self.auth(conn, mechanism, initial).await? {
                    return Ok(Some(exit));
                }
            }
            Cmd::Mail { from, size } => self.mail(conn, from, size),
            Cmd::Rcpt(to) => self.rcpt(conn, to),
            Cmd::Data => {
                if self.mail_from.is_none() {
                    self.refuse(conn, "bad_sequence", reply::NEED_MAIL);
                } else if self.rcpts.is_empty() {
                    self.refuse(conn, "bad_sequence", reply::NEED_RCPT);
                } else {
                    conn.send(reply::START_DATA);
                    return self.data(conn).await;
                }
            }
            Cmd::Rset => {
                self.reset_transaction();
                conn.send(reply::OK);
            }
            Cmd::Noop => conn.send(reply::OK),
            Cmd::Vrfy => conn.send(reply::VRFY),
            Cmd::Help => conn.send(reply::HELP),
            Cmd::Quit => {
                conn.send(reply::BYE);
                return Ok(Some(Exit::Close));
            }
            Cmd::Unsupported => {
                self.refuse(conn, "not_implemented", reply::NOT_IMPLEMENTED);
            }
        }
        Ok(None)
    }

    fn mail<S>(&mut self, conn: &mut Conn<S>, from: String, size: usize)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let cfg = &self.shared.cfg;
        if self.helo.is_none() {
            self.refuse(conn, "bad_sequence", reply::NEED_EHLO);
        } else if self.mail_from.is_some() {
            self.refuse(conn, "bad_sequence", reply::NESTED_MAIL);
        } else if cfg.require_auth && self.identity.is_none() {
            self.refuse(conn, "auth_required", reply::AUTH_REQUIRED);
        } else if size > cfg.max_message_bytes {
            self.refuse(conn, "too_big", reply::MESSAGE_TOO_BIG);
        } else if from.is_empty() {
            self.refuse(conn, "sender_missing", reply::SENDER_REQUIRED);
        } else if !policy::sender_allowed(cfg, &from) {
            self.refuse(conn, "sender_domain", reply::SENDER_NOT_ALLOWED);
        } else if self
            .identity
            .as_ref()
            .and_then(|p| p.senders.as_ref())
            .is_some_and(|b| !b.allows(&from))
        {
            // The credential is bound to its senders (docs/smtp.md).
            self.refuse(conn, "sender_not_bound", reply::SENDER_NOT_BOUND);
        } else if self.shared.ctx.audit.denying() {
            // audit.on_failure = "deny": no transaction while its records
            // cannot be written.
            self.refuse(conn, "audit_unavailable", reply::AUDIT_UNAVAILABLE);
        } else if !self.shared.space.room_for(size as u64) {
            // Before the client sends a message the spool could not take.
            self.refuse(conn, "spool_full", reply::INSUFFICIENT_STORAGE);
        } else {
            self.mail_from = Some(from);
            conn.send(reply::SENDER_OK);
        }
    }

    fn rcpt<S>(&mut self, conn: &mut Conn<S>, to: String)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.mail_from.is_none() {
            self.refuse(conn, "bad_sequence", reply::NEED_MAIL);
        } else if self.rcpts.len() >= self.shared.cfg.max_recipients {
            self.refuse(conn, "too_many_recipients", reply::TOO_MANY_RECIPIENTS);
        } else if !policy::recipient_local(&self.shared.email_domains, &to) {
            self.refuse(conn, "recipient_domain", reply::RECIPIENT_NOT_LOCAL);
        } else if self.shared.ctx.audit.denying() {
            self.refuse(conn, "audit_unavailable", reply::AUDIT_UNAVAILABLE);
        } else if !self.shared.space.room_for(0) {
            self.refuse(conn, "spool_full", reply::INSUFFICIENT_STORAGE);
        } else {
            let to = to.to_lowercase();
            if !self.rcpts.contains(&to) {
                self.rcpts.push(to);
            }
            conn.send(reply::RECIPIENT_OK);
        }
    }

    async fn auth<S>(
        &mut self,
        conn: &mut Conn<S>,
        mechanism: u64,
        initial: String,
    ) -> io::Result<Option<Exit>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let idle = self.shared.cfg.command_timeout;
        if !self.tls {
            self.refuse(conn, "auth_without_tls", reply::ENCRYPTION_REQUIRED);
            return Ok(None);
        }
        if self.identity.is_some() {
            self.refuse(conn, "bad_sequence", reply::ALREADY_AUTHENTICATED);
            return Ok(None);
        }
        if self.mail_from.is_some() {
            self.refuse(conn, "bad_sequence", reply::AUTH_IN_TRANSACTION);
            return Ok(None);
        }
        let (name, creds) = if mechanism == AUTH_PLAIN {
            let response = if initial.is_empty() {
                conn.send(reply::AUTH_CONTINUE);
                match conn.read_line(idle).await? {
                    Some(l) => l,
                    None => return Ok(Some(Exit::Close)),
                }
            } else {
                initial
            };
            if response == "*" {
                self.refuse(conn, "auth_cancelled", reply::AUTH_CANCELLED);
                return Ok(None);
            }
            (
                "PLAIN",
                sasl::decode_b64(&response).and_then(|r| sasl::decode_plain(&r)),
            )
        } else if mechanism == AUTH_LOGIN {
            let user = if initial.is_empty() {
                conn.send(reply::AUTH_USERNAME);
                match conn.read_line(idle).await? {
                    Some(l) => l,
                    None => return Ok(Some(Exit::Close)),
                }
            } else {
                initial
            };
            if user == "*" {
                self.refuse(conn, "auth_cancelled", reply::AUTH_CANCELLED);
                return Ok(None);
            }
            conn.send(reply::AUTH_PASSWORD);
            let password = match conn.read_line(idle).await? {
                Some(l) => l,
                None => return Ok(Some(Exit::Close)),
            };
            if password == "*" {
                self.refuse(conn, "auth_cancelled", reply::AUTH_CANCELLED);
                return Ok(None);
            }
            let decode = |t: &str| sasl::decode_b64(t).and_then(|b| String::from_utf8(b).ok());
            let creds = match (decode(&user), decode(&password)) {
                (Some(user), Some(password)) if !password.is_empty() => {
                    Some(Credentials { user, password })
                }
                _ => None,
            };
            ("LOGIN", creds)
        } else {
            self.refuse(conn, "auth_mechanism", reply::MECHANISM_UNSUPPORTED);
            return Ok(None);
        };
        let Some(creds) = creds else {
            self.refuse(conn, "auth_syntax", reply::AUTH_SYNTAX);
            return Ok(None);
        };
        let ip = self.peer.ip();
        match auth::check(&self.shared.ctx, &self.shared.users, ip, name, creds).await {
            Outcome::Ok(p) => {
                tracing::info!(client = %ip, principal = %p.principal, "smtp authenticated");
                self.identity = Some(p);
                conn.send(reply::AUTH_OK);
            }
            Outcome::Unavailable => {
                self.shared.metrics.reject("auth_unavailable");
                conn.send(reply::AUTH_TEMPFAIL);
            }
            Outcome::Invalid => {
                self.auth_failures += 1;
                self.shared.metrics.reject("auth_failed");
                conn.send(reply::AUTH_FAILED);
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    conn.send(reply::TOO_MANY_AUTH_FAILURES);
                    return Ok(Some(Exit::Close));
                }
            }
        }
        Ok(None)
    }

    /// Receives the message (dot-unstuffed, bounded by SIZE) straight into
    /// a spool temp file, parses it from there, commits the entry durably and
    /// answers. What is in memory at once is one read and one write chunk.
    async fn data<S>(&mut self, conn: &mut Conn<S>) -> io::Result<Option<Exit>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let cfg = self.shared.cfg.clone();
        let max = cfg.max_message_bytes as u64;
        let principal = self.identity.clone().unwrap_or_else(|| Principal {
            principal: "smtp:anonymous".into(),
            scopes: "files:write deliveries:write".into(),
            senders: None,
        });
        let meta = SpoolMeta {
            id: Spool::new_id(),
            received: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            sender: self.mail_from.take().unwrap_or_default(),
            recipients: std::mem::take(&mut self.rcpts),
            principal: principal.principal.clone(),
            scopes: principal.scopes.clone(),
            client_ip: Some(self.peer.ip().to_string()),
        };
        // A spool that cannot take the message still reads it to the final
        // dot (the client is in DATA) and then answers 451.
        let mut spool_error = None;
        let mut writer = match self.shared.spool.create(&meta).await {
            Ok(w) => Some(w),
            Err(e) => {
                spool_error = Some(e);
                None
            }
        };
        let mut receiver = DataReceiver::new();
        let mut chunk = Vec::new();
        // The CRLF ending the DATA command starts the first line, so a
        // leading "." is unstuffed (or ends an empty message) correctly.
        receiver.ingest(&mut b"\r\n".iter(), &mut chunk);
        chunk.clear();
        let mut received: u64 = 0;
        let mut discard: Option<DummyDataReceiver> = None;
        let data_deadline = self
            .deadline
            .min(tokio::time::Instant::now() + cfg.max_data_time);
        let session_deadline = conn.set_deadline(Some(data_deadline));
        loop {
            if conn.pending.is_empty() {
                match conn.fill(cfg.data_timeout).await? {
                    Read::Data => {}
                    // Nothing of the message is kept: no 250 was sent, and
                    // the writer's drop removes the temp file.
                    Read::Eof => return Ok(Some(Exit::Close)),
                    Read::Timeout => {
                        conn.send(self.timed_out(conn.past_deadline()));
                        return Ok(Some(Exit::Close));
                    }
                }
            }
            let (done, consumed) = {
                let mut iter = conn.pending.iter();
                let done = match &mut discard {
                    Some(d) => d.ingest(&mut iter),
                    None => receiver.ingest(&mut iter, &mut chunk),
                };
                (done, conn.pending.len() - iter.len())
            };
            conn.pending.drain(..consumed);
            if discard.is_none() {
                received += chunk.len() as u64;
                if received > max {
                    // Past SIZE: keep reading to the final dot, keep nothing.
                    discard = Some(DummyDataReceiver::new_data(&receiver));
                    writer = None;
                } else if let Some(w) = writer.as_mut() {
                    if let Err(e) = w.write(&chunk).await {
                        spool_error = Some(e);
                        writer = None;
                    }
                }
                chunk.clear();
            }
            if done {
                break;
            }
        }
        conn.set_deadline(session_deadline);
        if discard.is_some() {
            self.shared.metrics.message.too_big.inc();
            self.refuse(conn, "too_big", reply::MESSAGE_TOO_BIG);
            return Ok(None);
        }
        let Some(mut writer) = writer else {
            return Ok(self.spool_failed(conn, spool_error));
        };
        if let Err(e) = writer.finish().await {
            return Ok(self.spool_failed(conn, Some(e)));
        }
        let parsed = message::parse_file(writer.path(), writer.body_offset()).await;
        let attachments = match parsed {
            Ok(m) => m.attachments.len(),
            Err(message::ParseFileError::Message(e)) => {
                tracing::info!(client = %self.peer.ip(), error = %e, "smtp message refused");
                self.shared.metrics.message.unparseable.inc();
                self.refuse(conn, "unparseable", reply::UNPARSEABLE);
                return Ok(None);
            }
            Err(e) => {
                tracing::error!(error = %e, "smtp spooled message unreadable; answered 451");
                return Ok(self.spool_failed(conn, None));
            }
        };
        if attachments > cfg.max_attachments {
            self.shared.metrics.message.too_many_attachments.inc();
            self.refuse(conn, "too_many_attachments", reply::TOO_MANY_ATTACHMENTS);
            return Ok(None);
        }
        // A key revoked since AUTH ends the session before it stores more.
        if let Some(id) = self
            .identity
            .as_ref()
            .and_then(|p| p.principal.strip_prefix("key:"))
        {
            if !self.shared.ctx.auth.key_still_valid(id).await {
                self.shared.metrics.reject("key_revoked");
                conn.send(reply::CREDENTIAL_REVOKED);
                return Ok(Some(Exit::Close));
            }
        }
        // What the message makes the backend do must be within the
        // credential's scopes: a delivery always, an upload per attachment.
        let granted: Vec<String> = principal
            .scopes
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let needs_files = attachments > 0 && !has_scope(&granted, "files:write");
        if needs_files || !has_scope(&granted, "deliveries:write") {
            self.refuse(conn, "insufficient_scope", reply::INSUFFICIENT_SCOPE);
            return Ok(None);
        }
        // The trail may have started failing while the message came in:
        // still before the 250, so the client keeps the message (dropping
        // the writer removes the temp file).
        if self.shared.ctx.audit.denying() {
            self.refuse(conn, "audit_unavailable", reply::AUDIT_UNAVAILABLE);
            return Ok(None);
        }
        let size = writer.body_len();
        match writer.commit().await {
            Ok(()) => {
                tracing::info!(id = %meta.id, size, recipients = meta.recipients.len(),
                    principal = %meta.principal, "smtp message spooled");
                self.shared.metrics.message.accepted.inc();
                conn.send(&reply::queued(&meta.id));
                Ok(None)
            }
            Err(e) => Ok(self.spool_failed(conn, Some(e))),
        }
    }

    /// The spool could not take a message: 451, the session goes on.
    fn spool_failed<S>(
        &mut self,
        conn: &mut Conn<S>,
        error: Option<crate::bridge::spool::SpoolError>,
    ) -> Option<Exit>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Some(e) = error {
            tracing::error!(error = %e, "smtp spool write failed; answered 451");
        }
        self.shared.metrics.message.spool_error.inc();
        self.shared.metrics.reject("spool_error");
        conn.send(reply::SPOOL_FAILED);
        None
    }
}
