//! Trust-network decisions with no I/O: which addresses a partner may send
//! from and to, and where a local delivery's recipients must be relayed.

pub mod domain_rules;
pub mod mail_sender;
pub mod partner_inbox;
