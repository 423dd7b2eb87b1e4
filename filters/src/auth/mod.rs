//! Authentication and authorization decisions.
//!
//! The proxy runs them in this order: [`credential::extract`] pulls the one
//! credential out of the request headers; an API key goes through
//! [`api_key::parse`] and [`api_key::ParsedKey::verify`] against the hash the
//! key store holds for its id; a JWT goes through [`jwt::verify`] with the
//! issuer's pinned policy and keys; then [`scope::ScopePolicy::required_scope`]
//! and [`scope::has_scope`] decide whether the identity may use the route.
//! Each failure maps to a [`crate::decision::Rejection`] whose client-facing
//! detail is generic and whose audit reason is precise.

pub mod api_key;
pub mod connector_key;
pub mod credential;
pub mod jwt;
pub mod partner_key;
pub mod scope;
pub mod senders;
