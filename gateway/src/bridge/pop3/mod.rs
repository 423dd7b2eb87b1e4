//! The POP3 poller.

use super::BridgeContext;
use std::sync::Arc;

/// Starts one poller per `[[pop3]]` mailbox.
pub fn start(_ctx: &Arc<BridgeContext>) -> anyhow::Result<()> {
    Ok(())
}
