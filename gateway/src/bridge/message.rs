//! A received e-mail, parsed once into what a delivery needs: addresses,
//! subject, text and attachments with file names made safe.
//!
//! mail-parser handles nested multiparts, base64 and quoted-printable, and
//! RFC 2047/2231 encoded names; it is lenient by design, so "cannot be
//! parsed" here means the input has no header section at all or a body part
//! we could not decode, which is what SMTP answers 554 5.6.0 for.

use bytes::Bytes;
use mail_parser::{Address, MessageParser, MimeHeaders};
use mft_filters::validation::filename::sanitize_filename;

/// An attachment, decoded.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// File name that passes the HTTP file-name validation.
    pub name: String,
    /// `type/subtype` as declared, `application/octet-stream` if none.
    pub content_type: String,
    /// Decoded content.
    pub data: Bytes,
}

/// What a delivery is built from.
#[derive(Debug, Clone, Default)]
pub struct ParsedMessage {
    /// `Message-ID` without angle brackets.
    pub message_id: Option<String>,
    /// First `From` address.
    pub from: Option<String>,
    /// `To` addresses.
    pub to: Vec<String>,
    /// `Cc` addresses.
    pub cc: Vec<String>,
    /// Decoded subject, empty if none.
    pub subject: String,
    /// The first text body (the HTML one converted to text if that is all there is).
    pub text: String,
    /// Every attachment, nested multiparts included.
    pub attachments: Vec<Attachment>,
    /// `Authentication-Results` values, topmost first (at most
    /// [`MAX_AUTH_RESULTS`], each cut at [`MAX_AUTH_RESULT_BYTES`]).
    pub authentication_results: Vec<String>,
}

/// `Authentication-Results` fields kept: our MX's own is the topmost.
pub const MAX_AUTH_RESULTS: usize = 16;
/// Longest `Authentication-Results` value kept.
pub const MAX_AUTH_RESULT_BYTES: usize = 4096;

/// A message that cannot become a delivery.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not an RFC 5322 message: no header fields.
    #[error("not an e-mail message: no header section")]
    NoHeaders,
    /// The parser gave up.
    #[error("the message cannot be parsed")]
    Unparseable,
}

/// Longest subject kept; the backend limits it as well.
const MAX_SUBJECT_CHARS: usize = 998;

/// Parses `raw` (the message as received, CRLF line ends).
///
/// mail-parser 0.11.9 panics on some malformed multipart structures
/// ("Invalid part ID, could not find multipart", found by fuzzing,
/// docs/reliability.md). Such a message is unparseable, not the end of the
/// SMTP session, the spool worker or a mailbox poller: the panic is caught
/// here.
pub fn parse(raw: &[u8]) -> Result<ParsedMessage, MessageError> {
    std::panic::catch_unwind(|| parse_unguarded(raw)).unwrap_or(Err(MessageError::Unparseable))
}

fn parse_unguarded(raw: &[u8]) -> Result<ParsedMessage, MessageError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(MessageError::Unparseable)?;
    if message.headers().is_empty() || !has_header_section(raw) {
        return Err(MessageError::NoHeaders);
    }
    let mut attachments = Vec::new();
    for (i, part) in message.attachments().enumerate() {
        let name = part
            .attachment_name()
            .and_then(sanitize_filename)
            .unwrap_or_else(|| format!("attachment-{}{}", i + 1, default_extension(part)));
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".to_string());
        attachments.push(Attachment {
            name,
            content_type,
            data: Bytes::copy_from_slice(part.contents()),
        });
    }
    let subject: String = message
        .subject()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_SUBJECT_CHARS)
        .collect();
    Ok(ParsedMessage {
        message_id: message.message_id().map(str::to_string),
        from: message.from().and_then(first_address),
        to: message.to().map(addresses).unwrap_or_default(),
        cc: message.cc().map(addresses).unwrap_or_default(),
        subject,
        text: message
            .body_text(0)
            .map(|t| t.into_owned())
            .unwrap_or_default(),
        attachments,
        authentication_results: message
            .headers_raw()
            .filter(|(name, _)| name.eq_ignore_ascii_case("authentication-results"))
            .take(MAX_AUTH_RESULTS)
            .map(|(_, value)| {
                let mut end = value.len().min(MAX_AUTH_RESULT_BYTES);
                while !value.is_char_boundary(end) {
                    end -= 1;
                }
                value[..end].to_string()
            })
            .collect(),
    })
}

/// mail-parser accepts a body with no header at all as a message with no
/// headers; an RFC 5322 message starts with `name:`.
fn has_header_section(raw: &[u8]) -> bool {
    let first_line = raw.split(|b| *b == b'\n').next().unwrap_or(&[]);
    match first_line.iter().position(|b| *b == b':') {
        Some(colon) => {
            colon > 0
                && first_line[..colon]
                    .iter()
                    .all(|b| b.is_ascii_graphic() && *b != b':')
        }
        None => false,
    }
}

fn default_extension(part: &mail_parser::MessagePart<'_>) -> &'static str {
    match part.content_type().map(|c| (c.ctype(), c.subtype())) {
        Some(("text", Some("plain"))) => ".txt",
        Some(("application", Some("pdf"))) => ".pdf",
        Some(("message", Some("rfc822"))) => ".eml",
        _ => ".bin",
    }
}

fn addresses(a: &Address<'_>) -> Vec<String> {
    a.iter()
        .filter_map(|addr| addr.address())
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| s.contains('@'))
        .collect()
}

fn first_address(a: &Address<'_>) -> Option<String> {
    addresses(a).into_iter().next()
}

#[cfg(test)]
mod tests {
    /// Found by the `mime` fuzz target: mail-parser 0.11.9 panics on it.
    #[test]
    fn a_mail_parser_panic_is_an_unparseable_message() {
        let raw = include_bytes!("testdata/mail-parser-panic.eml");
        assert!(matches!(
            super::parse(raw),
            Err(super::MessageError::Unparseable)
        ));
    }

    use super::*;

    const NESTED: &str = "From: Alice <Alice@Partner.example>\r\n\
To: bob@ourcorp.example, Carol <carol@ourcorp.example>\r\n\
Cc: dave@ourcorp.example\r\n\
Subject: =?utf-8?q?Quartalsbericht_=C3=BCberf=C3=A4llig?=\r\n\
Message-ID: <m1@partner.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Hallo Bob, anbei der Bericht =E2=82=AC\r\n\
--inner--\r\n\
--outer\r\n\
Content-Type: application/pdf\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment;\r\n\
\x20filename*=UTF-8''Bericht%20%C3%9Cbersicht.pdf\r\n\
\r\n\
JVBERi0xLjQKJcfsj6IK\r\n\
--outer\r\n\
Content-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=\"../../etc/passwd\"\r\n\
\r\n\
root:x:0:0\r\n\
--outer--\r\n";

    #[test]
    fn parses_nested_multipart_with_encoded_names() {
        let m = parse(NESTED.as_bytes()).unwrap();
        assert_eq!(m.from.as_deref(), Some("alice@partner.example"));
        assert_eq!(m.to, ["bob@ourcorp.example", "carol@ourcorp.example"]);
        assert_eq!(m.cc, ["dave@ourcorp.example"]);
        assert_eq!(m.subject, "Quartalsbericht überfällig");
        assert_eq!(m.message_id.as_deref(), Some("m1@partner.example"));
        assert!(m.text.contains("anbei der Bericht €"), "{:?}", m.text);
        assert_eq!(m.attachments.len(), 2);
        assert_eq!(m.attachments[0].name, "Bericht Übersicht.pdf");
        assert_eq!(m.attachments[0].content_type, "application/pdf");
        assert_eq!(&m.attachments[0].data[..], b"%PDF-1.4\n%\xc7\xec\x8f\xa2\n");
        // The traversal attempt keeps only its last segment.
        assert_eq!(m.attachments[1].name, "passwd");
        assert_eq!(&m.attachments[1].data[..], b"root:x:0:0");
    }

    #[test]
    fn refuses_input_without_headers() {
        assert!(parse(b"just some text\r\nwithout headers\r\n").is_err());
        assert!(parse(b"").is_err());
    }

    #[test]
    fn unnamed_attachment_gets_a_neutral_name() {
        let raw = "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment\r\n\r\nPDF\r\n--b--\r\n";
        let m = parse(raw.as_bytes()).unwrap();
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].name, "attachment-1.pdf");
    }
}
