//! SFTP request framing (draft-ietf-secsh-filexfer-02, version 3): one
//! packet after its length, decoded by russh-sftp's types. A packet that
//! does not decode is answered, not fatal. The handlers (gateway
//! `bridge/sftp`) act on what decodes.

use bytes::Bytes;
use russh_sftp::protocol::{Packet, StatusCode};

/// Largest request packet the session loop reads: a 256 KiB WRITE and its
/// header (clients write 32–255 KiB at a time).
pub const MAX_REQUEST: usize = 256 * 1024 + 1024;

/// A request packet that did not decode: answered with `BadMessage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecodable {
    /// The request id, 0 when the packet is too short to carry one.
    pub id: u32,
}

impl Undecodable {
    /// The answer: a `BadMessage` status for the request's id.
    pub fn reply(self) -> Packet {
        Packet::error(self.id, StatusCode::BadMessage)
    }
}

/// Decodes one request packet (the bytes after its length). The pure core
/// of the request loop, fuzzed in `fuzz/`.
pub fn decode_request(mut bytes: Bytes) -> Result<Packet, Undecodable> {
    // Every request but INIT has its id after the type byte: a client
    // waiting for that id must get an answer even when the rest is garbage.
    let id = bytes
        .get(1..5)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    Packet::try_from(&mut bytes).map_err(|e| {
        tracing::debug!(error = %e, "undecodable sftp request");
        Undecodable { id }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undecodable_request_gets_bad_message_with_its_id() {
        // OPEN (3), id 7, then a path length that runs past the packet.
        let frame = Bytes::from_static(&[3, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff, b'/']);
        let undecodable = decode_request(frame).map(|_| ()).unwrap_err();
        assert_eq!(undecodable, Undecodable { id: 7 });
        match undecodable.reply() {
            Packet::Status(s) => {
                assert_eq!(s.id, 7);
                assert_eq!(s.status_code, StatusCode::BadMessage);
            }
            other => panic!("expected a BadMessage status, got {other:?}"),
        }
        // Too short for an id: answered with id 0, not a panic.
        assert_eq!(
            decode_request(Bytes::from_static(&[4])).map(|_| ()),
            Err(Undecodable { id: 0 })
        );
    }

    #[test]
    fn a_well_formed_request_decodes() {
        let mut frame = vec![16, 0, 0, 0, 9, 0, 0, 0, 1];
        frame.push(b'.');
        match decode_request(Bytes::from(frame)) {
            Ok(Packet::RealPath(r)) => {
                assert_eq!(r.id, 9);
                assert_eq!(r.path, ".");
            }
            other => panic!("expected REALPATH, got {other:?}"),
        }
    }
}
