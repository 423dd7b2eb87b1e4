//! Where the pollers put a message while it is delivered: a file under
//! `data_dir/mailbox-tmp/`, written as the server sends it, parsed and
//! uploaded from there ([`mft_protocols::mime::parse_file`]) and
//! removed afterwards, so a large message is never whole in memory.
//!
//! Nothing here is durable: the mail server keeps the message until it was
//! delivered, so a file left by a crash is just removed at the next start.

use std::path::{Path, PathBuf};

/// The directory under `data_dir`.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("mailbox-tmp")
}

/// Creates the directory and removes what a crash left in it. Runs once at
/// startup, before any poller.
pub fn prepare(data_dir: &Path) -> std::io::Result<()> {
    let d = dir(data_dir);
    std::fs::create_dir_all(&d)?;
    for e in std::fs::read_dir(&d)? {
        let _ = std::fs::remove_file(e?.path());
    }
    Ok(())
}

/// A message file; removed when dropped.
pub struct MessageFile {
    path: PathBuf,
}

impl MessageFile {
    /// A fresh empty file in the directory, opened for writing.
    pub async fn create(data_dir: &Path) -> std::io::Result<(MessageFile, tokio::fs::File)> {
        let path = dir(data_dir).join(format!("{}.eml", uuid::Uuid::now_v7().simple()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok((MessageFile { path }, file))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for MessageFile {
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.path);
        // An unlink, off the async workers when there are any.
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(move || std::fs::remove_file(path));
            }
            Err(_) => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
