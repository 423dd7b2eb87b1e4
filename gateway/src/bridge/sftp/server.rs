//! The SSH side: algorithms, logins (keys, passwords, API keys) with the
//! defender and the audit trail, per-user connection limits, and the
//! `sftp` subsystem, whose channel gets EOF and CLOSE when the session ends
//! (clients otherwise wait ~30 s for them).

use super::auth::{PasswordCheck, Rights, User};
use super::directory::UserDirectory;
use super::fs::{Fs, MadeFolders};
use super::metrics::{ActiveGuard, SftpMetrics};
use super::session::{self, SessionCtx};
use super::upload::UploadLimits;
use crate::audit::AuditRecord;
use crate::backend_client::CallContext;
use crate::bridge::BridgeContext;
use russh::keys::{Algorithm, HashAlg, PrivateKey};
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{cipher, kex, mac, Channel, ChannelId, MethodKind, MethodSet, Preferred, SshId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// State shared by all connections.
pub struct Shared {
    /// Gateway services.
    pub ctx: Arc<BridgeContext>,
    /// Config users, then stored users.
    pub users: Arc<UserDirectory>,
    /// mkdir'd folders per user, shared by the user's sessions.
    pub made: Mutex<HashMap<String, Arc<MadeFolders>>>,
    /// Open sessions per user.
    pub open: Mutex<HashMap<String, u32>>,
    /// Series.
    pub metrics: Arc<SftpMetrics>,
    /// Connections per client (`max_connections_per_ip`).
    pub per_client: Arc<crate::conn_guard::ConnLimiter>,
    /// Connections of the listener.
    pub max_connections: usize,
    /// Connect to login, at most.
    pub login_timeout: Duration,
    /// Upload limits.
    pub limits: UploadLimits,
    /// Sender of on_upload deliveries is `<user>@<this>`.
    pub sender_domain: String,
    /// on_upload deliveries: durable jobs, first attempt, retries.
    pub deliveries: Arc<super::delivery::SftpDeliveries>,
}

/// Only modern algorithms: curve25519 (and its ML-KEM hybrid) key
/// exchange, AEAD ciphers, ed25519 and RSA with SHA-2 host keys, SHA-2
/// ETM MACs (unused with AEAD). No SHA-1, no CBC, no CTR.
pub fn ssh_config(keys: Vec<PrivateKey>, idle: Duration) -> russh::server::Config {
    const KEX: &[kex::Name] = &[
        kex::MLKEM768X25519_SHA256,
        kex::CURVE25519,
        kex::CURVE25519_PRE_RFC_8731,
        kex::EXTENSION_SUPPORT_AS_SERVER,
        kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
    ];
    const CIPHERS: &[cipher::Name] = &[
        cipher::CHACHA20_POLY1305,
        cipher::AES_256_GCM,
        cipher::AES_128_GCM,
    ];
    const MACS: &[mac::Name] = &[mac::HMAC_SHA512_ETM, mac::HMAC_SHA256_ETM];
    const KEYS: &[Algorithm] = &[
        Algorithm::Ed25519,
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha256),
        },
    ];
    russh::server::Config {
        server_id: SshId::Standard(Cow::Borrowed("SSH-2.0-mft-gateway")),
        methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..]),
        auth_rejection_time: Duration::from_millis(300),
        // The first "none" probe of every client is not a failed guess.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys,
        preferred: Preferred {
            kex: Cow::Borrowed(KEX),
            key: Cow::Borrowed(KEYS),
            cipher: Cow::Borrowed(CIPHERS),
            mac: Cow::Borrowed(MACS),
            ..Preferred::default()
        },
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        max_auth_attempts: 6,
        inactivity_timeout: Some(idle),
        keepalive_interval: Some(Duration::from_secs(60)),
        nodelay: true,
        ..russh::server::Config::default()
    }
}

/// Longest client-supplied user name written to the audit trail.
const MAX_AUDITED_NAME: usize = 64;

/// `name` cut to [`MAX_AUDITED_NAME`] characters, control characters dropped.
fn cap(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(MAX_AUDITED_NAME)
        .collect()
}

/// Releases a user's connection slot.
struct Slot {
    shared: Arc<Shared>,
    user: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.shared.open.lock() {
            if let Some(n) = open.get_mut(&self.user) {
                *n = n.saturating_sub(1);
                self.shared.metrics.user_sessions(&self.user, *n);
            }
        }
    }
}

/// One SSH connection.
pub struct Conn {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    user: Option<Arc<User>>,
    /// What the session may do and, for an API-key login, `key:<id>`.
    rights: Option<(Rights, Option<String>)>,
    guards: Option<(Slot, ActiveGuard)>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Set at login; the accept loop closes the connection at
    /// `login_timeout` while it is unset.
    logged_in: Arc<AtomicBool>,
    /// SFTP sessions running on this connection (their tasks decrement it).
    running: Arc<AtomicUsize>,
    /// Dropped with the connection: ends the revocation watcher of an
    /// API-key login.
    watch_stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Dropped with the connection: ends the removal watcher of a stored
    /// user's login.
    removal_stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Channels (pending or running SFTP sessions) per connection: each session
/// may hold 64 handles, so a connection gets a few, not unbounded many.
const MAX_SESSIONS_PER_CONNECTION: usize = 4;

/// Gives a running session's place back when its task ends.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Conn {
    /// A connection from `peer`.
    pub fn new(shared: Arc<Shared>, peer: Option<SocketAddr>, logged_in: Arc<AtomicBool>) -> Conn {
        Conn {
            logged_in,
            running: Arc::new(AtomicUsize::new(0)),
            watch_stop: None,
            removal_stop: None,
            shared,
            peer,
            user: None,
            rights: None,
            guards: None,
            channels: HashMap::new(),
        }
    }

    fn audit(&self, event: &'static str, user: &str, method: &str, reason: Option<&str>) {
        self.audit_as(event, user, None, method, reason);
    }

    /// An audit record naming the user and, for an API-key login, the key.
    fn audit_as(
        &self,
        event: &'static str,
        user: &str,
        credential: Option<&str>,
        method: &str,
        reason: Option<&str>,
    ) {
        let mut r = AuditRecord::new(event);
        // Client-supplied names are capped before they reach the trail.
        r.principal = Some(format!("sftp:{}", cap(user)));
        r.credential = credential.map(str::to_string);
        r.client_ip = self.peer.map(|p| p.ip());
        r.method = Some(method.to_string().into());
        r.decision = Some(if reason.is_none() { "allow" } else { "deny" });
        r.reason = reason.map(|s| s.to_string().into());
        self.shared.ctx.audit.record(r);
    }

    fn gate(&self) -> crate::auth::LoginGate<'_> {
        crate::auth::LoginGate::new(
            self.shared.ctx.auth.defender(),
            &self.shared.ctx.audit,
            self.peer.map(|p| p.ip()),
            "SFTP",
        )
    }

    fn banned(&self) -> bool {
        self.gate().is_banned()
    }

    /// A refused login: counted, audited (never the secret), fed to the
    /// defender; `known` if the user exists.
    fn refuse(&self, user: &str, known: bool, method: &str, reason: &str) -> Auth {
        self.shared.metrics.auth_failure();
        self.audit("sftp_login", user, method, Some(reason));
        self.strike(user, known);
        Auth::reject()
    }

    /// One failure for the defender: against the source and, for a user
    /// that exists, against the user (names that exist nowhere would only
    /// fill the defender's user table).
    fn strike(&self, user: &str, known: bool) {
        self.gate().failed(known.then_some(user), SystemTime::now());
    }

    /// A valid API key used for a user it does not belong to: refused like
    /// a wrong password (a key holder probing other users is guessing).
    fn refuse_key(&self, user: &str, credential: &str, reason: &str) -> Auth {
        self.shared.metrics.auth_failure();
        self.audit_as(
            "sftp_login",
            user,
            Some(credential),
            "api_key",
            Some(reason),
        );
        self.strike(user, true);
        Auth::reject()
    }

    /// A verified login, if the user still has a connection slot; `rights`
    /// narrow the user's own for an API-key login (`credential`).
    fn admit(
        &mut self,
        user: Arc<User>,
        method: &str,
        rights: Rights,
        credential: Option<String>,
    ) -> Auth {
        let name = user.config.name.clone();
        {
            let Ok(mut open) = self.shared.open.lock() else {
                return Auth::reject();
            };
            let n = open.entry(name.clone()).or_insert(0);
            if *n >= user.config.max_connections {
                drop(open);
                self.shared.metrics.auth_failure();
                self.audit_as(
                    "sftp_login",
                    &name,
                    credential.as_deref(),
                    method,
                    Some("max_connections"),
                );
                return Auth::reject();
            }
            *n += 1;
            self.shared.metrics.user_sessions(&name, *n);
        }
        self.gate().succeeded(&name);
        self.shared.users.logged_in(&name);
        self.audit_as("sftp_login", &name, credential.as_deref(), method, None);
        self.rights = Some((rights, credential));
        self.logged_in.store(true, Ordering::Release);
        let slot = Slot {
            shared: self.shared.clone(),
            user: name,
        };
        self.guards = Some((slot, self.shared.metrics.session()));
        self.user = Some(user);
        Auth::Accept
    }

    /// For an API-key login: closes the connection, with everything open on
    /// it, once the key is revoked, removed or expired (the key store's
    /// change feed reaches the cache within about a second).
    fn watch_key(&mut self, session: &Session) {
        let Some((_, Some(credential))) = &self.rights else {
            return;
        };
        if self.watch_stop.is_some() {
            return;
        }
        let key_id = credential
            .strip_prefix("key:")
            .unwrap_or(credential)
            .to_string();
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        self.watch_stop = Some(stop);
        let auth = self.shared.ctx.auth.clone();
        let mut changes = auth.key_changes();
        let handle = session.handle();
        let audit = self.shared.ctx.audit.clone();
        let user = self.user.as_ref().map(|u| u.config.name.clone());
        let peer = self.peer;
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            // A revocation between the login and the subscription.
            let mut recheck = true;
            loop {
                if recheck && !auth.key_still_valid(&key_id).await {
                    break;
                }
                tokio::select! {
                    _ = &mut stopped => return,
                    change = changes.recv() => match change {
                        Ok(id) => recheck = *id == *key_id,
                        Err(RecvError::Lagged(_)) => recheck = true,
                        Err(RecvError::Closed) => return,
                    },
                }
            }
            let mut r = AuditRecord::new("sftp_session");
            r.principal = user.map(|u| format!("sftp:{u}"));
            r.credential = Some(format!("key:{key_id}"));
            r.client_ip = peer.map(|p| p.ip());
            r.decision = Some("deny");
            r.reason = Some("key_revoked".into());
            audit.record(r);
            tracing::info!(key = %key_id, "sftp connection closed: its API key was revoked");
            let _ = handle
                .disconnect(
                    russh::Disconnect::ByApplication,
                    "the API key of this session is no longer valid".into(),
                    "en".into(),
                )
                .await;
        });
    }

    /// For a stored user's login: closes the connection, with everything
    /// open on it, once the user is removed (the admin API at once, the CLI
    /// or another instance within about a second).
    fn watch_removal(&mut self, session: &Session) {
        let Some(user) = &self.user else {
            return;
        };
        let name = user.config.name.clone();
        if self.removal_stop.is_some() || !self.shared.users.is_stored(&name) {
            return;
        }
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        self.removal_stop = Some(stop);
        let mut removals = self.shared.users.removals();
        let users = self.shared.users.clone();
        let handle = session.handle();
        let audit = self.shared.ctx.audit.clone();
        let peer = self.peer;
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            // A removal between the login and the subscription.
            let mut recheck = true;
            loop {
                if recheck && !users.is_stored(&name) {
                    break;
                }
                tokio::select! {
                    _ = &mut stopped => return,
                    removed = removals.recv() => match removed {
                        Ok(gone) => {
                            if *gone == *name {
                                break;
                            }
                            recheck = false;
                        }
                        Err(RecvError::Lagged(_)) => recheck = true,
                        Err(RecvError::Closed) => return,
                    },
                }
            }
            let mut r = AuditRecord::new("sftp_session");
            r.principal = Some(format!("sftp:{name}"));
            r.client_ip = peer.map(|p| p.ip());
            r.decision = Some("deny");
            r.reason = Some("user_removed".into());
            audit.record(r);
            tracing::info!(user = %name, "sftp connection closed: its user was removed");
            let _ = handle
                .disconnect(
                    russh::Disconnect::ByApplication,
                    "this SFTP user was removed".into(),
                    "en".into(),
                )
                .await;
        });
    }

    fn session_ctx(&self, user: Arc<User>) -> SessionCtx {
        let name = &user.config.name;
        let principal = format!("sftp:{name}");
        let shared = &self.shared;
        let (rights, credential) = self
            .rights
            .clone()
            .unwrap_or_else(|| (user.own_rights(), None));
        let fs = Fs {
            backend: shared.ctx.backend.clone(),
            ctx: CallContext::new(principal.clone(), &rights.scopes, Some(&principal)),
            root: user.root.clone(),
            made: shared
                .made
                .lock()
                .map(|mut made| made.entry(name.clone()).or_default().clone())
                .unwrap_or_default(),
        };
        SessionCtx {
            fs,
            permissions: rights.permissions,
            credential,
            sender: format!("{name}@{}", shared.sender_domain),
            senders: rights.senders.clone(),
            user,
            limits: shared.limits.clone(),
            metrics: shared.metrics.clone(),
            audit: shared.ctx.audit.clone(),
            client_ip: self.peer.map(|p| p.ip()),
            drain: shared.ctx.drain.clone(),
            deliveries: shared.deliveries.clone(),
        }
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Probes are not guesses: unknown keys are refused without a
        // defender strike (clients offer every key they hold).
        let known = self
            .shared
            .users
            .get(user)
            .await
            .is_some_and(|u| u.accepts_key(offer.public_key.key_data()));
        if known && !self.banned() {
            return Ok(Auth::Accept);
        }
        // Counted and audited, but no defender strike: keys cannot be
        // guessed, and clients offer every key they hold.
        self.shared.metrics.auth_failure();
        self.audit("sftp_login", user, "publickey", Some("unknown_key"));
        Ok(Auth::reject())
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let found = self.shared.users.get(user).await;
        if self.banned() {
            return Ok(self.refuse(user, found.is_some(), "publickey", "banned"));
        }
        match found {
            Some(u) if u.accepts_key(key.public_key.key_data()) => {
                let rights = u.own_rights();
                Ok(self.admit(u, "publickey", rights, None))
            }
            found => Ok(self.refuse(user, found.is_some(), "publickey", "unknown_key")),
        }
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let found = self.shared.users.get(user).await;
        if self.banned() {
            return Ok(self.refuse(user, found.is_some(), "password", "banned"));
        }
        let Some(u) = found else {
            // As slow as a wrong password: no user enumeration by timing.
            crate::auth::password::verify_blocking(None, password).await;
            return Ok(self.refuse(user, false, "password", "unknown_user"));
        };
        let ip = self.peer.map(|p| p.ip());
        match u.check_password(password, &self.shared.ctx.auth, ip).await {
            PasswordCheck::Accepted => {
                let rights = u.own_rights();
                Ok(self.admit(u, "password", rights, None))
            }
            PasswordCheck::Key(login) => {
                Ok(self.admit(u, "api_key", login.rights, Some(login.credential)))
            }
            PasswordCheck::KeyNotBound(credential) => {
                Ok(self.refuse_key(user, &credential, "key_not_bound_to_user"))
            }
            PasswordCheck::KeyWithoutRights(credential) => {
                Ok(self.refuse_key(user, &credential, "key_scopes_allow_nothing"))
            }
            PasswordCheck::Wrong => Ok(self.refuse(user, true, "password", "bad_password")),
            PasswordCheck::KeyRefused => {
                // The authenticator audited it and struck the address already.
                self.shared.metrics.auth_failure();
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.watch_key(session);
        self.watch_removal(session);
        let open = self.channels.len() + self.running.load(Ordering::Acquire);
        if self.user.is_none() || open >= MAX_SESSIONS_PER_CONNECTION {
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(user), true) = (self.user.clone(), name == "sftp") else {
            session.channel_failure(id)?;
            return Ok(());
        };
        let Some(channel) = self.channels.remove(&id) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        session.channel_success(id)?;
        let ctx = self.session_ctx(user);
        self.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(self.running.clone());
        tokio::spawn(async move {
            let _running = running;
            let (mut read_half, write_half) = channel.split();
            let reader = tokio::io::BufReader::with_capacity(256 * 1024, read_half.make_reader());
            let writer = write_half.make_writer();
            session::run(reader, writer, ctx).await;
            // Tell the client the subsystem is over, or it waits for it.
            let _ = write_half.exit_status(0).await;
            let _ = write_half.eof().await;
            let _ = write_half.close().await;
        });
        Ok(())
    }
}
