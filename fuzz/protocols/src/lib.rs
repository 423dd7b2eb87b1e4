//! The fuzz targets over `mft-protocols`: the MIME pipeline's parser, the
//! SMTP command reader, the POP3 wire, IMAP as the poller drives it, SFTP
//! framing, the multipart guard. The targets over `mft-filters` and
//! `mft-config` are in `fuzz/core`. Nothing in here may panic, hang or
//! allocate without bound on any input; a panic is a finding.

use bytes::Bytes;
use mft_filters::validation::filename;
use mft_fuzz_core::{split_first, text};
use std::sync::OnceLock;
use std::time::Duration;

/// One current-thread runtime for the async targets (made once per process:
/// AFL++'s persistent mode runs many inputs in one process).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("fuzz harness: cannot build a tokio runtime: {e}"),
        }
    })
}

/// Multipart part headers (names, RFC 8187 `filename*`, the folder field)
/// as the proxy's guard checks them while a body streams. Input: the
/// boundary line, then the body, fed in pieces sized by the first byte.
pub fn multipart(data: &[u8]) {
    let (size, rest) = split_first(data);
    let (boundary, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let boundary = text(boundary).into_owned();
    // The gateway refuses longer ones before the body (proxy/limits.rs,
    // RFC 2046); the guard never sees them.
    if boundary.len() > 70 {
        return;
    }
    let body = Bytes::copy_from_slice(body);
    let piece = usize::from(size).max(1);
    runtime().block_on(async move {
        let mut guard = mft_protocols::multipart::MultipartGuard::start(boundary);
        let mut at = 0;
        while at < body.len() {
            let end = (at + piece).min(body.len());
            let chunk = body.slice(at..end);
            if guard.feed(Some(&chunk), end == body.len()).await.is_err() {
                return;
            }
            at = end;
        }
        let _ = guard.feed(None, true).await;
    });
}

/// The MIME → delivery pipeline's input: a mail as received (SMTP DATA,
/// IMAP FETCH, POP3 RETR) parsed into sender, recipients and attachments;
/// and an Authentication-Results header.
pub fn mime(data: &[u8]) {
    if let Ok(m) = mft_protocols::mime::parse(data) {
        for a in &m.attachments {
            if filename::validate_filename(&a.name).is_err() {
                panic!("attachment name the upload rule refuses: {:?}", a.name);
            }
        }
    }
    let _ = mft_filters::trust::mail_sender::parse(&text(data));
}

/// SMTP command parsing as the session reads it, the stream cut into
/// socket-sized reads (first byte), and AUTH PLAIN initial responses.
pub fn smtp(data: &[u8]) {
    let (chunk, rest) = split_first(data);
    let _ = mft_protocols::smtp::command::parse_command_stream(rest, usize::from(chunk));
}

/// A duplex stream over fixed server bytes: reads give `data`, writes go
/// nowhere. What a hostile mail server sends, without a socket.
fn server_stream(
    data: &[u8],
) -> impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug {
    tokio::io::join(std::io::Cursor::new(data.to_vec()), tokio::io::sink())
}

/// POP3 response handling: a server's whole side of a poll (greeting,
/// STAT, UIDL, LIST, RETR, DELE, QUIT).
pub fn pop3(data: &[u8]) {
    use mft_protocols::pop3::Wire;
    runtime().block_on(async {
        let mut w = Wire::new(server_stream(data), Duration::from_secs(5));
        let _ = w.greeting().await;
        let _ = w.stat().await;
        let _ = w.uidl().await;
        let _ = w.size(1).await;
        let _ = w.retr(1, 64 * 1024).await;
        let _ = w.dele(1).await;
        let _ = w.quit().await;
    });
}

/// IMAP response handling (async-imap / imap-proto as the poller drives
/// them): greeting, LOGIN, CAPABILITY, SELECT, UID FETCH, UID STORE.
pub fn imap(data: &[u8]) {
    // As the poller runs a session: a panic inside imap-proto (known, see
    // docs/reliability.md) is caught and is a session error.
    let _ = runtime().block_on(mft_protocols::panic_guard::caught(imap_session(data)));
}

async fn imap_session(data: &[u8]) {
    use futures_util::StreamExt;
    {
        let mut client = async_imap::Client::new(server_stream(data));
        if !matches!(client.read_response().await, Ok(Some(_))) {
            return;
        }
        let Ok(mut s) = client.login("user", "password").await else {
            return;
        };
        let _ = s.capabilities().await;
        if let Ok(mb) = s.select("INBOX").await {
            let _ = mb.uid_validity;
        }
        if let Ok(stream) = s.uid_fetch("1:*", "(UID RFC822.SIZE)").await {
            let fetched: Vec<_> = stream.take(1000).collect().await;
            for f in fetched.into_iter().flatten() {
                let _ = (f.uid, f.size, f.body().map(<[u8]>::len));
            }
        }
        if let Ok(stream) = s.uid_fetch("1", "(UID BODY.PEEK[])").await {
            let fetched: Vec<_> = stream.take(1000).collect().await;
            for f in fetched.into_iter().flatten() {
                if let Some(body) = f.body() {
                    let _ = mft_protocols::mime::parse(body);
                }
            }
        }
        if let Ok(stream) = s.uid_store("1", "+FLAGS.SILENT (\\Seen)").await {
            let _: Vec<_> = stream.take(1000).collect().await;
        };
    }
}

/// SFTP request packets as the session loop frames and decodes them.
/// Input: what the client writes into the channel (u32 length + packet ...).
pub fn sftp(data: &[u8]) {
    use mft_protocols::sftp::{decode_request, MAX_REQUEST};
    let mut rest = data;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..];
        if len == 0 || len > MAX_REQUEST || len > rest.len() {
            return;
        }
        let (frame, tail) = rest.split_at(len);
        rest = tail;
        let reply = match decode_request(Bytes::copy_from_slice(frame)) {
            Ok(packet) => packet,
            Err(undecodable) => undecodable.reply(),
        };
        let _ = Bytes::try_from(reply);
    }
}

/// A target: its name and the function AFL++'s input goes to.
pub type Target = (&'static str, fn(&[u8]));

/// Every target of this crate by name.
pub const TARGETS: &[Target] = &[
    ("multipart", multipart),
    ("mime", mime),
    ("smtp", smtp),
    ("pop3", pop3),
    ("imap", imap),
    ("sftp", sftp),
];
