//! Incremental quoted-printable decoding for attachments sent straight from
//! a spool file ([`super::Body::QuotedPrintableFile`]): the encoded bytes
//! are read in chunks and decoded as they go, so an attachment is never
//! whole in memory.
//!
//! Decoding is mail-parser's own (`quoted_printable_decode`), applied to
//! segments that end after a line break, or, for a line longer than
//! [`MAX_SEGMENT`], at a fixed point inside it that splits no `=XX` escape
//! and no run of blanks. Where the segments lie depends on the content
//! only, never on how reads cut it, so the bytes sent are the bytes the
//! message parser checked once against what mail-parser decoded before a
//! part is sent this way ([`super::parse_file`]); a part whose decoding does
//! not match exactly is kept in memory as before.

use mail_parser::decoders::quoted_printable::quoted_printable_decode;

/// Longest segment decoded at once: a line longer than this (quoted-
/// printable lines are at most 76 characters, a hostile one is not) is
/// decoded in pieces, so the decoder holds at most this much.
pub const MAX_SEGMENT: usize = 64 * 1024;

/// Decoder state between chunks: the part of a segment not complete yet.
#[derive(Debug, Default, Clone)]
pub struct QpStream {
    pending: Vec<u8>,
    /// Where the search for the next line break in `pending` goes on.
    scanned: usize,
}

/// The encoded text is not quoted-printable as mail-parser reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the quoted-printable text does not decode")]
pub struct Undecodable;

impl QpStream {
    /// A decoder at the start of a part.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes what `input` completes, appending to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Undecodable> {
        self.pending.extend_from_slice(input);
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            let from = self.scanned.saturating_sub(start).min(rest.len());
            let end = match rest[from..].iter().position(|b| *b == b'\n') {
                Some(i) if from + i < MAX_SEGMENT => from + i + 1,
                _ if rest.len() > MAX_SEGMENT + 2 => cut_point(rest),
                _ => {
                    self.scanned = start + rest.len();
                    break;
                }
            };
            decode_into(&rest[..end], out)?;
            start += end;
            self.scanned = start;
        }
        self.pending.drain(..start);
        self.scanned -= start;
        Ok(())
    }

    /// Decodes the last segment (the part's text need not end with a line
    /// break).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), Undecodable> {
        let rest = std::mem::take(&mut self.pending);
        self.scanned = 0;
        if rest.is_empty() {
            return Ok(());
        }
        decode_into(&rest, out)
    }
}

fn decode_into(segment: &[u8], out: &mut Vec<u8>) -> Result<(), Undecodable> {
    let decoded = quoted_printable_decode(segment).ok_or(Undecodable)?;
    out.extend_from_slice(&decoded);
    Ok(())
}

/// Where to cut a line longer than [`MAX_SEGMENT`] (with at least two bytes
/// after that point in `line`): at [`MAX_SEGMENT`], moved back so that the
/// cut splits no `=XX` escape (or soft break) and falls before a byte that
/// is not a blank (mail-parser trims blanks at a line's end, which it can
/// only see within one segment). Never 0: a line of nothing but blanks or
/// escapes is cut at [`MAX_SEGMENT`] and, if that splits it wrongly, the
/// parse-time check keeps the part in memory.
fn cut_point(line: &[u8]) -> usize {
    let mut at = MAX_SEGMENT;
    while at > MAX_SEGMENT / 2 {
        let splits_escape = line[at - 1] == b'=' || (at >= 2 && line[at - 2] == b'=');
        if !splits_escape && !line[at].is_ascii_whitespace() && !line[at - 1].is_ascii_whitespace()
        {
            return at;
        }
        at -= 1;
    }
    MAX_SEGMENT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in(chunks: usize, encoded: &[u8]) -> Result<Vec<u8>, Undecodable> {
        let mut d = QpStream::new();
        let mut out = Vec::new();
        for piece in encoded.chunks(chunks) {
            d.push(piece, &mut out)?;
        }
        d.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes_like_mail_parser_in_any_chunking() {
        let mut encoded = Vec::new();
        for i in 0..2000u32 {
            encoded.extend_from_slice(
                format!("line {i} caf=C3=A9 =3D tail=\r\nsoft-joined {i}  \r\n").as_bytes(),
            );
        }
        let whole = quoted_printable_decode(&encoded).unwrap();
        for cut in [1, 2, 3, 7, 76, 4096, 1 << 20] {
            assert_eq!(decode_in(cut, &encoded).unwrap(), whole, "chunks of {cut}");
        }
    }

    #[test]
    fn a_line_longer_than_a_segment_is_cut_outside_escapes() {
        // One 300 KiB line of escapes and letters, no line break at all.
        let unit = b"ab=3D=C3=A9c";
        let encoded: Vec<u8> = unit.iter().copied().cycle().take(300 * 1024).collect();
        let whole = quoted_printable_decode(&encoded).unwrap();
        for cut in [1, 1000, 65 * 1024, 1 << 20] {
            assert_eq!(decode_in(cut, &encoded).unwrap(), whole, "chunks of {cut}");
        }
    }

    #[test]
    fn text_that_is_not_quoted_printable_is_an_error() {
        assert_eq!(decode_in(5, b"bad ==41 escape\r\n"), Err(Undecodable));
    }
}
