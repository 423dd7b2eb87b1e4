//! Console sessions (table `admin_sessions`): SHA-256 of each session
//! token, never the token; a session carries its administrator's role now.

use super::admins::Role;
use super::{from_ms, Engine, Pool, Store, StoreError};
use std::time::SystemTime;

/// A session as stored, with its administrator's role.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// The administrator's name.
    pub admin: String,
    /// Their role now (a role change applies to open sessions).
    pub role: Role,
    /// `false` while the TOTP enrolment is not confirmed.
    pub full: bool,
    /// Created (absolute timeout).
    pub created_at: SystemTime,
    /// Last request (idle timeout).
    pub last_seen_at: SystemTime,
}

impl Store {
    /// Opens a session whose token has SHA-256 `id_hash`.
    pub async fn create_admin_session(
        &self,
        id_hash: &[u8; 32],
        admin: &str,
        full: bool,
    ) -> Result<(), StoreError> {
        let now = self.now_ms();
        on_pool!(self, |pool, _e| sqlx::query(
            "INSERT INTO admin_sessions (id_hash, admin, stage, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $4)"
        )
        .bind(&id_hash[..])
        .bind(admin)
        .bind(if full { "full" } else { "enrol" })
        .bind(now)
        .execute(pool)
        .await
        .map_err(self.query_err("open an admin session"))?
        .rows_affected());
        Ok(())
    }

    /// The session whose token has SHA-256 `id_hash`.
    pub async fn admin_session(
        &self,
        id_hash: &[u8; 32],
    ) -> Result<Option<SessionRecord>, StoreError> {
        let raw: Option<(String, String, String, i64, i64)> = on_pool!(self, |pool, _e| {
            sqlx::query_as(
                "SELECT s.admin, a.role, s.stage, s.created_at, s.last_seen_at \
                 FROM admin_sessions s JOIN admins a ON a.name = s.admin WHERE s.id_hash = $1",
            )
            .bind(&id_hash[..])
            .fetch_optional(pool)
            .await
            .map_err(self.query_err("look up an admin session"))?
        });
        raw.map(|(admin, role, stage, created, seen)| {
            Ok(SessionRecord {
                role: Role::parse(&role).ok_or_else(|| StoreError::CorruptPartner {
                    what: "admin role".to_string(),
                })?,
                admin,
                full: stage == "full",
                created_at: from_ms(created),
                last_seen_at: from_ms(seen),
            })
        })
        .transpose()
    }

    /// Marks the session used now (idle timeout), or complete (`full`).
    pub async fn touch_admin_session(
        &self,
        id_hash: &[u8; 32],
        full: bool,
    ) -> Result<(), StoreError> {
        let now = self.now_ms();
        let sql = if full {
            "UPDATE admin_sessions SET last_seen_at = $1, stage = 'full' WHERE id_hash = $2"
        } else {
            "UPDATE admin_sessions SET last_seen_at = $1 WHERE id_hash = $2"
        };
        on_pool!(self, |pool, _e| sqlx::query(sql)
            .bind(now)
            .bind(&id_hash[..])
            .execute(pool)
            .await
            .map_err(self.query_err("touch an admin session"))?
            .rows_affected());
        Ok(())
    }

    /// Ends one session (sign-out, timeout).
    pub async fn end_admin_session(&self, id_hash: &[u8; 32]) -> Result<(), StoreError> {
        on_pool!(self, |pool, _e| sqlx::query(
            "DELETE FROM admin_sessions WHERE id_hash = $1"
        )
        .bind(&id_hash[..])
        .execute(pool)
        .await
        .map_err(self.query_err("end an admin session"))?
        .rows_affected());
        Ok(())
    }

    pub(super) async fn end_sessions_of(&self, name: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool, _e| sqlx::query(
            "DELETE FROM admin_sessions WHERE admin = $1"
        )
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("end the sessions of admin {name}")))?
        .rows_affected());
        Ok(())
    }
}
