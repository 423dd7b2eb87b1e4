//! Checks a streamed request body against its `Content-Digest` without
//! buffering it: every chunk is hashed and passed on one step late, so the
//! last chunk is only released once the whole body matched. On a mismatch
//! the upstream body ends short and the backend discards the upload.

use bytes::{Bytes, BytesMut};
use mft_filters::decision::Rejection;
use sha2::{Digest, Sha256};

/// Hashes the body and holds back its latest chunk.
pub struct DigestGuard {
    expected: [u8; 32],
    hasher: Sha256,
    held: Option<Bytes>,
}

impl DigestGuard {
    /// A guard for a body whose SHA-256 must be `expected`.
    pub fn new(expected: [u8; 32]) -> DigestGuard {
        DigestGuard {
            expected,
            hasher: Sha256::new(),
            held: None,
        }
    }

    /// Takes the next chunk and puts what may go upstream in its place.
    /// `Some(empty)` means "nothing yet" to pingora; `None` would end the body.
    pub fn feed(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) -> Result<(), Rejection> {
        let incoming = body.take().filter(|c| !c.is_empty());
        let released = match incoming {
            Some(chunk) => {
                self.hasher.update(&chunk);
                self.held.replace(chunk)
            }
            None => None,
        };
        if !end_of_stream {
            *body = Some(released.unwrap_or_default());
            return Ok(());
        }
        let actual: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        if actual != self.expected {
            self.held = None;
            return Err(Rejection::bad_request(
                "the body does not match its Content-Digest".to_string(),
                "content_digest_mismatch",
            ));
        }
        *body = Some(match (released, self.held.take()) {
            (Some(a), Some(b)) => {
                let mut both = BytesMut::with_capacity(a.len() + b.len());
                both.extend_from_slice(&a);
                both.extend_from_slice(&b);
                both.freeze()
            }
            (a, b) => a.or(b).unwrap_or_default(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]], expected: [u8; 32]) -> Result<Vec<u8>, Rejection> {
        let mut g = DigestGuard::new(expected);
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let mut body = Some(Bytes::copy_from_slice(c));
            let last = i + 1 == chunks.len();
            g.feed(&mut body, last)?;
            let b = body.expect("a chunk, possibly empty");
            if !last {
                // Nothing beyond what came before this chunk has left.
                assert!(out.len() + b.len() <= chunks[..i].iter().map(|c| c.len()).sum());
            }
            out.extend_from_slice(&b);
        }
        Ok(out)
    }

    #[test]
    fn releases_everything_in_order_when_the_digest_matches() {
        let chunks: [&[u8]; 4] = [b"hello ", b"", b"big ", b"world"];
        let expected: [u8; 32] = Sha256::digest(b"hello big world").into();
        assert_eq!(run(&chunks, expected).unwrap(), b"hello big world");
        assert_eq!(
            run(&[b"one chunk"], Sha256::digest(b"one chunk").into()).unwrap(),
            b"one chunk"
        );
    }

    #[test]
    fn withholds_the_last_chunk_when_the_digest_differs() {
        let chunks: [&[u8]; 3] = [b"aaa", b"bbb", b"ccc"];
        let wrong: [u8; 32] = Sha256::digest(b"aaabbbccd").into();
        let mut g = DigestGuard::new(wrong);
        let mut sent = Vec::new();
        for c in &chunks[..2] {
            let mut body = Some(Bytes::copy_from_slice(c));
            g.feed(&mut body, false).unwrap();
            sent.extend_from_slice(&body.unwrap());
        }
        let mut body = Some(Bytes::from_static(b"ccc"));
        let r = g.feed(&mut body, true).unwrap_err();
        assert_eq!(r.status, 400);
        assert_eq!(sent, b"aaa", "only bytes before the held chunk left");
    }

    #[test]
    fn end_without_data_still_checks() {
        let mut g = DigestGuard::new(Sha256::digest(b"xy").into());
        let mut body = Some(Bytes::from_static(b"xy"));
        g.feed(&mut body, false).unwrap();
        assert_eq!(body.unwrap().len(), 0);
        let mut end = None;
        g.feed(&mut end, true).unwrap();
        assert_eq!(end.unwrap(), Bytes::from_static(b"xy"));
    }
}
