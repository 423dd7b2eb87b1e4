//! Incremental base64 decoding for attachments sent straight from a spool
//! file ([`super::Body::Base64File`]): the encoded bytes are read in chunks
//! and decoded as they go, so an attachment is never whole in memory.
//!
//! Lenient like mail-parser's MIME decoder: line breaks, blanks and bytes
//! outside the alphabet are skipped, `=` ends a group. The message parser
//! checks once that this decoder yields exactly what mail-parser decoded
//! before a part is sent this way ([`super::parse_file`]).

const INVALID: u8 = 0xff;

static TABLE: [u8; 256] = table();

const fn table() -> [u8; 256] {
    let mut t = [INVALID; 256];
    let mut v = 0u8;
    while v < 64 {
        let ch = match v {
            0..=25 => b'A' + v,
            26..=51 => b'a' + (v - 26),
            52..=61 => b'0' + (v - 52),
            62 => b'+',
            _ => b'/',
        };
        t[ch as usize] = v;
        v += 1;
    }
    t
}

/// Decoder state between chunks.
#[derive(Debug, Default, Clone)]
pub struct Base64Stream {
    chunk: u32,
    count: u8,
}

impl Base64Stream {
    /// A decoder at the start of a part.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `input`, appending to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() / 4 * 3 + 3);
        for &ch in input {
            let v = TABLE[ch as usize];
            if v != INVALID {
                self.chunk = (self.chunk << 6) | u32::from(v);
                self.count = (self.count + 1) & 3;
                if self.count == 0 {
                    out.extend_from_slice(&self.chunk.to_be_bytes()[1..]);
                }
            } else if ch == b'=' {
                self.flush(out);
            }
        }
    }

    /// Emits a group cut short by padding or the end of the input.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        match self.count {
            2 => out.push((self.chunk >> 4) as u8),
            3 => out.extend_from_slice(&[(self.chunk >> 10) as u8, (self.chunk >> 2) as u8]),
            _ => {}
        }
        self.count = 0;
        self.chunk = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn decodes_wrapped_base64_in_any_chunking() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        let enc = base64::engine::general_purpose::STANDARD.encode(&data);
        let wrapped: Vec<u8> = enc
            .as_bytes()
            .chunks(76)
            .flat_map(|l| l.iter().copied().chain(*b"\r\n"))
            .collect();
        for cut in [1, 3, 4, 7, 64, 5000] {
            let mut d = Base64Stream::new();
            let mut out = Vec::new();
            for piece in wrapped.chunks(cut) {
                d.push(piece, &mut out);
            }
            d.flush(&mut out);
            assert_eq!(out, data, "chunks of {cut}");
        }
    }
}
