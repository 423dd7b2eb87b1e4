//! `[sftp]`: the SFTP server whose file system is the backend.

use crate::convert::Ctx;
use serde::Deserialize;

/// `[sftp]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpFile {}

/// `[sftp]`, validated.
#[derive(Debug, Clone)]
pub struct Sftp {}

pub(crate) fn convert(file: Option<SftpFile>, _ctx: &mut Ctx<'_>) -> Option<Sftp> {
    file.map(|_| Sftp {})
}
