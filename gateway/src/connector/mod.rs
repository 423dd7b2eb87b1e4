//! DMZ mode: the backend is reached only over connections that connectors
//! in the LAN opened to the gateway, so no port opens from the DMZ into the
//! LAN (docs/dmz.md).
//!
//! One connection's life, both halves:
//!
//! 1. The connector ([`lan`]) dials TLS to `[connector] listen` and sends one
//!    HTTP/1.1 request, `GET /connector/v1/attach` with
//!    `Upgrade: mft-connector/1` and its key as a Bearer token ([`wire`]).
//! 2. The gateway ([`listener`]) checks the key against the store
//!    ([`auth`], hashed, constant time) and answers `101`, or a problem+json
//!    401 that the connector's `check` turns into "key refused".
//! 3. The roles flip on the upgraded stream: the gateway is the HTTP/2
//!    client, the connector the HTTP/2 server that forwards every request to
//!    its own configured backend and nowhere else.
//! 4. The gateway's [`pool`] spreads requests over every live connection
//!    ([`link`]); PINGs or heartbeats find a dead idle one, TCP keepalive
//!    and a user timeout ([`liveness`]) a busy one whose path went silent;
//!    [`watch`] closes the connections of
//!    a removed connector and reports state to the store and `/metrics`.

pub mod auth;
pub mod body;
pub mod counted_io;
pub mod lan;
pub mod link;
pub mod listener;
pub mod liveness;
pub mod metrics;
pub mod pool;
pub mod watch;
pub mod wire;

pub use pool::ConnectorPool;
