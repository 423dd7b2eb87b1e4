//! Free space on the spool's file system, so MAIL and RCPT can answer 452
//! (insufficient system storage, RFC 5321 §4.5.3.1.10) before the client
//! sends a message the spool could not take. Measured about once a second
//! off the runtime (statvfs is a system call that may touch the disk), read
//! by the sessions from an atomic.

use nix::sys::statvfs::statvfs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often the free space is measured.
const INTERVAL: Duration = Duration::from_secs(1);

/// The last measurement and the floor it is held against.
pub struct SpoolSpace {
    /// Free bytes for unprivileged writers; `u64::MAX` when unknown (a
    /// failed measurement refuses nothing: the DATA write still answers 451).
    free: AtomicU64,
    /// `smtp.spool_min_free`.
    min_free: Option<u64>,
}

/// Free bytes an unprivileged process may use on `dir`'s file system.
// The statvfs fields are u64 on 64-bit Linux, narrower elsewhere.
#[allow(clippy::useless_conversion)]
fn measure(dir: &Path) -> u64 {
    match statvfs(dir) {
        Ok(s) => u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size())),
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot measure the spool's free space");
            u64::MAX
        }
    }
}

impl SpoolSpace {
    /// Measures `dir` now and then every second on `runtime` while the
    /// returned value is alive. Nothing is measured when `min_free` is
    /// `None`.
    pub fn watch(
        dir: PathBuf,
        min_free: Option<u64>,
        runtime: &tokio::runtime::Handle,
    ) -> Arc<SpoolSpace> {
        let space = Arc::new(SpoolSpace {
            free: AtomicU64::new(if min_free.is_some() {
                measure(&dir)
            } else {
                u64::MAX
            }),
            min_free,
        });
        if min_free.is_some() {
            runtime.spawn(refresh(Arc::downgrade(&space), dir));
        }
        space
    }

    /// Whether a transaction of `declared` bytes (`MAIL ... SIZE=`; 0 when
    /// not declared) leaves the spool its floor.
    pub fn room_for(&self, declared: u64) -> bool {
        let Some(min) = self.min_free else {
            return true;
        };
        self.free.load(Ordering::Relaxed) >= min.saturating_add(declared)
    }
}

async fn refresh(space: Weak<SpoolSpace>, dir: PathBuf) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if space.strong_count() == 0 {
            return;
        }
        let d = dir.clone();
        let Ok(free) = tokio::task::spawn_blocking(move || measure(&d)).await else {
            continue;
        };
        match space.upgrade() {
            Some(s) => s.free.store(free, Ordering::Relaxed),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_and_the_declared_size_are_both_kept() {
        let s = SpoolSpace {
            free: AtomicU64::new(100),
            min_free: Some(60),
        };
        assert!(s.room_for(0));
        assert!(s.room_for(40));
        assert!(!s.room_for(41));
        s.free.store(59, Ordering::Relaxed);
        assert!(!s.room_for(0));
        let off = SpoolSpace {
            free: AtomicU64::new(0),
            min_free: None,
        };
        assert!(off.room_for(u64::MAX));
    }

    #[test]
    fn a_real_directory_has_measurable_space() {
        let dir = tempfile::tempdir().unwrap();
        assert!(measure(dir.path()) > 0);
        assert_eq!(measure(&dir.path().join("missing")), u64::MAX);
    }
}
