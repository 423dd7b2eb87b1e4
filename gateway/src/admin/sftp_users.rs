//! `/admin/v1/sftp/users`: SFTP users added and removed while the gateway
//! runs (stored in the database), listed together with the
//! `[[sftp.users]]` of the running config. Never a password, hash or key:
//! public keys are shown by their SHA-256 fingerprints.

use crate::admin::overview::{label, series_values};
use crate::admin::{json_reply, problem, read_body, AdminApp, Reply};
use crate::bridge::sftp::accounts::{self, AddUser, AddUserError};
use crate::store::sftp_users::{permission_words, SftpUserRecord};
use crate::store::{rfc3339, StoreError};
use mft_config::sftp::SftpUser;
use pingora_core::protocols::http::ServerSession;
use prometheus::proto::MetricFamily;
use serde_json::{json, Value};

/// The routes, as the 405 answer names them (and the OpenAPI test reads them).
pub(crate) const USAGE: &str =
    "use GET/POST /admin/v1/sftp/users, DELETE /admin/v1/sftp/users/{name}";

/// Open sessions of `name` from the bridge's own gauge.
fn open_sessions(families: &[MetricFamily], name: &str) -> u64 {
    series_values(families, "mft_sftp_user_sessions_active")
        .into_iter()
        .find(|(labels, _)| label(labels, "user") == name)
        .map_or(0, |(_, v)| v as u64)
}

/// A `[[sftp.users]]` entry as the bridges screen and this API list it.
pub(crate) fn config_user_json(u: &SftpUser, families: &[MetricFamily]) -> Value {
    let mut login = Vec::new();
    if u.authorized_keys.is_some() {
        login.push("public key");
    }
    if u.password_hash.is_some() {
        login.push("password");
    }
    if u.api_key_login {
        login.push("api key");
    }
    json!({
        "name": u.name,
        "source": "config",
        "folder": u.folder,
        "login": login,
        "permissions": permission_words(u.permissions),
        "max_connections": u.max_connections,
        "deliver_to": u.deliver_to,
        "open_sessions": open_sessions(families, &u.name),
    })
}

/// A stored user as the bridges screen and this API list it.
pub(crate) fn stored_user_json(r: &SftpUserRecord, families: &[MetricFamily]) -> Value {
    let u = &r.user;
    let mut login = Vec::new();
    if !u.authorized_keys.is_empty() {
        login.push("public key");
    }
    if u.password_hash.is_some() {
        login.push("password");
    }
    json!({
        "name": u.name,
        "source": "store",
        "folder": u.folder,
        "login": login,
        "permissions": permission_words(u.permissions),
        "max_connections": u.max_connections,
        "deliver_to": u.deliver_to,
        "public_keys": accounts::fingerprints(&u.authorized_keys),
        "created_at": rfc3339(r.created_at),
        "last_login_at": r.last_login_at.map(rfc3339),
        "open_sessions": open_sessions(families, &u.name),
    })
}

impl AdminApp {
    /// Config users, then stored users (a stored user shadowed by a
    /// config user of the same name is left out: it cannot log in).
    pub(crate) async fn sftp_users_json(&self) -> Result<Vec<Value>, StoreError> {
        let store = self.store.clone();
        let stored = match self
            .control
            .run(async move { store.list_sftp_users().await })
            .await
        {
            Ok(r) => r?,
            Err(_) => Vec::new(),
        };
        let families = self.metrics.registry().gather();
        let config: &[SftpUser] = self.config.sftp.as_ref().map_or(&[], |s| &s.users);
        Ok(config
            .iter()
            .map(|u| config_user_json(u, &families))
            .chain(
                stored
                    .iter()
                    .filter(|r| !accounts::in_config(&self.config, &r.user.name))
                    .map(|r| stored_user_json(r, &families)),
            )
            .collect())
    }

    /// Serves `/admin/v1/sftp/users[/{name}]`.
    pub(crate) async fn sftp_api(&self, session: &mut ServerSession, rest: &str) -> Reply {
        let method = session.req_header().method.as_str().to_string();
        let Some(rest) = rest
            .strip_prefix("users")
            .filter(|r| r.is_empty() || r.starts_with('/'))
        else {
            return problem(404, "no such endpoint");
        };
        let mut name = rest.trim_start_matches('/').to_string();
        let reply = match (method.as_str(), name.as_str()) {
            ("GET", "") => match self.sftp_users_json().await {
                Ok(users) => json_reply(200, json!({ "users": users })),
                Err(_) => problem(503, "key store unavailable"),
            },
            ("POST", "") => self.add_sftp_user(session, &mut name).await,
            ("DELETE", n) if !n.contains('/') => self.remove_sftp_user(n).await,
            _ => problem(405, USAGE),
        };
        // Names only, capped: never a password, hash or key.
        let subject: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
        self.audit_admin_event(
            session,
            "sftp_user",
            &format!("{method} {subject}"),
            reply.0,
        );
        reply
    }

    /// `POST`; `name` becomes the requested name, for the audit record.
    async fn add_sftp_user(&self, session: &mut ServerSession, name: &mut String) -> Reply {
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(reply) => return reply,
        };
        let req: AddUser = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return problem(400, &format!("invalid JSON: {e}")),
        };
        name.clone_from(&req.name);
        let config = self.config.clone();
        // argon2 takes tens of milliseconds by design: not on the runtime.
        let prepared = tokio::task::spawn_blocking(move || accounts::prepare(req, &config)).await;
        let user = match prepared {
            Ok(Ok(user)) => user,
            Ok(Err(e @ AddUserError::Invalid(_))) => return problem(400, &e.to_string()),
            Ok(Err(e @ AddUserError::InConfig(_))) => return problem(409, &e.to_string()),
            Ok(Err(AddUserError::Hash(_))) | Err(_) => {
                return problem(503, "cannot hash the password now")
            }
        };
        let store = self.store.clone();
        let added = self
            .control
            .run(async move { store.add_sftp_user(&user).await })
            .await;
        match added {
            Ok(Ok(record)) => json_reply(201, stored_user_json(&record, &[])),
            Ok(Err(e @ StoreError::SftpUserExists(_))) => problem(409, &e.to_string()),
            Ok(Err(e @ StoreError::SftpUser { .. })) => problem(400, &e.to_string()),
            _ => problem(503, "key store unavailable"),
        }
    }

    async fn remove_sftp_user(&self, name: &str) -> Reply {
        if accounts::in_config(&self.config, name) {
            return problem(
                409,
                "this user is defined in the config file ([[sftp.users]]): remove it there",
            );
        }
        let store = self.store.clone();
        let owned = name.to_string();
        match self
            .control
            .run(async move { store.remove_sftp_user(&owned).await })
            .await
        {
            Ok(Ok(true)) => json_reply(200, json!({ "removed": name })),
            Ok(Ok(false)) => problem(404, "no such SFTP user"),
            _ => problem(503, "key store unavailable"),
        }
    }
}
