//! The lease a worker holds on a queued job (relays, SFTP deliveries):
//! several gateways on one PostgreSQL store work one queue, and the lease
//! keeps each job with one of them at a time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// The lease a worker holds on a job: the `lease_until` (ms) it last wrote.
///
/// It doubles as a fencing token: every write a worker makes about its job
/// (renew, release, retry later, finish) only applies while the row still
/// carries this value. Once a lease ran out and another gateway claimed the
/// job (writing its own, later `lease_until`), the first worker's writes
/// match nothing, so it learns it lost the job instead of overwriting the
/// new owner's state. `0` for a job read without claiming it.
#[derive(Debug, Clone, Default)]
pub struct LeaseToken(Arc<AtomicI64>);

impl LeaseToken {
    /// The `lease_until` this worker last wrote.
    pub fn until(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(super) fn set(&self, until: i64) {
        self.0.store(until, Ordering::Relaxed)
    }
}
