//! The set-up shared by the tests of what the gateway sends out on its own
//! (webhooks, outbound transports): a backend and a gateway of
//! organisation `acme` whose stored secrets are sealed, whose queues retry
//! fast and whose admin API takes a token; the tests then point it at a
//! local receiver (a webhook receiver, aiosmtpd, a provider stand-in).

use crate::{
    make_certs, sealed_admin_tables, start_backend, start_gateway_with, Backend, Certs, Gateway,
};
use std::path::Path;

/// `[organization]` of the gateway the outbound tests run.
pub const ORGANIZATION: &str =
    "[organization]\nname = \"acme\"\nemail_domains = [\"acme.example\"]\n";

/// How fast the queues poll and retry (`[trust] relay_*`).
pub struct Queue {
    /// `relay_poll_interval`.
    pub poll: &'static str,
    /// `relay_retry_base`.
    pub retry_base: &'static str,
    /// `relay_retry_max`.
    pub retry_max: &'static str,
}

/// What most outbound tests use.
pub const FAST: Queue = Queue {
    poll: "200ms",
    retry_base: "200ms",
    retry_max: "1s",
};

/// `[trust]` (sealing key, `queue`'s timings) and `[admin]` tables for a
/// gateway in `path`; writes the key and token files.
pub fn sealed_tables(path: &Path, admin_token: &str, queue: &Queue) -> String {
    let Queue {
        poll,
        retry_base,
        retry_max,
    } = queue;
    sealed_admin_tables(
        path,
        admin_token,
        &format!(
            "relay_poll_interval = \"{poll}\"\nrelay_retry_base = \"{retry_base}\"\n\
             relay_retry_max = \"{retry_max}\""
        ),
    )
}

/// [`ORGANIZATION`] and [`sealed_tables`] with the [`FAST`] queue.
pub fn tables(path: &Path, admin_token: &str) -> String {
    format!(
        "{ORGANIZATION}\n{}",
        sealed_tables(path, admin_token, &FAST)
    )
}

/// A backend and a gateway in `path` with [`tables`] and `extra` tables.
pub async fn start(path: &Path, admin_token: &str, extra: &str) -> (Certs, Backend, Gateway) {
    start_queue(path, admin_token, &FAST, extra).await
}

/// [`start`] with the queue timings `queue`.
pub async fn start_queue(
    path: &Path,
    admin_token: &str,
    queue: &Queue,
    extra: &str,
) -> (Certs, Backend, Gateway) {
    let tables = format!(
        "{ORGANIZATION}\n{}\n{extra}",
        sealed_tables(path, admin_token, queue)
    );
    start_tables(path, &tables).await
}

/// A backend and a gateway in `path` with exactly `tables`.
pub async fn start_tables(path: &Path, tables: &str) -> (Certs, Backend, Gateway) {
    let certs = make_certs(path);
    let backend = start_backend(path).await;
    let gateway = start_gateway_with(path, &certs, &backend.url, "", tables).await;
    (certs, backend, gateway)
}
