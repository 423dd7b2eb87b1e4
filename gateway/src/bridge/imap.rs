//! The imap bridge.

use super::BridgeContext;
use std::sync::Arc;

/// Starts the imap bridge when it is configured.
pub fn start(_ctx: &Arc<BridgeContext>) -> anyhow::Result<()> {
    Ok(())
}
