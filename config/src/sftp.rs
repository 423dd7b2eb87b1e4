//! `[sftp]`: the SFTP server whose file system is the backend.
//!
//! Folder and file-name syntax is checked by the gateway with the same
//! validation as HTTP (the config crate does not depend on the filters);
//! here go the shapes, the permissions and the limits.

use crate::convert::Ctx;
use crate::defaults::sftp as D;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `[sftp]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpFile {
    /// Listen address, e.g. `"0.0.0.0:2222"`.
    pub listen: Option<String>,
    /// Ed25519 host key (OpenSSH format); generated there at first start.
    /// Default: `<data_dir>/sftp_host_ed25519_key`.
    pub host_key: Option<String>,
    /// Optional RSA host key (OpenSSH format, not generated), for clients
    /// without ed25519; offered with rsa-sha2-256/512 only.
    pub rsa_host_key: Option<String>,
    /// Longest silence on a connection before it is closed.
    pub idle_timeout: Option<String>,
    /// Bytes sent to the backend per tus PATCH (memory per upload is about
    /// twice this plus the reorder window).
    pub chunk_bytes: Option<crate::limits::Size>,
    /// How far ahead of the next expected offset an out-of-order WRITE may be.
    pub reorder_window_bytes: Option<crate::limits::Size>,
    /// Most concurrent connections (default 100).
    pub max_connections: Option<u32>,
    /// Most concurrent connections from one client (IPv4 address or IPv6
    /// /64, default 32).
    pub max_connections_per_ip: Option<u32>,
    /// Time from connect to a successful login (default 30s).
    pub login_timeout: Option<String>,
    /// How long an on_upload delivery is retried before it is given up
    /// (default 1d).
    pub delivery_max_age: Option<String>,
    /// `[[sftp.users]]`.
    #[serde(default)]
    pub users: Vec<SftpUserFile>,
}

/// Keys as a file path or an inline list of `authorized_keys` lines.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AuthorizedKeysFile {
    /// Path of an OpenSSH `authorized_keys` file.
    Path(String),
    /// Lines in `authorized_keys` format.
    Inline(Vec<String>),
}

/// `[sftp.users.on_upload]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnUploadFile {
    /// Recipients of a delivery made for each completed file.
    #[serde(default)]
    pub deliver_to: Vec<String>,
}

/// `[[sftp.users]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpUserFile {
    /// Login name.
    pub name: Option<String>,
    /// Public keys that may log in.
    pub authorized_keys: Option<AuthorizedKeysFile>,
    /// Argon2id PHC string (`mft-gateway sftp hash-password`).
    pub password_hash: Option<String>,
    /// The user's root folder in the backend (`""` for the backend root).
    pub folder: Option<String>,
    /// Any of `upload`, `download`, `list`, `delete`.
    pub permissions: Option<Vec<String>>,
    /// Concurrent sessions of this user.
    pub max_connections: Option<u32>,
    /// Accept a service-account API key as the password: a key of the
    /// service account named like this user, or one listed in `api_key_ids`.
    #[serde(default)]
    pub api_key_login: bool,
    /// Ids of the API keys that may log in as this user (instead of the
    /// keys of the account with the user's name).
    pub api_key_ids: Option<Vec<String>>,
    /// What happens after each completed upload.
    pub on_upload: Option<OnUploadFile>,
}

/// `[sftp]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Sftp {
    /// Listen address.
    pub listen: SocketAddr,
    /// Ed25519 host key path; `None`: `<data_dir>/sftp_host_ed25519_key`.
    pub host_key: Option<PathBuf>,
    /// RSA host key path.
    pub rsa_host_key: Option<PathBuf>,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Bytes per tus PATCH.
    pub chunk_bytes: usize,
    /// Reorder window for out-of-order writes.
    pub reorder_window_bytes: usize,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Most concurrent connections per client (IPv4 or IPv6 /64).
    pub max_connections_per_ip: usize,
    /// Deadline of the login after connect.
    pub login_timeout: Duration,
    /// An on_upload delivery not made within this long after the upload is
    /// given up (`failed`).
    pub delivery_max_age: Duration,
    /// Users by login name.
    pub users: Vec<SftpUser>,
}

/// Where a user's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizedKeys {
    /// An `authorized_keys` file, read at start.
    Path(PathBuf),
    /// Inline lines.
    Inline(Vec<String>),
}

/// What a user may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Write new files.
    pub upload: bool,
    /// Read files.
    pub download: bool,
    /// List folders and stat files.
    pub list: bool,
    /// Delete files (rename needs `upload` and `delete`).
    pub delete: bool,
}

/// One validated `[[sftp.users]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SftpUser {
    /// Login name.
    pub name: String,
    /// Public keys.
    pub authorized_keys: Option<AuthorizedKeys>,
    /// Argon2id PHC string.
    pub password_hash: Option<String>,
    /// Root folder (unchecked syntax; the gateway validates it).
    pub folder: String,
    /// Permissions.
    pub permissions: Permissions,
    /// Concurrent sessions.
    pub max_connections: u32,
    /// API key as password.
    pub api_key_login: bool,
    /// Keys bound to this user; empty: the keys of the account named like the user.
    pub api_key_ids: Vec<String>,
    /// Delivery recipients per completed upload.
    pub deliver_to: Vec<String>,
}

/// Connections of the whole listener unless configured.
pub const DEFAULT_MAX_CONNECTIONS: usize = D::MAX_CONNECTIONS;
/// Connections per client unless configured: room for parallel transfers
/// of several partner systems behind one NAT address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = D::MAX_CONNECTIONS_PER_IP;
/// A connection that has not logged in by then is closed: key exchange
/// and a few password prompts take seconds, not minutes.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = D::LOGIN_TIMEOUT;

fn count(ctx: &mut Ctx<'_>, key: &str, value: Option<u32>, default: usize) -> usize {
    match value {
        None => default,
        Some(0) => {
            ctx.error(key, "must be at least 1");
            default
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    }
}

const DEFAULT_CHUNK: usize = D::CHUNK_BYTES;
const DEFAULT_WINDOW: usize = D::REORDER_WINDOW_BYTES;

fn size(ctx: &mut Ctx<'_>, key: &str, value: Option<crate::limits::Size>, default: usize) -> usize {
    use crate::limits::{parse_size, Size};
    let n = match value {
        None => return default,
        Some(Size::Bytes(n)) => n,
        Some(Size::Text(t)) => match parse_size(&t) {
            Ok(n) => n,
            Err(m) => {
                ctx.error(key, m);
                return default;
            }
        },
    };
    if !(64 * 1024..=(256u64 << 20)).contains(&n) {
        ctx.error(key, "must be between 64 KiB and 256 MiB");
        return default;
    }
    usize::try_from(n).unwrap_or(default)
}

fn permissions(ctx: &mut Ctx<'_>, key: &str, list: Option<Vec<String>>) -> Permissions {
    let list = list.unwrap_or_else(|| D::USER_PERMISSIONS.iter().map(|s| s.to_string()).collect());
    let mut p = Permissions::default();
    for item in list {
        match item.as_str() {
            "upload" => p.upload = true,
            "download" => p.download = true,
            "list" => p.list = true,
            "delete" => p.delete = true,
            other => ctx.error(
                key,
                format!("unknown permission {other:?}; expected upload, download, list, delete"),
            ),
        }
    }
    p
}

fn user(ctx: &mut Ctx<'_>, i: usize, u: SftpUserFile) -> Option<SftpUser> {
    let key = format!("sftp.users[{i}]");
    let Some(name) = u.name.filter(|n| !n.is_empty()) else {
        ctx.error(&format!("{key}.name"), "missing name");
        return None;
    };
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        ctx.error(
            &format!("{key}.name"),
            "use letters, digits, '-', '_' and '.' only",
        );
    }
    let authorized_keys = u.authorized_keys.map(|k| match k {
        AuthorizedKeysFile::Path(p) => AuthorizedKeys::Path(ctx.path(&p)),
        AuthorizedKeysFile::Inline(lines) => AuthorizedKeys::Inline(lines),
    });
    if let Some(h) = &u.password_hash {
        if !h.starts_with("$argon2id$") {
            ctx.error(
                &format!("{key}.password_hash"),
                "expected an argon2id PHC string (make one with `mft-gateway sftp hash-password`)",
            );
        }
    }
    if authorized_keys.is_none() && u.password_hash.is_none() && !u.api_key_login {
        ctx.error(
            &key,
            "no way to log in: set authorized_keys, password_hash or api_key_login",
        );
    }
    let api_key_ids = u.api_key_ids.unwrap_or_default();
    if !api_key_ids.is_empty() && !u.api_key_login {
        ctx.error(&format!("{key}.api_key_ids"), "needs api_key_login = true");
    }
    if api_key_ids
        .iter()
        .any(|id| id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        ctx.error(
            &format!("{key}.api_key_ids"),
            "expected key ids as `keys list` shows them (letters and digits)",
        );
    }
    let Some(folder) = u.folder else {
        ctx.error(
            &format!("{key}.folder"),
            "missing folder (the user's root in the backend; \"\" for the root)",
        );
        return None;
    };
    let max_connections = match u.max_connections {
        Some(0) => {
            ctx.error(&format!("{key}.max_connections"), "must be at least 1");
            1
        }
        Some(n) => n,
        None => D::USER_MAX_CONNECTIONS,
    };
    let deliver_to = u.on_upload.map(|o| o.deliver_to).unwrap_or_default();
    for (j, r) in deliver_to.iter().enumerate() {
        if !r.contains('@') {
            ctx.error(
                &format!("{key}.on_upload.deliver_to[{j}]"),
                format!("{r:?} is not an e-mail address"),
            );
        }
    }
    Some(SftpUser {
        name,
        authorized_keys,
        password_hash: u.password_hash,
        folder,
        permissions: permissions(ctx, &format!("{key}.permissions"), u.permissions),
        max_connections,
        api_key_login: u.api_key_login,
        api_key_ids,
        deliver_to,
    })
}

pub(crate) fn convert(file: Option<SftpFile>, ctx: &mut Ctx<'_>) -> Option<Sftp> {
    let file = file?;
    let listen = ctx.addr("sftp.listen", file.listen, D::LISTEN)?;
    let mut users: Vec<SftpUser> = Vec::new();
    for (i, u) in file.users.into_iter().enumerate() {
        if let Some(u) = user(ctx, i, u) {
            if users.iter().any(|o| o.name == u.name) {
                ctx.error(
                    &format!("sftp.users[{i}].name"),
                    format!("user {:?} is defined twice", u.name),
                );
                continue;
            }
            users.push(u);
        }
    }
    // No [[sftp.users]] is fine: users may be added at run time (admin
    // API, console, `mft-gateway sftp users add`), stored in the database.
    let max_connections = count(
        ctx,
        "sftp.max_connections",
        file.max_connections,
        DEFAULT_MAX_CONNECTIONS,
    );
    let max_connections_per_ip = count(
        ctx,
        "sftp.max_connections_per_ip",
        file.max_connections_per_ip,
        DEFAULT_MAX_CONNECTIONS_PER_IP.min(max_connections),
    );
    if max_connections_per_ip > max_connections {
        ctx.error(
            "sftp.max_connections_per_ip",
            format!("more than sftp.max_connections ({max_connections})"),
        );
    }
    Some(Sftp {
        listen,
        host_key: file.host_key.map(|p| ctx.path(&p)),
        rsa_host_key: file.rsa_host_key.map(|p| ctx.path(&p)),
        idle_timeout: ctx.duration("sftp.idle_timeout", file.idle_timeout, D::IDLE_TIMEOUT),
        chunk_bytes: size(ctx, "sftp.chunk_bytes", file.chunk_bytes, DEFAULT_CHUNK),
        reorder_window_bytes: size(
            ctx,
            "sftp.reorder_window_bytes",
            file.reorder_window_bytes,
            DEFAULT_WINDOW,
        ),
        max_connections,
        max_connections_per_ip,
        login_timeout: ctx.duration(
            "sftp.login_timeout",
            file.login_timeout,
            DEFAULT_LOGIN_TIMEOUT,
        ),
        delivery_max_age: ctx.duration(
            "sftp.delivery_max_age",
            file.delivery_max_age,
            D::DELIVERY_MAX_AGE,
        ),
        users,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const BASE: &str = "[server]\ntls_cert = \"c.pem\"\ntls_key = \"c.key\"\n[backend]\nurl = \"http://127.0.0.1:8080\"\n";

    fn load(sftp: &str) -> Result<crate::Loaded, crate::ConfigError> {
        crate::load_str(&format!("{BASE}{sftp}"), Path::new("/etc/mft/gateway.toml"))
    }

    #[test]
    fn users_with_defaults_and_paths() {
        let c = load(
            "[sftp]\nlisten = \"127.0.0.1:2222\"\n[[sftp.users]]\nname = \"acme\"\nauthorized_keys = \"acme.keys\"\nfolder = \"partners/acme\"\n[sftp.users.on_upload]\ndeliver_to = [\"ops@ourcorp.example\"]\n",
        )
        .unwrap()
        .config;
        let s = c.sftp.unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:2222");
        assert_eq!(s.chunk_bytes, 4 << 20);
        let u = &s.users[0];
        assert_eq!(
            u.authorized_keys,
            Some(super::AuthorizedKeys::Path("/etc/mft/acme.keys".into()))
        );
        assert!(u.permissions.upload && u.permissions.list && !u.permissions.delete);
        assert_eq!(u.max_connections, 10);
        assert_eq!(u.deliver_to, ["ops@ourcorp.example"]);
    }

    #[test]
    fn bad_users_are_named() {
        let err = load(
            "[sftp]\n[[sftp.users]]\nname = \"a\"\nfolder = \"x\"\npassword_hash = \"plain\"\npermissions = [\"fly\"]\n[[sftp.users]]\nname = \"b\"\nfolder = \"y\"\n",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("sftp.users[0].password_hash"), "{err}");
        assert!(err.contains("unknown permission \"fly\""), "{err}");
        assert!(err.contains("no way to log in"), "{err}");
    }
}
