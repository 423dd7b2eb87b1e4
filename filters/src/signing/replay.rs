//! Refusing a signature seen before: a bounded set of nonces, each kept
//! until its signature expires (after that the time check refuses it anyway).

use super::VerifyError;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};

/// Nonces seen within their signatures' validity.
#[derive(Debug)]
pub struct ReplayCache {
    /// Truncated SHA-256 of the nonce: fixed size whatever the signer sent.
    seen: HashMap<[u8; 16], u64>,
    /// The same entries in insertion order, so expired ones are dropped
    /// from the front as they come due instead of by a scan of the whole
    /// map (which a full cache would do on every insert, under a lock).
    order: VecDeque<(u64, [u8; 16])>,
    capacity: usize,
}

impl ReplayCache {
    /// A cache holding at most `capacity` live nonces.
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            seen: HashMap::new(),
            order: VecDeque::new(),
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
        self.expire(now);
        if self.seen.len() >= self.capacity && !self.seen.contains_key(&key) {
            // Evicting a live nonce would reopen it to replay: a full cache refuses.
            return Err(VerifyError::ReplayCacheFull);
        }
        self.order.push_back((forget_after, key));
        self.seen.insert(key, forget_after);
        Ok(())
    }

    /// Drops the entries at the front of the insertion order that expired.
    /// Signatures have one validity, so expiry follows insertion closely; an
    /// entry that lives longer only keeps later ones a little longer.
    fn expire(&mut self, now: u64) {
        while let Some(&(until, key)) = self.order.front() {
            if until >= now {
                break;
            }
            self.order.pop_front();
            // The map holds the newest expiry of a re-inserted nonce.
            if self.seen.get(&key) == Some(&until) {
                self.seen.remove(&key);
            }
        }
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

    #[test]
    fn expiry_follows_insertion_without_a_scan() {
        let mut c = ReplayCache::new(3);
        c.check_and_insert("a", 10, 0).unwrap();
        c.check_and_insert("b", 20, 0).unwrap();
        c.check_and_insert("c", 30, 0).unwrap();
        // "a" and "b" are due at 21: both go, "c" stays a replay.
        c.check_and_insert("d", 40, 21).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.check_and_insert("c", 30, 22), Err(VerifyError::Replay));
        // A nonce seen again after its expiry keeps its new lifetime.
        c.check_and_insert("a", 50, 31).unwrap();
        assert_eq!(c.check_and_insert("a", 50, 45), Err(VerifyError::Replay));
    }
}
