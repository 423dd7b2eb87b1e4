//! The SMTP command reader: what a client sends between commands, cut into
//! owned commands by smtp-proto's sans-IO receiver, whatever the socket's
//! reads split. The session state machine (gateway `bridge/smtp`) acts on
//! them.

use super::sasl;
use smtp_proto::request::receiver::RequestReceiver;
use smtp_proto::{Error as ProtoError, Request};
use std::borrow::Cow;

/// A command, owned (smtp-proto's borrows the read buffer).
pub enum Cmd {
    Ehlo(String),
    Helo(String),
    Mail { from: String, size: usize },
    Rcpt(String),
    Data,
    Auth { mechanism: u64, initial: String },
    Noop,
    Vrfy,
    Help,
    StartTls,
    Rset,
    Quit,
    Unsupported,
}

impl From<Request<Cow<'_, str>>> for Cmd {
    fn from(r: Request<Cow<'_, str>>) -> Self {
        match r {
            Request::Ehlo { host } => Cmd::Ehlo(host.into_owned()),
            Request::Helo { host } => Cmd::Helo(host.into_owned()),
            Request::Mail { from } => Cmd::Mail {
                from: from.address.into_owned(),
                size: from.size,
            },
            Request::Rcpt { to } => Cmd::Rcpt(to.address.into_owned()),
            Request::Data => Cmd::Data,
            Request::Auth {
                mechanism,
                initial_response,
            } => Cmd::Auth {
                mechanism,
                initial: initial_response.into_owned(),
            },
            Request::Noop { .. } => Cmd::Noop,
            Request::Vrfy { .. } => Cmd::Vrfy,
            Request::Help { .. } => Cmd::Help,
            Request::StartTls => Cmd::StartTls,
            Request::Rset => Cmd::Rset,
            Request::Quit => Cmd::Quit,
            // LHLO (LMTP), BDAT (CHUNKING is not offered), EXPN, ETRN, ATRN, BURL.
            _ => Cmd::Unsupported,
        }
    }
}

/// Parses the next command out of `pending` (what the client sent and no
/// command has consumed yet) and removes the bytes it used. `None`: the line
/// is not complete yet; the receiver keeps the partial line itself and
/// `pending` is empty. The pure core of the listener's session loop, fuzzed in `fuzz/`.
pub fn next_command(
    receiver: &mut RequestReceiver,
    pending: &mut Vec<u8>,
) -> Option<Result<Cmd, ProtoError>> {
    let (parsed, consumed) = {
        let mut iter = pending.iter();
        let parsed = receiver.ingest(&mut iter).map(Cmd::from);
        (parsed, pending.len() - iter.len())
    };
    match parsed {
        Err(ProtoError::NeedsMoreData { .. }) => {
            pending.clear();
            None
        }
        _ => {
            pending.drain(..consumed);
            Some(parsed)
        }
    }
}

/// Feeds `input` to the command reader in pieces of `chunk` bytes, as reads
/// from a socket would arrive, and returns how many commands and how many
/// protocol errors it produced. For the fuzzer (`fuzz/`): nothing in here
/// may panic or loop on any input.
pub fn parse_command_stream(input: &[u8], chunk: usize) -> (usize, usize) {
    let mut receiver = RequestReceiver::default();
    let mut pending = Vec::new();
    let (mut commands, mut errors) = (0, 0);
    for piece in input.chunks(chunk.max(1)) {
        pending.extend_from_slice(piece);
        while !pending.is_empty() {
            match next_command(&mut receiver, &mut pending) {
                None => break,
                Some(Ok(cmd)) => {
                    commands += 1;
                    if let Cmd::Auth { initial, .. } = cmd {
                        if let Some(raw) = sasl::decode_b64(&initial) {
                            let _ = sasl::decode_plain(&raw);
                        }
                    }
                }
                Some(Err(e)) => {
                    errors += 1;
                    if matches!(e, ProtoError::ResponseTooLong) {
                        // As `protocol_error` does: the rest is garbage.
                        pending.clear();
                    }
                }
            }
        }
    }
    (commands, errors)
}

#[cfg(test)]
mod tests {
    use super::parse_command_stream;

    const SESSION: &[u8] = b"EHLO client.example\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n\
        MAIL FROM:<a@beta.example> SIZE=10\r\nRCPT TO:<b@ourcorp.example>\r\nDATA\r\nQUIT\r\n";

    #[test]
    fn commands_do_not_depend_on_how_reads_cut_the_stream() {
        for chunk in 1..=SESSION.len() {
            assert_eq!(
                parse_command_stream(SESSION, chunk),
                (6, 0),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn an_over_long_line_is_one_error_and_the_reader_recovers() {
        let mut input = b"HELO ".to_vec();
        input.extend(std::iter::repeat_n(b'a', 5000));
        input.extend_from_slice(b"\r\nNOOP\r\nQUIT\r\n");
        let (commands, errors) = parse_command_stream(&input, 512);
        assert!(errors >= 1, "{errors}");
        assert!(commands >= 1, "{commands}");
    }

    #[test]
    fn garbage_is_refused_not_fatal() {
        let (commands, errors) = parse_command_stream(b"\xff\xfe\r\nMAIL FROM:<<>\r\nNOOP\r\n", 3);
        assert_eq!(commands, 1);
        assert_eq!(errors, 2);
    }
}
