//! Outbound transport providers: named ways for messages to leave the DMZ
//! (docs/transports.md). Types `smtp`, `sms` (aspsms.com) and `threema`
//! (Threema Gateway, end-to-end); a provider lives in the key store with
//! its secrets sealed like a partner's key.

pub mod credits;
mod http;
pub mod notify;
pub mod outbox;
pub mod rate;
pub mod smime;
pub mod sms;
pub mod smtp;
pub mod threema;
pub mod watch;

use crate::store::transports::{TransportRecord, TransportSecret};
use crate::store::Store;
use crate::trust::seal::Sealer;
use mft_config::secret::Secret;
use std::path::Path;

/// The provider types this build knows.
pub const TYPES: &[&str] = &["smtp", "sms", "threema"];

/// What went wrong with a transport. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Bad settings: the caller's fault.
    #[error("{0}")]
    Invalid(String),
    /// A recipient the provider's type does not take (the caller's fault).
    #[error("to {to:?}: {reason}")]
    Recipient {
        /// The recipient as given.
        to: String,
        /// Why it is refused.
        reason: String,
    },
    /// No `[trust] encryption_key` to seal or open the secret.
    #[error("[trust] encryption_key is not set: transport secrets are stored encrypted with it (or give the secret as a reference, env:NAME|file:PATH)")]
    NoEncryptionKey,
    /// The sealed secret does not open.
    #[error("the stored secret cannot be decrypted (wrong trust.encryption_key?)")]
    Sealed,
    /// A secret reference does not resolve.
    #[error("secret reference: {0}")]
    Reference(String),
    /// The provider refused or could not be reached.
    #[error("{0}")]
    Send(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn seal_name(name: &str) -> String {
    format!("transport:{name}")
}

fn sealer(config: &mft_config::Config) -> Result<Sealer, TransportError> {
    let key = config
        .trust
        .encryption_key
        .as_ref()
        .ok_or(TransportError::NoEncryptionKey)?;
    Sealer::new(key).map_err(|_| TransportError::NoEncryptionKey)
}

/// How an operator hands over the provider's secret.
pub enum SecretInput<'a> {
    /// None.
    None,
    /// The secret itself: stored sealed.
    Value(&'a str),
    /// A reference, resolved now (to catch typos) and at every use.
    Reference(&'a str),
}

pub(crate) fn config_base(config: &mft_config::Config) -> &Path {
    config.source.parent().unwrap_or(Path::new("."))
}

/// Checks `settings` for a provider of type `kind`; returns them normalized.
pub fn check_settings(
    config: &mft_config::Config,
    kind: &str,
    settings: serde_json::Value,
) -> Result<serde_json::Value, TransportError> {
    match kind {
        "smtp" => smtp::check_settings(settings, config_base(config)),
        "sms" => sms::check_settings(settings),
        "threema" => threema::check_settings(settings),
        other => Err(TransportError::Invalid(format!(
            "type {other:?}: this build knows {}",
            TYPES.join(", ")
        ))),
    }
}

/// The credit-check settings shared by `sms` and `threema`: a threshold
/// needs a provider and a recipient for the warning, and the reverse.
pub(crate) fn check_credit_settings(
    threshold: Option<f64>,
    via: &Option<String>,
    to: &Option<String>,
) -> Result<(), TransportError> {
    if threshold.is_some_and(|t| !t.is_finite() || t < 0.0) {
        return Err(TransportError::Invalid(
            "credit_threshold: a number >= 0".into(),
        ));
    }
    match (threshold, via, to) {
        (None, None, None) | (Some(_), Some(_), Some(_)) => {}
        _ => {
            return Err(TransportError::Invalid(
                "credit_threshold, credit_warn_via and credit_warn_to go together".into(),
            ))
        }
    }
    if let Some(v) = via {
        if !crate::store::partners::valid_name(v) {
            return Err(TransportError::Invalid(format!(
                "credit_warn_via {v:?}: a transport name"
            )));
        }
    }
    Ok(())
}

/// `to` as a recipient of a provider of type `kind`, in the form the
/// provider takes it (sms: `+` and digits), or why it is not one.
pub fn normalize_address(kind: &str, to: &str) -> Result<String, String> {
    match kind {
        "sms" => sms::normalize_address(to),
        "threema" => threema::check_address(to).map(|()| to.to_string()),
        _ => smtp::check_address(to).map(|()| to.to_string()),
    }
}

/// What `add` stores.
pub struct NewTransport<'a> {
    /// Name.
    pub name: &'a str,
    /// Type.
    pub kind: &'a str,
    /// The type's settings.
    pub settings: serde_json::Value,
    /// The secret: SMTP password, aspsms password, Threema API secret.
    pub secret: SecretInput<'a>,
    /// threema: the private key (hex), stored sealed.
    pub private_key: Option<&'a str>,
}

/// Checks and stores a new provider.
pub async fn add(
    store: &Store,
    config: &mft_config::Config,
    new: NewTransport<'_>,
) -> Result<TransportRecord, TransportError> {
    let name = new.name;
    if !crate::store::partners::valid_name(name) {
        return Err(TransportError::Invalid(
            "a transport name is 1 to 64 letters, digits, '-', '_' or '.'".into(),
        ));
    }
    let settings = check_settings(config, new.kind, new.settings)?;
    if matches!(new.kind, "sms" | "threema") && matches!(new.secret, SecretInput::None) {
        return Err(TransportError::Invalid(format!(
            "type {}: a secret is required ({})",
            new.kind,
            if new.kind == "sms" {
                "the aspsms password"
            } else {
                "the API secret"
            }
        )));
    }
    let key_sealed = match (new.kind, new.private_key) {
        ("threema", Some(k)) => {
            let key = threema::parse_private_key(k)?;
            Some(
                sealer(config)?
                    .seal(&key_seal_name(name), hex::encode(key).as_bytes())
                    .map_err(|_| TransportError::NoEncryptionKey)?,
            )
        }
        ("threema", None) => {
            return Err(TransportError::Invalid(
                "type threema: the gateway ID's private key is required".into(),
            ))
        }
        (_, Some(_)) => {
            return Err(TransportError::Invalid(
                "a private key only for type threema".into(),
            ))
        }
        (_, None) => None,
    };
    let secret = match new.secret {
        SecretInput::None => TransportSecret::None,
        SecretInput::Value(v) => TransportSecret::Sealed(
            sealer(config)?
                .seal(&seal_name(name), v.as_bytes())
                .map_err(|_| TransportError::NoEncryptionKey)?,
        ),
        SecretInput::Reference(r) => {
            mft_config::secret::resolve(r, config_base(config))
                .map_err(TransportError::Reference)?;
            TransportSecret::Reference(r.to_string())
        }
    };
    store_new(
        store,
        name,
        new.kind,
        &settings,
        &secret,
        key_sealed.as_deref(),
    )
    .await
}

async fn store_new(
    store: &Store,
    name: &str,
    kind: &str,
    settings: &serde_json::Value,
    secret: &TransportSecret,
    key_sealed: Option<&[u8]>,
) -> Result<TransportRecord, TransportError> {
    if !store
        .add_transport(name, kind, settings, secret, key_sealed)
        .await?
    {
        return Err(TransportError::Invalid(format!(
            "a transport named {name:?} exists already"
        )));
    }
    store
        .get_transport(name)
        .await?
        .ok_or_else(|| TransportError::Invalid(format!("transport {name:?} vanished")))
}

/// Copies provider `from` to a new provider `to`, with `changes` (setting
/// name -> value) applied to its settings; the secrets are sealed again for
/// the new name.
pub async fn copy(
    store: &Store,
    config: &mft_config::Config,
    from: &str,
    to: &str,
    changes: serde_json::Map<String, serde_json::Value>,
) -> Result<TransportRecord, TransportError> {
    if !crate::store::partners::valid_name(to) {
        return Err(TransportError::Invalid(
            "a transport name is 1 to 64 letters, digits, '-', '_' or '.'".into(),
        ));
    }
    let Some(source) = store.get_transport(from).await? else {
        return Err(TransportError::Invalid(format!(
            "no transport named {from:?}"
        )));
    };
    let mut settings = match source.settings.clone() {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    for (k, v) in changes {
        if v.is_null() {
            settings.remove(&k);
        } else {
            settings.insert(k, v);
        }
    }
    let settings = check_settings(config, &source.kind, serde_json::Value::Object(settings))?;
    let secret = match &source.secret {
        TransportSecret::Sealed(_) => {
            let clear = secret_of(&source, config)?.ok_or(TransportError::Sealed)?;
            TransportSecret::Sealed(
                sealer(config)?
                    .seal(&seal_name(to), clear.expose().as_bytes())
                    .map_err(|_| TransportError::NoEncryptionKey)?,
            )
        }
        other => other.clone(),
    };
    let key_sealed = match &source.key_sealed {
        Some(_) => {
            let key = private_key_of(&source, config)?;
            Some(
                sealer(config)?
                    .seal(&key_seal_name(to), hex::encode(key).as_bytes())
                    .map_err(|_| TransportError::NoEncryptionKey)?,
            )
        }
        None => None,
    };
    store_new(
        store,
        to,
        &source.kind,
        &settings,
        &secret,
        key_sealed.as_deref(),
    )
    .await
}

fn key_seal_name(name: &str) -> String {
    format!("transport-key:{name}")
}

/// threema: the private key in clear, for one use.
pub fn private_key_of(
    record: &TransportRecord,
    config: &mft_config::Config,
) -> Result<[u8; 32], TransportError> {
    let sealed = record
        .key_sealed
        .as_ref()
        .ok_or_else(|| TransportError::Invalid("no private key stored".into()))?;
    let clear = sealer(config)?
        .open(&key_seal_name(&record.name), sealed)
        .map_err(|_| TransportError::Sealed)?;
    threema::parse_private_key(&clear).map_err(|_| TransportError::Sealed)
}

/// Whether the provider can send now, without asking it: `Err` says why
/// not (settings no longer valid, a secret that does not open or resolve,
/// a CA file gone).
pub fn ready(record: &TransportRecord, config: &mft_config::Config) -> Result<(), String> {
    check_settings(config, &record.kind, record.settings.clone()).map_err(|e| e.to_string())?;
    let secret = secret_of(record, config).map_err(|e| e.to_string())?;
    let username = record
        .settings
        .get("username")
        .is_some_and(|u| !u.is_null());
    match record.kind.as_str() {
        "smtp" if username && secret.is_none() => {
            return Err("username set but no password stored".into())
        }
        "sms" | "threema" if secret.is_none() => return Err("no secret stored".into()),
        _ => {}
    }
    if record.kind == "threema" {
        private_key_of(record, config).map_err(|e| e.to_string())?;
    }
    if record.kind == "smtp" {
        if let Some(state) = smtp::smime_of(&record.settings, config_base(config)) {
            state.map_err(|e| format!("S/MIME: {e}"))?;
        }
    }
    Ok(())
}

/// Every place that names provider `name`: other providers' credit
/// warnings and `[[notify]]` rules of the config.
pub fn used_by(name: &str, all: &[TransportRecord], config: &mft_config::Config) -> Vec<String> {
    let rules = config
        .notify
        .iter()
        .enumerate()
        .filter(|(_, r)| r.provider == name)
        .map(|(i, r)| format!("notify[{i}] ({})", r.event));
    all.iter()
        .filter(|t| t.settings.get("credit_warn_via").and_then(|v| v.as_str()) == Some(name))
        .map(|t| format!("transport {}: credit warnings", t.name))
        .chain(rules)
        .collect()
}

/// A provider as `list --json`, `show` and the admin API give it: the
/// stored record (never a secret), its state and where it is used.
pub fn describe(
    record: &TransportRecord,
    all: &[TransportRecord],
    config: &mft_config::Config,
) -> serde_json::Value {
    let mut v = record.to_json();
    let ready = ready(record, config);
    v["state"] = match &ready {
        Ok(()) => "ready".into(),
        Err(_) => "not ready".into(),
    };
    v["not_ready_reason"] = ready.err().into();
    v["used_by"] = used_by(&record.name, all, config).into();
    if record.kind == "threema" {
        v["private_key"] = "stored encrypted".into();
    }
    if record.kind == "smtp" {
        if let Some(state) = smtp::smime_of(&record.settings, config_base(config)) {
            v["smime"] = match state {
                Ok(ready) => ready,
                Err(why) => why,
            }
            .into();
        }
    }
    v
}

/// The provider's balance (`sms`, `threema`), asked for now.
pub async fn query_credits(
    record: &TransportRecord,
    config: &mft_config::Config,
) -> Result<String, TransportError> {
    let secret = secret_of(record, config)?;
    match record.kind.as_str() {
        "sms" => sms::credits(record, secret.as_ref()).await,
        "threema" => threema::credits(record, secret.as_ref()).await,
        other => Err(TransportError::Invalid(format!(
            "type {other} has no credits"
        ))),
    }
}

/// The provider's secret in clear, for one use.
pub fn secret_of(
    record: &TransportRecord,
    config: &mft_config::Config,
) -> Result<Option<Secret>, TransportError> {
    match &record.secret {
        TransportSecret::None => Ok(None),
        TransportSecret::Sealed(sealed) => sealer(config)?
            .open(&seal_name(&record.name), sealed)
            .map(|s| Some(Secret::new(s)))
            .map_err(|_| TransportError::Sealed),
        TransportSecret::Reference(r) => mft_config::secret::resolve(r, config_base(config))
            .map(|(s, _)| Some(Secret::new(s.expose().trim_end_matches(['\r', '\n']))))
            .map_err(TransportError::Reference),
    }
}

/// Which recipients of a queued message got it already, for a provider
/// that sends to each recipient on its own (threema): read before sending,
/// written right after each recipient's send, so a retry or a restart
/// skips them. A crash between the provider's answer and the write sends
/// that one recipient's message again (at least once, as for the queue).
pub struct Progress<'a> {
    store: &'a Store,
    message_id: &'a str,
}

impl<'a> Progress<'a> {
    /// The progress of queued message `message_id`.
    pub fn new(store: &'a Store, message_id: &'a str) -> Progress<'a> {
        Progress { store, message_id }
    }

    /// The recipients that got the message, with the provider's answers.
    pub async fn done(&self) -> Result<Vec<(String, String)>, TransportError> {
        Ok(self.store.message_recipients_sent(self.message_id).await?)
    }

    /// Records that `recipient` got it.
    pub async fn sent(&self, recipient: &str, answer: &str) -> Result<(), TransportError> {
        Ok(self
            .store
            .message_recipient_sent(self.message_id, recipient, answer)
            .await?)
    }
}

/// A message to send.
pub struct OutboundMessage<'a> {
    /// Recipients.
    pub to: &'a [String],
    /// Subject.
    pub subject: &'a str,
    /// Plain text.
    pub text: &'a str,
    /// Optional HTML alternative.
    pub html: Option<&'a str>,
    /// A queued message's per-recipient progress; `None` for a test send.
    pub progress: Option<Progress<'a>>,
}

/// Sends `message` through `record` now; the provider's answer. Records
/// the outcome on the provider (last use, last error).
pub async fn send(
    store: &Store,
    config: &mft_config::Config,
    record: &TransportRecord,
    message: &OutboundMessage<'_>,
) -> Result<String, TransportError> {
    let outcome = match record.kind.as_str() {
        "smtp" => match secret_of(record, config) {
            Ok(secret) => smtp::send(record, secret.as_ref(), message, config_base(config)).await,
            Err(e) => Err(e),
        },
        "sms" => match secret_of(record, config) {
            Ok(secret) => sms::send(record, secret.as_ref(), message).await,
            Err(e) => Err(e),
        },
        "threema" => match (secret_of(record, config), private_key_of(record, config)) {
            (Ok(secret), Ok(key)) => threema::send(record, secret.as_ref(), &key, message).await,
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
        other => Err(TransportError::Invalid(format!(
            "type {other:?} cannot send"
        ))),
    };
    let error = outcome.as_ref().err().map(|e| e.to_string());
    if let Err(e) = store.transport_used(&record.name, error.as_deref()).await {
        tracing::warn!(transport = %record.name, error = %e, "cannot record a transport's use");
    }
    outcome
}
