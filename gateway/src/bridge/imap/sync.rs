//! One pass over the folder: deliver every message above the stored UID.

use super::session::{timed, ImapError, Session};
use super::Poller;
use crate::bridge::mailbox::tmpfile::MessageFile;
use crate::bridge::mailbox::{audit, mapping, relay_gate};
use crate::store::mailbox_state::ImapPosition;
use futures_util::TryStreamExt;
use mft_config::mailbox::AfterUpload;
use mft_protocols::mime as message;
use tokio::io::AsyncWriteExt;

/// Bytes of a message fetched per request (partial FETCH).
const FETCH_CHUNK: u64 = 1 << 20;

/// What the server offers after login.
pub(crate) struct Caps {
    pub idle: bool,
    pub mv: bool,
    pub uidplus: bool,
}

/// How a pass ended (connection errors end it with `Err`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every message is done.
    Done,
    /// The backend was unreachable: try again after `poll_secs`.
    RetryLater,
}

/// What became of one message.
enum Step {
    /// Delivered: apply after_upload, advance.
    Delivered,
    /// Skipped for good (unparseable, too large, refused): flag, advance.
    Skipped,
    /// Backend unavailable: stop here, keep the UID.
    Retry,
}

pub(crate) async fn sync(
    p: &mut Poller,
    s: &mut Session,
    caps: &Caps,
) -> Result<Outcome, ImapError> {
    let limit = p.mailbox.conn.command_timeout;
    let folder = p.mailbox.folder.clone();
    let selected = timed(limit, "SELECT", s.select(&folder)).await?;
    let uidvalidity = selected
        .uid_validity
        .ok_or_else(|| ImapError::NoUidValidity(folder.clone()))?;
    let mut position = match p.ctx.store.imap_position(&p.id).await? {
        Some(pos) if pos.uidvalidity == uidvalidity => pos,
        previous => {
            if let Some(old) = previous {
                tracing::warn!(mailbox = %p.id, old = old.uidvalidity, new = uidvalidity,
                    "UIDVALIDITY changed: the server renumbered the folder, processing it again from the start");
                audit(
                    &p.ctx.audit,
                    &p.id,
                    "reset",
                    format!(
                        "UIDVALIDITY of {folder} changed from {} to {uidvalidity}",
                        old.uidvalidity
                    ),
                );
            }
            let fresh = ImapPosition {
                uidvalidity,
                last_uid: 0,
            };
            p.ctx.store.set_imap_position(&p.id, fresh).await?;
            fresh
        }
    };
    if selected.exists == 0 {
        drain_unsolicited(s);
        return Ok(Outcome::Done);
    }
    // UIDs and sizes first, so an oversized message is never downloaded.
    let from = position.last_uid.saturating_add(1);
    let mut listing: Vec<(u32, u32)> = {
        let stream = timed(
            limit,
            "UID FETCH (sizes)",
            s.uid_fetch(format!("{from}:*"), "(UID RFC822.SIZE)"),
        )
        .await?;
        let all: Vec<_> = timed(limit, "UID FETCH (sizes)", stream.try_collect::<Vec<_>>()).await?;
        all.iter()
            .filter_map(|f| Some((f.uid?, f.size.unwrap_or(0))))
            // "n:*" always includes the highest UID, even below n.
            .filter(|(uid, _)| *uid >= from)
            .collect()
    };
    listing.sort_unstable();
    for (uid, size) in listing {
        // Between messages: the rest waits for the next process.
        if p.ctx.drain.is_stopping() {
            break;
        }
        let _working = p.ctx.drain.work();
        let step = process(p, s, uidvalidity, uid, size).await?;
        match step {
            Step::Retry => {
                drain_unsolicited(s);
                return Ok(Outcome::RetryLater);
            }
            Step::Delivered => {
                if let Err(e) = after_upload(p, s, caps, uid).await {
                    if !e.is_refusal() {
                        // Connection trouble: keep the UID, the next session
                        // delivers again (same key, same delivery) and retries.
                        return Err(e);
                    }
                    tracing::error!(mailbox = %p.id, uid, error = %e, "after_upload failed; the message stays");
                    audit(
                        &p.ctx.audit,
                        &p.id,
                        "after_upload_failed",
                        format!("uid {uid}: {e}"),
                    );
                }
            }
            Step::Skipped => {
                // Flag it for a human; a refusal to flag changes nothing.
                let flagged = timed(limit, "UID STORE \\Flagged", async {
                    let st = s
                        .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Flagged)")
                        .await?;
                    st.try_collect::<Vec<_>>().await
                })
                .await;
                if let Err(e) = flagged {
                    if !e.is_refusal() {
                        return Err(e);
                    }
                }
            }
        }
        position.last_uid = uid;
        p.ctx.store.set_imap_position(&p.id, position).await?;
    }
    drain_unsolicited(s);
    Ok(Outcome::Done)
}

async fn process(
    p: &mut Poller,
    s: &mut Session,
    uidvalidity: u32,
    uid: u32,
    size: u32,
) -> Result<Step, ImapError> {
    let limit = p.mailbox.conn.command_timeout;
    let max = p.mailbox.conn.max_message_bytes;
    if p.ctx.audit.denying() {
        // audit.on_failure = "deny": the message stays in the mailbox
        // (UID not advanced) until the trail is writable again.
        p.metrics.retried.inc();
        tracing::warn!(mailbox = %p.id, uid, "the audit trail cannot be written (audit.on_failure = \"deny\"); the message stays for the next poll");
        return Ok(Step::Retry);
    }
    if u64::from(size) > max {
        return Ok(skip(
            p,
            uid,
            format!("{size} bytes, more than max_message_bytes {max}"),
        ));
    }
    let data_dir = p.ctx.config.server.data_dir.clone();
    let (tmp, mut file) = match MessageFile::create(&data_dir).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(mailbox = %p.id, uid, error = %e, "cannot create a temporary message file; will retry");
            return Ok(Step::Retry);
        }
    };
    // In pieces (RFC 3501 partial FETCH) straight to the file: the IMAP
    // client buffers one response, never the message.
    let mut offset: u64 = 0;
    loop {
        let stream = timed(
            limit,
            "UID FETCH BODY.PEEK[]",
            s.uid_fetch(
                uid.to_string(),
                format!("(UID BODY.PEEK[]<{offset}.{FETCH_CHUNK}>)"),
            ),
        )
        .await?;
        let fetched: Vec<_> = timed(
            limit,
            "UID FETCH BODY.PEEK[]",
            stream.try_collect::<Vec<_>>(),
        )
        .await?;
        let Some(piece) = fetched
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body())
        else {
            if offset == 0 {
                // Expunged by someone else between the listing and now.
                tracing::info!(mailbox = %p.id, uid, "message gone before it was fetched");
                return Ok(Step::Skipped);
            }
            // Past the end: some servers answer with no section at all.
            break;
        };
        if let Err(e) = file.write_all(piece).await {
            tracing::error!(mailbox = %p.id, uid, error = %e, "cannot write a temporary message file; will retry");
            return Ok(Step::Retry);
        }
        offset += piece.len() as u64;
        if offset > max {
            return Ok(skip(p, uid, format!("more than max_message_bytes {max}")));
        }
        // A short piece is the last; a longer one means the server sent
        // the whole message (it ignored the partial request).
        if piece.len() as u64 != FETCH_CHUNK {
            break;
        }
    }
    if let Err(e) = file.flush().await {
        tracing::error!(mailbox = %p.id, uid, error = %e, "cannot write a temporary message file; will retry");
        return Ok(Step::Retry);
    }
    drop(file);
    let parsed = match message::parse_file(tmp.path(), 0).await {
        Ok(m) => m,
        Err(message::ParseFileError::Message(e)) => {
            return Ok(skip(p, uid, format!("cannot be parsed: {e}")))
        }
        Err(e) => {
            tracing::error!(mailbox = %p.id, uid, error = %e, "will retry");
            return Ok(Step::Retry);
        }
    };
    // Each attachment is an upload: no fan-out without bound.
    let (n, max) = (parsed.attachments.len(), p.mailbox.conn.max_attachments);
    if n > max {
        return Ok(skip(
            p,
            uid,
            format!("{n} attachments, more than max_attachments {max}"),
        ));
    }
    let key = format!("{}:{uidvalidity}:{uid}", p.id);
    let mut request = match mapping::request(&p.mailbox.conn, &p.id, key, &parsed) {
        Ok(r) => r,
        Err(e) => return Ok(skip(p, uid, e.to_string())),
    };
    match relay_gate::apply(&p.ctx, &p.mailbox.conn, &p.id, &parsed, &mut request).await {
        Ok(()) => {}
        Err(e @ relay_gate::GateError::Store(_)) => {
            tracing::warn!(mailbox = %p.id, uid, error = %e, "will retry");
            return Ok(Step::Retry);
        }
        Err(e) => return Ok(skip(p, uid, e.to_string())),
    }
    match p.ctx.pipeline.deliver(&request).await {
        Ok(d) => {
            p.metrics.delivered.inc();
            tracing::info!(mailbox = %p.id, uid, delivery = %d.id, files = parsed.attachments.len(), "delivered");
            Ok(Step::Delivered)
        }
        Err(e) if e.is_transient() => {
            p.metrics.retried.inc();
            tracing::warn!(mailbox = %p.id, uid, error = %e, "backend unavailable; will retry");
            Ok(Step::Retry)
        }
        Err(e) => Ok(skip(p, uid, format!("refused by the backend: {e}"))),
    }
}

fn skip(p: &Poller, uid: u32, why: String) -> Step {
    p.metrics.failed.inc();
    tracing::error!(mailbox = %p.id, uid, reason = %why, "message skipped (flagged in the mailbox)");
    audit(&p.ctx.audit, &p.id, "skipped", format!("uid {uid}: {why}"));
    Step::Skipped
}

async fn after_upload(p: &Poller, s: &mut Session, caps: &Caps, uid: u32) -> Result<(), ImapError> {
    let limit = p.mailbox.conn.command_timeout;
    let set = uid.to_string();
    match &p.mailbox.after_upload {
        AfterUpload::Seen => store_flag(s, limit, &set, "\\Seen").await,
        AfterUpload::Move(target) if caps.mv => {
            timed(limit, "UID MOVE", s.uid_mv(&set, target)).await
        }
        AfterUpload::Move(target) => {
            timed(limit, "UID COPY", s.uid_copy(&set, target)).await?;
            expunge(s, limit, caps, &set).await
        }
        AfterUpload::Delete => expunge(s, limit, caps, &set).await,
    }
}

async fn store_flag(
    s: &mut Session,
    limit: std::time::Duration,
    set: &str,
    flag: &str,
) -> Result<(), ImapError> {
    timed(limit, "UID STORE", async {
        let st = s.uid_store(set, format!("+FLAGS.SILENT ({flag})")).await?;
        st.try_collect::<Vec<_>>().await
    })
    .await
    .map(|_| ())
}

/// `\Deleted` then UID EXPUNGE (only this message) where UIDPLUS exists,
/// else EXPUNGE (which also removes other messages already flagged deleted).
async fn expunge(
    s: &mut Session,
    limit: std::time::Duration,
    caps: &Caps,
    set: &str,
) -> Result<(), ImapError> {
    store_flag(s, limit, set, "\\Deleted").await?;
    if caps.uidplus {
        timed(limit, "UID EXPUNGE", async {
            let st = s.uid_expunge(set).await?;
            st.try_collect::<Vec<_>>().await
        })
        .await
        .map(|_| ())
    } else {
        timed(limit, "EXPUNGE", async {
            let st = s.expunge().await?;
            st.try_collect::<Vec<_>>().await
        })
        .await
        .map(|_| ())
    }
}

/// Unsolicited responses (EXISTS, FETCH flags) are not needed between
/// passes; the channel is bounded, so it is emptied.
fn drain_unsolicited(s: &mut Session) {
    while s.unsolicited_responses.try_recv().is_ok() {}
}
