//! One connection slot, on its own thread: keeps its connections to the
//! gateway open.
//!
//! With HTTP/2 on the link that is one connection, dialled again (with
//! backoff and jitter) when it ends. With HTTP/1.1 a connection carries
//! one exchange at a time, and only the LAN side can open connections, so
//! the slot keeps one idle connection ready: when the gateway takes it
//! into use ([`Busy`]), the next one is dialled at once, up to the slot's
//! share of `max_connections`; a surplus idle one retires itself on its
//! next heartbeat ([`super::serve`]). The gateway's requests meanwhile wait
//! for a free connection there (backpressure), never here.

use super::dial::DialError;
use super::{serve, Parts};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A connection that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Idle connections a slot keeps ready (an HTTP/2 one always counts as idle).
pub const TARGET_IDLE: u32 = 1;

/// `max_connections` split over `slots` slots, each at least one.
pub fn shares(max: u32, slots: u32) -> Vec<u32> {
    let slots = slots.max(1);
    (0..slots)
        .map(|i| (max / slots + u32::from(i < max % slots)).max(1))
        .collect()
}

/// What a slot's connections tell its dialling loop.
#[derive(Default)]
pub struct SlotState {
    /// Connections attached and serving no request.
    idle: AtomicU32,
    /// Connections attached.
    open: AtomicU32,
    /// Failed dials and short-lived connections in a row.
    failures: AtomicU32,
    /// The next dial waits out the backoff first.
    back_off: AtomicBool,
    changed: Notify,
}

impl SlotState {
    /// Idle connections now.
    pub fn idle(&self) -> u32 {
        self.idle.load(Ordering::Relaxed)
    }

    /// Counts out an idle connection that retires (its heartbeat answer
    /// closes it) when the slot has more idle ones than it keeps.
    pub fn retire_if_surplus(&self) -> bool {
        self.idle
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n > TARGET_IDLE).then(|| n - 1)
            })
            .is_ok()
    }
}

/// One connection's state as the slot counts it.
#[derive(Default)]
pub struct LinkState {
    busy: AtomicBool,
    retired: AtomicBool,
}

impl LinkState {
    /// The connection answers its heartbeat with `Connection: close`.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }
}

/// An HTTP/1.1 connection serving a request: not idle until dropped (with
/// the response body, once it was sent). Taking it wakes the slot to dial
/// the next idle one.
pub struct Busy {
    slot: Arc<SlotState>,
    link: Arc<LinkState>,
}

impl Busy {
    /// Marks `link` busy.
    pub fn take(slot: &Arc<SlotState>, link: &Arc<LinkState>) -> Busy {
        link.busy.store(true, Ordering::Relaxed);
        slot.idle.fetch_sub(1, Ordering::Relaxed);
        slot.changed.notify_one();
        Busy {
            slot: slot.clone(),
            link: link.clone(),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.link.busy.store(false, Ordering::Relaxed);
        self.slot.idle.fetch_add(1, Ordering::Relaxed);
    }
}

/// The slot's loop: dial while it has fewer idle connections than it keeps
/// and fewer than `max` in all; back off after failures.
pub async fn keep_connected(parts: Arc<Parts>, slot: u32, max: u32) {
    let state = Arc::new(SlotState::default());
    loop {
        let changed = state.changed.notified();
        tokio::pin!(changed);
        // Registered before looking, so a change in between is not missed.
        changed.as_mut().enable();
        let open = state.open.load(Ordering::Relaxed);
        if state.idle() >= TARGET_IDLE || open >= max {
            changed.await;
            continue;
        }
        if state.back_off.swap(false, Ordering::Relaxed) {
            let failures = state.failures.load(Ordering::Relaxed).max(1);
            tokio::time::sleep(parts.backoff.next_delay(failures, None)).await;
        }
        match parts.dialer.dial().await {
            Ok(attached) => {
                let mode = attached.mode.as_str();
                if open == 0 {
                    tracing::info!(slot, gateway = %parts.dialer.target(), link = mode, "connected to the gateway");
                } else {
                    tracing::debug!(
                        slot,
                        open = open + 1,
                        link = mode,
                        "one more connection to the gateway"
                    );
                }
                state.open.fetch_add(1, Ordering::Relaxed);
                state.idle.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(run(parts.clone(), state.clone(), attached, slot));
            }
            Err(e) => {
                log_refusal(slot, &e);
                state.failures.fetch_add(1, Ordering::Relaxed);
                state.back_off.store(true, Ordering::Relaxed);
            }
        }
    }
}

fn log_refusal(slot: u32, e: &DialError) {
    if e.is_config_problem() {
        tracing::error!(slot, error = %e, "gateway refused this connector");
    } else {
        tracing::warn!(slot, error = %e, "cannot connect to the gateway");
    }
}

/// Serves one attached connection until it ends, then tells the slot.
async fn run(parts: Arc<Parts>, state: Arc<SlotState>, attached: super::dial::Attached, slot: u32) {
    let started = Instant::now();
    let link = Arc::new(LinkState::default());
    let ended = serve::serve(&parts, &state, &link, attached).await;
    state.open.fetch_sub(1, Ordering::Relaxed);
    let retired = link.retired.load(Ordering::Relaxed);
    // A retired connection was counted out when it retired, a busy one
    // when it was taken.
    if !retired && !link.busy.load(Ordering::Relaxed) {
        state.idle.fetch_sub(1, Ordering::Relaxed);
    }
    if retired {
        tracing::debug!(slot, "retired a surplus idle connection");
    } else {
        tracing::info!(slot, reason = %ended, "disconnected from the gateway");
        if started.elapsed() >= STABLE_AFTER {
            state.failures.store(0, Ordering::Relaxed);
        }
        state.failures.fetch_add(1, Ordering::Relaxed);
        state.back_off.store(true, Ordering::Relaxed);
    }
    state.changed.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_connections_is_shared_by_the_slots() {
        assert_eq!(shares(64, 4), vec![16, 16, 16, 16]);
        assert_eq!(shares(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(shares(4, 4), vec![1, 1, 1, 1]);
        assert_eq!(shares(10, 4).iter().sum::<u32>(), 10);
    }

    #[test]
    fn a_busy_connection_is_not_idle_and_only_surplus_idle_ones_retire() {
        let slot = Arc::new(SlotState::default());
        slot.idle.store(2, Ordering::Relaxed);
        let (a, b) = (
            Arc::new(LinkState::default()),
            Arc::new(LinkState::default()),
        );
        let busy = Busy::take(&slot, &a);
        assert_eq!(slot.idle(), 1);
        // One idle left: the slot keeps it.
        assert!(!slot.retire_if_surplus());
        drop(busy);
        assert_eq!(slot.idle(), 2);
        assert!(!a.busy.load(Ordering::Relaxed));
        // Two idle: one retires, then no more.
        assert!(slot.retire_if_surplus());
        b.retire();
        assert_eq!(slot.idle(), 1);
        assert!(!slot.retire_if_surplus());
    }
}
