//! Where bytes live on disk, and the steps that make them durable.
//!
//! Layout under the data directory:
//!
//! ```text
//! lock             held (flock) while a backend uses the directory
//! metadata.db      SQLite (WAL), see db.rs
//! files/<id>       stored files, named by file id, never by client names
//! uploads/<id>.part  tus uploads in progress
//! tmp/             bodies being received; emptied at startup
//! ```
//!
//! A file becomes visible only after it was fsynced, renamed into `files/`,
//! the directory fsynced, and its row inserted; a crash in between leaves
//! either a temp file (removed at startup) or an unreferenced file in
//! `files/` (swept at startup), never a row without bytes.

use crate::error::{BackendError, LOCK_FILE};
use crate::ids;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Read size when hashing or copying stored files.
pub const CHUNK: usize = 256 * 1024;

/// Paths of the data directory, and its lock.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
    files: PathBuf,
    uploads: PathBuf,
    tmp: PathBuf,
    /// The locked `lock` file; `None` once released.
    lock: Arc<Mutex<Option<std::fs::File>>>,
}

impl Storage {
    /// Creates the directory layout under `root` if needed, takes the
    /// directory's lock and empties `tmp/`.
    ///
    /// The lock matters because startup repairs (emptying `tmp/`, sweeping
    /// unreferenced files) would destroy another running backend's work.
    pub async fn open(root: &Path) -> Result<Self, BackendError> {
        tokio::fs::create_dir_all(root)
            .await
            .map_err(|e| BackendError::io("create directory", root, e))?;
        let lock = lock_dir(root).await?;
        let storage = Storage {
            root: root.to_path_buf(),
            files: root.join("files"),
            uploads: root.join("uploads"),
            tmp: root.join("tmp"),
            lock: Arc::new(Mutex::new(Some(lock))),
        };
        for dir in [&storage.files, &storage.uploads, &storage.tmp] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| BackendError::io("create directory", dir, e))?;
        }
        storage.clear_tmp().await?;
        Ok(storage)
    }

    /// Releases the directory lock, so that a new backend can open it even
    /// while background tasks of this one still hold clones of the state.
    pub fn release(&self) {
        let mut lock = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        *lock = None;
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.root.join("metadata.db")
    }

    /// Where the bytes of file `id` are stored.
    pub fn file_path(&self, id: &str) -> PathBuf {
        self.files.join(id)
    }

    /// Where the bytes of tus upload `id` accumulate.
    pub fn upload_path(&self, id: &str) -> PathBuf {
        self.uploads.join(format!("{id}.part"))
    }

    /// The `files/` directory, fsynced after renames into it.
    pub fn files_dir(&self) -> &Path {
        &self.files
    }

    /// The `uploads/` directory.
    pub fn uploads_dir(&self) -> &Path {
        &self.uploads
    }

    /// A new empty file under `tmp/`, removed again unless committed.
    pub async fn temp_file(&self) -> std::io::Result<TempFile> {
        let path = self.tmp.join(format!("{}.tmp", ids::new_id()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(TempFile {
            path,
            file: Some(file),
        })
    }

    /// Makes `temp` durable as `files/<id>`.
    pub async fn commit(&self, mut temp: TempFile, id: &str) -> std::io::Result<()> {
        if let Some(file) = temp.file.take() {
            file.sync_all().await?;
        }
        let target = self.file_path(id);
        tokio::fs::rename(&temp.path, &target).await?;
        temp.path = PathBuf::new();
        sync_dir(&self.files).await
    }

    async fn clear_tmp(&self) -> Result<(), BackendError> {
        let mut entries = tokio::fs::read_dir(&self.tmp)
            .await
            .map_err(|e| BackendError::io("read directory", &self.tmp, e))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| BackendError::io("read directory", &self.tmp, e))?
        {
            let path = entry.path();
            if let Err(e) = tokio::fs::remove_file(&path).await {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove leftover temp file");
            }
        }
        Ok(())
    }

    /// Removes files in `files/` that no row refers to (a crash between
    /// rename and insert). Only names shaped like our ids are touched.
    pub async fn sweep_orphans(&self, referenced: &HashSet<String>) -> Result<usize, BackendError> {
        let mut removed = 0;
        let mut entries = tokio::fs::read_dir(&self.files)
            .await
            .map_err(|e| BackendError::io("read directory", &self.files, e))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| BackendError::io("read directory", &self.files, e))?
        {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if ids::is_valid_id(&name) && !referenced.contains(&name) {
                let path = entry.path();
                tracing::warn!(path = %path.display(), "removing stored file without metadata");
                tokio::fs::remove_file(&path)
                    .await
                    .map_err(|e| BackendError::io("remove orphaned file", &path, e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// A file under `tmp/` that removes itself when dropped uncommitted, also
/// when the request future is cancelled because the client went away.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl TempFile {
    /// Where the file is, for writers on the blocking pool.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file to write to.
    pub fn file(&mut self) -> std::io::Result<&mut tokio::fs::File> {
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("temp file already committed"))
    }

    /// Removes the file now, reporting failure (drop only logs it).
    pub async fn discard(mut self) {
        self.file = None;
        let path = std::mem::take(&mut self.path);
        if let Err(e) = tokio::fs::remove_file(&path).await {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove temp file");
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        let path = std::mem::take(&mut self.path);
        // Drop cannot await; hand the removal to the runtime if there is one,
        // otherwise the next startup's tmp/ cleanup removes it.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = tokio::fs::remove_file(&path).await;
            });
        }
    }
}

async fn lock_dir(root: &Path) -> Result<std::fs::File, BackendError> {
    let path = root.join(LOCK_FILE);
    let opened = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            match file.try_lock() {
                Ok(()) => Ok(Some(file)),
                Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                Err(std::fs::TryLockError::Error(e)) => Err(e),
            }
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
    };
    match opened {
        Ok(Some(file)) => Ok(file),
        Ok(None) => Err(BackendError::DataDirInUse {
            dir: root.to_path_buf(),
        }),
        Err(e) => Err(BackendError::io("lock", path, e)),
    }
}

/// fsyncs a directory so that a rename into it survives a power cut.
pub async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}

/// Size and hex SHA-256 of a file, read on the blocking pool.
pub async fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok((size, hex::encode(hasher.finalize())))
    })
    .await
    .map_err(std::io::Error::other)?
}
