//! File names that arrive from outside (`X-Filename`, multipart parts, tus
//! metadata, MIME attachments, SFTP paths).
//!
//! A name is accepted only if it cannot change directories on any platform the
//! backend may store it on, so the rules are deliberately stricter than POSIX.

use thiserror::Error;
use unicode_normalization::UnicodeNormalization;

/// Longest accepted name in bytes (after NFC normalisation), as most file systems allow.
pub const MAX_FILENAME_BYTES: usize = 255;

/// The longest raw name that NFC could bring under [`MAX_FILENAME_BYTES`],
/// with room to spare (see [`validate_filename`]).
const MAX_RAW_FILENAME_BYTES: usize = 4 * MAX_FILENAME_BYTES;

/// Why a file name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FilenameError {
    /// The name is empty or only whitespace.
    #[error("file name is empty")]
    Empty,
    /// The name is `.` or `..` or contains `..`.
    #[error("file name must not contain '..'")]
    DotDot,
    /// The name contains `/` or `\`.
    #[error("file name must not contain a path separator")]
    Separator,
    /// The name contains NUL or another control character.
    #[error("file name must not contain control characters")]
    Control,
    /// The name is longer than [`MAX_FILENAME_BYTES`].
    #[error("file name is longer than {MAX_FILENAME_BYTES} bytes")]
    TooLong,
}

/// Validates `raw` and returns it normalised to Unicode NFC.
///
/// Normalising first means two spellings of the same visible name map to one
/// stored name, and the checks run on what will actually be stored.
pub fn validate_filename(raw: &str) -> Result<String, FilenameError> {
    // Refused before the normalization, whose cost grows with the input (a
    // header value may be 32 KiB of combining marks): NFC shortens a string
    // at most threefold (three Hangul jamo compose into one syllable), so a
    // raw name this long cannot fit after it.
    if raw.len() > MAX_RAW_FILENAME_BYTES {
        return Err(FilenameError::TooLong);
    }
    let name: String = raw.nfc().collect();
    if name.trim().is_empty() {
        return Err(FilenameError::Empty);
    }
    if name.chars().any(char::is_control) {
        return Err(FilenameError::Control);
    }
    if name.contains('/') || name.contains('\\') {
        return Err(FilenameError::Separator);
    }
    if name == "." || name.contains("..") {
        return Err(FilenameError::DotDot);
    }
    if name.len() > MAX_FILENAME_BYTES {
        return Err(FilenameError::TooLong);
    }
    Ok(name)
}

/// Turns a name chosen by a remote sender (a MIME attachment's file name)
/// into one that passes [`validate_filename`], instead of refusing the whole
/// message: the last path segment is kept (`C:\\x\\a.pdf` -> `a.pdf`),
/// control characters are dropped, `..` runs become `_`, and an over-long
/// name is cut on a character boundary keeping its extension. `None` if
/// nothing usable is left (the caller picks a neutral name).
pub fn sanitize_filename(raw: &str) -> Option<String> {
    let nfc: String = raw.nfc().collect();
    let last = nfc.rsplit(['/', '\\']).next().unwrap_or("");
    let mut name: String = last.chars().filter(|c| !c.is_control()).collect();
    while name.contains("..") {
        name = name.replace("..", "_");
    }
    let name = name.trim();
    if name.is_empty() || name == "." {
        return None;
    }
    let mut name = name.to_string();
    if name.len() > MAX_FILENAME_BYTES {
        let ext = match name.rfind('.') {
            Some(i) if name.len() - i <= 16 => name[i..].to_string(),
            _ => String::new(),
        };
        let mut cut = MAX_FILENAME_BYTES - ext.len();
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name.push_str(&ext);
    }
    validate_filename(&name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_the_last_segment_and_drops_what_validation_refuses() {
        assert_eq!(
            sanitize_filename("report.pdf").as_deref(),
            Some("report.pdf")
        );
        assert_eq!(
            sanitize_filename("C:\\Users\\x\\a.pdf").as_deref(),
            Some("a.pdf")
        );
        assert_eq!(
            sanitize_filename("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            sanitize_filename("a..b\u{0}c.txt").as_deref(),
            Some("a_bc.txt")
        );
        assert_eq!(sanitize_filename("...").as_deref(), Some("_."));
        assert_eq!(sanitize_filename("dir/"), None);
        assert_eq!(sanitize_filename("  "), None);
        let long = format!("{}.pdf", "é".repeat(200));
        let s = sanitize_filename(&long).unwrap();
        assert!(s.len() <= MAX_FILENAME_BYTES && s.ends_with(".pdf"));
        assert!(validate_filename(&s).is_ok());
    }

    #[test]
    fn a_raw_name_too_long_to_fit_after_nfc_is_refused_before_it() {
        // 765 bytes of conjoining jamo compose into 255 bytes of syllables.
        let jamo = "\u{1100}\u{1161}\u{11A8}".repeat(85);
        assert_eq!(jamo.len(), 765);
        assert_eq!(validate_filename(&jamo).unwrap().len(), MAX_FILENAME_BYTES);
        assert_eq!(
            validate_filename(&"\u{0301}".repeat(16 * 1024)),
            Err(FilenameError::TooLong)
        );
        assert_eq!(
            validate_filename(&"a".repeat(MAX_RAW_FILENAME_BYTES + 1)),
            Err(FilenameError::TooLong)
        );
    }

    #[test]
    fn accepts_ordinary_and_unicode_names() {
        assert_eq!(
            validate_filename("report 2026.pdf").unwrap(),
            "report 2026.pdf"
        );
        assert_eq!(
            validate_filename("Übersicht.xlsx").unwrap(),
            "Übersicht.xlsx"
        );
        assert_eq!(validate_filename(".profile").unwrap(), ".profile");
    }

    #[test]
    fn normalises_to_nfc() {
        // "e" followed by a combining acute accent becomes the single code point é.
        let decomposed = "cafe\u{301}.txt";
        assert_eq!(validate_filename(decomposed).unwrap(), "caf\u{e9}.txt");
    }

    #[test]
    fn refuses_traversal_separators_and_controls() {
        let cases = [
            ("", FilenameError::Empty),
            ("   ", FilenameError::Empty),
            ("..", FilenameError::DotDot),
            (".", FilenameError::DotDot),
            ("a..b", FilenameError::DotDot),
            ("../etc/passwd", FilenameError::Separator),
            ("dir/file", FilenameError::Separator),
            ("dir\\file", FilenameError::Separator),
            ("nul\0byte", FilenameError::Control),
            ("line\nbreak", FilenameError::Control),
            ("del\u{7f}", FilenameError::Control),
        ];
        for (input, want) in cases {
            assert_eq!(validate_filename(input), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn refuses_names_over_255_bytes_after_normalisation() {
        assert!(validate_filename(&"a".repeat(255)).is_ok());
        assert_eq!(
            validate_filename(&"a".repeat(256)),
            Err(FilenameError::TooLong)
        );
        // 128 two-byte characters are 256 bytes although only 128 characters.
        assert_eq!(
            validate_filename(&"é".repeat(128)),
            Err(FilenameError::TooLong)
        );
    }
}
