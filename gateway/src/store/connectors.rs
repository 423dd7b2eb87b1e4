//! DMZ connectors in the key store (table `connectors`): a name, the public
//! id and SHA-256 of the connector key's secret, and the live state the
//! gateway holding the connections writes every few seconds.

use super::{from_ms, Engine, Pool, Store, StoreError};
use mft_filters::auth::{api_key::RANDOM_LEN, connector_key};
use std::time::{Duration, SystemTime};

/// One connector as stored (never its secret).
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectorRecord {
    /// Name, as in `connectors add NAME`.
    pub name: String,
    /// Public id of its key.
    pub key_id: String,
    /// SHA-256 of its key's secret.
    pub key_hash: [u8; 32],
    /// Created.
    pub created_at: SystemTime,
    /// Last time a gateway reported it connected.
    pub last_seen_at: Option<SystemTime>,
    /// Its address as the gateway saw it.
    pub address: Option<String>,
    /// Connections open at the last report.
    pub connections: u64,
    /// Bytes the gateway sent through it (requests).
    pub bytes_out: u64,
    /// Bytes it sent back (responses).
    pub bytes_in: u64,
    /// SHA-256 (lower-case hex) of the client certificate it must present.
    pub client_cert_sha256: Option<String>,
}

impl std::fmt::Debug for ConnectorRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorRecord")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A report older than this means the gateway that wrote it is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(15);

impl ConnectorRecord {
    /// `connected` while a gateway recently reported open connections.
    pub fn state(&self, now: SystemTime) -> &'static str {
        let fresh = self
            .last_seen_at
            .is_some_and(|t| now.duration_since(t).unwrap_or_default() < STALE_AFTER);
        if fresh && self.connections > 0 {
            "connected"
        } else {
            "disconnected"
        }
    }

    /// The record as the CLI and admin API show it: never the hash.
    pub fn to_json(&self, now: SystemTime) -> serde_json::Value {
        let connected = self.state(now) == "connected";
        serde_json::json!({
            "name": self.name,
            "key_id": self.key_id,
            "state": self.state(now),
            "address": if connected { self.address.clone() } else { None },
            "connections": if connected { self.connections } else { 0 },
            "last_seen_at": self.last_seen_at.map(super::rfc3339),
            "bytes_out": self.bytes_out,
            "bytes_in": self.bytes_in,
            "client_cert_sha256": self.client_cert_sha256,
            "created_at": super::rfc3339(self.created_at),
        })
    }
}

/// What a gateway reports about one connector.
#[derive(Debug, Clone, Default)]
pub struct ConnectorReport {
    /// Address of its most recent connection.
    pub address: Option<String>,
    /// Open connections.
    pub connections: u64,
    /// Bytes sent through it so far (cumulative, this process).
    pub bytes_out: u64,
    /// Bytes received through it so far (cumulative, this process).
    pub bytes_in: u64,
}

const COLUMNS: &str = "name, key_id, key_hash, created_at, last_seen_at, address, connections, \
    bytes_in, bytes_out, client_cert_sha256";

/// One row as selected by [`COLUMNS`].
#[derive(sqlx::FromRow)]
struct ConnectorRow {
    name: String,
    key_id: String,
    key_hash: Vec<u8>,
    created_at: i64,
    last_seen_at: Option<i64>,
    address: Option<String>,
    connections: i64,
    bytes_in: i64,
    bytes_out: i64,
    client_cert_sha256: Option<String>,
}

/// Whether `name` can name a connector: 1 to 64 letters, digits, `-`, `_`, `.`.
pub fn valid_name(name: &str) -> bool {
    super::partners::valid_name(name)
}

impl Store {
    /// Adds a connector and returns it with its key (`mgc_...`), which
    /// exists only in the return value.
    /// `pin`: the SHA-256 (lower-case hex) of the client certificate it
    /// must present, if any.
    pub async fn add_connector(
        &self,
        name: &str,
        pin: Option<&str>,
    ) -> Result<(ConnectorRecord, String), StoreError> {
        if !valid_name(name) {
            return Err(StoreError::Connector {
                name: name.chars().take(80).collect(),
                reason: "a connector name is 1 to 64 letters, digits, '-', '_' or '.'",
            });
        }
        let mut random = [0u8; RANDOM_LEN];
        getrandom::fill(&mut random).map_err(StoreError::Random)?;
        let generated = connector_key::generate(&random);
        random.fill(0);
        let now = self.now_ms();
        let inserted = on_pool!(self, |pool, _e| {
            sqlx::query(
                "INSERT INTO connectors (name, key_id, key_hash, created_at, client_cert_sha256) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(generated.id.as_str())
            .bind(&generated.secret_hash[..])
            .bind(now)
            .bind(pin)
            .execute(pool)
            .await
            .map_err(self.query_err(format!("add connector {name}")))?
            .rows_affected()
        });
        if inserted == 0 {
            return Err(StoreError::Connector {
                name: name.to_string(),
                reason: "a connector with this name exists already",
            });
        }
        let record = ConnectorRecord {
            name: name.to_string(),
            key_id: generated.id.clone(),
            key_hash: generated.secret_hash,
            created_at: from_ms(now),
            last_seen_at: None,
            address: None,
            connections: 0,
            bytes_out: 0,
            bytes_in: 0,
            client_cert_sha256: pin.map(str::to_string),
        };
        Ok((record, generated.token))
    }

    /// Pins connector `name` to a client certificate (lower-case hex
    /// SHA-256), or unpins it; `false` if there is no such connector. Its
    /// next connection must present that certificate.
    pub async fn set_connector_pin(
        &self,
        name: &str,
        sha256: Option<&str>,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE connectors SET client_cert_sha256 = $1 WHERE name = $2"
        )
        .bind(sha256)
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("pin connector {name}")))?
        .rows_affected());
        Ok(n == 1)
    }

    /// Every connector, by name.
    pub async fn list_connectors(&self) -> Result<Vec<ConnectorRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM connectors ORDER BY name");
        let raw: Vec<ConnectorRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("list connectors"))?);
        raw.into_iter().map(decode).collect()
    }

    /// The connector whose key has public id `key_id`.
    pub async fn connector_by_key_id(
        &self,
        key_id: &str,
    ) -> Result<Option<ConnectorRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM connectors WHERE key_id = $1");
        let raw: Option<ConnectorRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(key_id)
            .fetch_optional(pool)
            .await
            .map_err(self.query_err("look up a connector key"))?);
        raw.map(decode).transpose()
    }

    /// Removes a connector; its key stops working at once and a running
    /// gateway closes its connections within seconds. `false` if absent.
    pub async fn remove_connector(&self, name: &str) -> Result<bool, StoreError> {
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "DELETE FROM connectors WHERE name = $1"
        )
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("remove connector {name}")))?
        .rows_affected());
        Ok(n == 1)
    }

    /// Records what this gateway sees of connector `name` now.
    pub async fn report_connector(
        &self,
        name: &str,
        report: &ConnectorReport,
    ) -> Result<(), StoreError> {
        let now = self.now_ms();
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE connectors SET last_seen_at = $1, address = $2, connections = $3, \
             bytes_out = $4, bytes_in = $5 WHERE name = $6"
        )
        .bind(now)
        .bind(report.address.as_deref())
        .bind(clamp(report.connections))
        .bind(clamp(report.bytes_out))
        .bind(clamp(report.bytes_in))
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("report connector {name}")))?
        .rows_affected());
        Ok(())
    }
}

fn decode(r: ConnectorRow) -> Result<ConnectorRecord, StoreError> {
    let unsigned = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(ConnectorRecord {
        name: r.name,
        key_id: r.key_id,
        key_hash: r
            .key_hash
            .try_into()
            .map_err(|_| StoreError::CorruptPartner {
                what: "connector key_hash".to_string(),
            })?,
        created_at: from_ms(r.created_at),
        last_seen_at: r.last_seen_at.map(from_ms),
        address: r.address,
        connections: unsigned(r.connections),
        bytes_in: unsigned(r.bytes_in),
        bytes_out: unsigned(r.bytes_out),
        client_cert_sha256: r.client_cert_sha256,
    })
}
