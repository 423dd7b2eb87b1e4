//! The wire formats mft-gateway reads from outside bytes, apart from the
//! sockets, TLS, store and backend that carry them: every parser here sees
//! what a client, a mail server or a partner sends, and is fuzzed on its own
//! (`fuzz/gateway`, docs/reliability.md) without the gateway's dependency
//! tree.
//!
//! - [`multipart`]: part headers of a streamed `multipart/form-data` body
//!   (upload names, RFC 8187 `filename*`, the folder field).
//! - [`mime`]: a received e-mail into addresses, text and attachments, the
//!   attachments as ranges of the spool file decoded while they are sent.
//! - [`smtp`]: the SMTP command stream and AUTH responses.
//! - [`pop3`]: the POP3 line protocol over any stream.
//! - [`sftp`]: SFTP request framing.
//! - [`panic_guard`]: a third-party parser's panic as a session error.

pub mod mime;
pub mod multipart;
pub mod panic_guard;
pub mod pop3;
pub mod sftp;
pub mod smtp;
