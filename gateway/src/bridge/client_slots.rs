//! Concurrent connections per client, for the bridges' listeners (SMTP,
//! SFTP): one address cannot take every slot of a listener, and a refusal
//! hits only the client over its share.

use mft_filters::client_key::client_key;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Open connections per client key (IPv4 address or IPv6 /64).
pub struct ClientSlots {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One taken slot; dropping it gives it back.
pub struct ClientSlot {
    slots: Arc<ClientSlots>,
    key: IpAddr,
}

impl ClientSlots {
    /// At most `max` connections per client.
    pub fn new(max: usize) -> Arc<ClientSlots> {
        Arc::new(ClientSlots {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `ip`'s client, or `None` when it holds `max` already.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let key = client_key(ip);
        let mut open = self.lock();
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            slots: self.clone(),
            key,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Counts stay consistent under a panic elsewhere; keep serving.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_and_released_on_drop() {
        let slots = ClientSlots::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::2".parse().unwrap();
        let first = slots.take(a);
        let second = slots.take(a);
        assert!(first.is_some() && second.is_some());
        assert!(slots.take(a).is_none());
        assert!(slots.take("192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        assert!(slots.take(a).is_some());
        // One /64 is one client.
        let _x = slots.take(v6a);
        let _y = slots.take(v6b);
        assert!(slots.take(v6a).is_none());
    }
}
