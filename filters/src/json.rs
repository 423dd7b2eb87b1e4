//! A JSON object written field by field into a byte buffer.
//!
//! For the two objects written on every refused or audited request (the
//! problem+json body and the audit line): serde_json's derive walks its
//! generic serializer and escapes byte by byte, about three times the
//! instructions of copying runs that need no escape (callgrind, per 401).
//! Their tests check the output against serde_json's, value for value.

/// Appends `s` as a JSON string, quotes included (RFC 8259 §7).
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Ids, paths and names rarely need an escape: one pass without early
    // exit settles that before the search below is needed at all (a third
    // fewer instructions per audit line than searching from the start).
    let special = bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !special {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    while let Some(i) = next_escape(bytes, start) {
        out.extend_from_slice(&bytes[start..i]);
        let b = bytes[i];
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => b"",
        };
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The index of the first byte at or after `from` that JSON must escape.
/// Eight bytes at a time: audit lines are mostly ids, paths and names with
/// nothing to escape, and a byte-at-a-time loop was a tenth of the audit
/// writer's cost per request.
fn next_escape(bytes: &[u8], mut from: usize) -> Option<usize> {
    while let Some(chunk) = bytes.get(from..from + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if word_needs_escape(u64::from_le_bytes(word)) {
            break;
        }
        from += 8;
    }
    bytes
        .get(from..)?
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|p| p + from)
}

/// Whether any byte of `w` is below 0x20, `"` or `\`: the usual
/// "has a zero byte" test, exact for the question "any?".
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let q = w ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q & HIGH;
    let bs = w ^ (ONES * u64::from(b'\\'));
    let backslash = bs.wrapping_sub(ONES) & !bs & HIGH;
    below_space | quote | backslash != 0
}

/// Writes one JSON object: `{` on creation, `}` on [`Object::end`].
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    /// Opens an object at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    /// Keys are the caller's identifiers (`request_id`, `status`), never
    /// outside text: written as they are, without the escape scan that a
    /// dozen keys per audit line would otherwise pay.
    fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        debug_assert!(
            next_escape(key.as_bytes(), 0).is_none(),
            "JSON key {key:?} needs escaping"
        );
        self.out.reserve(key.len() + 4);
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    /// `"key":"value"`.
    pub fn str(&mut self, key: &'static str, value: &str) -> &mut Self {
        let out = self.key(key);
        push_str(out, value);
        self
    }

    /// `"key":"value"` when there is a value.
    pub fn opt_str(&mut self, key: &'static str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.str(key, v);
        }
        self
    }

    /// `"key":n`.
    pub fn uint(&mut self, key: &'static str, value: u64) -> &mut Self {
        let out = self.key(key);
        out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// `"key":n` when there is a value.
    pub fn opt_uint(&mut self, key: &'static str, value: Option<u64>) -> &mut Self {
        if let Some(v) = value {
            self.uint(key, v);
        }
        self
    }

    /// `"key":` followed by whatever `write` appends (a JSON value).
    pub fn raw(&mut self, key: &'static str, write: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        write(self.key(key));
        self
    }

    /// Closes the object.
    pub fn end(&mut self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_as_serde_json_does() {
        for s in [
            "",
            "plain",
            "quote \" and backslash \\",
            "line\nbreak\rtab\t",
            "\u{0}\u{1}\u{8}\u{c}\u{1f}\u{7f}",
            "ünïcödé ✓ 🚀",
            "/api/v1/files/a b?c=d&e",
        ] {
            let mut ours = Vec::new();
            push_str(&mut ours, s);
            let theirs = serde_json::to_vec(s).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
        }
    }

    #[test]
    fn escapes_are_found_at_every_offset_within_a_word() {
        for special in ['"', '\\', '\n', '\u{1}', '\u{1f}'] {
            for len in 0..20 {
                for at in 0..=len {
                    let mut s: String = "abcdefghijklmnopqrst".chars().take(len).collect();
                    s.insert(at, special);
                    // Bytes just outside the escaped range must pass through.
                    s.push_str(" ~\u{7f}é");
                    let mut ours = Vec::new();
                    push_str(&mut ours, &s);
                    assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn objects_skip_absent_fields() {
        let mut out = Vec::new();
        Object::new(&mut out)
            .str("a", "x")
            .opt_str("b", None)
            .uint("c", 7)
            .opt_uint("d", None)
            .raw("e", |o| o.extend_from_slice(b"true"))
            .end();
        assert_eq!(out, br#"{"a":"x","c":7,"e":true}"#);
    }
}
