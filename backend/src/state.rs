//! Shared state handed to every handler.

use crate::storage::Storage;
use sqlx::SqlitePool;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// How many transfers copy at the same time; the rest wait in `queued`.
const TRANSFER_WORKERS: usize = 2;

/// Cheap to clone: everything inside is reference-counted.
#[derive(Clone)]
pub struct AppState {
    /// Metadata database.
    pub db: SqlitePool,
    /// Data directory layout.
    pub storage: Storage,
    /// tus uploads that a PATCH or DELETE is working on.
    pub upload_locks: UploadLocks,
    /// Bounds concurrent transfer copies.
    pub transfer_slots: Arc<Semaphore>,
}

impl AppState {
    /// State over an opened database and data directory.
    pub fn new(db: SqlitePool, storage: Storage) -> Self {
        AppState {
            db,
            storage,
            upload_locks: UploadLocks::default(),
            transfer_slots: Arc::new(Semaphore::new(TRANSFER_WORKERS)),
        }
    }
}

/// Per-upload exclusion, so two PATCHes never write the same partial file.
#[derive(Clone, Default)]
pub struct UploadLocks(Arc<Mutex<HashSet<String>>>);

impl UploadLocks {
    /// The lock for upload `id`, or `None` if someone holds it.
    pub fn try_lock(&self, id: &str) -> Option<UploadLock> {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if held.insert(id.to_string()) {
            Some(UploadLock {
                locks: self.clone(),
                id: id.to_string(),
            })
        } else {
            None
        }
    }
}

/// Held while an upload is being written or removed; released on drop.
pub struct UploadLock {
    locks: UploadLocks,
    id: String,
}

impl Drop for UploadLock {
    fn drop(&mut self) {
        let mut held = self.locks.0.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let locks = UploadLocks::default();
        let first = locks.try_lock("a");
        assert!(first.is_some());
        assert!(locks.try_lock("a").is_none());
        assert!(locks.try_lock("b").is_some());
        drop(first);
        assert!(locks.try_lock("a").is_some());
    }
}
