//! The backend's resources as the gateway reads and writes them
//! (docs/backend-api.md): one type per resource, shared by every caller,
//! so a field the backend adds is added once.

use serde::{Deserialize, Serialize};

/// A stored file, as `POST /api/v1/files`, `GET /api/v1/files[/{id}]` and a
/// partner's `POST /federation/v1/files` return it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct FileInfo {
    /// File id.
    pub id: String,
    /// File name.
    pub name: String,
    /// Folder (`""` for the root).
    #[serde(default)]
    pub folder: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256.
    #[serde(default)]
    pub sha256: String,
    /// RFC 3339 time of the upload.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_at: String,
    /// `X-MFT-Principal` of the upload; `None` without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

impl FileInfo {
    /// Seconds since the epoch of the upload (an SFTP file's mtime); 0 when
    /// the backend gave no readable time.
    pub fn mtime(&self) -> u32 {
        humantime::parse_rfc3339_weak(self.created_at.trim_end_matches('Z'))
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| u32::try_from(d.as_secs()).ok())
            .unwrap_or(0)
    }
}

/// Which files `GET /api/v1/files` lists.
#[derive(Debug, Clone, Default)]
pub struct FileQuery<'a> {
    /// Only this folder (`folder=`).
    pub folder: Option<&'a str>,
    /// Only files of this name (`name=`).
    pub name: Option<&'a str>,
    /// Page size (`limit=`).
    pub limit: Option<usize>,
    /// Where the page starts (`cursor=`).
    pub cursor: Option<&'a str>,
    /// Also name the sub-folders (`subfolders=true`).
    pub subfolders: bool,
}

/// The answer of `GET /api/v1/files`.
#[derive(Debug, Clone, Deserialize)]
pub struct FileList {
    /// The files.
    pub files: Vec<FileInfo>,
    /// Present when the backend honours `subfolders=true`.
    #[serde(default)]
    pub folders: Option<Vec<String>>,
    /// Present (a cursor or null) when the backend honours `limit`.
    #[serde(default, deserialize_with = "present")]
    pub next_cursor: Option<Option<String>>,
}

/// `Some(value)` for a field that is there, even as `null`.
fn present<'de, D>(d: D) -> Result<Option<Option<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<String>::deserialize(d).map(Some)
}

/// Body of `POST /api/v1/deliveries`.
#[derive(Debug, Clone, Serialize)]
pub struct NewDelivery {
    /// Sender address.
    pub sender: String,
    /// Recipient addresses.
    pub recipients: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Message text.
    pub message: String,
    /// File ids.
    pub files: Vec<String>,
}

/// A delivery, as `POST /api/v1/deliveries`, `GET /api/v1/deliveries/{id}`
/// and the change feed return it.
#[derive(Debug, Clone, Deserialize)]
pub struct Delivery {
    /// Id.
    pub id: String,
    /// Feed position.
    #[serde(default)]
    pub seq: i64,
    /// Sender.
    #[serde(default)]
    pub sender: String,
    /// Recipients.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Subject.
    #[serde(default)]
    pub subject: String,
    /// Message.
    #[serde(default)]
    pub message: String,
    /// File ids.
    #[serde(default)]
    pub files: Vec<String>,
    /// Origin as recorded.
    #[serde(default)]
    pub origin: String,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: String,
}

/// One page of the change feed (`GET /api/v1/deliveries?after_seq=`).
#[derive(Debug, Clone, Deserialize)]
pub struct DeliveryPage {
    /// Deliveries after the cursor, in feed order.
    pub deliveries: Vec<Delivery>,
    /// Where the next page starts, when the backend says.
    #[serde(default)]
    pub next_after_seq: Option<i64>,
}

/// Body of `PUT /api/v1/deliveries/{id}/relay`: what became of the
/// recipients relayed to one partner.
#[derive(Debug, Clone, Serialize)]
pub struct RelayStatus<'a> {
    /// Partner name.
    pub partner: &'a str,
    /// The recipients relayed there.
    pub recipients: &'a [String],
    /// `queued`, `relayed`, `failed`, ...
    pub status: &'a str,
    /// Why, for a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
    /// The delivery's id at the partner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_delivery_id: Option<&'a str>,
    /// Attempts so far.
    pub attempts: u32,
}

/// Body of `POST /api/v1/deliveries/{id}/receipts`: a partner downloaded
/// one relayed file.
#[derive(Debug, Clone, Serialize)]
pub struct NewReceipt<'a> {
    /// Partner name.
    pub partner: &'a str,
    /// Our file id.
    pub file_id: &'a str,
    /// RFC 3339.
    pub downloaded_at: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_tells_a_paging_backend_from_one_that_is_not() {
        let paged: FileList = serde_json::from_str(r#"{"files":[],"next_cursor":null}"#).unwrap();
        assert_eq!(paged.next_cursor, Some(None));
        let whole: FileList = serde_json::from_str(r#"{"files":[]}"#).unwrap();
        assert_eq!(whole.next_cursor, None);
    }

    #[test]
    fn mtime_of_a_file() {
        let f: FileInfo = serde_json::from_str(
            r#"{"id":"1","name":"a","size":1,"sha256":"00","created_at":"1970-01-01T00:01:00.5Z"}"#,
        )
        .unwrap();
        assert_eq!(f.mtime(), 60);
        assert_eq!(f.created_by, None);
    }
}
