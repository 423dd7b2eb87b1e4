//! Refusing a signature seen before: a bounded set of nonces, each kept
//! until its signature expires (after that the time check refuses it anyway).

use super::VerifyError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Nonces seen within their signatures' validity.
#[derive(Debug)]
pub struct ReplayCache {
    /// Truncated SHA-256 of the nonce: fixed size whatever the signer sent.
    seen: HashMap<[u8; 16], u64>,
    capacity: usize,
}

impl ReplayCache {
    /// A cache holding at most `capacity` live nonces.
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            seen: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Live entries (may include a few expired ones until the next sweep).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records `nonce`, valid until `forget_after` (Unix seconds, expiry plus
    /// skew); refuses one seen before. `now` is Unix seconds.
    pub fn check_and_insert(
        &mut self,
        nonce: &str,
        forget_after: u64,
        now: u64,
    ) -> Result<(), VerifyError> {
        let digest = Sha256::digest(nonce.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        if let Some(until) = self.seen.get(&key) {
            if *until >= now {
                return Err(VerifyError::Replay);
            }
        }
        if self.seen.len() >= self.capacity && !self.seen.contains_key(&key) {
            // Sweeping only when full keeps inserts O(1) on average; evicting a
            // live nonce would reopen it to replay, so a full cache refuses.
            self.seen.retain(|_, until| *until >= now);
            if self.seen.len() >= self.capacity {
                return Err(VerifyError::ReplayCacheFull);
            }
        }
        self.seen.insert(key, forget_after);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_nonce_twice_until_it_expires() {
        let mut c = ReplayCache::new(10);
        c.check_and_insert("nonce-a", 100, 50).unwrap();
        assert_eq!(
            c.check_and_insert("nonce-a", 100, 60),
            Err(VerifyError::Replay)
        );
        c.check_and_insert("nonce-b", 100, 60).unwrap();
        // After expiry the signature is refused by its time check; the cache may forget.
        c.check_and_insert("nonce-a", 200, 101).unwrap();
    }

    #[test]
    fn bounded_and_fails_closed_when_full_of_live_entries() {
        let mut c = ReplayCache::new(2);
        c.check_and_insert("a", 10, 0).unwrap();
        c.check_and_insert("b", 100, 0).unwrap();
        assert_eq!(
            c.check_and_insert("c", 100, 5),
            Err(VerifyError::ReplayCacheFull)
        );
        // Once "a" expired a sweep makes room.
        c.check_and_insert("c", 100, 11).unwrap();
        assert_eq!(c.len(), 2);
    }
}
