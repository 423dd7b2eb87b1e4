//! The JSON bodies of federation requests, shared by both sides.

use serde::{Deserialize, Serialize};

/// `POST /federation/v1/deliveries`: a delivery whose files were sent
/// before with `POST /federation/v1/files`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayedDelivery {
    /// The sending side's delivery id; also the `Idempotency-Key`.
    pub relay_id: String,
    /// Sender address (in the sending partner's domains).
    pub sender: String,
    /// Recipients (in the receiving organisation's domains).
    pub recipients: Vec<String>,
    /// Subject.
    #[serde(default)]
    pub subject: String,
    /// Message text.
    #[serde(default)]
    pub message: String,
    /// The files, as the receiving side stored them.
    #[serde(default)]
    pub files: Vec<RelayedFile>,
}

/// One file of a [`RelayedDelivery`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayedFile {
    /// The receiving side's file id (from the `POST /federation/v1/files` answer).
    pub id: String,
    /// The sending side's file id; receipts name it.
    pub source_id: String,
    /// Lower-case hex SHA-256, checked against the stored file.
    pub sha256: String,
}

/// Answer to an accepted [`RelayedDelivery`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryAccepted {
    /// The receiving side's delivery id.
    pub id: String,
    /// Echo of the relay id.
    pub relay_id: String,
}

/// `POST /federation/v1/receipts`: a relayed file was downloaded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The relay id (the sending side's delivery id).
    pub relay_id: String,
    /// The sending side's file id.
    pub file_id: String,
    /// First download, RFC 3339.
    pub downloaded_at: String,
}

/// Answer to a [`Receipt`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptRecorded {
    /// Echo of the relay id.
    pub relay_id: String,
    /// Echo of the file id.
    pub file_id: String,
}
