//! Console administrators (table `admins`) and their sessions
//! (`admin_sessions`). The store holds the argon2id hash of each password,
//! the TOTP secret sealed by the caller, SHA-256 of the unused recovery
//! codes and SHA-256 of each session token: never a secret in the clear.

use super::{from_ms, Engine, Pool, Store, StoreError};
use std::time::SystemTime;

/// What an administrator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything the admin API offers.
    Admin,
    /// Read only: every state change is refused server-side.
    Viewer,
}

impl Role {
    /// `admin` or `viewer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    /// Parses `admin` or `viewer`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// One administrator as stored.
#[derive(Clone)]
pub struct AdminRecord {
    /// Sign-in name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// argon2id PHC string of the password.
    pub password_hash: String,
    /// The sealed TOTP secret, once enrolment started.
    pub totp_sealed: Option<Vec<u8>>,
    /// Whether enrolment was confirmed with a code.
    pub totp_enabled: bool,
    /// SHA-256 (hex) of each unused recovery code.
    pub recovery_hashes: Vec<String>,
    /// Created.
    pub created_at: SystemTime,
    /// Last complete sign-in.
    pub last_sign_in_at: Option<SystemTime>,
}

impl std::fmt::Debug for AdminRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminRecord")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("totp_enabled", &self.totp_enabled)
            .finish_non_exhaustive()
    }
}

impl AdminRecord {
    /// The public view (`admins list --json`): no hash, no secret.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "role": self.role.as_str(),
            "totp": if self.totp_enabled { "enrolled" } else { "pending" },
            "recovery_codes_left": self.recovery_hashes.len(),
            "created_at": super::rfc3339(self.created_at),
            "last_sign_in_at": self.last_sign_in_at.map(super::rfc3339),
        })
    }
}

const COLUMNS: &str = "name, role, password_hash, totp_sealed, totp_enabled, recovery_hashes, \
    created_at, last_sign_in_at";

/// One row as selected by [`COLUMNS`].
#[derive(sqlx::FromRow)]
struct AdminRow {
    name: String,
    role: String,
    password_hash: String,
    totp_sealed: Option<Vec<u8>>,
    totp_enabled: i64,
    recovery_hashes: String,
    created_at: i64,
    last_sign_in_at: Option<i64>,
}

fn decode(r: AdminRow) -> Result<AdminRecord, StoreError> {
    Ok(AdminRecord {
        role: Role::parse(&r.role).ok_or_else(|| StoreError::CorruptPartner {
            what: "admin role".to_string(),
        })?,
        name: r.name,
        password_hash: r.password_hash,
        totp_sealed: r.totp_sealed,
        totp_enabled: r.totp_enabled != 0,
        recovery_hashes: r
            .recovery_hashes
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        created_at: from_ms(r.created_at),
        last_sign_in_at: r.last_sign_in_at.map(from_ms),
    })
}

/// Whether `name` can name an administrator: 1 to 64 letters, digits, `-`,
/// `_`, `.`.
pub fn valid_name(name: &str) -> bool {
    super::partners::valid_name(name)
}

impl Store {
    /// Adds an administrator with an argon2id `password_hash`; TOTP is
    /// enrolled at the first sign-in.
    pub async fn add_admin(
        &self,
        name: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<AdminRecord, StoreError> {
        if !valid_name(name) {
            return Err(StoreError::Admin {
                name: name.chars().take(80).collect(),
                reason: "an admin name is 1 to 64 letters, digits, '-', '_' or '.'",
            });
        }
        let now = self.now_ms();
        let inserted = on_pool!(self, |pool, _e| {
            sqlx::query(
                "INSERT INTO admins (name, role, password_hash, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(role.as_str())
            .bind(password_hash)
            .bind(now)
            .execute(pool)
            .await
            .map_err(self.query_err(format!("add admin {name}")))?
            .rows_affected()
        });
        if inserted == 0 {
            return Err(StoreError::Admin {
                name: name.to_string(),
                reason: "an admin with this name exists already",
            });
        }
        Ok(AdminRecord {
            name: name.to_string(),
            role,
            password_hash: password_hash.to_string(),
            totp_sealed: None,
            totp_enabled: false,
            recovery_hashes: Vec::new(),
            created_at: from_ms(now),
            last_sign_in_at: None,
        })
    }

    /// Every administrator, by name.
    pub async fn list_admins(&self) -> Result<Vec<AdminRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM admins ORDER BY name");
        let raw: Vec<AdminRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("list admins"))?);
        raw.into_iter().map(decode).collect()
    }

    /// The administrator named `name`.
    pub async fn get_admin(&self, name: &str) -> Result<Option<AdminRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM admins WHERE name = $1");
        let raw: Option<AdminRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(pool)
            .await
            .map_err(self.query_err("look up an admin"))?);
        raw.map(decode).transpose()
    }

    /// Removes an administrator and ends their sessions; `false` if absent.
    pub async fn remove_admin(&self, name: &str) -> Result<bool, StoreError> {
        self.end_sessions_of(name).await?;
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "DELETE FROM admins WHERE name = $1"
        )
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("remove admin {name}")))?
        .rows_affected());
        Ok(n == 1)
    }

    /// Forgets the TOTP secret and recovery codes (the next sign-in enrols
    /// again) and ends the administrator's sessions; `false` if absent.
    pub async fn reset_admin_totp(&self, name: &str) -> Result<bool, StoreError> {
        self.end_sessions_of(name).await?;
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE admins SET totp_sealed = NULL, totp_enabled = 0, recovery_hashes = '', \
             totp_last_step = 0 WHERE name = $1"
        )
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("reset TOTP of admin {name}")))?
        .rows_affected());
        Ok(n == 1)
    }

    /// Stores a new sealed TOTP secret for an administrator not yet enrolled.
    pub async fn set_admin_totp_pending(
        &self,
        name: &str,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE admins SET totp_sealed = $1 WHERE name = $2 AND totp_enabled = 0"
        )
        .bind(sealed)
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("start TOTP enrolment of admin {name}")))?
        .rows_affected());
        Ok(())
    }

    /// Confirms the enrolment and stores the recovery codes' hashes.
    pub async fn enable_admin_totp(
        &self,
        name: &str,
        recovery_hashes: &[String],
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE admins SET totp_enabled = 1, recovery_hashes = $1 \
             WHERE name = $2 AND totp_enabled = 0 AND totp_sealed IS NOT NULL"
        )
        .bind(recovery_hashes.join(" "))
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("confirm TOTP of admin {name}")))?
        .rows_affected());
        Ok(n == 1)
    }

    /// Uses up the recovery code whose SHA-256 is `hash`: `true` if it was
    /// unused (a concurrent use of the same code wins only once).
    pub async fn use_admin_recovery_code(
        &self,
        name: &str,
        hash: &str,
    ) -> Result<bool, StoreError> {
        let Some(admin) = self.get_admin(name).await? else {
            return Ok(false);
        };
        if !admin.recovery_hashes.iter().any(|h| h == hash) {
            return Ok(false);
        }
        let left: Vec<&str> = admin
            .recovery_hashes
            .iter()
            .map(String::as_str)
            .filter(|h| *h != hash)
            .collect();
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE admins SET recovery_hashes = $1 WHERE name = $2 AND recovery_hashes = $3"
        )
        .bind(left.join(" "))
        .bind(name)
        .bind(admin.recovery_hashes.join(" "))
        .execute(pool)
        .await
        .map_err(self.query_err(format!("use a recovery code of admin {name}")))?
        .rows_affected());
        Ok(n == 1)
    }

    /// Accepts TOTP time step `step` for `name` if it is later than every
    /// step accepted before: each code works once (RFC 6238 section 5.2),
    /// also when two sign-ins race.
    pub async fn accept_admin_totp_step(&self, name: &str, step: u64) -> Result<bool, StoreError> {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE admins SET totp_last_step = $1 WHERE name = $2 AND totp_last_step < $1"
        )
        .bind(step)
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("record the TOTP step of admin {name}")))?
        .rows_affected());
        Ok(n == 1)
    }

    /// Records a complete sign-in.
    pub async fn record_admin_sign_in(&self, name: &str) -> Result<(), StoreError> {
        let now = self.now_ms();
        on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE admins SET last_sign_in_at = $1 WHERE name = $2"
        )
        .bind(now)
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("record sign-in of admin {name}")))?
        .rows_affected());
        Ok(())
    }
}
