//! SFTP client paths -> places in the user's root (the SFTP bridge's
//! chroot). The user sees `/` as their folder in the backend: `..` at the
//! root stays at the root, absolute paths are taken inside the root, and
//! every segment passes the same file-name validation as HTTP uploads.
//! Symlinks do not exist here.

use crate::validation::filename::validate_filename;
use crate::validation::folder::validate_folder;

/// A normalised path inside the user's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VPath {
    segments: Vec<String>,
}

/// A path that no validation accepts.
#[derive(Debug, thiserror::Error)]
#[error("invalid path segment {segment:?}: {reason}")]
pub struct PathError {
    segment: String,
    reason: String,
}

impl VPath {
    /// Normalises `raw` (absolute, or relative to the root, which is the
    /// session's only working directory).
    pub fn parse(raw: &str) -> Result<VPath, PathError> {
        let mut segments: Vec<String> = Vec::new();
        for seg in raw.split('/') {
            match seg {
                "" | "." => {}
                // Never above the root: `cd ..` at `/` stays at `/`.
                ".." => {
                    segments.pop();
                }
                other => {
                    let name = validate_filename(other).map_err(|e| PathError {
                        segment: other.to_string(),
                        reason: e.to_string(),
                    })?;
                    segments.push(name);
                }
            }
        }
        Ok(VPath { segments })
    }

    /// Whether this is the user's root.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// `/a/b`, as shown to the client.
    pub fn display(&self) -> String {
        format!("/{}", self.segments.join("/"))
    }

    /// The last segment (`None` at the root).
    pub fn name(&self) -> Option<&str> {
        self.segments.last().map(String::as_str)
    }

    /// The parent path (the root's parent is the root).
    pub fn parent(&self) -> VPath {
        let mut segments = self.segments.clone();
        segments.pop();
        VPath { segments }
    }

    /// The backend folder this path names when it is a folder, under `root`.
    pub fn folder_in(&self, root: &str) -> Result<String, PathError> {
        let joined = if root.is_empty() {
            self.segments.join("/")
        } else {
            format!("{root}/{}", self.segments.join("/"))
        };
        validate_folder(&joined).map_err(|e| PathError {
            segment: self.display(),
            reason: e.to_string(),
        })
    }

    /// The path one level below this one.
    pub fn child(&self, name: &str) -> VPath {
        let mut segments = self.segments.clone();
        segments.push(name.to_string());
        VPath { segments }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_above_the_root() {
        assert_eq!(VPath::parse("..").unwrap().display(), "/");
        assert_eq!(
            VPath::parse("/../../etc/passwd").unwrap().display(),
            "/etc/passwd"
        );
        assert_eq!(VPath::parse("a/./b/../c").unwrap().display(), "/a/c");
        assert_eq!(
            VPath::parse("/etc/passwd")
                .unwrap()
                .folder_in("users/alice")
                .unwrap(),
            "users/alice/etc/passwd"
        );
        assert!(VPath::parse("").unwrap().is_root());
    }

    #[test]
    fn segments_validated_like_http() {
        assert!(VPath::parse("/a/b\0c").is_err());
        assert!(VPath::parse("/a/b\\c").is_err());
        assert!(VPath::parse("/a/x..y").is_err());
    }
}
