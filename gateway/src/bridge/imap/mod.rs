//! The IMAP poller (`[[imap]]`): one task per mailbox on the bridge runtime.
//!
//! Per session: SELECT the folder, compare its UIDVALIDITY with the stored
//! one (a change means the UIDs were reassigned: start again from UID 1,
//! RFC 3501 2.3.1.1), list the UIDs above the stored one with their sizes,
//! then per message: fetch with `BODY.PEEK[]` (so nothing is marked seen
//! before its delivery exists), parse, deliver under the idempotency key
//! `imap:<name>:<uidvalidity>:<uid>`, and only then apply `after_upload` and
//! store the UID. A crash between delivery and store repeats the delivery
//! call, which the backend answers with the first delivery: exactly once.
//!
//! Then IDLE (re-issued every 25 minutes, below the 29 of RFC 2177, or after
//! 5 minutes without a keepalive) when the server offers it, else wait
//! `poll_secs`. Any failure of the connection
//! ends the session; the next one starts after an exponential backoff.

pub mod session;
mod sync;

use super::mailbox::metrics::{Handles, MailboxMetrics};
use super::mailbox::tls::{self, MailTls};
use super::mailbox::token_source;
use super::oauth2::TokenSource;
use super::BridgeContext;
use crate::backoff::Backoff;
use mft_config::mailbox::Imap;
use session::{timed, ImapError, Session};
use std::sync::Arc;
use std::time::Duration;

/// IDLE is re-issued this often (servers may drop an IDLE after 30 minutes).
pub const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);

/// Longest silence accepted in IDLE. Servers send keepalives (Dovecot
/// `* OK Still here` every 2 minutes); after this much silence the poller
/// sends DONE, which, under the command timeout, tells a quiet server from a
/// dead connection without waiting for the full [`IDLE_RENEW`].
pub const IDLE_SILENCE: Duration = Duration::from_secs(5 * 60);

/// Starts one poller per `[[imap]]` mailbox.
pub fn start(ctx: &Arc<BridgeContext>) -> anyhow::Result<()> {
    for mailbox in &ctx.config.imap {
        let poller = Poller::new(ctx.clone(), mailbox.clone())?;
        ctx.runtime.spawn(poller.run());
    }
    Ok(())
}

/// Everything one mailbox's task owns.
pub(crate) struct Poller {
    pub(crate) ctx: Arc<BridgeContext>,
    pub(crate) mailbox: Imap,
    /// `imap:<name>`: origin, state key and metrics label.
    pub(crate) id: String,
    pub(crate) tls: MailTls,
    pub(crate) tokens: Option<TokenSource>,
    pub(crate) metrics: Handles,
}

impl Poller {
    fn new(ctx: Arc<BridgeContext>, mailbox: Imap) -> anyhow::Result<Poller> {
        let id = format!("imap:{}", mailbox.conn.name);
        let tls = tls::client(&mailbox.conn).map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
        let tokens = token_source(&mailbox.conn).map_err(|e| anyhow::anyhow!(e))?;
        let metrics = MailboxMetrics::handles(ctx.metrics.registry(), &id)?;
        Ok(Poller {
            ctx,
            mailbox,
            id,
            tls,
            tokens,
            metrics,
        })
    }

    /// Polls until the shutdown starts; a message being fetched and
    /// delivered then is finished first.
    async fn run(mut self) {
        let mut backoff = super::mailbox::reconnect_backoff();
        let drain = self.ctx.drain.clone();
        while !drain.is_stopping() {
            let session = tokio::select! {
                s = session::guarded(
                    "login",
                    session::open(&self.mailbox.conn, &self.tls, self.tokens.as_mut()),
                ) => s,
                () = drain.stopping() => return,
            };
            let error = match session {
                Ok(s) => {
                    self.metrics.connected.set(1);
                    tracing::info!(mailbox = %self.id, "logged in");
                    // The session is dropped with the error: it failed anyway.
                    let e = match session::guarded("poll", async {
                        Ok(self.serve(s, &mut backoff).await)
                    })
                    .await
                    {
                        Ok(e) => e,
                        Err(e) => Some(e),
                    };
                    self.metrics.connected.set(0);
                    match e {
                        Some(e) => e,
                        None => {
                            tracing::info!(mailbox = %self.id, "shutdown: IMAP poller stopped");
                            return;
                        }
                    }
                }
                Err(e) => e,
            };
            self.metrics.poll_failed(&error);
            let delay = backoff.next_delay();
            tracing::warn!(mailbox = %self.id, error = %error, retry_in_ms = delay.as_millis() as u64, "IMAP session ended");
            if !drain.sleep(delay).await {
                return;
            }
        }
    }

    /// Polls until the connection fails (returns why) or the shutdown
    /// starts (logs out, returns `None`).
    async fn serve(&mut self, mut s: Session, backoff: &mut Backoff) -> Option<ImapError> {
        let limit = self.mailbox.conn.command_timeout;
        let drain = self.ctx.drain.clone();
        let caps = match timed(limit, "CAPABILITY", s.capabilities()).await {
            Ok(c) => c,
            Err(e) => return Some(e),
        };
        let caps = sync::Caps {
            idle: caps.has_str("IDLE"),
            mv: caps.has_str("MOVE"),
            uidplus: caps.has_str("UIDPLUS"),
        };
        loop {
            let outcome = match sync::sync(self, &mut s, &caps).await {
                Ok(o) => o,
                Err(e) => return Some(e),
            };
            self.metrics.poll_ok();
            backoff.reset();
            if drain.is_stopping() {
                break;
            }
            if outcome == sync::Outcome::RetryLater || !(caps.idle && self.mailbox.idle) {
                if !drain.sleep(self.mailbox.conn.poll_interval).await {
                    break;
                }
                continue;
            }
            s = match idle(s, limit, &drain).await {
                Ok(s) => s,
                Err(e) => return Some(e),
            };
            if drain.is_stopping() {
                break;
            }
        }
        let _ = timed(limit, "LOGOUT", s.logout()).await;
        None
    }
}

/// Waits in IDLE until the server reports a change, [`IDLE_RENEW`] passes
/// or the shutdown starts. `idle()` takes the session by value; `done()`
/// gives it back.
async fn idle(
    s: Session,
    limit: Duration,
    drain: &crate::drain::Drain,
) -> Result<Session, ImapError> {
    let mut handle = s.idle();
    timed(limit, "IDLE", handle.init()).await?;
    {
        let (wait, _stop) = handle.wait_with_timeout(IDLE_SILENCE);
        // The inner timeout restarts with every keepalive; the outer one
        // ends the IDLE for renewal while keepalives keep coming. Either
        // way DONE follows, under the command timeout.
        let waited = tokio::select! {
            w = tokio::time::timeout(IDLE_RENEW, wait) => Some(w),
            () = drain.stopping() => None,
        };
        if let Some(Ok(Err(e))) = waited {
            return Err(ImapError::Command {
                what: "IDLE".to_string(),
                source: e,
            });
        }
    }
    timed(limit, "DONE", handle.done()).await
}

/// Logs in to `mailbox`, EXAMINEs its folder and returns the message count
/// (`mft-gateway check`).
pub async fn probe(mailbox: &Imap) -> Result<u32, String> {
    let tls = tls::client(&mailbox.conn).map_err(|e| e.to_string())?;
    let mut tokens = token_source(&mailbox.conn)?;
    let limit = mailbox.conn.command_timeout;
    let mut s = session::open(&mailbox.conn, &tls, tokens.as_mut())
        .await
        .map_err(|e| e.to_string())?;
    let folder = timed(limit, "EXAMINE", s.examine(&mailbox.folder))
        .await
        .map_err(|e| e.to_string())?;
    let _ = timed(limit, "LOGOUT", s.logout()).await;
    Ok(folder.exists)
}
