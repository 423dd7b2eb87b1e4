//! Where an attachment's (or any backend upload's) bytes are: in memory, or
//! a range of a spool file sent as it is or decoded while it is read, so a
//! large attachment is never whole in memory. The backend client sends it
//! (and again on retry); the message parser decides which form a part takes.

use bytes::Bytes;
use std::path::PathBuf;

/// A request body that can be sent again on retry.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    Empty,
    /// Bytes in memory.
    Bytes(Bytes),
    /// `len` bytes of the file at `path` from `offset` (a spooled message part).
    File {
        /// File to read.
        path: PathBuf,
        /// First byte.
        offset: u64,
        /// Bytes to send.
        len: u64,
    },
    /// The base64 text in `len` bytes of the file at `path` from `offset`,
    /// decoded while it is sent (a spooled attachment): `decoded_len` bytes.
    Base64File {
        /// File to read.
        path: PathBuf,
        /// First encoded byte.
        offset: u64,
        /// Encoded bytes to read.
        len: u64,
        /// What they decode to, exactly (checked when the message was parsed).
        decoded_len: u64,
    },
    /// The quoted-printable text in `len` bytes of the file at `path` from
    /// `offset`, decoded while it is sent (a spooled attachment):
    /// `decoded_len` bytes.
    QuotedPrintableFile {
        /// File to read.
        path: PathBuf,
        /// First encoded byte.
        offset: u64,
        /// Encoded bytes to read.
        len: u64,
        /// What they decode to, exactly (checked when the message was parsed).
        decoded_len: u64,
    },
}

impl Body {
    /// Whether nothing is sent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes sent: the decoded length for the encoded file ranges.
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
            Body::Base64File { decoded_len, .. }
            | Body::QuotedPrintableFile { decoded_len, .. } => *decoded_len,
        }
    }
}
