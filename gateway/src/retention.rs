//! The sweep that keeps the store from growing for ever: every so often it
//! deletes the rows of work that ended successfully longer ago than
//! `[retention] finished` ([`crate::store::retention`] says which rows).

use crate::store::Store;
use prometheus::{IntCounterVec, Opts, Registry};
use std::time::Duration;

/// The longest time between two sweeps.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// The shortest (a retention of seconds, in tests).
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// How often to sweep for a retention of `finished`: hourly, or four
/// times per retention period if that is shorter, so a row outlives its
/// retention by at most a quarter of it.
pub fn interval(finished: Duration) -> Duration {
    (finished / 4).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// `mft_store_pruned_rows_total{table}`.
pub fn pruned_counter(registry: &Registry) -> prometheus::Result<IntCounterVec> {
    let counter = IntCounterVec::new(
        Opts::new(
            "mft_store_pruned_rows_total",
            "Rows of finished work deleted from the store by the retention sweep, by table.",
        ),
        &["table"],
    )?;
    registry.register(Box::new(counter.clone()))?;
    Ok(counter)
}

/// Sweeps for as long as the process runs; the first sweep comes one
/// interval after the start, not at it, so a restart loop never turns
/// into a delete loop. A failed sweep (the database away) is logged and
/// tried again at the next tick.
pub async fn run(store: Store, finished: Duration, pruned: IntCounterVec) {
    let every = interval(finished);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.prune_finished(finished).await {
            Ok(done) => {
                for (table, n) in done.by_table() {
                    if n > 0 {
                        pruned.with_label_values(&[table]).inc_by(n);
                    }
                }
                if done.total() > 0 {
                    tracing::info!(
                        rows = done.total(),
                        relays = done.relays,
                        webhook_messages = done.webhook_messages,
                        outbound_messages = done.outbound_messages,
                        sftp_deliveries = done.sftp_deliveries,
                        inbound_files = done.inbound_files,
                        "retention: pruned finished work older than {}",
                        humantime::format_duration(finished)
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_hourly_or_four_times_per_short_retention() {
        assert_eq!(interval(Duration::from_secs(30 * 86_400)), MAX_INTERVAL);
        assert_eq!(
            interval(Duration::from_secs(3600)),
            Duration::from_secs(900)
        );
        assert_eq!(interval(Duration::from_secs(2)), MIN_INTERVAL);
    }
}
