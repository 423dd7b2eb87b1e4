//! Who may log in: the `[[sftp.users]]` of the config file first, then the
//! users stored at run time (table `sftp_users`), cached like API keys so
//! a login does not ask the database.
//!
//! Freshness, as for the partner cache (`trust/directory.rs`): the table's
//! fingerprint is read every [`REFRESH`] and the users reloaded when it
//! moves, so a user added or removed by the CLI or another instance
//! reaches this bridge within about a second, well inside the 5 s a key
//! revocation takes. A change through this process's own store handle
//! (the admin API) reloads the copy before the next lookup. A user that
//! disappears is announced to its open sessions, which close.
//!
//! Successful logins of stored users are collected and written in one
//! batch per refresh (`last_login_at`), never on the login path.

use super::auth::User;
use crate::store::sftp_users::SftpUsersVersion;
use crate::store::{Store, StoreError};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;

/// How often the store is asked whether a user was added or removed.
pub const REFRESH: Duration = Duration::from_secs(1);

/// One load of the table.
struct Snapshot {
    version: SftpUsersVersion,
    /// [`Store::sftp_user_writes`] when it was read.
    writes: u64,
    users: HashMap<String, Arc<User>>,
}

/// The users of one SFTP bridge.
pub struct UserDirectory {
    /// `[[sftp.users]]`: fixed until a restart, and first.
    config: HashMap<String, Arc<User>>,
    store: Store,
    snapshot: ArcSwap<Snapshot>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Stored users' logins since the last flush.
    logins: Mutex<HashMap<String, SystemTime>>,
    /// Names of stored users that were removed (sessions watch it).
    removed: broadcast::Sender<Arc<str>>,
}

/// Stored users with the name of a config user are ignored (the config
/// wins); the rest are parsed as config users are.
fn build(
    config: &HashMap<String, Arc<User>>,
    records: Vec<crate::store::sftp_users::SftpUserRecord>,
) -> HashMap<String, Arc<User>> {
    let mut users = HashMap::new();
    for record in records {
        let name = record.user.name.clone();
        if config.contains_key(&name) {
            tracing::warn!(user = %name, "stored sftp user ignored: [[sftp.users]] has the same name");
            continue;
        }
        match User::new(record.to_config()) {
            Ok(user) => {
                users.insert(name, Arc::new(user));
            }
            Err(e) => tracing::warn!(user = %name, error = %e, "stored sftp user unusable"),
        }
    }
    users
}

impl UserDirectory {
    /// The config users plus every stored user.
    pub async fn load(
        config: HashMap<String, Arc<User>>,
        store: Store,
    ) -> Result<Arc<UserDirectory>, StoreError> {
        let writes = store.sftp_user_writes();
        let version = store.sftp_users_version().await?;
        let users = build(&config, store.list_sftp_users().await?);
        let (removed, _) = broadcast::channel(64);
        Ok(Arc::new(UserDirectory {
            config,
            store,
            snapshot: ArcSwap::from_pointee(Snapshot {
                version,
                writes,
                users,
            }),
            reloading: tokio::sync::Mutex::new(()),
            logins: Mutex::new(HashMap::new()),
            removed,
        }))
    }

    /// The user called `name`: a config user, else a stored one. After a
    /// change through this process the copy is reloaded first; if that
    /// fails, stored users are refused rather than served from a copy that
    /// may still hold a removed one.
    pub async fn get(&self, name: &str) -> Option<Arc<User>> {
        if let Some(user) = self.config.get(name) {
            return Some(user.clone());
        }
        if self.snapshot.load().writes != self.store.sftp_user_writes() {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "cannot read the stored sftp users");
                return None;
            }
        }
        self.snapshot.load().users.get(name).cloned()
    }

    /// Whether `name` is a stored user (as of the last reload).
    pub fn is_stored(&self, name: &str) -> bool {
        !self.config.contains_key(name) && self.snapshot.load().users.contains_key(name)
    }

    /// Stored users (as of the last reload).
    pub fn stored_count(&self) -> usize {
        self.snapshot.load().users.len()
    }

    /// Notes a successful login of a stored user, written at the next refresh.
    pub fn logged_in(&self, name: &str) {
        if !self.is_stored(name) {
            return;
        }
        if let Ok(mut logins) = self.logins.lock() {
            logins.insert(name.to_string(), SystemTime::now());
        }
    }

    /// Removals of stored users, by name, from now on.
    pub fn removals(&self) -> broadcast::Receiver<Arc<str>> {
        self.removed.subscribe()
    }

    /// Reloads the stored users if the table changed since the last read;
    /// `true` if it did. Users that are gone are announced.
    pub async fn refresh(&self) -> Result<bool, StoreError> {
        let _one = self.reloading.lock().await;
        let writes = self.store.sftp_user_writes();
        let version = self.store.sftp_users_version().await?;
        let current = self.snapshot.load_full();
        if current.version == version && current.writes == writes {
            return Ok(false);
        }
        let users = build(&self.config, self.store.list_sftp_users().await?);
        self.snapshot.store(Arc::new(Snapshot {
            version,
            writes,
            users,
        }));
        let now = self.snapshot.load();
        for name in current.users.keys() {
            if !now.users.contains_key(name) {
                tracing::info!(user = %name, "sftp user removed");
                // No receiver: no session to close.
                let _ = self.removed.send(Arc::from(name.as_str()));
            }
        }
        Ok(true)
    }

    /// Writes the logins noted since the last call.
    pub async fn flush_logins(&self) -> Result<(), StoreError> {
        let batch: Vec<(String, SystemTime)> = match self.logins.lock() {
            Ok(mut logins) => logins.drain().collect(),
            Err(_) => return Ok(()),
        };
        self.store.record_sftp_logins(&batch).await
    }

    /// Refreshes and flushes every [`REFRESH`] on `runtime`, for as long as
    /// the directory lives.
    pub fn start(self: &Arc<Self>, runtime: &tokio::runtime::Handle) {
        let directory = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(REFRESH).await;
                let Some(directory) = directory.upgrade() else {
                    return;
                };
                if let Err(e) = directory.refresh().await {
                    tracing::warn!(error = %e, "cannot read the stored sftp users; keeping the cached ones");
                }
                if let Err(e) = directory.flush_logins().await {
                    tracing::warn!(error = %e, "cannot record sftp logins");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sftp_users::NewSftpUser;
    use mft_config::sftp::Permissions;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl e2e";

    fn new_user(name: &str) -> NewSftpUser {
        NewSftpUser {
            name: name.to_string(),
            password_hash: None,
            authorized_keys: vec![KEY.to_string()],
            folder: format!("partners/{name}"),
            permissions: Permissions {
                upload: true,
                ..Permissions::default()
            },
            max_connections: 2,
            deliver_to: Vec::new(),
        }
    }

    fn config_user(name: &str) -> HashMap<String, Arc<User>> {
        let mut cfg = new_user(name);
        cfg.folder = "config".to_string();
        let record = crate::store::sftp_users::SftpUserRecord {
            user: cfg,
            created_at: SystemTime::now(),
            last_login_at: None,
        };
        let user = User::new(record.to_config()).unwrap();
        HashMap::from([(name.to_string(), Arc::new(user))])
    }

    /// A fresh store holding the users named `stored`, and a directory
    /// over it with the `config` users.
    async fn directory(
        config: HashMap<String, Arc<User>>,
        stored: &[&str],
    ) -> (Store, Arc<UserDirectory>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        for name in stored {
            store.add_sftp_user(&new_user(name)).await.unwrap();
        }
        let directory = UserDirectory::load(config, store.clone()).await.unwrap();
        (store, directory, dir)
    }

    #[tokio::test]
    async fn lookups_of_cached_users_never_reach_the_store() {
        let (store, directory, _dir) = directory(config_user("alice"), &["acme"]).await;
        let before = store.operations();
        for _ in 0..100 {
            assert_eq!(directory.get("alice").await.unwrap().root, "config");
            assert_eq!(directory.get("acme").await.unwrap().root, "partners/acme");
            assert!(directory.get("nobody").await.is_none());
        }
        assert_eq!(store.operations(), before, "no store operation per login");
    }

    #[tokio::test]
    async fn config_users_come_first() {
        let (_store, directory, _dir) = directory(config_user("alice"), &["alice"]).await;
        assert_eq!(directory.get("alice").await.unwrap().root, "config");
        assert!(!directory.is_stored("alice"));
    }

    #[tokio::test]
    async fn a_change_through_this_process_is_seen_at_the_next_lookup() {
        let (store, directory, _dir) = directory(HashMap::new(), &[]).await;
        let mut removals = directory.removals();
        store.add_sftp_user(&new_user("acme")).await.unwrap();
        assert!(
            directory.get("acme").await.is_some(),
            "added: found at once"
        );
        assert!(store.remove_sftp_user("acme").await.unwrap());
        assert!(
            directory.get("acme").await.is_none(),
            "removed: refused at once"
        );
        assert_eq!(&*removals.try_recv().unwrap(), "acme");
    }

    #[tokio::test]
    async fn another_process_s_change_arrives_with_the_next_refresh() {
        let (_store, directory, dir) = directory(HashMap::new(), &[]).await;
        let cli = Store::open(None, dir.path()).await.unwrap();
        cli.add_sftp_user(&new_user("acme")).await.unwrap();
        assert!(
            directory.get("acme").await.is_none(),
            "not before the refresh"
        );
        assert!(directory.refresh().await.unwrap());
        assert!(directory.get("acme").await.is_some());
        assert!(!directory.refresh().await.unwrap(), "unchanged: no reload");
        // One removed and one added between two looks: same count.
        cli.remove_sftp_user("acme").await.unwrap();
        cli.add_sftp_user(&new_user("beta")).await.unwrap();
        assert!(directory.refresh().await.unwrap());
        assert!(directory.get("acme").await.is_none());
        assert!(directory.get("beta").await.is_some());
    }

    #[tokio::test]
    async fn logins_are_written_in_one_batch() {
        let (store, directory, _dir) = directory(config_user("alice"), &["acme"]).await;
        let before = store.operations();
        directory.logged_in("acme");
        directory.logged_in("acme");
        directory.logged_in("alice");
        assert_eq!(store.operations(), before, "a login writes nothing itself");
        directory.flush_logins().await.unwrap();
        let acme = store.get_sftp_user("acme").await.unwrap().unwrap();
        assert!(acme.last_login_at.is_some());
    }
}
