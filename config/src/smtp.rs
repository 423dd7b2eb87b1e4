//! `[smtp]`: the SMTP listener that turns e-mail into deliveries.

use crate::convert::Ctx;
use serde::Deserialize;

/// `[smtp]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {}

/// `[smtp]`, validated.
#[derive(Debug, Clone)]
pub struct Smtp {}

pub(crate) fn convert(file: Option<SmtpFile>, _ctx: &mut Ctx<'_>) -> Option<Smtp> {
    file.map(|_| Smtp {})
}
