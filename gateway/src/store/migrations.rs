//! The schema, embedded in the binary and versioned per engine.
//!
//! The files under `gateway/migrations/{sqlite,postgres}/` follow sqlx's
//! `<VERSION>_<DESCRIPTION>.sql` naming, so `sqlx migrate` can read the same
//! folders. We embed them with `include_str!` and hand them to sqlx's
//! [`Migrator`] through a small [`MigrationSource`] instead of `migrate!`,
//! which would pull the whole sqlx macro crate (with both drivers) into the
//! build for nothing.
//!
//! Rule: never edit a released migration (its checksum is recorded in the
//! database); add `0002_...sql` to both folders instead.

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

/// `(version, description, sql)` of each SQLite migration, oldest first.
const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "keys",
        include_str!("../../migrations/sqlite/0001_keys.sql"),
    ),
    (
        2,
        "mailbox_state",
        include_str!("../../migrations/sqlite/0002_mailbox_state.sql"),
    ),
    (
        3,
        "partners",
        include_str!("../../migrations/sqlite/0003_partners.sql"),
    ),
    (
        4,
        "relay",
        include_str!("../../migrations/sqlite/0004_relay.sql"),
    ),
    (
        5,
        "partner_inbox",
        include_str!("../../migrations/sqlite/0005_partner_inbox.sql"),
    ),
    (
        6,
        "connectors",
        include_str!("../../migrations/sqlite/0006_connectors.sql"),
    ),
    (
        7,
        "webhooks",
        include_str!("../../migrations/sqlite/0007_webhooks.sql"),
    ),
    (
        8,
        "admins",
        include_str!("../../migrations/sqlite/0008_admins.sql"),
    ),
    (
        9,
        "key_senders",
        include_str!("../../migrations/sqlite/0009_key_senders.sql"),
    ),
    (
        10,
        "connector_pin",
        include_str!("../../migrations/sqlite/0010_connector_pin.sql"),
    ),
    (
        11,
        "transport_credits",
        include_str!("../../migrations/sqlite/0011_transport_credits.sql"),
    ),
    (
        12,
        "relay_receipts",
        include_str!("../../migrations/sqlite/0012_relay_receipts.sql"),
    ),
    (
        13,
        "sftp_users",
        include_str!("../../migrations/sqlite/0013_sftp_users.sql"),
    ),
    (
        14,
        "outbound_recipients",
        include_str!("../../migrations/sqlite/0014_outbound_recipients.sql"),
    ),
    (
        15,
        "sftp_deliveries",
        include_str!("../../migrations/sqlite/0015_sftp_deliveries.sql"),
    ),
];

/// `(version, description, sql)` of each PostgreSQL migration, oldest first.
const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "keys",
        include_str!("../../migrations/postgres/0001_keys.sql"),
    ),
    (
        2,
        "mailbox_state",
        include_str!("../../migrations/postgres/0002_mailbox_state.sql"),
    ),
    (
        3,
        "partners",
        include_str!("../../migrations/postgres/0003_partners.sql"),
    ),
    (
        4,
        "relay",
        include_str!("../../migrations/postgres/0004_relay.sql"),
    ),
    (
        5,
        "partner_inbox",
        include_str!("../../migrations/postgres/0005_partner_inbox.sql"),
    ),
    (
        6,
        "connectors",
        include_str!("../../migrations/postgres/0006_connectors.sql"),
    ),
    (
        7,
        "webhooks",
        include_str!("../../migrations/postgres/0007_webhooks.sql"),
    ),
    (
        8,
        "admins",
        include_str!("../../migrations/postgres/0008_admins.sql"),
    ),
    (
        9,
        "key_senders",
        include_str!("../../migrations/postgres/0009_key_senders.sql"),
    ),
    (
        10,
        "connector_pin",
        include_str!("../../migrations/postgres/0010_connector_pin.sql"),
    ),
    (
        11,
        "transport_credits",
        include_str!("../../migrations/postgres/0011_transport_credits.sql"),
    ),
    (
        12,
        "relay_receipts",
        include_str!("../../migrations/postgres/0012_relay_receipts.sql"),
    ),
    (
        13,
        "sftp_users",
        include_str!("../../migrations/postgres/0013_sftp_users.sql"),
    ),
    (
        14,
        "outbound_recipients",
        include_str!("../../migrations/postgres/0014_outbound_recipients.sql"),
    ),
    (
        15,
        "sftp_deliveries",
        include_str!("../../migrations/postgres/0015_sftp_deliveries.sql"),
    ),
];

#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The migrator for SQLite.
pub(crate) async fn sqlite() -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(SQLITE)).await
}

/// The migrator for PostgreSQL.
pub(crate) async fn postgres() -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(POSTGRES)).await
}

/// The newest schema version this binary knows (the same for both engines).
pub const SCHEMA_VERSION: i64 = 15;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_engines_have_the_same_versions() {
        let s: Vec<_> = SQLITE.iter().map(|m| (m.0, m.1)).collect();
        let p: Vec<_> = POSTGRES.iter().map(|m| (m.0, m.1)).collect();
        assert_eq!(s, p);
        assert_eq!(s.last().map(|m| m.0), Some(SCHEMA_VERSION));
    }
}
