//! Configuration of mft-gateway.
//!
//! Two layers, converted once: [`file`] is the serde schema of `gateway.toml`
//! (unknown keys are errors), [`model`] is the validated runtime model the rest
//! of the program uses (socket addresses, durations, resolved secrets, absolute
//! paths). [`load`] reads a file, converts it and reports *every* problem with
//! its key path and line, not just the first.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod connector;
mod convert;
pub mod defaults;
pub mod error;
pub mod file;
pub mod limits;
mod locate;
pub mod mailbox;
pub mod model;
pub mod notify;
pub mod pin;
pub mod quota;
pub mod redact;
pub mod secret;
pub mod sftp;
pub mod smtp;
pub mod trust;

use std::path::Path;

pub use error::{ConfigError, Issue};
pub use model::Config;
pub use secret::Secret;

/// A validated configuration plus the warnings that did not stop it loading.
#[derive(Debug)]
pub struct Loaded {
    /// The runtime model.
    pub config: Config,
    /// Non-fatal findings, e.g. a secret written in clear in the file.
    pub warnings: Vec<Issue>,
}

/// Reads, parses and validates the config file at `path`.
///
/// Relative paths inside the file are resolved against the file's directory,
/// so a config works the same whatever the working directory of the process.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    load_str(&read(path)?, path)
}

/// Parses and validates config `text` as if it had been read from `path`.
pub fn load_str(text: &str, path: &Path) -> Result<Loaded, ConfigError> {
    let (config, warnings) = parse_and_convert(text, path, |parsed: file::FileConfig, ctx| {
        convert::convert(parsed, path, ctx)
    })?;
    Ok(Loaded { config, warnings })
}

/// The text of the file at `path`.
pub(crate) fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses `text` (read from `path`) as the file shape `F`, then `convert`s
/// it into the model with relative paths resolved against the file's
/// directory: every problem reported with its key and line, warnings kept.
pub(crate) fn parse_and_convert<F, T>(
    text: &str,
    path: &Path,
    convert: impl FnOnce(F, &mut convert::Ctx<'_>) -> Option<T>,
) -> Result<(T, Vec<Issue>), ConfigError>
where
    F: serde::de::DeserializeOwned,
{
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let index = locate::SpanIndex::new(text);
    let parsed: F = toml::from_str(text).map_err(|e| {
        let (line, key) = match e.span() {
            Some(span) => (Some(index.line_of(span.start)), index.key_at(span.start)),
            None => (None, None),
        };
        ConfigError::Invalid {
            path: path.to_path_buf(),
            issues: vec![Issue {
                key: key.unwrap_or_default(),
                line,
                message: e.message().trim().to_string(),
            }],
        }
    })?;
    let mut ctx = convert::Ctx::new(base, &index);
    match convert(parsed, &mut ctx) {
        Some(model) if ctx.errors.is_empty() => Ok((model, ctx.warnings)),
        _ => Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            issues: ctx.errors,
        }),
    }
}
