//! Where the mailbox pollers are, kept in the key store so a restart (or
//! another instance sharing a PostgreSQL store) neither skips nor repeats a
//! message. Tables from migration 0002; tested on both engines in
//! `store/tests.rs`, reopened across a gateway restart in the e2e tests.

use super::{Engine, Pool, Store, StoreError};
use std::collections::HashSet;

/// An IMAP folder's position: its UIDVALIDITY and the highest UID done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImapPosition {
    /// The folder's UIDVALIDITY when `last_uid` was recorded.
    pub uidvalidity: u32,
    /// Highest UID delivered or skipped for good; 0 before the first.
    pub last_uid: u32,
}

impl Store {
    /// The stored position of `mailbox` (`imap:<name>`), if any.
    pub async fn imap_position(&self, mailbox: &str) -> Result<Option<ImapPosition>, StoreError> {
        let row: Option<(i64, i64)> = on_pool!(self, |pool, _e| sqlx::query_as(
            "SELECT uidvalidity, last_uid FROM imap_state WHERE mailbox = $1"
        )
        .bind(mailbox)
        .fetch_optional(pool)
        .await
        .map_err(self.query_err(format!("read state of {mailbox}")))?);
        // Values were written from u32; anything else is not ours: start over.
        Ok(row.and_then(|(v, u)| {
            Some(ImapPosition {
                uidvalidity: u32::try_from(v).ok()?,
                last_uid: u32::try_from(u).ok()?,
            })
        }))
    }

    /// Records the position of `mailbox` (replacing the previous one).
    pub async fn set_imap_position(
        &self,
        mailbox: &str,
        position: ImapPosition,
    ) -> Result<(), StoreError> {
        let now = self.now_ms();
        on_pool!(self, |pool, _e| sqlx::query(
            "INSERT INTO imap_state (mailbox, uidvalidity, last_uid, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (mailbox) DO UPDATE SET \
             uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, \
             updated_at = excluded.updated_at"
        )
        .bind(mailbox)
        .bind(i64::from(position.uidvalidity))
        .bind(i64::from(position.last_uid))
        .bind(now)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("write state of {mailbox}")))?
        .rows_affected());
        Ok(())
    }

    /// The UIDLs of `mailbox` (`pop3:<name>`) already done.
    pub async fn pop3_seen(&self, mailbox: &str) -> Result<HashSet<String>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(self, |pool, _e| sqlx::query_as(
            "SELECT uidl FROM pop3_seen WHERE mailbox = $1"
        )
        .bind(mailbox)
        .fetch_all(pool)
        .await
        .map_err(self.query_err(format!("read state of {mailbox}")))?);
        Ok(rows.into_iter().map(|(u,)| u).collect())
    }

    /// Records that the message `uidl` of `mailbox` is done.
    pub async fn mark_pop3_seen(&self, mailbox: &str, uidl: &str) -> Result<(), StoreError> {
        let now = self.now_ms();
        on_pool!(self, |pool, _e| sqlx::query(
            "INSERT INTO pop3_seen (mailbox, uidl, seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT (mailbox, uidl) DO NOTHING"
        )
        .bind(mailbox)
        .bind(uidl)
        .bind(now)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("write state of {mailbox}")))?
        .rows_affected());
        Ok(())
    }

    /// Forgets the UIDLs of `mailbox` that are not in `present` (the server's
    /// complete UIDL list): their messages are gone, the rows are dead weight.
    pub async fn prune_pop3_seen(
        &self,
        mailbox: &str,
        present: &HashSet<String>,
    ) -> Result<u64, StoreError> {
        let mut removed = 0;
        for uidl in self.pop3_seen(mailbox).await? {
            if present.contains(&uidl) {
                continue;
            }
            let done = on_pool!(self, |pool, _e| sqlx::query(
                "DELETE FROM pop3_seen WHERE mailbox = $1 AND uidl = $2"
            )
            .bind(mailbox)
            .bind(&uidl)
            .execute(pool)
            .await
            .map_err(self.query_err(format!("prune state of {mailbox}")))?
            .rows_affected());
            removed += done;
        }
        Ok(removed)
    }
}
