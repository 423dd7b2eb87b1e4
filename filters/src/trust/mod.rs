//! Trust-network decisions with no I/O: which addresses a partner may send
//! from and to, where a local delivery's recipients must be relayed, and
//! what federation requests and answers look like on the wire.

pub mod domain_rules;
pub mod mail_sender;
pub mod messages;
pub mod partner_inbox;
pub mod wire;
