//! Config errors that name the file, line and key.

use std::fmt;
use std::path::PathBuf;
use thiserror::Error;

/// One finding about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Dotted key path, e.g. `backend.url` or `imap[1].host`; empty for the whole file.
    pub key: String,
    /// 1-based line of the key in the file, when the key is present there.
    pub line: Option<usize>,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl Issue {
    /// Formats the issue as `FILE:LINE: KEY: MESSAGE`.
    pub fn display_in<'a>(&'a self, file: &'a std::path::Path) -> impl fmt::Display + 'a {
        IssueDisplay { issue: self, file }
    }
}

struct IssueDisplay<'a> {
    issue: &'a Issue,
    file: &'a std::path::Path,
}

impl fmt::Display for IssueDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self
            .file
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_else(|| self.file.to_string_lossy());
        write!(f, "{name}")?;
        if let Some(line) = self.issue.line {
            write!(f, ":{line}")?;
        }
        if !self.issue.key.is_empty() {
            write!(f, ": {}", self.issue.key)?;
        }
        write!(f, ": {}", self.issue.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but has one or more problems; all are listed.
    #[error("{}", render(path, issues))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        issues: Vec<Issue>,
    },
}

fn render(path: &std::path::Path, issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|i| i.display_in(path).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
