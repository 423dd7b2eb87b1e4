//! The set-up shared by the tests of what the gateway sends out on its own
//! (webhooks, outbound transports): a backend and a gateway of
//! organisation `acme` whose stored secrets are sealed, whose queues retry
//! fast and whose admin API takes a token; the tests then point it at a
//! local receiver (a webhook receiver, aiosmtpd, a provider stand-in).

use crate::{make_certs, start_backend, start_gateway_with, Backend, Certs, Gateway};
use std::path::Path;

/// `[organization]`, `[trust]` (sealing key, fast relay retries) and
/// `[admin]` tables for a gateway in `path`; writes the key and token files.
pub fn tables(path: &Path, admin_token: &str) -> String {
    std::fs::write(path.join("trust.key"), "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::write(path.join("admin.token"), admin_token).unwrap();
    format!(
        "[organization]\nname = \"acme\"\nemail_domains = [\"acme.example\"]\n\n\
         [trust]\nencryption_key = \"file:{}\"\n\
         relay_poll_interval = \"200ms\"\nrelay_retry_base = \"200ms\"\nrelay_retry_max = \"1s\"\n\n\
         [admin]\ntoken = \"file:{}\"\n",
        path.join("trust.key").display(),
        path.join("admin.token").display()
    )
}

/// A backend and a gateway in `path` with [`tables`] and `extra` tables.
pub async fn start(path: &Path, admin_token: &str, extra: &str) -> (Certs, Backend, Gateway) {
    let certs = make_certs(path);
    let backend = start_backend(path).await;
    let tables = format!("{}\n{extra}", tables(path, admin_token));
    let gateway = start_gateway_with(path, &certs, &backend.url, "", &tables).await;
    (certs, backend, gateway)
}
