//! Request decisions with no sockets.
//!
//! Everything here is pure: it takes parsed inputs and returns a decision or a
//! typed error, so the proxy, the reference backend and the bridges share the
//! same rules and the rules are unit-tested without a network.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod client_key;
pub mod clock;
pub mod decision;
pub mod defender;
pub mod json;
pub mod limits;
pub mod problem;
pub mod problem_types;
pub mod ratelimit;
pub mod signing;
pub mod trust;
pub mod validation;
