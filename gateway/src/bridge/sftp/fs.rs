//! The backend seen as a file system: folders are the `folder` strings of
//! stored files (plus folders made with `mkdir`, kept in memory per user),
//! a name in a folder is its newest file of that name.

use crate::backend_client::{BackendClient, BackendError, CallContext, FileInfo, FileQuery};
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

/// Files per folder page a listing reads (`GET /api/v1/files?limit=`).
pub const LIST_PAGE: usize = 100;

/// One page of a folder's listing.
pub struct Page {
    /// Paged: by name, the newest first per name. Whole (a backend without
    /// paging): every file of the folder, in upload order.
    pub files: Vec<FileInfo>,
    /// Sub-folder names; with the first page only.
    pub folders: Vec<String>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<String>,
    /// Whether the backend paged (else `files` is the whole folder).
    pub paged: bool,
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

impl Fs {
    /// One page of `folder`: `limit` files from `cursor` on (the first page
    /// without one, which also names the sub-folders). A backend without
    /// paging answers with the whole folder and no `next_cursor`; one
    /// without `subfolders=true` answers without `folders`, and then the
    /// sub-folders come from the full list, as before either extension.
    pub async fn page(
        &self,
        folder: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, BackendError> {
        let query = FileQuery {
            folder: Some(folder),
            limit: Some(limit),
            cursor,
            subfolders: cursor.is_none(),
            ..FileQuery::default()
        };
        let list = self.backend.list_files(&self.ctx, &query).await?;
        let (paged, next) = match list.next_cursor {
            Some(next) => (true, next),
            None => (false, None),
        };
        let folders = match (cursor, list.folders) {
            (Some(_), _) => Vec::new(),
            (None, Some(folders)) => folders,
            (None, None) => {
                let below: BTreeSet<String> = self
                    .all()
                    .await?
                    .iter()
                    .filter_map(|e| child_of(folder, &e.folder).map(str::to_string))
                    .collect();
                below.into_iter().collect()
            }
        };
        Ok(Page {
            files: list.files,
            folders,
            next,
            paged,
        })
    }

    /// Whether `folder` holds a file or a sub-folder: one file is enough.
    async fn holds_anything(&self, folder: &str) -> Result<bool, BackendError> {
        let page = self.page(folder, 1, None).await?;
        Ok(!page.files.is_empty() || !page.folders.is_empty())
    }

    /// The names of the folders made with `mkdir` directly below `folder`.
    pub fn made_below(&self, folder: &str) -> Vec<String> {
        self.made
            .all()
            .iter()
            .filter_map(|made| child_of(folder, made).map(str::to_string))
            .collect()
    }

    /// Every file under the user's root: only for a backend without
    /// `subfolders=true`.
    async fn all(&self) -> Result<Vec<FileInfo>, BackendError> {
        let list = self
            .backend
            .list_files(&self.ctx, &FileQuery::default())
            .await?;
        Ok(list
            .files
            .into_iter()
            .filter(|e| under(&self.root, &e.folder))
            .collect())
    }

    /// The files called `name` in `folder`, in upload order: only those
    /// with a backend that honours `name=`; filtered here from the whole
    /// folder with one that does not.
    async fn named(&self, folder: &str, name: &str) -> Result<Vec<FileInfo>, BackendError> {
        let query = FileQuery {
            folder: Some(folder),
            name: Some(name),
            ..FileQuery::default()
        };
        let list = self.backend.list_files(&self.ctx, &query).await?;
        Ok(list.files.into_iter().filter(|e| e.name == name).collect())
    }

    /// The newest file called `name` in `folder`.
    pub async fn find(&self, folder: &str, name: &str) -> Result<Option<FileInfo>, BackendError> {
        Ok(self.named(folder, name).await?.into_iter().next_back())
    }

    /// Every file called `name` in `folder` (an overwrite replaces them all).
    pub async fn all_named(&self, folder: &str, name: &str) -> Result<Vec<FileInfo>, BackendError> {
        self.named(folder, name).await
    }

    /// Whether `folder` exists: the root, a made folder, or one holding files.
    pub async fn folder_exists(&self, folder: &str) -> Result<bool, BackendError> {
        if folder == self.root || self.made.contains_under(folder) {
            return Ok(true);
        }
        self.holds_anything(folder).await
    }

    /// Whether `folder` holds neither files nor folders (made ones included).
    pub async fn folder_is_empty(&self, folder: &str) -> Result<bool, BackendError> {
        Ok(self.made_below(folder).is_empty() && !self.holds_anything(folder).await?)
    }

    /// Deletes one file.
    pub async fn delete(&self, id: &str) -> Result<(), BackendError> {
        self.backend.delete_file(&self.ctx, id).await
    }

    /// Moves or renames one file (`PATCH /api/v1/files/{id}`).
    pub async fn rename(&self, id: &str, folder: &str, name: &str) -> Result<(), BackendError> {
        self.backend.move_file(&self.ctx, id, folder, name).await
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
