//! The POP3 poller (`[[pop3]]`): one task per mailbox on the bridge runtime.
//!
//! Every `poll_secs`: log in, `UIDL`, and for each message whose UIDL is not
//! in the state store: `LIST` (size cap), `RETR`, parse, deliver under the
//! idempotency key `pop3:<name>:<uidl>`, record the UIDL, then `DELE` (with
//! `delete = true`). `QUIT` commits the deletions; a session that ends any
//! other way removes nothing (RFC 1939 6), and the recorded UIDL makes the
//! next session DELE the message without delivering it again. A message
//! that cannot become a delivery is recorded and left on the server.

pub mod client;

use super::mailbox::metrics::{Handles, MailboxMetrics};
use super::mailbox::tls::{self, MailTls};
use super::mailbox::tmpfile::MessageFile;
use super::mailbox::{audit, mapping, relay_gate, token_source};
use super::oauth2::TokenSource;
use super::BridgeContext;
use client::{Pop3, Pop3Error, WireError};
use mft_config::mailbox::Pop3 as Pop3Config;
use mft_protocols::mime as message;
use std::collections::HashSet;
use std::sync::Arc;

/// Starts one poller per `[[pop3]]` mailbox.
pub fn start(ctx: &Arc<BridgeContext>) -> anyhow::Result<()> {
    for mailbox in &ctx.config.pop3 {
        let poller = Poller::new(ctx.clone(), mailbox.clone())?;
        ctx.runtime.spawn(poller.run());
    }
    Ok(())
}

struct Poller {
    ctx: Arc<BridgeContext>,
    mailbox: Pop3Config,
    id: String,
    tls: MailTls,
    tokens: Option<TokenSource>,
    metrics: Handles,
}

/// Why a pass ended early.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error(transparent)]
    Pop3(#[from] Pop3Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<WireError> for PassError {
    fn from(e: WireError) -> Self {
        PassError::Pop3(e.into())
    }
}

impl Poller {
    fn new(ctx: Arc<BridgeContext>, mailbox: Pop3Config) -> anyhow::Result<Poller> {
        let id = format!("pop3:{}", mailbox.conn.name);
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

    /// Polls until the shutdown starts; the message being delivered then
    /// is finished, and QUIT commits the deletions made so far.
    async fn run(mut self) {
        let mut backoff = super::mailbox::reconnect_backoff();
        let drain = self.ctx.drain.clone();
        while !drain.is_stopping() {
            match self.pass().await {
                Ok(()) => {
                    backoff.reset();
                    self.metrics.poll_ok();
                    if !drain.sleep(self.mailbox.conn.poll_interval).await {
                        return;
                    }
                }
                Err(e) => {
                    self.metrics.poll_failed(&e);
                    let delay = backoff.next_delay().max(std::cmp::min(
                        self.mailbox.conn.poll_interval,
                        super::mailbox::RECONNECT_INITIAL,
                    ));
                    tracing::warn!(mailbox = %self.id, error = %e, retry_in_ms = delay.as_millis() as u64, "POP3 session failed");
                    if !drain.sleep(delay).await {
                        return;
                    }
                }
            }
        }
    }

    /// One session: deliver what is new, DELE what is delivered, QUIT.
    async fn pass(&mut self) -> Result<(), PassError> {
        let mut s = client::open(&self.mailbox.conn, &self.tls, self.tokens.as_mut()).await?;
        self.metrics.connected.set(1);
        let result = self.transact(&mut s).await;
        self.metrics.connected.set(0);
        // QUIT even after a backend failure: it commits the DELEs of the
        // messages delivered before it. After a connection error there is
        // nothing to commit to, and nothing is removed (RFC 1939).
        match result {
            Ok(present) => {
                s.quit().await?;
                self.ctx.store.prune_pop3_seen(&self.id, &present).await?;
                Ok(())
            }
            Err(PassError::Store(e)) => {
                let _ = s.quit().await;
                Err(PassError::Store(e))
            }
            Err(e) => Err(e),
        }
    }

    /// Returns the UIDLs present at the start, for pruning the state.
    async fn transact(&mut self, s: &mut Pop3) -> Result<HashSet<String>, PassError> {
        let listing = s.uidl().await?;
        let present: HashSet<String> = listing.iter().map(|(_, u)| u.clone()).collect();
        let seen = self.ctx.store.pop3_seen(&self.id).await?;
        for (n, uidl) in listing {
            // Between messages: QUIT (in `pass`) commits what was done.
            if self.ctx.drain.is_stopping() {
                break;
            }
            let _working = self.ctx.drain.work();
            if seen.contains(&uidl) {
                // Delivered in an earlier session whose QUIT never came.
                if self.mailbox.delete {
                    s.dele(n).await?;
                }
                continue;
            }
            match self.process(s, n, &uidl).await? {
                Step::Delivered => {
                    self.ctx.store.mark_pop3_seen(&self.id, &uidl).await?;
                    if self.mailbox.delete {
                        s.dele(n).await?;
                    }
                }
                Step::Skipped => {
                    // Left on the server for a human; never tried again.
                    self.ctx.store.mark_pop3_seen(&self.id, &uidl).await?;
                }
                Step::Retry => break,
            }
        }
        Ok(present)
    }

    async fn process(&mut self, s: &mut Pop3, n: u32, uidl: &str) -> Result<Step, PassError> {
        let max = self.mailbox.conn.max_message_bytes;
        if self.ctx.audit.denying() {
            // audit.on_failure = "deny": left on the server, not recorded
            // as seen, taken again by the next poll.
            self.metrics.retried.inc();
            tracing::warn!(mailbox = %self.id, uidl, "the audit trail cannot be written (audit.on_failure = \"deny\"); the message stays for the next poll");
            return Ok(Step::Retry);
        }
        let size = s.size(n).await?;
        if size > max {
            return Ok(self.skip(
                uidl,
                format!("{size} bytes, more than max_message_bytes {max}"),
            ));
        }
        let data_dir = &self.ctx.config.server.data_dir;
        let (tmp, mut file) = match MessageFile::create(data_dir).await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(mailbox = %self.id, uidl, error = %e, "cannot create a temporary message file; will retry");
                return Ok(Step::Retry);
            }
        };
        let mut out = tokio::io::BufWriter::with_capacity(client::RETR_CHUNK, &mut file);
        match s.retr_to(n, max, &mut out).await {
            Ok(_) => {}
            // The LIST size was too small a claim; the cap is what counts.
            // The rest of the message is unread, so the session must end.
            Err(WireError::TooLarge { .. }) => {
                self.skip(uidl, format!("more than max_message_bytes {max}"));
                self.ctx.store.mark_pop3_seen(&self.id, uidl).await?;
                return Err(WireError::TooLarge { n, max }.into());
            }
            Err(e) => return Err(e.into()),
        };
        drop(out);
        drop(file);
        let parsed = match message::parse_file(tmp.path(), 0).await {
            Ok(m) => m,
            Err(message::ParseFileError::Message(e)) => {
                return Ok(self.skip(uidl, format!("cannot be parsed: {e}")))
            }
            Err(e) => {
                tracing::error!(mailbox = %self.id, uidl, error = %e, "will retry");
                return Ok(Step::Retry);
            }
        };
        // Each attachment is an upload: no fan-out without bound.
        let (n, max) = (parsed.attachments.len(), self.mailbox.conn.max_attachments);
        if n > max {
            return Ok(self.skip(
                uidl,
                format!("{n} attachments, more than max_attachments {max}"),
            ));
        }
        let key = format!("{}:{uidl}", self.id);
        let mut request = match mapping::request(&self.mailbox.conn, &self.id, key, &parsed) {
            Ok(r) => r,
            Err(e) => return Ok(self.skip(uidl, e.to_string())),
        };
        let gate = relay_gate::apply(
            &self.ctx,
            &self.mailbox.conn,
            &self.id,
            &parsed,
            &mut request,
        )
        .await;
        match gate {
            Ok(()) => {}
            Err(e @ relay_gate::GateError::Store(_)) => {
                tracing::warn!(mailbox = %self.id, uidl, error = %e, "will retry");
                return Ok(Step::Retry);
            }
            Err(e) => return Ok(self.skip(uidl, e.to_string())),
        }
        match self.ctx.pipeline.deliver(&request).await {
            Ok(d) => {
                self.metrics.delivered.inc();
                tracing::info!(mailbox = %self.id, uidl, delivery = %d.id, files = parsed.attachments.len(), "delivered");
                Ok(Step::Delivered)
            }
            Err(e) if e.is_transient() => {
                self.metrics.retried.inc();
                tracing::warn!(mailbox = %self.id, uidl, error = %e, "backend unavailable; will retry");
                Ok(Step::Retry)
            }
            Err(e) => Ok(self.skip(uidl, format!("refused by the backend: {e}"))),
        }
    }

    fn skip(&self, uidl: &str, why: String) -> Step {
        self.metrics.failed.inc();
        tracing::error!(mailbox = %self.id, uidl, reason = %why, "message skipped (left on the server)");
        audit(
            &self.ctx.audit,
            &self.id,
            "skipped",
            format!("uidl {uidl}: {why}"),
        );
        Step::Skipped
    }
}

enum Step {
    Delivered,
    Skipped,
    Retry,
}

/// Logs in to `mailbox` and returns its message count (`mft-gateway check`).
pub async fn probe(mailbox: &Pop3Config) -> Result<u32, String> {
    let tls = tls::client(&mailbox.conn).map_err(|e| e.to_string())?;
    let mut tokens = token_source(&mailbox.conn)?;
    let mut s = client::open(&mailbox.conn, &tls, tokens.as_mut())
        .await
        .map_err(|e| e.to_string())?;
    let (n, _) = s.stat().await.map_err(|e| e.to_string())?;
    let _ = s.quit().await;
    Ok(n)
}
