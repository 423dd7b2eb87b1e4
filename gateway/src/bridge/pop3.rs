//! The pop3 bridge.

use super::BridgeContext;
use std::sync::Arc;

/// Starts the pop3 bridge when it is configured.
pub fn start(_ctx: &Arc<BridgeContext>) -> anyhow::Result<()> {
    Ok(())
}
