//! The places an upload carries a file name before the backend sees it:
//! `X-Filename`/`X-Folder` (percent-encoded UTF-8), tus `Upload-Metadata`
//! (base64 values) and multipart `Content-Disposition` (`filename*`, RFC 8187).
//!
//! The gateway checks them so a traversal name never reaches the backend,
//! whatever the backend's own checks are.

use super::filename::{validate_filename, FilenameError};
use super::folder::{validate_folder, FolderError};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use percent_encoding::percent_decode;
use std::collections::HashMap;
use thiserror::Error;

/// Why a name carried by a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// Not valid (percent- or base64-encoded) UTF-8.
    #[error("not valid UTF-8 after decoding")]
    NotUtf8,
    /// The encoding around the name is broken.
    #[error("{0}")]
    Malformed(&'static str),
    /// A file name that could change directories or is otherwise unsafe.
    #[error(transparent)]
    Filename(#[from] FilenameError),
    /// A folder path with an unsafe segment.
    #[error(transparent)]
    Folder(#[from] FolderError),
}

fn percent_text(raw: &[u8]) -> Result<String, NameError> {
    percent_decode(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| NameError::NotUtf8)
}

/// `X-Filename`: percent-decoded, validated, NFC.
pub fn header_filename(raw: &[u8]) -> Result<String, NameError> {
    Ok(validate_filename(&percent_text(raw)?)?)
}

/// `X-Folder`: percent-decoded, validated, canonical.
pub fn header_folder(raw: &[u8]) -> Result<String, NameError> {
    Ok(validate_folder(&percent_text(raw)?)?)
}

/// Decoded tus `Upload-Metadata`: keys to values (`None` for a key without value).
pub type TusMetadata = HashMap<String, Option<Vec<u8>>>;

/// Why an `Upload-Metadata` header cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetadataError {
    /// A value is not base64.
    #[error("the value of {0:?} is not base64")]
    NotBase64(String),
    /// A pair has more than a key and a value.
    #[error("pair {0:?} has more than a key and a value")]
    ExtraPart(String),
    /// A key appears twice.
    #[error("key {0:?} appears twice")]
    Duplicate(String),
}

/// Parses `key base64value,key2,key3 base64value` (tus 1.0 creation).
pub fn parse_tus_metadata(raw: &str) -> Result<TusMetadata, MetadataError> {
    let mut out = TusMetadata::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = pair.split(' ').filter(|p| !p.is_empty());
        let key = parts.next().unwrap_or_default();
        let value = match parts.next() {
            Some(encoded) => Some(
                STANDARD
                    .decode(encoded)
                    .or_else(|_| STANDARD_NO_PAD.decode(encoded))
                    .map_err(|_| MetadataError::NotBase64(key.to_string()))?,
            ),
            None => None,
        };
        if parts.next().is_some() {
            return Err(MetadataError::ExtraPart(key.to_string()));
        }
        if out.insert(key.to_string(), value).is_some() {
            return Err(MetadataError::Duplicate(key.to_string()));
        }
    }
    Ok(out)
}

/// Checks the `filename` and `folder` values of a tus `Upload-Metadata`
/// header. Returns the field that failed with why.
pub fn tus_metadata(raw: &[u8]) -> Result<(), (&'static str, NameError)> {
    let text = std::str::from_utf8(raw).map_err(|_| ("Upload-Metadata", NameError::NotUtf8))?;
    let meta = parse_tus_metadata(text).map_err(|_| {
        (
            "Upload-Metadata",
            NameError::Malformed("not key base64value pairs"),
        )
    })?;
    for (key, field) in [
        ("filename", "Upload-Metadata filename"),
        ("folder", "Upload-Metadata folder"),
    ] {
        let Some(value) = meta.get(key) else { continue };
        let value = String::from_utf8(value.clone().unwrap_or_default())
            .map_err(|_| (field, NameError::NotUtf8))?;
        let checked = if key == "filename" {
            validate_filename(&value).map(drop).map_err(NameError::from)
        } else {
            validate_folder(&value).map(drop).map_err(NameError::from)
        };
        checked.map_err(|e| (field, e))?;
    }
    Ok(())
}

/// The `filename*` parameter of a `Content-Disposition` value (RFC 8187:
/// `UTF-8''percent-encoded`), decoded; `None` when absent.
pub fn extended_filename(content_disposition: &str) -> Option<Result<String, NameError>> {
    let lower = content_disposition.to_ascii_lowercase();
    let start = lower.find("filename*=")? + "filename*=".len();
    let value = content_disposition[start..]
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .trim_matches('"');
    let Some((charset, rest)) = value.split_once('\'') else {
        return Some(Err(NameError::Malformed(
            "filename* needs charset''value (RFC 8187)",
        )));
    };
    if !charset.eq_ignore_ascii_case("utf-8") {
        return Some(Err(NameError::Malformed("filename* must be UTF-8")));
    }
    let encoded = rest.split_once('\'').map_or(rest, |(_lang, v)| v);
    Some(percent_text(encoded.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_percent_decoded_then_checked() {
        assert_eq!(
            header_filename(b"r%C3%A9sum%C3%A9.pdf").unwrap(),
            "résumé.pdf"
        );
        assert!(matches!(
            header_filename(b"..%2Fetc%2Fpasswd"),
            Err(NameError::Filename(_))
        ));
        assert_eq!(header_filename(b"%FF"), Err(NameError::NotUtf8));
        assert!(header_filename(b"a%00b").is_err());
        assert_eq!(header_folder(b"in/2026").unwrap(), "in/2026");
        assert!(header_folder(b"in/../../etc").is_err());
    }

    #[test]
    fn tus_metadata_filename_and_folder_are_checked() {
        // filename "a.txt", folder "in"
        assert!(tus_metadata(b"filename YS50eHQ=,folder aW4=,filetype dGV4dC9wbGFpbg==").is_ok());
        // filename "../x"
        let (field, _) = tus_metadata(b"filename Li4veA==").unwrap_err();
        assert_eq!(field, "Upload-Metadata filename");
        let (field, _) = tus_metadata(b"folder Li4vLi4v").unwrap_err();
        assert_eq!(field, "Upload-Metadata folder");
        assert!(tus_metadata(b"filename !!!").is_err());
        // Keys the backend does not read are not ours to judge.
        assert!(tus_metadata(b"other Li4veA==").is_ok());
    }

    #[test]
    fn extended_filename_is_decoded() {
        let cd = "form-data; name=\"file\"; filename*=UTF-8''%2E%2E%2Fpasswd";
        assert_eq!(extended_filename(cd), Some(Ok("../passwd".to_string())));
        let cd = "form-data; name=\"file\"; FILENAME*=utf-8'de'Gr%C3%BC%C3%9Fe.txt; x=1";
        assert_eq!(extended_filename(cd), Some(Ok("Grüße.txt".to_string())));
        assert_eq!(extended_filename("form-data; filename=\"a\""), None);
        assert!(matches!(
            extended_filename("form-data; filename*=latin1''a"),
            Some(Err(_))
        ));
    }
}
