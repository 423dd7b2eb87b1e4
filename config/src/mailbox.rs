//! `[[imap]]` and `[[pop3]]`: mailboxes the gateway polls for messages.

use crate::convert::Ctx;
use serde::Deserialize;

/// `[[imap]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapFile {}

/// `[[pop3]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pop3File {}

/// One `[[imap]]` mailbox, validated.
#[derive(Debug, Clone)]
pub struct Imap {}

/// One `[[pop3]]` mailbox, validated.
#[derive(Debug, Clone)]
pub struct Pop3 {}

pub(crate) fn convert_imap(file: Vec<ImapFile>, _ctx: &mut Ctx<'_>) -> Vec<Imap> {
    file.into_iter().map(|_| Imap {}).collect()
}

pub(crate) fn convert_pop3(file: Vec<Pop3File>, _ctx: &mut Ctx<'_>) -> Vec<Pop3> {
    file.into_iter().map(|_| Pop3 {}).collect()
}
