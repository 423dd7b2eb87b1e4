//! SMTP AUTH: decoding PLAIN/LOGIN responses and checking the credential.
//!
//! Two kinds of login are accepted: a configured bridge user (argon2id hash,
//! verified on a blocking thread because it costs tens of milliseconds), or
//! any user name with a service-account API key as the password, checked by
//! the gateway's [`Authenticator`](crate::auth::Authenticator) for the scope
//! `POST /api/v1/deliveries` needs. Failures feed the defender; audit records
//! name the user and outcome, never the password.

use crate::audit::AuditRecord;
use crate::auth::login::{LoginGate, PasswordLogin};
use crate::auth::password;
use crate::auth::AuthRequest;
use crate::bridge::BridgeContext;
use argon2::password_hash::PasswordHash;
use mft_config::smtp::SmtpUser;
use mft_filters::auth::senders::SenderBinding;
use mft_filters::decision::Decision;
use mft_protocols::smtp::sasl::Credentials;
use std::net::IpAddr;
use std::sync::Arc;

/// Who the session acts for once AUTH succeeded (or, without
/// `require_auth`, the anonymous sender).
#[derive(Debug, Clone)]
pub struct Principal {
    /// `key:<id>`, `smtp:<user>` or `smtp:anonymous`.
    pub principal: String,
    /// Space-separated scopes for the backend calls.
    pub scopes: String,
    /// The envelope senders this credential may use (a key's
    /// `--allowed-senders`, a user's `allowed_senders`); `None`: any.
    pub senders: Option<Arc<SenderBinding>>,
}

/// The result of a login attempt.
#[derive(Debug)]
pub enum Outcome {
    /// Accepted.
    Ok(Principal),
    /// Wrong credential, unknown key, missing scope or banned client.
    Invalid,
    /// The key store cannot be reached: try later.
    Unavailable,
}

/// Bridge users with their hashes and sender lists checked once at start.
pub struct Users {
    users: Vec<(SmtpUser, Option<Arc<SenderBinding>>)>,
}

impl Users {
    /// Fails when a hash is not a valid PHC string or a sender list does
    /// not parse.
    pub fn new(users: &[SmtpUser]) -> anyhow::Result<Users> {
        let mut checked = Vec::with_capacity(users.len());
        for (i, u) in users.iter().enumerate() {
            PasswordHash::new(&u.password_hash)
                .map_err(|e| anyhow::anyhow!("smtp.users[{i}].password_hash ({}): {e}", u.name))?;
            let senders = u
                .allowed_senders
                .as_ref()
                .map(|list| SenderBinding::parse(&list.join(",")).map(Arc::new))
                .transpose()
                .map_err(|e| {
                    anyhow::anyhow!("smtp.users[{i}].allowed_senders ({}): {e}", u.name)
                })?;
            checked.push((u.clone(), senders));
        }
        Ok(Users { users: checked })
    }

    fn find(&self, name: &str) -> Option<&(SmtpUser, Option<Arc<SenderBinding>>)> {
        self.users.iter().find(|(u, _)| u.name == name)
    }
}

/// Checks `creds` from `ip`; audits the outcome.
pub async fn check(
    ctx: &Arc<BridgeContext>,
    users: &Users,
    ip: IpAddr,
    mechanism: &'static str,
    creds: Credentials,
) -> Outcome {
    let outcome = match users.find(&creds.user) {
        Some((user, senders)) => {
            check_user(ctx, user.clone(), senders.clone(), ip, creds.password).await
        }
        None => {
            if !creds
                .password
                .starts_with(mft_filters::auth::api_key::PREFIX)
            {
                // No such user: as slow as a wrong password, so timing does
                // not tell which users exist.
                password::verify_blocking(None, &creds.password).await;
            }
            check_key(ctx, ip, &creds.password).await
        }
    };
    let mut r = AuditRecord::new("smtp_auth");
    r.client_ip = Some(ip);
    r.method = Some(format!("AUTH {mechanism}").into());
    match &outcome {
        Outcome::Ok(p) => {
            r.principal = Some(p.principal.clone());
            r.decision = Some("allow");
        }
        Outcome::Invalid => {
            r.decision = Some("deny");
            r.reason = Some("invalid_credentials".into());
        }
        Outcome::Unavailable => {
            r.decision = Some("deny");
            r.reason = Some("auth_unavailable".into());
        }
    }
    // The user name is client input: keep it short and printable in the audit.
    let user: String = creds
        .user
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect();
    r.path = Some(format!("user:{user}"));
    ctx.audit.record(r);
    outcome
}

async fn check_user(
    ctx: &Arc<BridgeContext>,
    user: SmtpUser,
    senders: Option<Arc<SenderBinding>>,
    ip: IpAddr,
    password: String,
) -> Outcome {
    let gate = LoginGate::new(ctx.auth.defender(), &ctx.audit, Some(ip), "SMTP");
    let phc = Some(user.password_hash.clone());
    match gate.password(&user.name, true, phc, &password).await {
        PasswordLogin::Accepted => Outcome::Ok(Principal {
            principal: format!("smtp:{}", user.name),
            scopes: user.scopes.join(" "),
            senders,
        }),
        PasswordLogin::Banned | PasswordLogin::Wrong => Outcome::Invalid,
    }
}

async fn check_key(ctx: &Arc<BridgeContext>, ip: IpAddr, password: &str) -> Outcome {
    let request_id = uuid::Uuid::now_v7().to_string();
    // The authorizer records failures with the defender and audits them.
    let decision = ctx
        .auth
        .authorize(&AuthRequest {
            request_id: &request_id,
            method: "POST",
            path: crate::backend_client::paths::DELIVERIES,
            client_ip: Some(ip),
            authorization: None,
            x_api_key: Some(password.as_bytes()),
        })
        .await;
    match decision {
        Decision::Continue(identity) => Outcome::Ok(Principal {
            principal: identity.principal.to_string(),
            scopes: identity.scopes_header.to_string(),
            senders: identity.senders.clone(),
        }),
        Decision::Reject(r) if r.status == 503 => Outcome::Unavailable,
        Decision::Reject(_) => Outcome::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_sender_list_is_checked_at_start() {
        let phc = "$argon2id$v=19$m=19456,t=2,p=1$c210cGJyaWRnZXNhbHQ$R9WIk+J6ikCMQQZ1B0DJbNXTnXkQu3+ntYpml3lt7Xc";
        let user = |senders: &[&str]| SmtpUser {
            name: "billing".into(),
            password_hash: phc.into(),
            scopes: vec!["deliveries:write".into()],
            allowed_senders: Some(senders.iter().map(|s| s.to_string()).collect()),
        };
        let users = Users::new(&[user(&["Billing@Partner.example"])]).unwrap();
        let (_, senders) = users.find("billing").unwrap();
        let senders = senders.as_ref().unwrap();
        assert!(senders.allows("billing@partner.example"));
        assert!(!senders.allows("ceo@partner.example"));
        let err = Users::new(&[user(&["not an address"])]).err().unwrap();
        assert!(
            err.to_string().contains("smtp.users[0].allowed_senders"),
            "{err}"
        );
    }

    #[test]
    fn argon2id_bridge_password() {
        // The hash the e2e tests configure (password "bridge-pass").
        let phc = "$argon2id$v=19$m=19456,t=2,p=1$c210cGJyaWRnZXNhbHQ$R9WIk+J6ikCMQQZ1B0DJbNXTnXkQu3+ntYpml3lt7Xc";
        assert!(password::verify(phc, "bridge-pass"));
        assert!(!password::verify(phc, "bridge-pasS"));
        assert!(!password::verify("not a hash", "bridge-pass"));
    }
}
