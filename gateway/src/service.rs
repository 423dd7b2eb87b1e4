//! systemd integration for `Type=notify` units (packaging/debian/): READY=1
//! once pingora runs the listeners, WATCHDOG=1 every half `WATCHDOG_USEC`
//! for as long as the control plane's runtime gets to run the ping (a
//! wedged runtime stops it, and systemd restarts the service), STOPPING=1
//! when the graceful shutdown starts. Outside systemd (no `NOTIFY_SOCKET`)
//! every notification is a no-op.

use crate::runtime::ServiceRuntime;
use pingora_core::server::ExecutionPhase;
use sd_notify::NotifyState;
use std::time::Duration;
use tokio::sync::broadcast;

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The watchdog interval systemd asked for (half its `WATCHDOG_USEC`).
fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| (d / 2).max(Duration::from_millis(50)))
}

/// Starts the notifications: a thread following pingora's phases and, when
/// systemd wants one, the watchdog ping on `control`.
pub fn start(mut phases: broadcast::Receiver<ExecutionPhase>, control: &ServiceRuntime) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Some(every) = watchdog_interval() {
        tracing::info!(
            interval_ms = every.as_millis() as u64,
            "systemd watchdog enabled"
        );
        control.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                notify(&[NotifyState::Watchdog]);
            }
        });
    }
    let follow = move || loop {
        match phases.blocking_recv() {
            Ok(ExecutionPhase::Running) => {
                notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
            }
            // After an upgrade the new process is the service: its
            // predecessor's drain is not the service stopping.
            Ok(ExecutionPhase::GracefulTerminate) | Ok(ExecutionPhase::ShutdownStarted)
                if crate::upgrade::handed_over() => {}
            Ok(ExecutionPhase::GracefulTerminate) | Ok(ExecutionPhase::ShutdownStarted) => {
                notify(&[
                    NotifyState::Stopping,
                    NotifyState::Status("draining: finishing transfers in flight"),
                ]);
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("systemd-notify".into())
        .spawn(follow)
    {
        tracing::warn!(error = %e, "cannot start the systemd notifier");
    }
}
