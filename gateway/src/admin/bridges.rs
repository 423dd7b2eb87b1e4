//! `GET /admin/v1/bridges`: the mail and SFTP bridges as the console's
//! bridges screen shows them. Nothing is kept here: the numbers come from
//! the gateway's own registry (the series the bridges count anyway), the
//! mailboxes' last error texts from their pollers' metrics, and the lists
//! of mailboxes from the running config (bridges change only with a
//! restart), the SFTP users from the running config and the store (users
//! added at run time, sftp_users.rs). Never a password, hash or key.

use crate::admin::overview::{label, series_values};
use crate::admin::{json_reply, problem, AdminApp, Reply};
use crate::upgrade::names;
use pingora_core::protocols::http::ServerSession;
use prometheus::proto::MetricFamily;
use serde_json::{json, Map, Value};

pub(crate) const USAGE: &str = "use GET /admin/v1/bridges";

/// `{label value: count}` of one labelled series.
fn by_label(families: &[MetricFamily], name: &str, key: &str) -> Map<String, Value> {
    series_values(families, name)
        .into_iter()
        .map(|(labels, v)| (label(&labels, key).to_string(), json!(v as u64)))
        .collect()
}

/// The value of the series of `name` whose label `key` is `value`.
fn one(families: &[MetricFamily], name: &str, key: &str, value: &str) -> Option<f64> {
    series_values(families, name)
        .into_iter()
        .find(|(labels, _)| label(labels, key) == value)
        .map(|(_, v)| v)
}

/// Unix seconds as RFC 3339; 0 (never set) as null.
fn at(seconds: Option<f64>) -> Value {
    match seconds {
        Some(s) if s > 0.0 => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s as u64);
            json!(humantime::format_rfc3339_seconds(t).to_string())
        }
        _ => Value::Null,
    }
}

/// Where listener `name` accepts now: the address bound (port 0 in the
/// config is the kernel's choice, data_dir/listeners.json), else the
/// configured one.
fn bound(name: &str, configured: std::net::SocketAddr) -> String {
    crate::upgrade::serving_addresses()
        .get(name)
        .copied()
        .unwrap_or(configured)
        .to_string()
}

fn smtp(cfg: &mft_config::Config, families: &[MetricFamily]) -> Value {
    let Some(smtp) = &cfg.smtp else {
        return json!({"enabled": false});
    };
    let depth = series_values(families, "mft_smtp_spool_depth")
        .first()
        .map_or(0, |(_, v)| *v as u64);
    json!({
        "enabled": true,
        "listen": bound(names::SMTP, smtp.listen),
        "tls_listen": smtp.tls_listen.map(|a| bound(names::SMTPS, a)),
        "spool_depth": depth,
        "sessions": by_label(families, "mft_smtp_sessions_total", "outcome"),
        "messages": by_label(families, "mft_smtp_messages_total", "outcome"),
        "refusals": by_label(families, "mft_smtp_rejections_total", "reason"),
    })
}

fn mailboxes(cfg: &mft_config::Config, families: &[MetricFamily]) -> Vec<Value> {
    let errors = crate::bridge::mailbox::metrics::last_errors();
    let conns = cfg
        .imap
        .iter()
        .map(|m| ("imap", &m.conn))
        .chain(cfg.pop3.iter().map(|m| ("pop3", &m.conn)));
    conns
        .map(|(protocol, conn)| {
            let id = format!("{protocol}:{}", conn.name);
            let get = |series: &str| one(families, series, "mailbox", &id);
            let outcome = |o: &str| {
                series_values(families, "mft_mailbox_messages_total")
                    .into_iter()
                    .find(|(l, _)| label(l, "mailbox") == id && label(l, "outcome") == o)
                    .map_or(0, |(_, v)| v as u64)
            };
            let failed_at = get("mft_mailbox_last_error_timestamp_seconds");
            let success_at = get("mft_mailbox_last_success_timestamp_seconds");
            // An error older than the last success is history, not a state.
            let failing = failed_at.unwrap_or(0.0) > success_at.unwrap_or(0.0);
            json!({
                "name": conn.name,
                "protocol": protocol,
                "server": format!("{}:{}", conn.host, conn.port),
                "connected": get("mft_mailbox_connected").unwrap_or(0.0) > 0.0,
                "state": if failing { "failing" } else if success_at.unwrap_or(0.0) > 0.0 { "ok" } else { "waiting" },
                "polls": get("mft_mailbox_polls_total").unwrap_or(0.0) as u64,
                "delivered": outcome("delivered"),
                "failed": outcome("failed"),
                "last_poll": at(get("mft_mailbox_last_poll_timestamp_seconds")),
                "last_success": at(success_at),
                "last_error_at": at(failed_at),
                "last_error": errors.get(&id),
            })
        })
        .collect()
}

/// The SFTP bridge; `users`: config users, then stored users.
fn sftp(cfg: &mft_config::Config, families: &[MetricFamily], users: Vec<Value>) -> Value {
    let Some(sftp) = &cfg.sftp else {
        return json!({"enabled": false, "users": []});
    };
    let active = series_values(families, "mft_sftp_sessions_active")
        .first()
        .map_or(0, |(_, v)| *v as u64);
    json!({
        "enabled": true,
        "listen": bound(names::SFTP, sftp.listen),
        "open_sessions": active,
        "auth_failures": series_values(families, "mft_sftp_auth_failures_total")
            .first()
            .map_or(0, |(_, v)| *v as u64),
        "users": users,
    })
}

impl AdminApp {
    /// Serves `GET /admin/v1/bridges`.
    pub(crate) async fn bridges_api(&self, session: &ServerSession, rest: &str) -> Reply {
        if !rest.is_empty() {
            return problem(404, "no such endpoint");
        }
        if session.req_header().method != http::Method::GET {
            return problem(405, USAGE);
        }
        let users = if self.config.sftp.is_some() {
            match self.sftp_users_json().await {
                Ok(users) => users,
                Err(_) => return problem(503, "key store unavailable"),
            }
        } else {
            Vec::new()
        };
        let families = self.metrics.registry().gather();
        let cfg = &self.config;
        json_reply(
            200,
            json!({
                "smtp": smtp(cfg, &families),
                "mailboxes": mailboxes(cfg, &families),
                "sftp": sftp(cfg, &families, users),
            }),
        )
    }
}
