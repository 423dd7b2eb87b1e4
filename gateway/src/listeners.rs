//! `data_dir/listeners.json`: where the running process listens now
//! (docs/operations.md, "Where the gateway listens").
//!
//! With port 0 in the config the kernel picks the port, so the file is the
//! only way a script, a test or the `reload`/`upgrade` commands learn it;
//! and a reload that moves a listener must not leave them asking the old
//! address. So the file is written atomically (a temporary file renamed over
//! it) once every listener is bound at start, again after a reload moved
//! one, and by the new process of an upgrade, which takes the same sockets.
//! It carries the writer's pid: a file left by a process that is gone is
//! recognisable, and the admin token is never sent to whatever listens at
//! an address a crashed gateway once had.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file's name under `data_dir`.
pub(crate) const FILE: &str = "listeners.json";

/// What 0.1.0 recorded (`ADDR PID`, the admin listener only); read when
/// [`FILE`] is missing, so the `upgrade` of a newer package reaches a
/// running 0.1.0 process, and removed when [`FILE`] is written.
const LEGACY_ADMIN_FILE: &str = "admin.addr";

/// The file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The process that listens.
    pub pid: u32,
    /// Listener name (`https`, `admin`, `smtp`, `smtps`, `sftp`,
    /// `connector`, `acme-http`) to the address bound, as bound (a wildcard
    /// address stays a wildcard).
    pub listeners: BTreeMap<String, SocketAddr>,
}

/// Where the record of the process using `data_dir` is.
pub(crate) fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Writes the record of every listener this process serves now (best
/// effort: without it `reload`/`upgrade` fall back to the configured
/// address; the failure is logged).
pub(crate) fn record(data_dir: &Path) {
    // A reload (SIGHUP) may move a listener while start-up writes: one
    // writer at a time, so the temporary file is never written by two.
    static WRITING: Mutex<()> = Mutex::new(());
    let _one = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    let record = Record {
        pid: std::process::id(),
        listeners: crate::upgrade::serving_addresses(),
    };
    let target = path(data_dir);
    // The pid in the name: the old and the new process of an upgrade never
    // share a temporary file.
    let tmp = data_dir.join(format!("{FILE}.{}.tmp", record.pid));
    let written = serde_json::to_vec_pretty(&record)
        .map_err(std::io::Error::other)
        .and_then(|mut json| {
            json.push(b'\n');
            std::fs::write(&tmp, json)
        })
        .and_then(|()| std::fs::rename(&tmp, &target));
    match written {
        Ok(()) => {
            let _ = std::fs::remove_file(data_dir.join(LEGACY_ADMIN_FILE));
            tracing::info!(file = %target.display(), listeners = ?record.listeners, "listening addresses recorded");
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(file = %target.display(), error = %e, "cannot record the listening addresses");
        }
    }
}

/// The record in `data_dir`, whoever wrote it.
pub(crate) fn read(data_dir: &Path) -> Option<Record> {
    let text = std::fs::read_to_string(path(data_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The admin address of the gateway running on `data_dir`, if the process
/// that recorded it is still a running mft-gateway.
pub(crate) fn running_admin(data_dir: &Path) -> Option<SocketAddr> {
    let (addr, pid) = match read(data_dir) {
        Some(r) => (*r.listeners.get(crate::upgrade::names::ADMIN)?, r.pid),
        None => legacy_admin(data_dir)?,
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "mft-gateway").then_some(addr)
}

/// `admin.addr` of a 0.1.0 process: `ADDR PID`.
fn legacy_admin(data_dir: &Path) -> Option<(SocketAddr, u32)> {
    let text = std::fs::read_to_string(data_dir.join(LEGACY_ADMIN_FILE)).ok()?;
    let mut parts = text.split_whitespace();
    let addr = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    Some((addr, pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_the_documented_json() {
        let record = Record {
            pid: 42,
            listeners: [
                ("admin".to_string(), "127.0.0.1:9901".parse().unwrap()),
                ("https".to_string(), "0.0.0.0:8443".parse().unwrap()),
            ]
            .into_iter()
            .collect(),
        };
        let json: serde_json::Value = serde_json::to_value(&record).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"pid": 42, "listeners": {"admin": "127.0.0.1:9901", "https": "0.0.0.0:8443"}})
        );
    }

    #[test]
    fn a_record_of_a_process_that_is_gone_names_no_admin_address() {
        let dir = tempfile::tempdir().unwrap();
        // This test's own pid is running, but it is not an mft-gateway.
        let record = format!(
            r#"{{"pid": {}, "listeners": {{"admin": "127.0.0.1:9901"}}}}"#,
            std::process::id()
        );
        std::fs::write(path(dir.path()), record).unwrap();
        assert_eq!(read(dir.path()).unwrap().pid, std::process::id());
        assert_eq!(running_admin(dir.path()), None);
    }

    #[test]
    fn writing_the_record_removes_the_legacy_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEGACY_ADMIN_FILE), "127.0.0.1:9 1\n").unwrap();
        assert_eq!(
            legacy_admin(dir.path()),
            Some(("127.0.0.1:9".parse().unwrap(), 1))
        );
        record(dir.path());
        assert!(!dir.path().join(LEGACY_ADMIN_FILE).exists());
        let written = read(dir.path()).unwrap();
        assert_eq!(written.pid, std::process::id());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(FILE)]);
    }
}
