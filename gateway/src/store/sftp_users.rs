//! SFTP users added at run time (table `sftp_users`, migration 0013): by
//! the admin API, the console or `mft-gateway sftp users add`. The
//! `[[sftp.users]]` of the config file are not stored; the SFTP bridge
//! looks there first and here second (`bridge/sftp/directory.rs`).
//!
//! A password is stored as its argon2id PHC string only; public keys are
//! stored as the OpenSSH `authorized_keys` lines they were given in, after
//! the caller parsed them (`bridge/sftp/accounts.rs`).

use super::{from_ms, Engine, Pool, Store, StoreError};
use mft_config::sftp::{AuthorizedKeys, Permissions, SftpUser};
use std::time::SystemTime;

/// A user to add, already checked by the caller (keys parsed, folder
/// valid, password hashed); the store checks only what it can alone.
#[derive(Clone)]
pub struct NewSftpUser {
    /// Login name.
    pub name: String,
    /// argon2id PHC string, or `None` for a key-only user.
    pub password_hash: Option<String>,
    /// OpenSSH `authorized_keys` lines.
    pub authorized_keys: Vec<String>,
    /// Root folder in the backend, canonical (`""` for the root).
    pub folder: String,
    /// What the user may do.
    pub permissions: Permissions,
    /// Concurrent sessions.
    pub max_connections: u32,
    /// Recipients of the delivery made per completed upload.
    pub deliver_to: Vec<String>,
}

/// One stored user (never the password; the hash is not shown by `Debug`).
#[derive(Clone)]
pub struct SftpUserRecord {
    /// The user as added.
    pub user: NewSftpUser,
    /// Added.
    pub created_at: SystemTime,
    /// Last successful login, if any.
    pub last_login_at: Option<SystemTime>,
}

impl std::fmt::Debug for NewSftpUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSftpUser")
            .field("name", &self.name)
            .field("folder", &self.folder)
            .field("password", &self.password_hash.is_some())
            .field("keys", &self.authorized_keys.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SftpUserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpUserRecord")
            .field("user", &self.user)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl SftpUserRecord {
    /// The user in the shape of a `[[sftp.users]]` entry, so logins and
    /// sessions treat both alike. API-key logins are for config users only.
    pub fn to_config(&self) -> SftpUser {
        let u = &self.user;
        SftpUser {
            name: u.name.clone(),
            authorized_keys: (!u.authorized_keys.is_empty())
                .then(|| AuthorizedKeys::Inline(u.authorized_keys.clone())),
            password_hash: u.password_hash.clone(),
            folder: u.folder.clone(),
            permissions: u.permissions,
            max_connections: u.max_connections,
            api_key_login: false,
            api_key_ids: Vec::new(),
            deliver_to: u.deliver_to.clone(),
        }
    }
}

/// `upload download list delete`, the words the config file uses.
pub fn permission_words(p: Permissions) -> Vec<&'static str> {
    [
        ("upload", p.upload),
        ("download", p.download),
        ("list", p.list),
        ("delete", p.delete),
    ]
    .into_iter()
    .filter_map(|(word, on)| on.then_some(word))
    .collect()
}

/// The permissions named by `words`; `Err(word)` for an unknown one.
pub fn parse_permissions<'a>(
    words: impl IntoIterator<Item = &'a str>,
) -> Result<Permissions, &'a str> {
    let mut p = Permissions::default();
    for word in words {
        match word {
            "upload" => p.upload = true,
            "download" => p.download = true,
            "list" => p.list = true,
            "delete" => p.delete = true,
            other => return Err(other),
        }
    }
    Ok(p)
}

/// A cheap fingerprint of the table: an added or removed user changes it
/// (logins, which only set `last_login_at`, do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct SftpUsersVersion {
    /// Users.
    pub count: i64,
    /// Newest `created_at` (ms), 0 without users.
    pub newest: i64,
    /// Sum of every `created_at`: one user removed and another added
    /// between two looks keeps the count but not the sum.
    pub total: i64,
}

const COLUMNS: &str = "name, password_hash, authorized_keys, folder, permissions, \
    max_connections, deliver_to, created_at, last_login_at";

/// One row as selected by [`COLUMNS`].
#[derive(sqlx::FromRow)]
struct SftpUserRow {
    name: String,
    password_hash: Option<String>,
    authorized_keys: String,
    folder: String,
    permissions: String,
    max_connections: i64,
    deliver_to: String,
    created_at: i64,
    last_login_at: Option<i64>,
}

impl SftpUserRow {
    fn decode(self) -> Result<SftpUserRecord, StoreError> {
        let corrupt = |what: &str| StoreError::CorruptPartner {
            what: format!("sftp user {what}"),
        };
        let permissions = parse_permissions(self.permissions.split_whitespace())
            .map_err(|_| corrupt("permission"))?;
        let max_connections =
            u32::try_from(self.max_connections).map_err(|_| corrupt("max_connections"))?;
        Ok(SftpUserRecord {
            user: NewSftpUser {
                name: self.name,
                password_hash: self.password_hash,
                authorized_keys: self
                    .authorized_keys
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string)
                    .collect(),
                folder: self.folder,
                permissions,
                max_connections,
                deliver_to: self
                    .deliver_to
                    .split_whitespace()
                    .map(str::to_string)
                    .collect(),
            },
            created_at: from_ms(self.created_at),
            last_login_at: self.last_login_at.map(from_ms),
        })
    }
}

/// Whether `name` can name an SFTP user: 1 to 64 letters, digits, `-`,
/// `_`, `.` (what `[[sftp.users]] name` allows, bounded).
pub fn valid_name(name: &str) -> bool {
    super::partners::valid_name(name)
}

fn refuse(name: &str, reason: &'static str) -> StoreError {
    StoreError::SftpUser {
        name: name.chars().take(80).collect(),
        reason,
    }
}

/// What the store can check alone; the caller parsed keys and folder.
fn check(user: &NewSftpUser) -> Result<(), StoreError> {
    let name = &user.name;
    if !valid_name(name) {
        return Err(refuse(
            name,
            "an SFTP user name is 1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    if user.password_hash.is_none() && user.authorized_keys.is_empty() {
        return Err(refuse(
            name,
            "no way to log in: give a password or a public key",
        ));
    }
    if user
        .password_hash
        .as_deref()
        .is_some_and(|h| !h.starts_with("$argon2id$"))
    {
        return Err(refuse(
            name,
            "the password hash is not an argon2id PHC string",
        ));
    }
    if user
        .authorized_keys
        .iter()
        .any(|l| l.contains(['\n', '\r']))
    {
        return Err(refuse(name, "one public key per line"));
    }
    if user.max_connections == 0 {
        return Err(refuse(name, "max_connections must be at least 1"));
    }
    if user
        .deliver_to
        .iter()
        .any(|r| !r.contains('@') || r.contains(char::is_whitespace))
    {
        return Err(refuse(name, "deliver_to takes e-mail addresses"));
    }
    Ok(())
}

impl Store {
    /// Adds an SFTP user; a name already stored is refused.
    pub async fn add_sftp_user(&self, user: &NewSftpUser) -> Result<SftpUserRecord, StoreError> {
        check(user)?;
        let now = self.now_ms();
        let name = &user.name;
        let inserted = on_pool!(self, |pool, _e| {
            sqlx::query(
                "INSERT INTO sftp_users (name, password_hash, authorized_keys, folder, \
                 permissions, max_connections, deliver_to, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(user.password_hash.as_deref())
            .bind(user.authorized_keys.join("\n"))
            .bind(&user.folder)
            .bind(permission_words(user.permissions).join(" "))
            .bind(i64::from(user.max_connections))
            .bind(user.deliver_to.join(" "))
            .bind(now)
            .execute(pool)
            .await
            .map_err(self.query_err(format!("add SFTP user {name}")))?
            .rows_affected()
        });
        if inserted == 0 {
            return Err(StoreError::SftpUserExists(name.clone()));
        }
        self.sftp_users_written();
        Ok(SftpUserRecord {
            user: user.clone(),
            created_at: from_ms(now),
            last_login_at: None,
        })
    }

    /// Every stored SFTP user, by name.
    pub async fn list_sftp_users(&self) -> Result<Vec<SftpUserRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM sftp_users ORDER BY name");
        let rows: Vec<SftpUserRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("list SFTP users"))?);
        rows.into_iter().map(SftpUserRow::decode).collect()
    }

    /// The stored SFTP user named `name`.
    pub async fn get_sftp_user(&self, name: &str) -> Result<Option<SftpUserRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM sftp_users WHERE name = $1");
        let row: Option<SftpUserRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(pool)
            .await
            .map_err(self.query_err("look up an SFTP user"))?);
        row.map(SftpUserRow::decode).transpose()
    }

    /// Removes a stored SFTP user; `false` if there is none.
    pub async fn remove_sftp_user(&self, name: &str) -> Result<bool, StoreError> {
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "DELETE FROM sftp_users WHERE name = $1"
        )
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("remove SFTP user {name}")))?
        .rows_affected());
        if n > 0 {
            self.sftp_users_written();
        }
        Ok(n == 1)
    }

    /// Records the last login of each user in `logins` (a batch: the
    /// bridge writes them about once a second, not once per login). A time
    /// older than the stored one is ignored.
    pub async fn record_sftp_logins(
        &self,
        logins: &[(String, SystemTime)],
    ) -> Result<(), StoreError> {
        if logins.is_empty() {
            return Ok(());
        }
        on_pool!(self, |pool, e| {
            let mut tx = pool
                .begin_with(e.begin())
                .await
                .map_err(self.query_err("record SFTP logins"))?;
            for (name, at) in logins {
                sqlx::query(
                    "UPDATE sftp_users SET last_login_at = $1 WHERE name = $2 \
                     AND (last_login_at IS NULL OR last_login_at < $1)",
                )
                .bind(super::to_ms(*at))
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(self.query_err("record SFTP logins"))?;
            }
            tx.commit()
                .await
                .map_err(self.query_err("record SFTP logins"))?;
        });
        Ok(())
    }

    /// The table's fingerprint: what a running bridge polls to notice a
    /// user added or removed by another process or instance.
    pub async fn sftp_users_version(&self) -> Result<SftpUsersVersion, StoreError> {
        Ok(on_pool!(self, |pool, _e| sqlx::query_as(
            "SELECT COUNT(*) AS count, COALESCE(MAX(created_at), 0) AS newest, \
             CAST(COALESCE(SUM(created_at), 0) AS BIGINT) AS total FROM sftp_users"
        )
        .fetch_one(pool)
        .await
        .map_err(self.query_err("read the SFTP users' version"))?))
    }

    /// Users added or removed through this handle: the bridge in the same
    /// process compares it to see its copy is stale without a query.
    pub fn sftp_user_writes(&self) -> u64 {
        self.counters
            .sftp_user_writes
            .load(std::sync::atomic::Ordering::Acquire)
    }

    fn sftp_users_written(&self) {
        self.counters
            .sftp_user_writes
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}
