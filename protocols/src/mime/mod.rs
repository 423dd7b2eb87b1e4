//! A received e-mail, parsed once into what a delivery needs: addresses,
//! subject, text and attachments with file names made safe.
//!
//! mail-parser handles nested multiparts, base64 and quoted-printable, and
//! RFC 2047/2231 encoded names; it is lenient by design, so "cannot be
//! parsed" here means the input has no header section at all or a body part
//! we could not decode, which is what SMTP answers 554 5.6.0 for.

pub mod base64_stream;
pub mod body;
pub mod qp_stream;

use base64_stream::Base64Stream;
pub use body::Body;
use bytes::Bytes;
use mail_parser::parsers::MessageStream;
use mail_parser::{Address, Encoding, MessageParser, MimeHeaders, PartType};
use mft_filters::validation::filename::sanitize_filename;
use qp_stream::QpStream;
use std::borrow::Cow;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use tokio::sync::Semaphore;

/// An attachment, decoded.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// File name that passes the HTTP file-name validation.
    pub name: String,
    /// `type/subtype` as declared, `application/octet-stream` if none.
    pub content_type: String,
    /// Decoded content: in memory ([`parse`]), or for a message in a file
    /// ([`parse_file`]) the range of the file it is read (and decoded) from
    /// while it is uploaded.
    pub data: Body,
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
    std::panic::catch_unwind(|| parse_unguarded(raw, None))
        .unwrap_or(Err(MessageError::Unparseable))
}

/// Raw message bytes being parsed at once, process wide ([`parse_file`]).
/// mail-parser needs the whole message as one slice and decodes every part
/// into memory, so a parse costs about twice the message; this budget bounds
/// how many run together. A message larger than the budget parses alone.
pub const PARSE_BUDGET_BYTES: usize = 48 << 20;

static PARSE_BUDGET: Semaphore = Semaphore::const_new(PARSE_BUDGET_BYTES >> 10);

/// A message in a file that could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseFileError {
    /// The file could not be read.
    #[error("cannot read the message {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The message is not one.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The blocking task died (runtime shutting down).
    #[error("message parse task failed: {0}")]
    Task(String),
}

/// Parses the message stored in `path` from `offset` to the end (a spool
/// entry, a mailbox message streamed to disk) within [`PARSE_BUDGET_BYTES`].
/// Attachments that are the file's bytes as they are, or base64 or
/// quoted-printable that [`Base64Stream`] / [`QpStream`] decode exactly as
/// mail-parser did, become [`Body::File`] / [`Body::Base64File`] /
/// [`Body::QuotedPrintableFile`] ranges of the file: what the result holds
/// afterwards is headers and text, not the attachments. Any other (text
/// converted from another charset, an encoding the streaming decoders do
/// not reproduce exactly) is kept decoded in memory.
pub async fn parse_file(path: &Path, offset: u64) -> Result<ParsedMessage, ParseFileError> {
    let io = |source| ParseFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = tokio::fs::metadata(path).await.map_err(io)?.len();
    let kib = usize::try_from(size.saturating_sub(offset) >> 10)
        .unwrap_or(usize::MAX)
        .clamp(1, PARSE_BUDGET_BYTES >> 10);
    let _budget = PARSE_BUDGET
        .acquire_many(u32::try_from(kib).unwrap_or(u32::MAX))
        .await
        .map_err(|e| ParseFileError::Task(e.to_string()))?;
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let io = |source| ParseFileError::Io {
            path: owned.clone(),
            source,
        };
        let mut file = std::fs::File::open(&owned).map_err(io)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut raw = Vec::with_capacity(usize::try_from(size.saturating_sub(offset)).unwrap_or(0));
        file.read_to_end(&mut raw).map_err(io)?;
        let source = Source {
            path: &owned,
            offset,
        };
        std::panic::catch_unwind(|| parse_unguarded(&raw, Some(source)))
            .unwrap_or(Err(MessageError::Unparseable))
            .map_err(ParseFileError::from)
    })
    .await
    .map_err(|e| ParseFileError::Task(e.to_string()))?
}

/// Where the raw bytes being parsed are stored.
#[derive(Clone, Copy)]
struct Source<'a> {
    path: &'a Path,
    offset: u64,
}

/// How an attachment's content reaches the upload: the sender's bytes with
/// only the transfer encoding undone, from a range of the file when that
/// reproduces them exactly, else a copy in memory.
///
/// mail-parser's `contents()` of a text part is its text converted to UTF-8
/// from the declared charset (or lossily): an ISO-8859-1 file, or a CSV cut
/// inside a UTF-8 character, would arrive altered. A text part is therefore
/// taken from its raw range ([`transfer_decoded`]) unless its text is
/// already those very bytes (UTF-8 that needed no change: the usual case,
/// checked without a copy).
fn attachment_body(
    raw: &[u8],
    source: Option<Source<'_>>,
    part: &mail_parser::MessagePart<'_>,
) -> Body {
    let is_text = matches!(part.body, PartType::Text(_) | PartType::Html(_));
    let Some(src) = source else {
        if is_text {
            return Body::Bytes(Bytes::from(transfer_decoded(raw, part).into_owned()));
        }
        return Body::Bytes(Bytes::copy_from_slice(part.contents()));
    };
    if let Some(body) = file_body(raw, src, part, part.contents()) {
        return body;
    }
    if is_text {
        let bytes = transfer_decoded(raw, part);
        return file_body(raw, src, part, &bytes)
            .unwrap_or_else(|| Body::Bytes(Bytes::from(bytes.into_owned())));
    }
    Body::Bytes(Bytes::copy_from_slice(part.contents()))
}

/// A text part's bytes with its transfer encoding undone by mail-parser's
/// own decoders over the part's raw range (which ends before the line break
/// that precedes the next boundary, as mail-parser's decoding does), and
/// no charset conversion.
fn transfer_decoded<'x>(raw: &'x [u8], part: &mail_parser::MessagePart<'_>) -> Cow<'x, [u8]> {
    let (start, end) = (part.offset_body as usize, part.offset_end as usize);
    let Some(encoded) = raw.get(start..end) else {
        return Cow::Owned(part.contents().to_vec());
    };
    let (decoded_to, bytes) = match part.encoding {
        Encoding::Base64 => MessageStream::new(encoded).decode_base64_mime(b""),
        Encoding::QuotedPrintable => MessageStream::new(encoded).decode_quoted_printable_mime(b""),
        // 7bit, 8bit, binary; and a part mail-parser could not decode,
        // which it keeps as it is.
        _ => return Cow::Borrowed(encoded),
    };
    if decoded_to == usize::MAX {
        return Cow::Borrowed(encoded);
    }
    bytes
}

/// `contents` as a range of the file: the bytes as they are (7bit, 8bit,
/// binary), or base64 or quoted-printable that the streaming decoders turn
/// into exactly `contents`.
fn file_body(
    raw: &[u8],
    src: Source<'_>,
    part: &mail_parser::MessagePart<'_>,
    contents: &[u8],
) -> Option<Body> {
    let base = raw.as_ptr() as usize;
    let at = contents.as_ptr() as usize;
    // The part's bytes as they are in the message (7bit, 8bit, binary).
    if at >= base && at + contents.len() <= base + raw.len() && !contents.is_empty() {
        return Some(Body::File {
            path: src.path.to_path_buf(),
            offset: src.offset + (at - base) as u64,
            len: contents.len() as u64,
        });
    }
    let (start, end) = (part.offset_body as usize, part.offset_end as usize);
    if start > end || end > raw.len() {
        return None;
    }
    let encoded = &raw[start..end];
    let (path, offset, len, decoded_len) = (
        src.path.to_path_buf(),
        src.offset + start as u64,
        encoded.len() as u64,
        contents.len() as u64,
    );
    match part.encoding {
        Encoding::Base64 if base64_decodes_to(encoded, contents) => Some(Body::Base64File {
            path,
            offset,
            len,
            decoded_len,
        }),
        Encoding::QuotedPrintable if qp_decodes_to(encoded, contents) => {
            Some(Body::QuotedPrintableFile {
                path,
                offset,
                len,
                decoded_len,
            })
        }
        _ => None,
    }
}

/// Whether a streaming decoder turns `encoded` into exactly `want`,
/// checked piece by piece (no second copy of the attachment): `push`
/// decodes one piece, `finish` what the decoder held back; each says
/// whether the input was valid.
fn decodes_to(
    encoded: &[u8],
    want: &[u8],
    mut push: impl FnMut(&[u8], &mut Vec<u8>) -> bool,
    finish: impl FnOnce(&mut Vec<u8>) -> bool,
) -> bool {
    let mut out = Vec::with_capacity(96 << 10);
    let mut matched = 0usize;
    let mut check = |out: &mut Vec<u8>| {
        let ok = want.get(matched..matched + out.len()) == Some(&out[..]);
        matched += out.len();
        out.clear();
        ok
    };
    for piece in encoded.chunks(64 << 10) {
        if !push(piece, &mut out) || !check(&mut out) {
            return false;
        }
    }
    finish(&mut out) && check(&mut out) && matched == want.len()
}

/// [`decodes_to`] with [`QpStream`].
fn qp_decodes_to(encoded: &[u8], want: &[u8]) -> bool {
    let decoder = std::cell::RefCell::new(QpStream::new());
    decodes_to(
        encoded,
        want,
        |piece, out| decoder.borrow_mut().push(piece, out).is_ok(),
        |out| decoder.borrow_mut().finish(out).is_ok(),
    )
}

/// [`decodes_to`] with [`Base64Stream`].
fn base64_decodes_to(encoded: &[u8], want: &[u8]) -> bool {
    let decoder = std::cell::RefCell::new(Base64Stream::new());
    decodes_to(
        encoded,
        want,
        |piece, out| {
            decoder.borrow_mut().push(piece, out);
            true
        },
        |out| {
            decoder.borrow_mut().flush(out);
            true
        },
    )
}

fn parse_unguarded(raw: &[u8], source: Option<Source<'_>>) -> Result<ParsedMessage, MessageError> {
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
            data: attachment_body(raw, source, part),
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

    fn in_memory(b: &Body) -> &[u8] {
        match b {
            Body::Bytes(b) => b,
            other => panic!("not in memory: {other:?}"),
        }
    }

    /// What an upload of `b` sends, read the way the backend client does.
    fn sent(b: &Body) -> Vec<u8> {
        match b {
            Body::Bytes(b) => b.to_vec(),
            Body::File { path, offset, len } => {
                let all = std::fs::read(path).unwrap();
                all[*offset as usize..(*offset + *len) as usize].to_vec()
            }
            Body::Base64File {
                path,
                offset,
                len,
                decoded_len,
            } => {
                let all = std::fs::read(path).unwrap();
                let mut d = Base64Stream::new();
                let mut out = Vec::new();
                for piece in all[*offset as usize..(*offset + *len) as usize].chunks(7) {
                    d.push(piece, &mut out);
                }
                d.flush(&mut out);
                assert_eq!(out.len() as u64, *decoded_len);
                out
            }
            Body::QuotedPrintableFile {
                path,
                offset,
                len,
                decoded_len,
            } => {
                let all = std::fs::read(path).unwrap();
                let mut d = QpStream::new();
                let mut out = Vec::new();
                for piece in all[*offset as usize..(*offset + *len) as usize].chunks(7) {
                    d.push(piece, &mut out).unwrap();
                }
                d.finish(&mut out).unwrap();
                assert_eq!(out.len() as u64, *decoded_len);
                out
            }
            Body::Empty => Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_message_in_a_file_keeps_its_attachments_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.msg");
        let mut file = b"{\"meta\":1}\n".to_vec();
        let offset = file.len() as u64;
        file.extend_from_slice(NESTED.as_bytes());
        std::fs::write(&path, &file).unwrap();
        let m = parse_file(&path, offset).await.unwrap();
        assert_eq!(m.subject, "Quartalsbericht überfällig");
        assert_eq!(m.attachments.len(), 2);
        assert!(
            matches!(m.attachments[0].data, Body::Base64File { .. }),
            "{:?}",
            m.attachments[0].data
        );
        assert_eq!(
            sent(&m.attachments[0].data),
            b"%PDF-1.4\n%\xc7\xec\x8f\xa2\n"
        );
        assert!(matches!(m.attachments[1].data, Body::File { .. }));
        assert_eq!(sent(&m.attachments[1].data), b"root:x:0:0");
        // Each equals what the in-memory parse decodes.
        let mem = parse(NESTED.as_bytes()).unwrap();
        for (a, b) in m.attachments.iter().zip(&mem.attachments) {
            assert_eq!(sent(&a.data), sent(&b.data));
        }
    }

    #[tokio::test]
    async fn quoted_printable_and_unpadded_base64_stay_exact() {
        let raw = "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: quoted-printable\r\n\
Content-Disposition: attachment; filename=q.bin\r\n\r\nA=3DB=\r\nC\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=u.bin\r\n\r\nYWJjZA\r\n--b--\r\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.msg");
        std::fs::write(&path, raw).unwrap();
        let m = parse_file(&path, 0).await.unwrap();
        let mem = parse(raw.as_bytes()).unwrap();
        assert_eq!(m.attachments.len(), 2);
        assert_eq!(sent(&m.attachments[0].data), b"A=BC");
        // Sent from the file, decoded on the way, not held in memory.
        assert!(
            matches!(m.attachments[0].data, Body::QuotedPrintableFile { .. }),
            "{:?}",
            m.attachments[0].data
        );
        // Whatever mail-parser makes of an unpadded group, the upload sends the same.
        assert!(sent(&m.attachments[1].data).starts_with(b"abc"));
        for (a, b) in m.attachments.iter().zip(&mem.attachments) {
            assert_eq!(sent(&a.data), sent(&b.data));
        }
    }

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
        assert_eq!(
            in_memory(&m.attachments[0].data),
            b"%PDF-1.4\n%\xc7\xec\x8f\xa2\n"
        );
        // The traversal attempt keeps only its last segment.
        assert_eq!(m.attachments[1].name, "passwd");
        assert_eq!(in_memory(&m.attachments[1].data), b"root:x:0:0");
    }

    #[tokio::test]
    async fn a_large_quoted_printable_attachment_is_sent_from_the_file() {
        // Text with non-ASCII, `=`, trailing blanks and soft breaks, as a
        // mail client writes a CSV export: 2 MiB encoded.
        let mut body = String::new();
        let mut decoded = Vec::new();
        let mut i = 0u32;
        while body.len() < 2 << 20 {
            let line = format!("{i};Gr=C3=BC=C3=9Fe;a=3Db;");
            body.push_str(&line);
            body.push_str("padding-to-a-soft-break=\r\n");
            body.push_str(&format!("end {i}\r\n"));
            decoded.extend_from_slice(
                format!("{i};Grüße;a=b;padding-to-a-soft-breakend {i}\r\n").as_bytes(),
            );
            i += 1;
        }
        let raw = format!(
            "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--b\r\nContent-Type: text/csv; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\
Content-Disposition: attachment; filename=export.csv\r\n\r\n{body}--b--\r\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.msg");
        std::fs::write(&path, &raw).unwrap();
        let m = parse_file(&path, 0).await.unwrap();
        assert_eq!(m.attachments.len(), 1);
        assert!(
            matches!(m.attachments[0].data, Body::QuotedPrintableFile { .. }),
            "{:?}",
            m.attachments[0].data
        );
        let mem = parse(raw.as_bytes()).unwrap();
        let want = in_memory(&mem.attachments[0].data);
        assert_eq!(sent(&m.attachments[0].data), want);
        // mail-parser drops the line break before the boundary.
        assert_eq!(want, &decoded[..decoded.len() - 2]);
    }

    /// Text attachments arrive as the sender's bytes after transfer
    /// decoding, never converted from their charset: an ISO-8859-1 file
    /// sent 8bit and quoted-printable, a UTF-8 CSV cut inside a character
    /// (base64), and one declared UTF-8 that is not.
    #[tokio::test]
    async fn text_attachments_keep_the_senders_bytes() {
        use base64::Engine as _;
        let latin1: &[u8] = b"Gr\xfc\xdfe aus K\xf6ln;Preis=5\xa4\r\nZeile 2\r\n";
        let latin1_qp = "Gr=FC=DFe aus K=F6ln;Preis=3D5=A4\r\nZeile 2\r\n";
        // "Grüße" cut after the first byte of "ü".
        let cut: &[u8] = &"id;name\r\n1;Grüße\r\n".as_bytes()[..14];
        assert_eq!(cut.last(), Some(&0xc3), "cut inside the \"ü\"");
        let cut_b64 = base64::engine::general_purpose::STANDARD.encode(cut);
        let not_utf8: &[u8] = b"caf\xe9\r\n";
        let mut raw = b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\
Content-Disposition: attachment; filename=latin1.txt\r\n\r\n"
            .to_vec();
        raw.extend_from_slice(latin1);
        raw.extend_from_slice(
            b"\r\n--b\r\nContent-Type: text/csv; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
Content-Disposition: attachment; filename=latin1-qp.csv\r\n\r\n",
        );
        raw.extend_from_slice(latin1_qp.as_bytes());
        raw.extend_from_slice(
            b"\r\n--b\r\nContent-Type: text/csv; charset=utf-8\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=cut.csv\r\n\r\n",
        );
        raw.extend_from_slice(cut_b64.as_bytes());
        raw.extend_from_slice(
            b"\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Disposition: attachment; filename=not-utf8.txt\r\n\r\n",
        );
        raw.extend_from_slice(not_utf8);
        raw.extend_from_slice(b"\r\n--b--\r\n");
        // Each part is followed by the line break that belongs to the boundary.
        let want: [&[u8]; 4] = [latin1, latin1, cut, not_utf8];
        let mem = parse(&raw).unwrap();
        let names: Vec<&str> = mem.attachments.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            ["latin1.txt", "latin1-qp.csv", "cut.csv", "not-utf8.txt"]
        );
        assert_eq!(mem.text.trim(), "hi", "the body stays the message text");
        for (a, want) in mem.attachments.iter().zip(want) {
            assert_eq!(in_memory(&a.data), want, "{}", a.name);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.msg");
        std::fs::write(&path, &raw).unwrap();
        let m = parse_file(&path, 0).await.unwrap();
        for (a, want) in m.attachments.iter().zip(want) {
            assert_eq!(sent(&a.data), want, "{}", a.name);
        }
        // Sent from the file, decoded on the way, not held in memory.
        assert!(matches!(m.attachments[0].data, Body::File { .. }));
        assert!(matches!(
            m.attachments[1].data,
            Body::QuotedPrintableFile { .. }
        ));
        assert!(matches!(m.attachments[2].data, Body::Base64File { .. }));
        assert!(matches!(m.attachments[3].data, Body::File { .. }));
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
