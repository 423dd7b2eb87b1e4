//! Errors of the key store. None of them ever carries a key's secret or a
//! database password: account names, scopes and key ids are not secret.

use std::path::PathBuf;

/// What went wrong in the key store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A service account name outside `[A-Za-z0-9._-]{1,64}`.
    #[error("invalid service account name {name:?}: {reason}")]
    InvalidAccount {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A key was requested without any scope.
    #[error("no scopes given: a key needs at least one scope, e.g. files:read")]
    NoScopes,
    /// A scope outside `[a-z*][a-z0-9:_*.-]*`.
    #[error("invalid scope {scope:?}: {reason}")]
    InvalidScope {
        /// The scope as given.
        scope: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An expiry that is zero or too far away to represent.
    #[error("invalid expiry: {0}")]
    InvalidExpiry(&'static str),
    /// An allowed-senders list that does not parse.
    #[error("invalid allowed senders: {0}")]
    InvalidSenders(#[from] mft_filters::auth::senders::SenderListError),
    /// The store URL names an engine we do not support.
    #[error(
        "unsupported key store URL scheme {scheme:?}: use postgres://... (or sqlite:PATH), \
         or leave it unset for SQLite in data_dir"
    )]
    UnsupportedUrl {
        /// The part of the URL before `:`.
        scheme: String,
    },
    /// The data directory for the SQLite file could not be created.
    #[error("cannot create key store directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened or reached.
    #[error("cannot open key store {target}")]
    Open {
        /// The store, described without any password.
        target: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema migrations could not be applied.
    #[error("cannot apply key store schema migrations to {target}")]
    Migrate {
        /// The store, described without any password.
        target: String,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A statement failed.
    #[error("key store {target}: cannot {action}")]
    Query {
        /// The store, described without any password.
        target: String,
        /// What we were doing, e.g. `revoke key 0123456789abcdef`.
        action: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored row that does not make sense (e.g. a hash that is not 32 bytes).
    #[error("key store {target}: key {id} has an invalid stored {field}")]
    Corrupt {
        /// The store, described without any password.
        target: String,
        /// The key id.
        id: String,
        /// The column.
        field: &'static str,
    },
    /// A trust-network connection could not be added or changed.
    #[error("partner {name:?}: {reason}")]
    Partner {
        /// The connection name as given.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A DMZ connector could not be added.
    #[error("connector {name:?}: {reason}")]
    Connector {
        /// The name as given.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A console administrator could not be added or changed.
    #[error("admin {name:?}: {reason}")]
    Admin {
        /// The name as given.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// An SFTP user could not be added.
    #[error("sftp user {name:?}: {reason}")]
    SftpUser {
        /// The name as given.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// An SFTP user of this name is stored already.
    #[error("sftp user {0:?} exists already")]
    SftpUserExists(String),
    /// A stored partner row that does not make sense.
    #[error("key store: partner row has an invalid {what}")]
    CorruptPartner {
        /// The column.
        what: String,
    },
    /// A stored SFTP delivery job that does not make sense.
    #[error("key store: sftp delivery row has an invalid {what}")]
    CorruptSftpDelivery {
        /// The column.
        what: String,
    },
    /// The operating system's random number generator failed.
    #[error("cannot read operating system randomness for a new key")]
    Random(#[source] getrandom::Error),
    /// Every freshly generated id already existed (practically impossible).
    #[error("could not generate an unused key id after {0} attempts")]
    IdCollision(u32),
}
