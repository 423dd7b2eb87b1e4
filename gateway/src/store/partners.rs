//! Trust-network connections in the key store (table `partners`).
//!
//! The key we generate for a partner is kept like an API key: public id and
//! SHA-256 of the secret, plus the HMAC key derived from the secret that
//! verifies the partner's signatures. The key the partner generated for us
//! must be usable, so it is kept sealed (see `trust::seal`) or as a secret
//! reference; this module stores whatever bytes or reference it is given.

use super::{from_ms, Engine, Pool, Store, StoreError};
use mft_filters::auth::{api_key::RANDOM_LEN, partner_key};
use std::time::SystemTime;

/// How we authenticate to the partner.
#[derive(Clone, PartialEq, Eq)]
pub enum OutboundKey {
    /// Not set yet (`partners set-key`).
    Missing,
    /// Sealed with `[trust] encryption_key`.
    Sealed(Vec<u8>),
    /// A secret reference, resolved when used.
    Reference(String),
}

/// One connection, as stored (never a secret in clear).
#[derive(Clone)]
pub struct PartnerRecord {
    /// Connection name.
    pub name: String,
    /// The partner gateway's base URL.
    pub url: String,
    /// The partner's e-mail domains, lower case.
    pub email_domains: Vec<String>,
    /// Public id of the key we generated for them.
    pub inbound_key_id: String,
    /// SHA-256 of that key's secret.
    pub inbound_key_hash: [u8; 32],
    /// HMAC key that verifies their signatures.
    pub inbound_signing_key: [u8; 32],
    /// Their key for us.
    pub outbound_key: OutboundKey,
    /// Optional client-certificate pin (hex SHA-256).
    pub client_cert_sha256: Option<String>,
    /// Folder of the partner's uploads; `None`: `partners/<name>`.
    pub inbox_folder: Option<String>,
    /// Bytes the partner may upload per UTC day; `None`: no quota.
    pub quota_bytes_per_day: Option<u64>,
    /// Created.
    pub created_at: SystemTime,
    /// Last changed.
    pub updated_at: SystemTime,
}

impl std::fmt::Debug for PartnerRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerRecord")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("email_domains", &self.email_domains)
            .field("inbound_key_id", &self.inbound_key_id)
            .finish_non_exhaustive()
    }
}

impl PartnerRecord {
    /// The folder the partner's uploads go to (canonical), or why none:
    /// a connection whose name cannot be a folder needs one set.
    pub fn inbox(&self) -> Option<String> {
        mft_filters::trust::partner_inbox::inbox(&self.name, self.inbox_folder.as_deref()).ok()
    }

    /// `pending` until their key is set, then `configured`.
    pub fn status(&self) -> &'static str {
        match self.outbound_key {
            OutboundKey::Missing => "pending",
            _ => "configured",
        }
    }

    /// The record as the CLI and admin API show it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "url": self.url,
            "email_domains": self.email_domains,
            "key_id": self.inbound_key_id,
            "their_key": match &self.outbound_key {
                OutboundKey::Missing => "missing",
                OutboundKey::Sealed(_) => "stored encrypted",
                OutboundKey::Reference(_) => "secret reference",
            },
            "client_cert_sha256": self.client_cert_sha256,
            "inbox_folder": self.inbox(),
            "quota_bytes_per_day": self.quota_bytes_per_day,
            "status": self.status(),
            "created_at": super::rfc3339(self.created_at),
            "updated_at": super::rfc3339(self.updated_at),
        })
    }
}

const COLUMNS: &str = "name, url, email_domains, inbound_key_id, inbound_key_hash, \
    inbound_signing_key, outbound_key_sealed, outbound_key_ref, client_cert_sha256, \
    created_at, updated_at, inbox_folder, quota_bytes_per_day";

/// One row as selected by [`COLUMNS`].
#[derive(sqlx::FromRow)]
struct PartnerRow {
    name: String,
    url: String,
    email_domains: String,
    inbound_key_id: String,
    inbound_key_hash: Vec<u8>,
    inbound_signing_key: Vec<u8>,
    outbound_key_sealed: Option<Vec<u8>>,
    outbound_key_ref: Option<String>,
    client_cert_sha256: Option<String>,
    created_at: i64,
    updated_at: i64,
    inbox_folder: Option<String>,
    quota_bytes_per_day: Option<i64>,
}

/// Longest connection name; also its alphabet: letters, digits, `-`, `_`, `.`.
pub const MAX_NAME_LEN: usize = 64;

/// A certificate pin as lower-case hex: 64 hex digits, `:` separators
/// allowed (as `openssl x509 -fingerprint -sha256` prints them).
pub fn normalize_pin(text: &str) -> Option<String> {
    let hex: String = text.trim().chars().filter(|c| *c != ':').collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// Whether `name` can name a connection (it appears in `partner:<name>`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A cheap fingerprint of the `partners` table: any insert, update (each
/// sets `updated_at`) or delete changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct PartnersVersion {
    /// Connections.
    pub count: i64,
    /// Newest `updated_at` (ms), 0 without connections.
    pub newest: i64,
}

impl Store {
    /// The table's fingerprint: what a running gateway polls to notice a
    /// connection added, changed or removed by another process.
    pub async fn partners_version(&self) -> Result<PartnersVersion, StoreError> {
        Ok(on_pool!(self, |pool, _e| sqlx::query_as(
            "SELECT COUNT(*) AS count, COALESCE(MAX(updated_at), 0) AS newest FROM partners"
        )
        .fetch_one(pool)
        .await
        .map_err(self.query_err("read the partners' version"))?))
    }

    /// Writes to `partners` made through this handle: a cache in the same
    /// process compares it to know its copy is stale without a query.
    pub fn partner_writes(&self) -> u64 {
        self.counters
            .partner_writes
            .load(std::sync::atomic::Ordering::Acquire)
    }

    fn partner_written(&self) {
        self.counters
            .partner_writes
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Adds a connection and returns it with the key generated for the
    /// partner (`mgp_...`), which exists only in the return value.
    pub async fn add_partner(
        &self,
        name: &str,
        url: &str,
        email_domains: &[String],
    ) -> Result<(PartnerRecord, String), StoreError> {
        if !valid_name(name) {
            return Err(StoreError::Partner {
                name: name.chars().take(80).collect(),
                reason: "a connection name is 1 to 64 letters, digits, '-', '_' or '.'",
            });
        }
        let mut random = [0u8; RANDOM_LEN];
        getrandom::fill(&mut random).map_err(StoreError::Random)?;
        let generated = partner_key::generate(&random);
        random.fill(0);
        let parsed =
            partner_key::parse(&generated.token).map_err(|_| StoreError::CorruptPartner {
                what: "generated key".into(),
            })?;
        let signing = partner_key::signing_key(&parsed);
        let now = self.now_ms();
        let domains = email_domains.join(" ");
        let inserted = on_pool!(self, |pool, _e| {
            sqlx::query(
            "INSERT INTO partners (name, url, email_domains, inbound_key_id, inbound_key_hash, \
             inbound_signing_key, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (name) DO NOTHING"
        )
        .bind(name)
        .bind(url)
        .bind(&domains)
        .bind(generated.id.as_str())
        .bind(&generated.secret_hash[..])
        .bind(&signing[..])
        .bind(now)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("add partner {name}")))?
        .rows_affected()
        });
        if inserted == 0 {
            return Err(StoreError::Partner {
                name: name.to_string(),
                reason: "a connection with this name exists already",
            });
        }
        let record = PartnerRecord {
            name: name.to_string(),
            url: url.to_string(),
            email_domains: email_domains.to_vec(),
            inbound_key_id: generated.id.clone(),
            inbound_key_hash: generated.secret_hash,
            inbound_signing_key: signing,
            outbound_key: OutboundKey::Missing,
            client_cert_sha256: None,
            inbox_folder: None,
            quota_bytes_per_day: None,
            created_at: from_ms(now),
            updated_at: from_ms(now),
        };
        self.partner_written();
        Ok((record, generated.token))
    }

    /// Stores the key the partner generated for us; `false` if no such connection.
    pub async fn set_partner_key(&self, name: &str, key: &OutboundKey) -> Result<bool, StoreError> {
        let (sealed, reference): (Option<&[u8]>, Option<&str>) = match key {
            OutboundKey::Missing => (None, None),
            OutboundKey::Sealed(b) => (Some(b), None),
            OutboundKey::Reference(r) => (None, Some(r)),
        };
        let now = self.now_ms();
        let n = on_pool!(self, |pool, _e| {
            sqlx::query(
            "UPDATE partners SET outbound_key_sealed = $1, outbound_key_ref = $2, updated_at = $3 \
             WHERE name = $4"
        )
        .bind(sealed)
        .bind(reference)
        .bind(now)
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("set the key of partner {name}")))?
        .rows_affected()
        });
        self.partner_written();
        Ok(n == 1)
    }

    /// Pins the connection to a client certificate (lower-case hex
    /// SHA-256), or unpins it; `false` if no such connection.
    pub async fn set_partner_pin(
        &self,
        name: &str,
        sha256: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE partners SET client_cert_sha256 = $1, updated_at = $2 WHERE name = $3"
        )
        .bind(sha256)
        .bind(now)
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("pin partner {name}")))?
        .rows_affected());
        self.partner_written();
        Ok(n == 1)
    }

    /// Sets where the partner's uploads go (`None`: `partners/<name>`) and
    /// its daily quota (`None`: none); `false` if no such connection.
    /// `folder` must be canonical (see `validate_folder`).
    pub async fn set_partner_inbox(
        &self,
        name: &str,
        folder: Option<&str>,
        quota_bytes_per_day: Option<u64>,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let quota = quota_bytes_per_day.map(|q| i64::try_from(q).unwrap_or(i64::MAX));
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE partners SET inbox_folder = $1, quota_bytes_per_day = $2, updated_at = $3 \
             WHERE name = $4"
        )
        .bind(folder)
        .bind(quota)
        .bind(now)
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("set the inbox of partner {name}")))?
        .rows_affected());
        self.partner_written();
        Ok(n == 1)
    }

    /// Every connection, by name.
    pub async fn list_partners(&self) -> Result<Vec<PartnerRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM partners ORDER BY name");
        let raw: Vec<PartnerRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("list partners"))?);
        raw.into_iter().map(decode).collect()
    }

    /// The connection called `name`.
    pub async fn get_partner(&self, name: &str) -> Result<Option<PartnerRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM partners WHERE name = $1");
        let raw: Option<PartnerRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(pool)
            .await
            .map_err(self.query_err(format!("read partner {name}")))?);
        raw.map(decode).transpose()
    }

    /// The connection whose inbound key has public id `key_id`.
    pub async fn partner_by_key_id(
        &self,
        key_id: &str,
    ) -> Result<Option<PartnerRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM partners WHERE inbound_key_id = $1");
        let raw: Option<PartnerRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(key_id)
            .fetch_optional(pool)
            .await
            .map_err(self.query_err("look up a partner key"))?);
        raw.map(decode).transpose()
    }

    /// Removes a connection; its key stops working at once. `false` if absent.
    pub async fn remove_partner(&self, name: &str) -> Result<bool, StoreError> {
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "DELETE FROM partners WHERE name = $1"
        )
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("remove partner {name}")))?
        .rows_affected());
        self.partner_written();
        Ok(n == 1)
    }
}

fn bytes32(v: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    v.try_into().map_err(|_| StoreError::CorruptPartner {
        what: what.to_string(),
    })
}

fn decode(r: PartnerRow) -> Result<PartnerRecord, StoreError> {
    let outbound_key = match (r.outbound_key_sealed, r.outbound_key_ref) {
        (Some(sealed), _) => OutboundKey::Sealed(sealed),
        (None, Some(reference)) => OutboundKey::Reference(reference),
        (None, None) => OutboundKey::Missing,
    };
    Ok(PartnerRecord {
        name: r.name,
        url: r.url,
        email_domains: r
            .email_domains
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        inbound_key_id: r.inbound_key_id,
        inbound_key_hash: bytes32(r.inbound_key_hash, "inbound_key_hash")?,
        inbound_signing_key: bytes32(r.inbound_signing_key, "inbound_signing_key")?,
        outbound_key,
        client_cert_sha256: r.client_cert_sha256,
        created_at: from_ms(r.created_at),
        updated_at: from_ms(r.updated_at),
        inbox_folder: r.inbox_folder,
        quota_bytes_per_day: r.quota_bytes_per_day.and_then(|q| u64::try_from(q).ok()),
    })
}
