//! File names and folders from requests, checked with the shared rules of
//! `mft_filters` so the gateway and the backend refuse the same inputs.

use crate::problem::ApiError;
use mft_filters::problem_types as pt;
use mft_filters::validation::{filename, folder};

/// A validated, NFC-normalised file name, or 400 naming `field`.
pub fn file_name(raw: &str, field: &str) -> Result<String, ApiError> {
    filename::validate_filename(raw).map_err(|e| {
        ApiError::bad_request(format!("{field}: {e}"))
            .with_type(pt::INVALID_FILENAME)
            .with_field(field)
    })
}

/// A validated folder in canonical form (`a/b`, root `""`), or 400 naming `field`.
pub fn folder_path(raw: &str, field: &str) -> Result<String, ApiError> {
    folder::validate_folder(raw).map_err(|e| {
        ApiError::bad_request(format!("{field}: {e}"))
            .with_type(pt::INVALID_FOLDER)
            .with_field(field)
    })
}
