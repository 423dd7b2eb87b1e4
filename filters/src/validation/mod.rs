//! Input validation shared by the proxy, the backend and the bridges.

pub mod content_digest;
pub mod filename;
pub mod folder;
pub mod request_head;
pub mod upload_names;
pub mod virtual_path;
