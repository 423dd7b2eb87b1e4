//! The one login gate every door shares (HTTPS credentials, SMTP AUTH,
//! SFTP, federation, the admin console): a banned source is refused before
//! any credential is looked at, a failure is fed to the defender (and a
//! resulting ban logged and audited), a success clears the source's strikes
//! for that user. Password logins verify the argon2id hash here too, at the
//! same cost for a user that does not exist.

use super::password;
use crate::audit::{AuditLog, AuditRecord};
use mft_filters::defender::Defender;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Feeds one failed authentication (HTTPS, SMTP, SFTP, federation,
/// console: `what`) to the defender; a resulting ban is logged and audited.
pub fn record_failure(
    defender: &Defender,
    audit: &AuditLog,
    ip: IpAddr,
    user: Option<&str>,
    now: SystemTime,
    what: &str,
) {
    if let Some(ban) = defender.record_failure_for(ip, user, now) {
        tracing::warn!(client = %ip, score = ban.score, via = what, "client banned after repeated authentication failures");
        let mut r = AuditRecord::new("ban");
        r.client_ip = Some(ip);
        r.reason = Some(
            format!(
                "{what}: score {} until {}",
                ban.score,
                humantime::format_rfc3339_seconds(ban.until)
            )
            .into(),
        );
        audit.record(r);
    }
}

/// The defender's view of one login attempt from one source.
pub struct LoginGate<'a> {
    defender: Option<&'a Defender>,
    audit: &'a AuditLog,
    ip: Option<IpAddr>,
    via: &'static str,
}

/// The outcome of a password login through the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordLogin {
    /// The source is banned: nothing was checked.
    Banned,
    /// The hash matched; the defender was told.
    Accepted,
    /// No such user or a wrong password; the defender was told.
    Wrong,
}

impl<'a> LoginGate<'a> {
    /// The gate for a login from `ip` through `via` (`SMTP`, `SFTP`, ...);
    /// without a defender (or an address) it lets everything through.
    pub fn new(
        defender: Option<&'a Arc<Defender>>,
        audit: &'a AuditLog,
        ip: Option<IpAddr>,
        via: &'static str,
    ) -> LoginGate<'a> {
        LoginGate {
            defender: defender.map(|d| &**d),
            audit,
            ip,
            via,
        }
    }

    /// How long the source stays banned, if it is.
    pub fn banned_for(&self, now: SystemTime) -> Option<Duration> {
        match (self.defender, self.ip) {
            (Some(d), Some(ip)) => d.check(ip, now),
            _ => None,
        }
    }

    /// Whether the source is banned now.
    pub fn is_banned(&self) -> bool {
        self.banned_for(SystemTime::now()).is_some()
    }

    /// One failure: against the source and, when given, the user.
    pub fn failed(&self, user: Option<&str>, now: SystemTime) {
        if let (Some(d), Some(ip)) = (self.defender, self.ip) {
            record_failure(d, self.audit, ip, user, now, self.via);
        }
    }

    /// A success of `user` from the source.
    pub fn succeeded(&self, user: &str) {
        if let (Some(d), Some(ip)) = (self.defender, self.ip) {
            d.record_success_for(ip, user);
        }
    }

    /// A password login of `user` against its argon2id hash `phc` (`None`:
    /// no such user, which costs a verification all the same): refused
    /// unverified while the source is banned, the outcome told to the
    /// defender (a failure against `user` only when `known_user`).
    pub async fn password(
        &self,
        user: &str,
        known_user: bool,
        phc: Option<String>,
        given: &str,
    ) -> PasswordLogin {
        if self.is_banned() {
            return PasswordLogin::Banned;
        }
        if password::verify_blocking(phc, given).await {
            self.succeeded(user);
            return PasswordLogin::Accepted;
        }
        self.failed(known_user.then_some(user), SystemTime::now());
        PasswordLogin::Wrong
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mft_config::model::{Audit, AuditFailure};
    use mft_filters::defender::DefenderPolicy;

    fn audit_log(dir: &tempfile::TempDir) -> AuditLog {
        AuditLog::open(&Audit {
            file: dir.path().join("audit.jsonl"),
            max_bytes: 1 << 20,
            keep: 2,
            on_failure: AuditFailure::Deny,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn failures_ban_the_source_and_the_gate_then_refuses_unverified() {
        let policy = DefenderPolicy {
            threshold: 2,
            ..DefenderPolicy::default()
        };
        let defender = Arc::new(Defender::new(policy));
        let dir = tempfile::tempdir().unwrap();
        let audit = audit_log(&dir);
        let ip: IpAddr = "2001:db8::7".parse().unwrap();
        let gate = LoginGate::new(Some(&defender), &audit, Some(ip), "test");
        let phc = password::hash("right").unwrap();
        assert_eq!(
            gate.password("u", true, Some(phc.clone()), "right").await,
            PasswordLogin::Accepted
        );
        assert_eq!(
            gate.password("u", true, Some(phc.clone()), "wrong").await,
            PasswordLogin::Wrong
        );
        assert_eq!(
            gate.password("v", false, None, "x").await,
            PasswordLogin::Wrong
        );
        // Another address of the same /64 is the same source.
        let neighbour: IpAddr = "2001:db8::8".parse().unwrap();
        let gate2 = LoginGate::new(Some(&defender), &audit, Some(neighbour), "test");
        assert!(gate2.is_banned());
        assert_eq!(
            gate2.password("u", true, Some(phc), "right").await,
            PasswordLogin::Banned
        );
    }

    #[tokio::test]
    async fn without_a_defender_only_the_password_counts() {
        let dir = tempfile::tempdir().unwrap();
        let audit = audit_log(&dir);
        let gate = LoginGate::new(None, &audit, None, "test");
        assert!(!gate.is_banned());
        let phc = password::hash("pw").unwrap();
        assert_eq!(
            gate.password("u", true, Some(phc), "pw").await,
            PasswordLogin::Accepted
        );
        assert_eq!(
            gate.password("u", true, None, "pw").await,
            PasswordLogin::Wrong
        );
    }
}
