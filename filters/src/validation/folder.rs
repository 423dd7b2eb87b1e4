//! Folder paths inside the backend (`X-Folder`, SFTP directories).
//!
//! A folder is a `/`-separated list of segments, each a valid file name, with
//! no leading or trailing slash after normalisation. The root is the empty string.

use super::filename::{validate_filename, FilenameError};
use thiserror::Error;

/// Longest accepted folder path in bytes.
pub const MAX_FOLDER_BYTES: usize = 1024;

/// Why a folder path was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FolderError {
    /// One segment is not a valid name.
    #[error("folder segment {index}: {source}")]
    Segment {
        /// Zero-based position of the bad segment.
        index: usize,
        /// What is wrong with it.
        source: FilenameError,
    },
    /// The whole path is longer than [`MAX_FOLDER_BYTES`].
    #[error("folder path is longer than {MAX_FOLDER_BYTES} bytes")]
    TooLong,
}

/// Validates a folder path and returns its canonical form (`a/b/c`, root is `""`).
///
/// Leading, trailing and doubled slashes are dropped; `.` and `..` segments are
/// refused rather than resolved, so a path can never climb out of a root.
pub fn validate_folder(raw: &str) -> Result<String, FolderError> {
    let mut out = String::with_capacity(raw.len());
    for (index, segment) in raw.split('/').filter(|s| !s.is_empty()).enumerate() {
        let name =
            validate_filename(segment).map_err(|source| FolderError::Segment { index, source })?;
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(&name);
    }
    if out.len() > MAX_FOLDER_BYTES {
        return Err(FolderError::TooLong);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalises_slashes() {
        assert_eq!(validate_folder("/").unwrap(), "");
        assert_eq!(validate_folder("").unwrap(), "");
        assert_eq!(
            validate_folder("/inbox//partner/").unwrap(),
            "inbox/partner"
        );
    }

    #[test]
    fn refuses_dot_segments_and_bad_names() {
        assert!(matches!(
            validate_folder("a/../b"),
            Err(FolderError::Segment { index: 1, .. })
        ));
        assert!(matches!(
            validate_folder("./a"),
            Err(FolderError::Segment { index: 0, .. })
        ));
        assert!(matches!(
            validate_folder("a/b\0"),
            Err(FolderError::Segment { index: 1, .. })
        ));
        assert!(matches!(
            validate_folder("a\\b"),
            Err(FolderError::Segment { .. })
        ));
    }
}
