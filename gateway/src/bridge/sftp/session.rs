//! The SFTP request loop, driven here rather than by russh-sftp's server
//! (which awaits each handler before reading the next request): requests
//! are decoded with russh-sftp's protocol types and answered in order, but
//! a WRITE is answered as soon as its bytes are queued for the backend, so
//! a client's pipelined writes keep flowing; the bounded queue is the
//! backpressure (we stop reading the channel, the SSH window closes).

use super::auth::User;
use super::delivery::CompletedUpload;
use super::download::Download;
use super::fs::{Fs, LIST_PAGE};
use super::metrics::SftpMetrics;
use super::paths::VPath;
use super::upload::{Upload, UploadLimits};
use crate::audit::{AuditLog, AuditRecord};
use crate::backend_client::FileInfo;
use bytes::{Buf, Bytes, BytesMut};
use mft_config::sftp::Permissions;
use mft_protocols::sftp::{decode_request, MAX_REQUEST};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle as HandleReply, Name, OpenFlags, Packet, Status,
    StatusCode, Version,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Names per READDIR reply.
const DIR_BATCH: usize = 100;
/// Open handles per session.
const MAX_HANDLES: usize = 64;

/// A failed request: status code and the message the client prints.
type Fail = (StatusCode, String);

fn fail(code: StatusCode, msg: impl Into<String>) -> Fail {
    (code, msg.into())
}

enum Open {
    Dir(Box<Dir>),
    Read(Box<Download>),
    Write { upload: Box<Upload>, path: VPath },
}

/// An open folder, read from the backend one page per READDIR batch:
/// at most one page of entries is held, never the whole folder (unless the
/// backend cannot page, docs/sftp.md).
struct Dir {
    /// Entries to send with the next READDIR answers.
    ready: VecDeque<File>,
    folder: String,
    /// Where the next page starts; `None` once the last page was read.
    cursor: Option<String>,
    /// The last file name sent: a page lists one name's files newest
    /// first, and only the newest is shown, even across pages.
    last_name: Option<String>,
}

impl Dir {
    /// Queues a page's files (sorted by name, the newest first per name).
    fn take_page(&mut self, files: Vec<FileInfo>) {
        for e in files {
            if self.last_name.as_deref() == Some(e.name.as_str()) {
                continue;
            }
            self.last_name = Some(e.name.clone());
            self.ready
                .push_back(File::new(e.name.clone(), file_attrs(&e)));
        }
    }
}

/// What a session knows besides its handles.
pub struct SessionCtx {
    /// The user's view of the backend.
    pub fs: Fs,
    /// The logged-in user.
    pub user: Arc<User>,
    /// What this session may do: the user's permissions, narrowed to the
    /// key's scopes for an API-key login.
    pub permissions: Permissions,
    /// `key:<id>` of an API-key login, audited beside the user.
    pub credential: Option<String>,
    /// Upload limits.
    pub limits: UploadLimits,
    /// Series.
    pub metrics: Arc<SftpMetrics>,
    /// Audit trail.
    pub audit: AuditLog,
    /// Client address.
    pub client_ip: Option<IpAddr>,
    /// Sender address of on_upload deliveries.
    pub sender: String,
    /// SIGTERM: no new transfers; open ones finish up to the timeout.
    pub drain: crate::drain::Drain,
    /// A sender-bound key's allowed senders (API-key logins only).
    pub senders: Option<std::sync::Arc<mft_filters::auth::senders::SenderBinding>>,
    /// Where on_upload deliveries go (durably, retried).
    pub deliveries: Arc<super::delivery::SftpDeliveries>,
}

/// One SFTP session.
pub struct Session {
    ctx: SessionCtx,
    handles: HashMap<String, Open>,
    next_handle: u64,
    /// One per open file: the process waits for them at shutdown.
    transfers: HashMap<String, crate::drain::WorkGuard>,
}

/// Reads requests from `reader` and answers on `writer` until the client
/// closes the channel or breaks the protocol, or the shutdown timeout
/// passed. Open uploads are dropped on the way out, which terminates them:
/// a session without CLOSE publishes nothing.
pub async fn run<R, W>(mut reader: R, mut writer: W, ctx: SessionCtx)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let drain = ctx.drain.clone();
    let mut session = Session {
        ctx,
        handles: HashMap::new(),
        next_handle: 1,
        transfers: HashMap::new(),
    };
    let aborted = tokio::select! {
        () = serve(&mut reader, &mut writer, &mut session) => false,
        () = drain.aborting() => true,
    };
    if aborted && !session.handles.is_empty() {
        tracing::warn!(user = %session.ctx.user.config.name, open = session.handles.len(),
            "shutdown timeout: sftp session closed with files open; unfinished uploads are discarded");
    }
    // Dropping the handles terminates unfinished uploads.
    drop(session);
}

async fn serve<R, W>(reader: &mut R, writer: &mut W, session: &mut Session)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while let Ok(len) = reader.read_u32().await {
        let len = len as usize;
        if len == 0 || len > MAX_REQUEST {
            tracing::info!(len, "sftp packet too large; closing the session");
            break;
        }
        let mut buf = BytesMut::zeroed(len);
        if reader.read_exact(&mut buf).await.is_err() {
            break;
        }
        let reply = match decode_request(buf.freeze()) {
            Ok(request) => session.handle(request).await,
            Err(undecodable) => undecodable.reply(),
        };
        let out = match Bytes::try_from(reply) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode an sftp reply");
                break;
            }
        };
        if writer.write_all(&out).await.is_err() || writer.flush().await.is_err() {
            break;
        }
    }
}

fn status(id: u32, (code, msg): Fail) -> Packet {
    Packet::Status(Status {
        id,
        status_code: code,
        error_message: msg,
        language_tag: "en-US".into(),
    })
}

fn ok(id: u32) -> Packet {
    Packet::status(id, StatusCode::Ok, "Ok", "en-US")
}

fn backend_fail(e: impl std::fmt::Display) -> Fail {
    tracing::warn!(error = %e, "sftp backend call failed");
    fail(
        StatusCode::Failure,
        "the file service is unavailable; try again later",
    )
}

fn dir_attrs() -> FileAttributes {
    FileAttributes {
        size: Some(0),
        permissions: Some(0o40755),
        ..FileAttributes::default()
    }
}

fn file_attrs(e: &FileInfo) -> FileAttributes {
    let mtime = e.mtime();
    FileAttributes {
        size: Some(e.size),
        permissions: Some(0o100644),
        atime: Some(mtime),
        mtime: Some(mtime),
        ..FileAttributes::default()
    }
}

/// An SSH string from an extended request's payload.
fn ssh_string(data: &mut Bytes) -> Option<String> {
    if data.remaining() < 4 {
        return None;
    }
    let n = data.get_u32() as usize;
    if data.remaining() < n {
        return None;
    }
    String::from_utf8(data.split_to(n).to_vec()).ok()
}

/// Whether `packet` starts something new at the backend (opens, lists,
/// looks up or changes files) rather than going on with an open handle.
fn starts_an_operation(packet: &Packet) -> bool {
    match packet {
        Packet::Open(_)
        | Packet::OpenDir(_)
        | Packet::Stat(_)
        | Packet::Lstat(_)
        | Packet::Remove(_)
        | Packet::MkDir(_)
        | Packet::RmDir(_)
        | Packet::Rename(_) => true,
        Packet::Extended(x) => x.request == "posix-rename@openssh.com",
        _ => false,
    }
}

/// The status text of an operation refused while the audit trail cannot be
/// written and `audit.on_failure = "deny"`.
pub const AUDIT_UNAVAILABLE: &str =
    "the gateway cannot write its audit trail right now, so it starts no file operation; try again later";

impl Session {
    async fn handle(&mut self, packet: Packet) -> Packet {
        let id = packet.get_request_id();
        // audit.on_failure = "deny": nothing new starts while its records
        // cannot be written; transfers already open go on (their records
        // wait in memory), as a request under way does on HTTPS.
        if self.ctx.audit.denying() && starts_an_operation(&packet) {
            tracing::warn!(user = %self.ctx.user.config.name, "sftp operation refused: the audit trail cannot be written (audit.on_failure = \"deny\")");
            return status(id, fail(StatusCode::Failure, AUDIT_UNAVAILABLE));
        }
        let result = match packet {
            Packet::Init(_) => {
                let mut v = Version::new();
                v.extensions
                    .insert("posix-rename@openssh.com".into(), "1".into());
                v.extensions.insert("fsync@openssh.com".into(), "1".into());
                return Packet::Version(v);
            }
            Packet::RealPath(r) => self.realpath(id, &r.path),
            Packet::Stat(s) => self.stat(id, &s.path).await,
            Packet::Lstat(s) => self.stat(id, &s.path).await,
            Packet::Fstat(f) => self.fstat(id, &f.handle),
            Packet::OpenDir(o) => self.opendir(id, &o.path).await,
            Packet::ReadDir(r) => self.readdir(id, &r.handle).await,
            Packet::Open(o) => self.open(id, &o.filename, o.pflags).await,
            Packet::Read(r) => self.read(id, &r.handle, r.offset, r.len).await,
            Packet::Write(w) => self.write(id, &w.handle, w.offset, w.data).await,
            Packet::Close(c) => self.close(id, &c.handle).await,
            Packet::Remove(r) => self.remove(id, &r.filename).await,
            Packet::MkDir(m) => self.mkdir(id, &m.path).await,
            Packet::RmDir(r) => self.rmdir(id, &r.path).await,
            Packet::Rename(r) => self.rename(id, &r.oldpath, &r.newpath, false).await,
            // Times and modes are not kept by the backend; accepting them
            // lets `put -p` and clients that always set them work.
            Packet::SetStat(_) | Packet::FSetStat(_) => Ok(ok(id)),
            Packet::ReadLink(_) => Err(fail(StatusCode::NoSuchFile, "no symbolic links here")),
            Packet::Symlink(_) => Err(fail(
                StatusCode::PermissionDenied,
                "symbolic links are not supported",
            )),
            Packet::Extended(x) => self.extended(id, &x.request, Bytes::from(x.data)).await,
            _ => Err(fail(StatusCode::BadMessage, "not a request")),
        };
        result.unwrap_or_else(|f| status(id, f))
    }

    fn path(&self, raw: &str) -> Result<VPath, Fail> {
        VPath::parse(raw).map_err(|e| fail(StatusCode::NoSuchFile, e.to_string()))
    }

    fn folder(&self, p: &VPath) -> Result<String, Fail> {
        p.folder_in(&self.ctx.fs.root)
            .map_err(|e| fail(StatusCode::NoSuchFile, e.to_string()))
    }

    fn need(&self, allowed: bool, what: &str) -> Result<(), Fail> {
        if allowed {
            Ok(())
        } else {
            Err(fail(
                StatusCode::PermissionDenied,
                format!("user {} may not {what}", self.ctx.user.config.name),
            ))
        }
    }

    fn add_handle(&mut self, open: Open) -> Result<String, Fail> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(fail(StatusCode::Failure, "too many open files"));
        }
        let h = self.next_handle.to_string();
        self.next_handle += 1;
        self.handles.insert(h.clone(), open);
        Ok(h)
    }

    fn realpath(&self, id: u32, raw: &str) -> Result<Packet, Fail> {
        let p = self.path(raw)?;
        Ok(Packet::Name(Name {
            id,
            files: vec![File::dummy(p.display())],
        }))
    }

    /// A file (the newest of its name) or a folder at `p`.
    async fn lookup(&self, p: &VPath) -> Result<Option<Result<FileInfo, ()>>, Fail> {
        if p.is_root() {
            return Ok(Some(Err(())));
        }
        let parent = self.folder(&p.parent())?;
        let name = p.name().unwrap_or_default();
        if let Some(e) = self
            .ctx
            .fs
            .find(&parent, name)
            .await
            .map_err(backend_fail)?
        {
            return Ok(Some(Ok(e)));
        }
        let folder = self.folder(p)?;
        if self
            .ctx
            .fs
            .folder_exists(&folder)
            .await
            .map_err(backend_fail)?
        {
            return Ok(Some(Err(())));
        }
        Ok(None)
    }

    async fn stat(&self, id: u32, raw: &str) -> Result<Packet, Fail> {
        let p = self.path(raw)?;
        let attrs = match self.lookup(&p).await? {
            Some(Ok(e)) => file_attrs(&e),
            Some(Err(())) => dir_attrs(),
            None => return Err(fail(StatusCode::NoSuchFile, "no such file or folder")),
        };
        Ok(Packet::Attrs(Attrs { id, attrs }))
    }

    fn fstat(&self, id: u32, handle: &str) -> Result<Packet, Fail> {
        let attrs = match self.handles.get(handle) {
            Some(Open::Read(d)) => file_attrs(&d.entry),
            Some(Open::Write { .. }) => FileAttributes {
                size: Some(0),
                permissions: Some(0o100644),
                ..FileAttributes::default()
            },
            Some(Open::Dir(_)) => dir_attrs(),
            None => return Err(fail(StatusCode::Failure, "invalid handle")),
        };
        Ok(Packet::Attrs(Attrs { id, attrs }))
    }

    async fn opendir(&mut self, id: u32, raw: &str) -> Result<Packet, Fail> {
        self.need(self.ctx.permissions.list, "list folders")?;
        let p = self.path(raw)?;
        let folder = self.folder(&p)?;
        if !self
            .ctx
            .fs
            .folder_exists(&folder)
            .await
            .map_err(backend_fail)?
        {
            return Err(fail(StatusCode::NoSuchFile, "no such folder"));
        }
        if self.handles.len() >= MAX_HANDLES {
            return Err(fail(StatusCode::Failure, "too many open files"));
        }
        let fs = &self.ctx.fs;
        let page = fs
            .page(&folder, LIST_PAGE, None)
            .await
            .map_err(backend_fail)?;
        self.ctx.metrics.list_page();
        let mut folders: BTreeSet<String> = page.folders.into_iter().collect();
        folders.extend(fs.made_below(&folder));
        let mut dir = Dir {
            ready: VecDeque::new(),
            folder,
            cursor: page.next,
            last_name: None,
        };
        dir.ready.push_back(File::new(".", dir_attrs()));
        dir.ready.push_back(File::new("..", dir_attrs()));
        for f in folders {
            dir.ready.push_back(File::new(f, dir_attrs()));
        }
        if page.paged {
            dir.take_page(page.files);
        } else {
            // A backend without paging sent the whole folder in upload
            // order: a later file of the same name wins.
            let newest: BTreeMap<String, FileInfo> = page
                .files
                .into_iter()
                .map(|e| (e.name.clone(), e))
                .collect();
            dir.take_page(newest.into_values().collect());
        }
        let handle = self.add_handle(Open::Dir(Box::new(dir)))?;
        Ok(Packet::Handle(HandleReply { id, handle }))
    }

    async fn readdir(&mut self, id: u32, handle: &str) -> Result<Packet, Fail> {
        let Some(Open::Dir(dir)) = self.handles.get_mut(handle) else {
            return Err(fail(StatusCode::Failure, "invalid handle"));
        };
        // The next page only once the last one was sent; a page whose
        // files all repeat the last name sent yields nothing, so go on.
        while dir.ready.is_empty() {
            let Some(cursor) = dir.cursor.take() else {
                return Err(fail(StatusCode::Eof, "end of folder"));
            };
            let page = self
                .ctx
                .fs
                .page(&dir.folder, LIST_PAGE, Some(&cursor))
                .await
                .map_err(|e| {
                    // Try the same page again on the next READDIR.
                    dir.cursor = Some(cursor.clone());
                    backend_fail(e)
                })?;
            self.ctx.metrics.list_page();
            if !page.paged {
                // The backend stopped paging mid-listing (replaced by one
                // without the extension): what it sent is not a next page.
                return Err(fail(StatusCode::Eof, "end of folder"));
            }
            dir.cursor = page.next;
            dir.take_page(page.files);
        }
        let n = dir.ready.len().min(DIR_BATCH);
        let files = dir.ready.drain(..n).collect();
        Ok(Packet::Name(Name { id, files }))
    }

    async fn open(&mut self, id: u32, raw: &str, flags: OpenFlags) -> Result<Packet, Fail> {
        if self.ctx.drain.is_stopping() {
            return Err(fail(
                StatusCode::Failure,
                "the server is shutting down; try again in a moment",
            ));
        }
        let p = self.path(raw)?;
        let Some(name) = p.name().map(str::to_string) else {
            return Err(fail(StatusCode::Failure, "the root is a folder"));
        };
        let parent = self.folder(&p.parent())?;
        let perms = self.ctx.permissions;
        let writing = flags.intersects(OpenFlags::WRITE | OpenFlags::APPEND);
        if writing && flags.contains(OpenFlags::READ) {
            return Err(fail(
                StatusCode::OpUnsupported,
                "a file is opened for reading or for writing, not both",
            ));
        }
        if !writing {
            self.need(perms.download, "download")?;
            let entry = self
                .ctx
                .fs
                .find(&parent, &name)
                .await
                .map_err(backend_fail)?
                .ok_or_else(|| fail(StatusCode::NoSuchFile, "no such file"))?;
            let d = Download::new(self.ctx.fs.clone(), entry, self.ctx.metrics.clone());
            let handle = self.add_handle(Open::Read(Box::new(d)))?;
            self.transfers.insert(handle.clone(), self.ctx.drain.work());
            return Ok(Packet::Handle(HandleReply { id, handle }));
        }
        self.need(perms.upload, "upload")?;
        let fs = &self.ctx.fs;
        if !p.parent().is_root() && !fs.folder_exists(&parent).await.map_err(backend_fail)? {
            return Err(fail(StatusCode::NoSuchFile, "no such folder"));
        }
        let existing = fs.all_named(&parent, &name).await.map_err(backend_fail)?;
        if !existing.is_empty() && flags.contains(OpenFlags::EXCLUDE) {
            return Err(fail(StatusCode::Failure, "file exists"));
        }
        // Without TRUNCATE the client means to keep the stored bytes
        // (`reput`, `put -a`, append). A stored file cannot grow, and
        // copying it into a new upload before answering let one OPEN cost
        // a whole file's transfer: refused, clearly, before any work.
        if !existing.is_empty() && !flags.contains(OpenFlags::TRUNCATE) {
            return Err(fail(
                StatusCode::OpUnsupported,
                "resuming or appending to a stored file is not supported; upload the whole file",
            ));
        }
        // Replacing a file removes the old one: only for users who may delete.
        let replace = if perms.delete { existing } else { Vec::new() };
        let upload = Upload::start(
            fs.clone(),
            &parent,
            &name,
            replace,
            self.ctx.limits.clone(),
            self.ctx.metrics.clone(),
            self.ctx.drain.work(),
        )
        .await
        .map_err(|e| fail(StatusCode::Failure, e.to_string()))?;
        let handle = self.add_handle(Open::Write {
            upload: Box::new(upload),
            path: p,
        })?;
        self.transfers.insert(handle.clone(), self.ctx.drain.work());
        Ok(Packet::Handle(HandleReply { id, handle }))
    }

    async fn read(&mut self, id: u32, handle: &str, offset: u64, len: u32) -> Result<Packet, Fail> {
        let Some(Open::Read(d)) = self.handles.get_mut(handle) else {
            return Err(fail(StatusCode::Failure, "invalid handle"));
        };
        let data = d
            .read(offset, len.min(256 * 1024))
            .await
            .map_err(backend_fail)?;
        if data.is_empty() {
            return Err(fail(StatusCode::Eof, "end of file"));
        }
        Ok(Packet::Data(Data {
            id,
            data: data.to_vec(),
        }))
    }

    async fn write(
        &mut self,
        id: u32,
        handle: &str,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Packet, Fail> {
        let Some(Open::Write { upload, .. }) = self.handles.get_mut(handle) else {
            return Err(fail(StatusCode::Failure, "invalid handle"));
        };
        upload
            .write(offset, Bytes::from(data))
            .await
            .map_err(|e| fail(StatusCode::Failure, e.to_string()))?;
        Ok(ok(id))
    }

    async fn close(&mut self, id: u32, handle: &str) -> Result<Packet, Fail> {
        // Held until the upload is published (or refused) and answered.
        let _transfer = self.transfers.remove(handle);
        match self.handles.remove(handle) {
            None => Err(fail(StatusCode::Failure, "invalid handle")),
            Some(Open::Dir(_)) | Some(Open::Read(_)) => Ok(ok(id)),
            Some(Open::Write { upload, path }) => match upload.finish().await {
                Ok(entry) => {
                    self.uploaded(&path, &entry).await;
                    Ok(ok(id))
                }
                Err(e) => {
                    self.audit_upload(&path, None, Some(e.to_string()));
                    Err(fail(StatusCode::Failure, e.to_string()))
                }
            },
        }
    }

    fn audit_upload(&self, path: &VPath, entry: Option<&FileInfo>, error: Option<String>) {
        let mut r = AuditRecord::new("sftp_upload");
        r.principal = Some(format!("sftp:{}", self.ctx.user.config.name));
        r.credential = self.ctx.credential.clone();
        r.client_ip = self.ctx.client_ip;
        r.path = Some(path.display());
        r.bytes_in = entry.map(|e| e.size);
        r.decision = Some(if error.is_none() { "allow" } else { "fail" });
        r.reason = error.map(Into::into);
        self.ctx.audit.record(r);
    }

    /// A file is complete: audit it and make the configured delivery.
    async fn uploaded(&self, path: &VPath, entry: &FileInfo) {
        self.audit_upload(path, Some(entry), None);
        let user = &self.ctx.user.config;
        if user.deliver_to.is_empty() {
            return;
        }
        if let Some(binding) = &self.ctx.senders {
            if !binding.allows(&self.ctx.sender) {
                // The key logged in is bound to other senders: the file
                // stays, no delivery goes out in the user's name.
                let mut r = AuditRecord::new("sftp_delivery");
                r.principal = Some(format!("sftp:{}", user.name));
                r.credential = self.ctx.credential.clone();
                r.client_ip = self.ctx.client_ip;
                r.path = Some(path.display());
                r.decision = Some("deny");
                r.reason = Some("sender_not_allowed".into());
                self.ctx.audit.record(r);
                return;
            }
        }
        let upload = CompletedUpload {
            user: user.name.clone(),
            path: path.display(),
            file_id: entry.id.clone(),
            scopes: self.ctx.fs.ctx.scopes.clone(),
            sender: self.ctx.sender.clone(),
            recipients: user.deliver_to.clone(),
            credential: self.ctx.credential.clone(),
            client_ip: self.ctx.client_ip,
        };
        self.ctx.deliveries.submit(upload, &self.ctx.drain).await;
    }

    async fn remove(&mut self, id: u32, raw: &str) -> Result<Packet, Fail> {
        self.need(self.ctx.permissions.delete, "delete")?;
        let p = self.path(raw)?;
        let Some(name) = p.name() else {
            return Err(fail(StatusCode::Failure, "the root is a folder"));
        };
        let parent = self.folder(&p.parent())?;
        let all = self
            .ctx
            .fs
            .all_named(&parent, name)
            .await
            .map_err(backend_fail)?;
        if all.is_empty() {
            return Err(fail(StatusCode::NoSuchFile, "no such file"));
        }
        for e in all {
            self.ctx.fs.delete(&e.id).await.map_err(backend_fail)?;
        }
        Ok(ok(id))
    }

    async fn mkdir(&mut self, id: u32, raw: &str) -> Result<Packet, Fail> {
        self.need(self.ctx.permissions.upload, "make folders")?;
        let p = self.path(raw)?;
        let folder = self.folder(&p)?;
        if self.lookup(&p).await?.is_some() {
            return Err(fail(StatusCode::Failure, "already exists"));
        }
        self.ctx.fs.made.add(&folder);
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, raw: &str) -> Result<Packet, Fail> {
        self.need(self.ctx.permissions.delete, "delete folders")?;
        let p = self.path(raw)?;
        if p.is_root() {
            return Err(fail(StatusCode::PermissionDenied, "the root stays"));
        }
        let folder = self.folder(&p)?;
        if !self
            .ctx
            .fs
            .folder_is_empty(&folder)
            .await
            .map_err(backend_fail)?
        {
            return Err(fail(StatusCode::Failure, "folder is not empty"));
        }
        if !self.ctx.fs.made.remove(&folder) {
            return Err(fail(StatusCode::NoSuchFile, "no such folder"));
        }
        Ok(ok(id))
    }

    /// RENAME fails when the target exists (SFTP v3); posix-rename replaces it.
    async fn rename(
        &mut self,
        id: u32,
        from: &str,
        to: &str,
        replace: bool,
    ) -> Result<Packet, Fail> {
        let perms = self.ctx.permissions;
        self.need(
            perms.upload && perms.delete,
            "rename (needs upload and delete)",
        )?;
        let (from, to) = (self.path(from)?, self.path(to)?);
        let (Some(from_name), Some(to_name)) = (from.name(), to.name()) else {
            return Err(fail(StatusCode::Failure, "the root cannot be renamed"));
        };
        let from_folder = self.folder(&from.parent())?;
        let to_folder = self.folder(&to.parent())?;
        let fs = &self.ctx.fs;
        let Some(entry) = fs
            .find(&from_folder, from_name)
            .await
            .map_err(backend_fail)?
        else {
            return Err(
                if fs
                    .folder_exists(&self.folder(&from)?)
                    .await
                    .map_err(backend_fail)?
                {
                    fail(StatusCode::OpUnsupported, "folders cannot be renamed")
                } else {
                    fail(StatusCode::NoSuchFile, "no such file")
                },
            );
        };
        if !to.parent().is_root() && !fs.folder_exists(&to_folder).await.map_err(backend_fail)? {
            return Err(fail(StatusCode::NoSuchFile, "no such target folder"));
        }
        let targets: Vec<FileInfo> = fs
            .all_named(&to_folder, to_name)
            .await
            .map_err(backend_fail)?
            .into_iter()
            .filter(|e| e.id != entry.id)
            .collect();
        if !targets.is_empty() && !replace {
            return Err(fail(StatusCode::Failure, "target exists"));
        }
        fs.rename(&entry.id, &to_folder, to_name)
            .await
            .map_err(backend_fail)?;
        for t in targets {
            fs.delete(&t.id).await.map_err(backend_fail)?;
        }
        Ok(ok(id))
    }

    async fn extended(&mut self, id: u32, request: &str, mut data: Bytes) -> Result<Packet, Fail> {
        let bad = || fail(StatusCode::BadMessage, "malformed extended request");
        match request {
            "fsync@openssh.com" => {
                let handle = ssh_string(&mut data).ok_or_else(bad)?;
                match self.handles.get_mut(&handle) {
                    Some(Open::Write { upload, .. }) => upload
                        .sync()
                        .await
                        .map(|()| ok(id))
                        .map_err(|e| fail(StatusCode::Failure, e.to_string())),
                    Some(_) => Ok(ok(id)),
                    None => Err(fail(StatusCode::Failure, "invalid handle")),
                }
            }
            "posix-rename@openssh.com" => {
                let from = ssh_string(&mut data).ok_or_else(bad)?;
                let to = ssh_string(&mut data).ok_or_else(bad)?;
                self.rename(id, &from, &to, true).await
            }
            other => Err(fail(
                StatusCode::OpUnsupported,
                format!("{other} is not supported"),
            )),
        }
    }
}
