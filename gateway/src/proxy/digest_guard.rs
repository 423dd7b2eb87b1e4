//! Checks a streamed request body against its `Content-Digest` without
//! buffering it: every chunk is hashed and passed on one step late, so the
//! last chunk is only released once the whole body matched. On a mismatch
//! the upstream body ends short and the backend discards the upload.
//! Used for partner uploads (the signed sha-256) and for clients' uploads
//! on `/api/v1/` (sha-256 and/or sha-512, whichever the client sent).

use bytes::{Bytes, BytesMut};
use mft_filters::decision::Rejection;
use mft_filters::validation::content_digest::{self, ClaimedDigest};
use sha2::{Digest, Sha256, Sha512};

/// Hashes the body and holds back its latest chunk.
///
/// The hash states are boxed: unboxed they made the guard ~450 bytes, and
/// every request's context and upstream body carried that inline, digest
/// or not, through the ~20 moves a request makes on its way upstream.
pub struct DigestGuard {
    sha256: Option<Box<([u8; 32], Sha256)>>,
    sha512: Option<Box<([u8; 64], Sha512)>>,
    held: Option<Bytes>,
}

impl DigestGuard {
    /// A guard for a body whose SHA-256 must be `expected`.
    pub fn new(expected: [u8; 32]) -> DigestGuard {
        DigestGuard::claimed(&ClaimedDigest {
            sha256: Some(expected),
            sha512: None,
        })
    }

    /// A guard checking every digest in `claimed`.
    pub fn claimed(claimed: &ClaimedDigest) -> DigestGuard {
        DigestGuard {
            sha256: claimed.sha256.map(|d| Box::new((d, Sha256::new()))),
            sha512: claimed.sha512.map(|d| Box::new((d, Sha512::new()))),
            held: None,
        }
    }

    /// Whether an empty body matches `claimed`: for requests whose body is
    /// known to be empty before anything streams.
    pub fn check_empty(claimed: &ClaimedDigest) -> Result<(), Rejection> {
        let mut guard = DigestGuard::claimed(claimed);
        guard.finish()
    }

    fn finish(&mut self) -> Result<(), Rejection> {
        let ok256 = self.sha256.take().is_none_or(|state| {
            let (expected, hasher) = *state;
            let actual: [u8; 32] = hasher.finalize().into();
            actual == expected
        });
        let ok512 = self.sha512.take().is_none_or(|state| {
            let (expected, hasher) = *state;
            let actual: [u8; 64] = hasher.finalize().into();
            actual == expected
        });
        if ok256 && ok512 {
            Ok(())
        } else {
            self.held = None;
            Err(content_digest::mismatch())
        }
    }

    /// Takes the next chunk and puts what may go upstream in its place.
    /// `Some(empty)` means "nothing yet" to pingora; `None` would end the body.
    pub fn feed(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) -> Result<(), Rejection> {
        let incoming = body.take().filter(|c| !c.is_empty());
        let released = match incoming {
            Some(chunk) => {
                if let Some(state) = self.sha256.as_mut() {
                    state.1.update(&chunk);
                }
                if let Some(state) = self.sha512.as_mut() {
                    state.1.update(&chunk);
                }
                self.held.replace(chunk)
            }
            None => None,
        };
        if !end_of_stream {
            *body = Some(released.unwrap_or_default());
            return Ok(());
        }
        self.finish()?;
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

/// The guard for a client's upload on `/api/v1/`: `None` without a
/// `Content-Digest`. A body already known to be empty is checked at once
/// (`body_empty`), so nothing is held for it.
pub fn for_client(
    headers: &http::HeaderMap,
    body_empty: bool,
) -> Result<Option<DigestGuard>, Rejection> {
    let mut lines = headers
        .get_all(super::names::CONTENT_DIGEST)
        .iter()
        .peekable();
    if lines.peek().is_none() {
        return Ok(None);
    }
    let mut joined = String::new();
    for line in lines {
        let text = line
            .to_str()
            .map_err(|_| content_digest::DigestFieldError::Malformed.rejection())?;
        if !joined.is_empty() {
            joined.push_str(", ");
        }
        joined.push_str(text);
    }
    let claimed = content_digest::parse(&joined).map_err(|e| e.rejection())?;
    if body_empty {
        DigestGuard::check_empty(&claimed)?;
        return Ok(None);
    }
    Ok(Some(DigestGuard::claimed(&claimed)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mft_filters::problem_types as pt;

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
        assert_eq!(r.problem_type, pt::DIGEST_MISMATCH);
        assert_eq!(sent, b"aaa", "only bytes before the held chunk left");
    }

    #[test]
    fn sha512_is_checked_alongside_sha256() {
        let body = b"some bytes";
        let good = ClaimedDigest {
            sha256: Some(Sha256::digest(body).into()),
            sha512: Some(Sha512::digest(body).into()),
        };
        let mut g = DigestGuard::claimed(&good);
        let mut b = Some(Bytes::from_static(body));
        g.feed(&mut b, true).unwrap();
        assert_eq!(b.unwrap(), Bytes::from_static(body));
        let bad = ClaimedDigest {
            sha512: Some(Sha512::digest(b"other").into()),
            ..good
        };
        let mut g = DigestGuard::claimed(&bad);
        let mut b = Some(Bytes::from_static(body));
        assert!(g.feed(&mut b, true).is_err());
        assert!(DigestGuard::check_empty(&bad).is_err());
        let empty = ClaimedDigest {
            sha256: Some(Sha256::digest(b"").into()),
            sha512: None,
        };
        assert!(DigestGuard::check_empty(&empty).is_ok());
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
