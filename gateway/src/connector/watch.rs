//! Every two seconds: close the connections of removed connectors (so
//! `connectors remove`, from any process, disconnects within 5 s) and
//! report each connector's state to the store and `/metrics`.

use super::pool::ConnectorPool;
use crate::runtime::ServiceRuntime;
use crate::store::connectors::ConnectorReport;
use crate::store::Store;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often the store is read.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Starts the watch on the control plane.
pub fn start(pool: Arc<ConnectorPool>, store: Store, control: &ServiceRuntime) {
    control.spawn(async move {
        let mut reported: HashMap<Arc<str>, (u64, u64, u64)> = HashMap::new();
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            once(&pool, &store, &mut reported).await;
        }
    });
}

async fn once(
    pool: &ConnectorPool,
    store: &Store,
    reported: &mut HashMap<Arc<str>, (u64, u64, u64)>,
) {
    let enrolled = match store.list_connectors().await {
        Ok(list) => list,
        Err(e) => {
            // Keep serving: a store outage must not cut the backend off.
            tracing::warn!(error = %e, "cannot read connectors from the store");
            return;
        }
    };
    let keep: HashSet<String> = enrolled.iter().map(|c| c.key_id.clone()).collect();
    let closed = pool.close_all_but(&keep);
    if closed > 0 {
        tracing::info!(closed, "closed connections of removed connectors");
    }
    let mut now: HashMap<Arc<str>, ConnectorReport> = HashMap::new();
    for link in pool.links().iter().filter(|l| l.is_alive()) {
        let entry = now.entry(link.name.clone()).or_default();
        entry.connections += 1;
    }
    for c in &enrolled {
        let name: Arc<str> = Arc::from(c.name.as_str());
        let totals = pool.totals(&name);
        let mut report = now.remove(&name).unwrap_or_default();
        report.bytes_out = totals.bytes_out.load(Ordering::Relaxed);
        report.bytes_in = totals.bytes_in.load(Ordering::Relaxed);
        report.address = totals
            .address
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let before = reported.get(&name).copied().unwrap_or((0, 0, 0));
        let state = (report.connections, report.bytes_out, report.bytes_in);
        pool.metrics
            .bytes
            .with_label_values(&[&*name, "out"])
            .inc_by(state.1.saturating_sub(before.1));
        pool.metrics
            .bytes
            .with_label_values(&[&*name, "in"])
            .inc_by(state.2.saturating_sub(before.2));
        // Connected connectors are reported every tick (their "last seen");
        // a disconnected one once, when it drops to zero.
        if report.connections > 0 || before.0 > 0 {
            if let Err(e) = store.report_connector(&c.name, &report).await {
                tracing::warn!(connector = %c.name, error = %e, "cannot report connector state");
            }
        }
        reported.insert(name, state);
    }
}
