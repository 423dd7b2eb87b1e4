//! The backend seen as a file system: folders are the `folder` strings of
//! stored files (plus folders made with `mkdir`, kept in memory per user),
//! a name in a folder is its newest file of that name.

use crate::backend_client::{decode, BackendClient, BackendError, Call, CallContext};
use http::Method;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

/// A stored file as the list returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    /// File id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Canonical folder.
    #[serde(default)]
    pub folder: String,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256.
    #[serde(default)]
    pub sha256: String,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: String,
}

impl Entry {
    /// Seconds since the epoch of the upload (the file's mtime).
    pub fn mtime(&self) -> u32 {
        humantime::parse_rfc3339_weak(self.created_at.trim_end_matches('Z'))
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| u32::try_from(d.as_secs()).ok())
            .unwrap_or(0)
    }
}

#[derive(Deserialize)]
struct FileList {
    files: Vec<Entry>,
    /// Present when the backend honours `subfolders=true`.
    #[serde(default)]
    folders: Option<Vec<String>>,
}

/// Folders made with `mkdir` that hold no file yet, per user, shared by
/// the user's sessions; forgotten at restart (a folder exists in the
/// backend only through its files).
#[derive(Default)]
pub struct MadeFolders {
    inner: Mutex<HashSet<String>>,
}

impl MadeFolders {
    fn contains_under(&self, folder: &str) -> bool {
        let Ok(set) = self.inner.lock() else {
            return false;
        };
        set.iter()
            .any(|f| f == folder || f.starts_with(&format!("{folder}/")))
    }
    fn all(&self) -> Vec<String> {
        self.inner
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
    /// Records `folder` and its parents.
    pub fn add(&self, folder: &str) {
        if let Ok(mut set) = self.inner.lock() {
            set.insert(folder.to_string());
        }
    }
    /// Forgets `folder`; `false` if it was not made here.
    pub fn remove(&self, folder: &str) -> bool {
        self.inner
            .lock()
            .map(|mut s| s.remove(folder))
            .unwrap_or(false)
    }
}

/// One user's view of the backend.
#[derive(Clone)]
pub struct Fs {
    /// Backend client.
    pub backend: BackendClient,
    /// Principal and origin `sftp:<user>`.
    pub ctx: CallContext,
    /// The user's root folder.
    pub root: String,
    /// Folders made with `mkdir`.
    pub made: Arc<MadeFolders>,
}

/// What a folder holds: files by name (newest wins) and sub-folder names.
#[derive(Default)]
pub struct Listing {
    /// Newest file per name.
    pub files: BTreeMap<String, Entry>,
    /// Sub-folder names.
    pub folders: BTreeSet<String>,
}

impl Fs {
    /// The files directly in `folder` and the names of the folders below
    /// it: one folder's worth, with `subfolders=true`. A backend without
    /// that extension answers without `folders`; then the sub-folders come
    /// from the full list, as before the extension.
    async fn one_level(&self, folder: &str) -> Result<(Vec<Entry>, Vec<String>), BackendError> {
        let path = format!(
            "/api/v1/files?folder={}&subfolders=true",
            utf8_percent_encode(folder, NON_ALPHANUMERIC)
        );
        let call = Call::new(Method::GET, path);
        let resp = self.backend.send(&self.ctx, &call).await?;
        let list: FileList = decode(&call, resp).await?;
        if let Some(folders) = list.folders {
            return Ok((list.files, folders));
        }
        let folders: BTreeSet<String> = self
            .all()
            .await?
            .iter()
            .filter_map(|e| child_of(folder, &e.folder).map(str::to_string))
            .collect();
        Ok((list.files, folders.into_iter().collect()))
    }

    /// Every file under the user's root: only for a backend without
    /// `subfolders=true`.
    async fn all(&self) -> Result<Vec<Entry>, BackendError> {
        let call = Call::new(Method::GET, "/api/v1/files");
        let resp = self.backend.send(&self.ctx, &call).await?;
        let list: FileList = decode(&call, resp).await?;
        Ok(list
            .files
            .into_iter()
            .filter(|e| under(&self.root, &e.folder))
            .collect())
    }

    /// Files directly in `folder`, in upload order.
    pub async fn files_in(&self, folder: &str) -> Result<Vec<Entry>, BackendError> {
        let path = format!(
            "/api/v1/files?folder={}",
            utf8_percent_encode(folder, NON_ALPHANUMERIC)
        );
        let call = Call::new(Method::GET, path);
        let resp = self.backend.send(&self.ctx, &call).await?;
        let list: FileList = decode(&call, resp).await?;
        Ok(list.files)
    }

    /// The newest file called `name` in `folder`.
    pub async fn find(&self, folder: &str, name: &str) -> Result<Option<Entry>, BackendError> {
        Ok(self
            .files_in(folder)
            .await?
            .into_iter()
            .rev()
            .find(|e| e.name == name))
    }

    /// Every file called `name` in `folder` (an overwrite replaces them all).
    pub async fn all_named(&self, folder: &str, name: &str) -> Result<Vec<Entry>, BackendError> {
        Ok(self
            .files_in(folder)
            .await?
            .into_iter()
            .filter(|e| e.name == name)
            .collect())
    }

    /// Whether `folder` exists: the root, a made folder, or one holding files.
    pub async fn folder_exists(&self, folder: &str) -> Result<bool, BackendError> {
        if folder == self.root || self.made.contains_under(folder) {
            return Ok(true);
        }
        let (files, folders) = self.one_level(folder).await?;
        Ok(!files.is_empty() || !folders.is_empty())
    }

    /// What `folder` holds.
    pub async fn list(&self, folder: &str) -> Result<Listing, BackendError> {
        let mut out = Listing::default();
        let (files, folders) = self.one_level(folder).await?;
        out.folders.extend(folders);
        for made in self.made.all() {
            if let Some(child) = child_of(folder, &made) {
                out.folders.insert(child.to_string());
            }
        }
        for e in files {
            // The list is in upload order: a later file of the same name wins.
            out.files.insert(e.name.clone(), e);
        }
        Ok(out)
    }

    /// Deletes one file.
    pub async fn delete(&self, id: &str) -> Result<(), BackendError> {
        let call = Call::new(Method::DELETE, format!("/api/v1/files/{id}"));
        self.backend.send(&self.ctx, &call).await.map(drop)
    }

    /// Moves or renames one file (`PATCH /api/v1/files/{id}`).
    pub async fn rename(&self, id: &str, folder: &str, name: &str) -> Result<(), BackendError> {
        let body = serde_json::json!({ "folder": folder, "name": name });
        let call = Call::new(Method::PATCH, format!("/api/v1/files/{id}")).json(&body)?;
        self.backend.send(&self.ctx, &call).await.map(drop)
    }
}

/// Whether `folder` is `root` or below it.
fn under(root: &str, folder: &str) -> bool {
    root.is_empty() || folder == root || folder.starts_with(&format!("{root}/"))
}

/// The first segment of `folder` below `parent`, if it is below it.
fn child_of<'a>(parent: &str, folder: &'a str) -> Option<&'a str> {
    let rest = if parent.is_empty() {
        folder
    } else {
        folder.strip_prefix(parent)?.strip_prefix('/')?
    };
    rest.split('/').next().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_relations() {
        assert!(under("a", "a/b"));
        assert!(!under("a", "ab"));
        assert!(under("", "x"));
        assert_eq!(child_of("a", "a/b/c"), Some("b"));
        assert_eq!(child_of("a", "ab/c"), None);
        assert_eq!(child_of("", "x/y"), Some("x"));
        assert_eq!(child_of("a", "a"), None);
    }
}
