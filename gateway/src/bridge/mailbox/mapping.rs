//! Parsed message → delivery fields, as `[[imap]]` / `[[pop3]]` configure.

use crate::backend_client::CallContext;
use crate::bridge::pipeline::DeliveryRequest;
use mft_config::mailbox::{Connection, RecipientsMap, SenderMap, TextMap};
use mft_protocols::mime::ParsedMessage;

/// A message the mapping cannot turn into a delivery (skipped for good).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    /// `sender = "from"` but the message has no From address.
    #[error("the message has no From address")]
    NoSender,
    /// The mapped recipient list is empty.
    #[error("the message has no recipients in the mapped header fields")]
    NoRecipients,
}

/// The delivery for `msg` from mailbox `origin` (`imap:<name>`), under `key`.
pub fn request<'a>(
    conn: &Connection,
    origin: &str,
    key: String,
    msg: &'a ParsedMessage,
) -> Result<DeliveryRequest<'a>, MappingError> {
    let m = &conn.mapping;
    let sender = match &m.sender {
        SenderMap::From => msg.from.clone().ok_or(MappingError::NoSender)?,
        SenderMap::Fixed(a) => a.clone(),
    };
    let recipients = match &m.recipients {
        RecipientsMap::To => msg.to.clone(),
        RecipientsMap::ToCc => {
            let mut all = msg.to.clone();
            for a in &msg.cc {
                if !all.iter().any(|b| b.eq_ignore_ascii_case(a)) {
                    all.push(a.clone());
                }
            }
            all
        }
        RecipientsMap::Fixed(list) => list.clone(),
    };
    if recipients.is_empty() {
        return Err(MappingError::NoRecipients);
    }
    let text = |t: &TextMap, mail: &str| match t {
        TextMap::FromMail => mail.to_string(),
        TextMap::Fixed(s) => s.clone(),
    };
    Ok(DeliveryRequest {
        ctx: CallContext::new(conn.principal.clone(), &conn.scopes.join(" "), Some(origin)),
        idempotency_key: key,
        sender,
        recipients,
        subject: text(&m.subject, &msg.subject),
        message: text(&m.message, &msg.text),
        stored_files: Vec::new(),
        attachments: &msg.attachments,
        folder: conn.upload_folder.clone(),
    })
}
