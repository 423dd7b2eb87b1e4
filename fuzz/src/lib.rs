//! The fuzz targets' bodies: one function per parser that sees outside
//! bytes. Each `src/bin/<target>.rs` hands AFL++'s input to one of them;
//! `tests/corpus.rs`-style replay is `scripts/fuzz --replay`. Nothing in here
//! may panic, hang or allocate without bound on any input; a panic is a
//! finding (docs/reliability.md).

use bytes::Bytes;
use mft_filters::auth::{api_key, connector_key, credential, jwt, partner_key, senders};
use mft_filters::signing::{RequestView, Verifier, VerifyPolicy, VerifyingKey};
use mft_filters::validation::{content_digest, filename, folder, request_head, upload_names};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

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

/// `data` as text, lossily: the parsers that take `&str` see what a
/// header or line decoder in front of them would hand over.
fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// The first byte (a selector or chunk size) and the rest.
fn split_first(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((b, rest)) => (*b, rest),
        None => (0, data),
    }
}

/// A fixed "now" so runs are reproducible: 2023-11-14T22:13:20Z.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Credential extraction (`Authorization` / `X-API-Key`) and the API,
/// partner and connector key parsers. Input: selector byte, then the
/// Authorization value, a NUL, the X-API-Key value.
pub fn credential(data: &[u8]) {
    let (sel, rest) = split_first(data);
    let mut parts = rest.splitn(2, |b| *b == 0);
    let a = parts.next().unwrap_or_default();
    let k = parts.next().unwrap_or_default();
    let authorization = (sel & 1 == 1).then_some(a);
    let x_api_key = (sel & 2 == 2).then_some(k);
    if let Ok(Some(c)) = credential::extract(authorization, x_api_key) {
        let token = c.token();
        let _ = credential::is_jwt_shaped(token);
        if let Ok(k) = api_key::parse(token) {
            let _ = k.principal();
            let _ = k.verify(&[0u8; 32]);
        }
        let _ = partner_key::parse(token).map(|k| partner_key::signing_key(&k));
        let _ = connector_key::parse(token);
        let _ = jwt::peek_issuer(token);
    }
    // The key parsers see whatever a header carried, not only what
    // `extract` lets through.
    let t = text(rest);
    let _ = api_key::parse(&t);
    let _ = partner_key::parse(&t);
    let _ = connector_key::parse(&t);
}

const JWT_ISSUER: &str = "https://issuer.example";
const JWT_SECRET: &[u8] = b"fuzz-hmac-secret-0123456789abcdef";

/// JWT header and claims handling before (and through) the signature
/// check, and JWKS documents. Selector bit 0: the rest is a JWKS document;
/// otherwise a token verified against an HS256 key.
pub fn jwt(data: &[u8]) {
    static KEYS: OnceLock<Option<jwt::JwksKeys>> = OnceLock::new();
    let (sel, rest) = split_first(data);
    if sel & 1 == 1 {
        if let Ok(keys) = jwt::JwksKeys::from_json(rest) {
            let _ = keys.contains_kid("k1");
        }
        return;
    }
    let token = text(rest);
    let _ = jwt::peek_issuer(&token);
    let Some(keys) =
        KEYS.get_or_init(|| jwt::JwksKeys::from_hmac_secret(Some("k1".into()), JWT_SECRET).ok())
    else {
        return;
    };
    let policy = jwt::JwtIssuerPolicy::new(JWT_ISSUER, &["mft"], &[jsonwebtoken::Algorithm::HS256]);
    if let Ok(id) = jwt::verify(&token, &policy, keys, now()) {
        let _ = id.principal();
    }
}

/// RFC 9421 `Signature-Input`/`Signature` parsing and verification, as the
/// backend and a partner's gateway run it. Input lines: Signature-Input,
/// Signature, method, authority, path, query, then `name: value` fields.
pub fn signature(data: &[u8]) {
    static VERIFIER: OnceLock<Option<Verifier>> = OnceLock::new();
    let Some(verifier) = VERIFIER.get_or_init(|| {
        let key = VerifyingKey::hmac(JWT_SECRET, Some("gw")).ok()?;
        Verifier::new(vec![key], VerifyPolicy::default()).ok()
    }) else {
        return;
    };
    let t = text(data);
    let mut lines = t.split('\n');
    let input = lines.next();
    let sig = lines.next();
    let method = lines.next().unwrap_or("GET");
    let authority = lines.next().unwrap_or("backend.example");
    let path = lines.next().unwrap_or("/");
    let query = lines.next().filter(|q| !q.is_empty());
    let fields: Vec<(&str, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n, v.trim()))
        .collect();
    let req = RequestView {
        method,
        authority,
        path,
        query,
        fields: &fields,
    };
    if let Some(i) = input {
        let _ = mft_gateway::trust::wire::nonce_of(i);
    }
    let _ = verifier.verify(&req, input, sig, now());
}

/// `Content-Digest` (RFC 9530) as the federation guard and the partner
/// client parse it.
pub fn content_digest(data: &[u8]) {
    let t = text(data);
    let _ = content_digest::parse(&t);
    let _ = mft_gateway::trust::wire::sha256_of_digest(&t);
    let _ = mft_gateway::trust::wire::content_digest_of_hex(&t);
}

/// Upload and folder names wherever they come from: X-Filename/X-Folder,
/// tus metadata, RFC 8187 `filename*`, the SFTP virtual paths, the request
/// head's path checks, and sender lists.
pub fn names(data: &[u8]) {
    let _ = upload_names::header_filename(data);
    let _ = upload_names::header_folder(data);
    let _ = upload_names::tus_metadata(data);
    let t = text(data);
    let _ = upload_names::parse_tus_metadata(&t);
    let _ = upload_names::extended_filename(&t);
    let _ = filename::validate_filename(&t);
    if let Some(clean) = filename::sanitize_filename(&t) {
        // What the mail bridge keeps must pass the HTTP upload rule.
        if filename::validate_filename(&clean).is_err() {
            panic!("sanitize_filename kept a name validate_filename refuses: {clean:?}");
        }
    }
    let _ = folder::validate_folder(&t);
    let _ = request_head::check_path(&t);
    if let Ok(p) = mft_gateway::bridge::sftp::paths::VPath::parse(&t) {
        let _ = p.display();
        let _ = p.name();
        let _ = p.parent();
        let _ = p.folder_in("/inbox");
    }
    if let Ok(b) = senders::SenderBinding::parse(&t) {
        let _ = b.canonical();
        let _ = b.allows("ops@ourcorp.example");
    }
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
    let body = Bytes::copy_from_slice(body);
    let piece = usize::from(size).max(1);
    runtime().block_on(async move {
        let mut guard = mft_gateway::proxy::multipart_guard::MultipartGuard::start(boundary);
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
    if let Ok(m) = mft_gateway::bridge::message::parse(data) {
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
    let _ = mft_gateway::bridge::smtp::session::parse_command_stream(rest, usize::from(chunk));
    let _ = mft_gateway::bridge::smtp::policy::domain_of(&text(rest));
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
    use mft_gateway::bridge::pop3::client::Wire;
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
    // docs/reliability.md) is caught by `guarded` and is a session error.
    let _ = runtime().block_on(mft_gateway::bridge::imap::session::guarded("fuzz", async {
        imap_session(data).await;
        Ok(())
    }));
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
                    let _ = mft_gateway::bridge::message::parse(body);
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
    use mft_gateway::bridge::sftp::session::{decode_request, MAX_REQUEST};
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

/// Federation JSON from a partner's gateway: deliveries and receipts
/// (inbound) and the answers to ours, with the checks run before any
/// backend call.
pub fn federation(data: &[u8]) {
    use mft_gateway::trust::messages::{DeliveryAccepted, Receipt, RelayedDelivery};
    if let Ok(d) = serde_json::from_slice::<RelayedDelivery>(data) {
        let partner = ["beta.example".to_string()];
        let ours = ["ourcorp.example".to_string()];
        let _ = mft_filters::trust::domain_rules::check_inbound(
            &d.sender,
            &d.recipients,
            &partner,
            &ours,
        );
        let _ = mft_filters::trust::domain_rules::split_recipients(
            &d.recipients,
            &ours,
            &[("beta".to_string(), partner.to_vec())],
        );
        for f in &d.files {
            let _ = mft_gateway::trust::wire::content_digest_of_hex(&f.sha256);
        }
    }
    if let Ok(r) = serde_json::from_slice::<Receipt>(data) {
        let _ = humantime::parse_rfc3339_weak(&r.downloaded_at);
    }
    let _ = serde_json::from_slice::<DeliveryAccepted>(data);
}

/// The config loader (`gateway.toml`): schema, every validation, the
/// error locator.
pub fn config(data: &[u8]) {
    let t = text(data);
    if let Err(e) = mft_config::load_str(&t, std::path::Path::new("fuzz.toml")) {
        let _ = e.to_string();
    }
    let _ = mft_config::limits::parse_size(&t);
    let _ = mft_config::quota::parse(&t);
    let _ = mft_config::pin::parse_pin_sha256(&t);
    let _ = mft_config::smtp::Cidr::parse(&t);
}

/// Every target by name, for the bins and for replaying a corpus.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("credential", credential),
    ("jwt", jwt),
    ("signature", signature),
    ("content_digest", content_digest),
    ("names", names),
    ("multipart", multipart),
    ("mime", mime),
    ("smtp", smtp),
    ("pop3", pop3),
    ("imap", imap),
    ("sftp", sftp),
    ("federation", federation),
    ("config", config),
];
