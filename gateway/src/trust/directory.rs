//! The trust-network connections a running gateway knows, cached so the
//! trust network costs nothing where it is not used.
//!
//! With no connection in the store the proxy's hooks (a download owing a
//! receipt, a delivery to relay) stop at one atomic load, the relay and
//! receipt workers wait without polling, and a partner's request finds its
//! connection here instead of in the database, like an API key in the key
//! cache.
//!
//! Freshness: the store's `partners` table is fingerprinted (row count,
//! newest `updated_at`) every [`REFRESH`] on the control plane and reloaded
//! when the fingerprint moves, so a connection added, changed or removed by
//! the CLI (another process) or another instance reaches this gateway within
//! about a second, as a key revocation does. A write through this process's
//! own store handle (the admin API) makes the copy stale at once: until the
//! next reload, lookups go to the store as before.

use crate::runtime::ServiceRuntime;
use crate::store::partners::{OutboundKey, PartnerRecord, PartnersVersion};
use crate::store::{Store, StoreError};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the store is asked whether a connection changed.
pub const REFRESH: Duration = Duration::from_secs(1);

/// One load of the table.
struct Snapshot {
    /// The table's fingerprint when it was read.
    version: PartnersVersion,
    /// [`Store::partner_writes`] when it was read.
    writes: u64,
    partners: Vec<Arc<PartnerRecord>>,
    by_key_id: HashMap<String, Arc<PartnerRecord>>,
}

impl Snapshot {
    fn new(version: PartnersVersion, writes: u64, list: Vec<PartnerRecord>) -> Snapshot {
        let partners: Vec<Arc<PartnerRecord>> = list.into_iter().map(Arc::new).collect();
        let by_key_id = partners
            .iter()
            .map(|p| (p.inbound_key_id.clone(), p.clone()))
            .collect();
        Snapshot {
            version,
            writes,
            partners,
            by_key_id,
        }
    }
}

/// The cached connections; one per gateway process.
pub struct PartnerDirectory {
    store: Store,
    snapshot: ArcSwap<Snapshot>,
    /// How many connections the snapshot holds, for workers waiting for the first.
    count: watch::Sender<usize>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Completed checks of the table (`mft_trust_partner_checks_total`):
    /// two more than before a change means this copy has it.
    checks: prometheus::IntCounter,
}

/// `mft_trust_partner_checks_total`, registered in `registry`.
pub fn checks_counter(
    registry: &prometheus::Registry,
) -> prometheus::Result<prometheus::IntCounter> {
    let c = prometheus::IntCounter::new(
        "mft_trust_partner_checks_total",
        "Checks of the partners table by the partner cache (one a second)",
    )?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl PartnerDirectory {
    /// Reads every connection from `store`.
    pub async fn load(
        store: Store,
        checks: prometheus::IntCounter,
    ) -> Result<Arc<PartnerDirectory>, StoreError> {
        let writes = store.partner_writes();
        let version = store.partners_version().await?;
        let list = store.list_partners().await?;
        let (count, _) = watch::channel(list.len());
        Ok(Arc::new(PartnerDirectory {
            snapshot: ArcSwap::from_pointee(Snapshot::new(version, writes, list)),
            store,
            count,
            reloading: tokio::sync::Mutex::new(()),
            checks,
        }))
    }

    /// The store the connections are read from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether no connection exists (as of the last reload).
    pub fn is_empty(&self) -> bool {
        self.snapshot.load().partners.is_empty()
    }

    /// Every connection, as of the last reload.
    pub fn partners(&self) -> Vec<Arc<PartnerRecord>> {
        self.snapshot.load().partners.clone()
    }

    /// The connection whose inbound key has public id `key_id`, if the
    /// cached copy can answer: `None` when it does not know the id, when
    /// this process changed a connection since the copy was read, or when
    /// the connection is still pending (its key for us is about to be set,
    /// and the caller should see that at once). The caller then asks the store.
    pub fn cached(&self, key_id: &str) -> Option<Arc<PartnerRecord>> {
        let snapshot = self.snapshot.load();
        if snapshot.writes != self.store.partner_writes() {
            return None;
        }
        snapshot
            .by_key_id
            .get(key_id)
            .filter(|p| p.outbound_key != OutboundKey::Missing)
            .cloned()
    }

    /// Reloads the connections if the table changed since the last read;
    /// `true` if it did.
    pub async fn refresh(&self) -> Result<bool, StoreError> {
        let _one = self.reloading.lock().await;
        let writes = self.store.partner_writes();
        let version = self.store.partners_version().await?;
        let current = self.snapshot.load_full();
        let changed = current.version != version || current.writes != writes;
        if changed {
            let list = self.store.list_partners().await?;
            let n = list.len();
            self.snapshot
                .store(Arc::new(Snapshot::new(version, writes, list)));
            self.count.send_replace(n);
        }
        self.checks.inc();
        Ok(changed)
    }

    /// Reloads soon, on the control plane: a partner the store knows but
    /// this copy does not has just authenticated, and its deliveries' first
    /// downloads must find it here (their receipts depend on it).
    pub fn refresh_soon(self: &Arc<Self>, control: &ServiceRuntime) {
        let directory = self.clone();
        control.spawn(async move {
            if let Err(e) = directory.refresh().await {
                tracing::warn!(error = %e, "cannot read the partner connections; keeping the cached ones");
            }
        });
    }

    /// Polls the store every [`REFRESH`] on the control plane, for as long
    /// as the process runs.
    pub fn start(self: &Arc<Self>, control: &ServiceRuntime) {
        let directory = Arc::downgrade(self);
        control.spawn(async move {
            loop {
                tokio::time::sleep(REFRESH).await;
                let Some(directory) = directory.upgrade() else {
                    return;
                };
                if let Err(e) = directory.refresh().await {
                    tracing::warn!(error = %e, "cannot read the partner connections; keeping the cached ones");
                }
            }
        });
    }

    /// Returns once at least one connection exists: the relay and receipt
    /// workers wait here instead of polling while the trust network is unused.
    pub async fn wait_for_partners(&self) {
        let mut count = self.count.subscribe();
        // The sender lives as long as `self`: an error cannot happen here.
        let _ = count.wait_for(|n| *n > 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> prometheus::IntCounter {
        prometheus::IntCounter::new("checks", "test").unwrap()
    }

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        (store, dir)
    }

    #[tokio::test]
    async fn without_partners_lookups_and_checks_never_reach_the_store() {
        let (store, _dir) = store().await;
        let directory = PartnerDirectory::load(store.clone(), counter())
            .await
            .unwrap();
        let before = store.operations();
        for _ in 0..100 {
            assert!(directory.is_empty());
            assert!(directory.cached("0123456789abcdef").is_none());
            assert!(directory.partners().is_empty());
        }
        assert_eq!(store.operations(), before, "no store operation per check");
    }

    #[tokio::test]
    async fn a_partner_added_by_another_process_is_found_after_one_refresh() {
        let (store, dir) = store().await;
        let directory = PartnerDirectory::load(store.clone(), counter())
            .await
            .unwrap();
        // Another process: its own handle on the same file.
        let cli = Store::open(None, dir.path()).await.unwrap();
        let (added, _token) = cli
            .add_partner("beta", "https://beta.example", &["beta.example".into()])
            .await
            .unwrap();
        assert!(directory.is_empty(), "not seen before the refresh");
        assert!(directory.refresh().await.unwrap());
        assert!(!directory.is_empty());
        assert!(
            !directory.refresh().await.unwrap(),
            "unchanged table: no reload"
        );
        // Pending (their key not set yet): the caller must ask the store.
        assert!(directory.cached(&added.inbound_key_id).is_none());
        cli.set_partner_key("beta", &OutboundKey::Reference("env:BETA_KEY".into()))
            .await
            .unwrap();
        assert!(directory.refresh().await.unwrap());
        let before = store.operations();
        let found = directory.cached(&added.inbound_key_id).unwrap();
        assert_eq!(found.name, "beta");
        assert_eq!(
            store.operations(),
            before,
            "a cached partner costs no query"
        );
        cli.remove_partner("beta").await.unwrap();
        assert!(directory.refresh().await.unwrap());
        assert!(directory.cached(&added.inbound_key_id).is_none());
        assert!(directory.is_empty());
    }

    #[tokio::test]
    async fn the_poller_finds_a_new_partner_within_the_refresh_interval() {
        let (store, dir) = store().await;
        let directory = PartnerDirectory::load(store.clone(), counter())
            .await
            .unwrap();
        let control = ServiceRuntime::start("control", 1).unwrap();
        directory.start(&control);
        let cli = Store::open(None, dir.path()).await.unwrap();
        cli.add_partner("beta", "https://beta.example", &["beta.example".into()])
            .await
            .unwrap();
        tokio::time::timeout(REFRESH * 5, directory.wait_for_partners())
            .await
            .expect("the poller reloads within a few refresh intervals");
        assert_eq!(directory.partners()[0].name, "beta");
    }

    #[tokio::test]
    async fn a_write_through_this_process_makes_the_copy_stale_at_once() {
        let (store, _dir) = store().await;
        let (added, _) = store
            .add_partner("beta", "https://beta.example", &["beta.example".into()])
            .await
            .unwrap();
        store
            .set_partner_key("beta", &OutboundKey::Reference("env:BETA_KEY".into()))
            .await
            .unwrap();
        let directory = PartnerDirectory::load(store.clone(), counter())
            .await
            .unwrap();
        assert!(directory.cached(&added.inbound_key_id).is_some());
        store.remove_partner("beta").await.unwrap();
        assert!(
            directory.cached(&added.inbound_key_id).is_none(),
            "the admin API's removal is seen before any reload"
        );
    }
}
