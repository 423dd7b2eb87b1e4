//! Outbound transport providers: named ways for messages to leave the DMZ
//! (docs/transports.md). This increment has one type, `smtp`; the provider
//! lives in the key store with its secret sealed like a partner's key.

pub mod outbox;
pub mod smtp;

use crate::store::transports::{TransportRecord, TransportSecret};
use crate::store::KeyStore;
use crate::trust::seal::Sealer;
use mft_config::secret::Secret;
use std::path::Path;

/// The provider types this build knows.
pub const TYPES: &[&str] = &["smtp"];

/// What went wrong with a transport. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Bad settings: the caller's fault.
    #[error("{0}")]
    Invalid(String),
    /// No `[trust] encryption_key` to seal or open the secret.
    #[error("[trust] encryption_key is not set: transport secrets are stored encrypted with it (or give --password-ref env:NAME|file:PATH)")]
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

fn config_base(config: &mft_config::Config) -> &Path {
    config.source.parent().unwrap_or(Path::new("."))
}

/// Checks and stores a new provider of type `kind` with `settings`.
pub async fn add(
    store: &KeyStore,
    config: &mft_config::Config,
    name: &str,
    kind: &str,
    settings: serde_json::Value,
    secret: SecretInput<'_>,
) -> Result<TransportRecord, TransportError> {
    if !crate::store::partners::valid_name(name) {
        return Err(TransportError::Invalid(
            "a transport name is 1 to 64 letters, digits, '-', '_' or '.'".into(),
        ));
    }
    let settings = match kind {
        "smtp" => smtp::check_settings(settings, config_base(config))?,
        other => {
            return Err(TransportError::Invalid(format!(
                "type {other:?}: this build knows {}",
                TYPES.join(", ")
            )))
        }
    };
    let secret = match secret {
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
    if !store.add_transport(name, kind, &settings, &secret).await? {
        return Err(TransportError::Invalid(format!(
            "a transport named {name:?} exists already"
        )));
    }
    store
        .get_transport(name)
        .await?
        .ok_or_else(|| TransportError::Invalid(format!("transport {name:?} vanished")))
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
}

/// Sends `message` through `record` now; the provider's answer. Records
/// the outcome on the provider (last use, last error).
pub async fn send(
    store: &KeyStore,
    config: &mft_config::Config,
    record: &TransportRecord,
    message: &OutboundMessage<'_>,
) -> Result<String, TransportError> {
    let outcome = match record.kind.as_str() {
        "smtp" => match secret_of(record, config) {
            Ok(secret) => smtp::send(record, secret.as_ref(), message, config_base(config)).await,
            Err(e) => Err(e),
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
