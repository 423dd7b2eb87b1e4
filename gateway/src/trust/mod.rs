//! The trust network: 1:1 connections between organisations' gateways.
//!
//! Each connection has two keys, one per direction (`mgp_<id>_<secret>`):
//! the one we generated for the partner (stored hashed, see
//! [`crate::store::partners`]) and the one they generated for us (sealed at
//! rest, [`seal`]). A federation request carries the key as a bearer
//! credential and an RFC 9421 signature made with an HMAC key derived from
//! it ([`wire`]); the answer is signed with the same derived key and echoes
//! the request's nonce, so the caller knows the answer is fresh and comes
//! from the holder of that connection.

pub mod connections;
pub mod federation_api;
pub mod inbound;
pub mod messages;
pub mod metrics;
pub mod outbound;
pub mod partner_client;
pub mod receipts;
pub mod relay;
pub mod seal;
pub mod services;
pub mod wire;
