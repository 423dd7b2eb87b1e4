//! A private Dovecot (IMAP + POP3) per test: its own config, base_dir,
//! ports from [`crate::free_addr`], the harness certificate, a passwd-file
//! user, Maildir under the test directory. Killed when dropped.
//!
//! As root (CI), Dovecot runs its login processes as `dovenull`, auth as
//! `dovecot` and the mail processes as the passwd-file uid, so the mail
//! user is `nobody` (65534) and the test directory must be traversable.
//! As an ordinary user every service runs as that user.

use crate::{Certs, Proc};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The test mailbox's user and password.
pub const USER: &str = "legacy@ourcorp.example";
/// Its password.
pub const PASSWORD: &str = "mailbox-secret-1";

/// A running Dovecot.
pub struct Dovecot {
    /// The `dovecot -F` process.
    pub proc: Proc,
    /// The config file (for `doveadm -c`).
    pub config: PathBuf,
    /// IMAP with implicit TLS.
    pub imaps: SocketAddr,
    /// IMAP with STARTTLS.
    pub imap: SocketAddr,
    /// POP3 with implicit TLS.
    pub pop3s: SocketAddr,
    /// POP3 with STLS.
    pub pop3: SocketAddr,
    /// The instance directory.
    pub dir: PathBuf,
}

fn id(flag: &str) -> u32 {
    let out = Command::new("id").arg(flag).output().expect("run id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

fn user_name() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn group_name() -> String {
    let out = Command::new("id").arg("-gn").output().expect("run id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Options for [`start`].
#[derive(Default)]
pub struct Options {
    /// `Some(url)`: add an oauth2 passdb validating bearer tokens by POSTing
    /// them to this introspection URL.
    pub introspection_url: Option<String>,
}

/// Starts Dovecot under `test_dir/dovecot` with the harness certificate.
pub fn start(test_dir: &Path, certs: &Certs, opts: Options) -> Dovecot {
    let dir = test_dir.join("dovecot");
    std::fs::create_dir_all(dir.join("run")).unwrap();
    std::fs::create_dir_all(dir.join("mail")).unwrap();
    let root = id("-u") == 0;
    let (uid, gid) = if root {
        (65534, 65534)
    } else {
        (id("-u"), id("-g"))
    };
    if root {
        // Dovecot's unprivileged processes must reach files under the test dir.
        use std::os::unix::fs::PermissionsExt;
        let mut p = test_dir.to_path_buf();
        loop {
            if p.starts_with(std::env::temp_dir()) && p != std::env::temp_dir() {
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
            }
            if !p.pop() {
                break;
            }
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Command::new("chown")
            .arg(format!("{uid}:{gid}"))
            .arg(dir.join("mail"))
            .status()
            .unwrap();
    }
    let passwd = dir.join("passwd");
    // user:password:uid:gid::home — the password in {PLAIN}: a test fixture.
    std::fs::write(
        &passwd,
        format!(
            "{USER}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{home}\n",
            home = dir.join("mail").join(USER).display()
        ),
    )
    .unwrap();
    if root {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let imaps = crate::free_addr();
    let imap = crate::free_addr();
    let pop3s = crate::free_addr();
    let pop3 = crate::free_addr();
    let users = if root {
        String::new()
    } else {
        format!(
            "default_internal_user = {u}\ndefault_login_user = {u}\ndefault_internal_group = {g}\n",
            u = user_name(),
            g = group_name()
        )
    };
    let oauth = match &opts.introspection_url {
        None => String::new(),
        Some(url) => {
            let ext = dir.join("dovecot-oauth2.conf.ext");
            std::fs::write(
                &ext,
                format!(
                    "introspection_mode = post\nintrospection_url = {url}\n\
                     tokeninfo_url = {url}?token=\nusername_attribute = username\n\
                     active_attribute = active\nactive_value = true\n"
                ),
            )
            .unwrap();
            if root {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&ext, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
            format!(
                "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}\n}}\n",
                ext.display()
            )
        }
    };
    let config = dir.join("dovecot.conf");
    std::fs::write(
        &config,
        format!(
            r#"base_dir = {run}
state_dir = {run}/state
instance_name = mft-test-{port}
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
auth_failure_delay = 0
mail_max_userip_connections = 100
first_valid_uid = 1
mail_location = maildir:{dir}/mail/%u
pop3_uidl_format = %08Xu%08Xv
{users}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s_port}
    ssl = yes
  }}
}}
{oauth}passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = passwd-file
  args = {passwd}
}}
"#,
            run = dir.join("run").display(),
            dir = dir.display(),
            port = imaps.port(),
            cert = certs.cert.display(),
            key = certs.key.display(),
            imap_port = imap.port(),
            imaps_port = imaps.port(),
            pop3s_port = pop3s.port(),
            pop3_port = pop3.port(),
            passwd = passwd.display(),
        ),
    )
    .unwrap();
    if root {
        use std::os::unix::fs::PermissionsExt;
        for f in [&certs.cert, &certs.key] {
            let _ = std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644));
        }
    }
    let proc = Proc::spawn(
        "dovecot",
        Path::new("/usr/sbin/dovecot"),
        &["-F", "-c", config.to_str().unwrap()],
        test_dir,
    );
    let mut d = Dovecot {
        proc,
        config,
        imaps,
        imap,
        pop3s,
        pop3,
        dir,
    };
    d.wait_ready();
    d
}

impl Dovecot {
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for addr in [self.imaps, self.imap, self.pop3s, self.pop3] {
            while TcpStream::connect(addr).is_err() {
                if Instant::now() > deadline {
                    panic!(
                        "dovecot did not listen on {addr}: {}\n{}",
                        self.proc.stderr(),
                        self.log()
                    );
                }
                if let Ok(Some(status)) = self.proc.child.try_wait() {
                    panic!(
                        "dovecot exited ({status}): {}\n{}",
                        self.proc.stderr(),
                        self.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Dovecot's log file.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }

    /// Runs `doveadm -c CONF args...`, panicking with its output on failure.
    pub fn doveadm(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        use std::io::Write;
        let mut child = Command::new("/usr/bin/doveadm")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run doveadm");
        {
            let mut input = child.stdin.take().unwrap();
            if let Some(data) = stdin {
                input.write_all(data).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "doveadm {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Adds `raw` to `folder` of the test user.
    pub fn save(&self, folder: &str, raw: &[u8]) {
        self.doveadm(&["save", "-u", USER, "-m", folder], Some(raw));
    }

    /// Creates a folder.
    pub fn create_folder(&self, folder: &str) {
        self.doveadm(&["mailbox", "create", "-u", USER, folder], None);
    }

    /// `(uid, flags)` of every message in `folder`.
    pub fn messages(&self, folder: &str) -> Vec<(u32, String)> {
        let out = self.doveadm(
            &[
                "-f",
                "tab",
                "fetch",
                "-u",
                USER,
                "uid flags",
                "mailbox",
                folder,
                "all",
            ],
            None,
        );
        out.lines()
            .skip(1)
            .filter_map(|l| {
                let (uid, flags) = l.split_once('\t')?;
                Some((uid.trim().parse().ok()?, flags.trim().to_string()))
            })
            .collect()
    }

    /// Sets the folder's UIDVALIDITY (the server "renumbers" it).
    pub fn set_uidvalidity(&self, folder: &str, value: u32) {
        self.doveadm(
            &[
                "mailbox",
                "update",
                "-u",
                USER,
                "--uid-validity",
                &value.to_string(),
                folder,
            ],
            None,
        );
    }
}

/// A small e-mail with one attachment `name` holding `data` (base64).
pub fn message(subject: &str, name: &str, data: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let mut body = String::new();
    for chunk in b64.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(chunk).unwrap());
        body.push_str("\r\n");
    }
    format!(
        "From: Legacy System <legacy@ourcorp.example>\r\n\
         To: Partner <bob@partner.example>\r\n\
         Subject: {subject}\r\n\
         Message-ID: <{subject}@legacy.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Body of {subject}\r\n\
         --b1\r\n\
         Content-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {body}--b1--\r\n"
    )
    .into_bytes()
}

/// What the test OAuth2 server saw.
#[derive(Default, Debug)]
pub struct OAuthLog {
    /// Form bodies of the token requests (decoded pairs).
    pub token_requests: Vec<Vec<(String, String)>>,
    /// Tokens Dovecot asked about.
    pub introspected: Vec<String>,
    /// Access tokens issued.
    pub issued: Vec<String>,
}

/// A token endpoint (`POST /token`, refresh-token grant) and an
/// introspection endpoint (`/introspect`, for Dovecot's oauth2 passdb) on
/// one loopback HTTP/1.1 port.
pub struct OAuthServer {
    /// Address.
    pub addr: SocketAddr,
    /// Everything seen.
    pub log: std::sync::Arc<std::sync::Mutex<OAuthLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The refresh token the test server accepts.
pub const REFRESH_TOKEN: &str = "refresh-token-for-tests";
/// A refresh token the server honours with an access token that the
/// introspection endpoint then calls inactive (a token revoked early).
pub const REVOKED_REFRESH_TOKEN: &str = "refresh-token-of-a-revoked-grant";
/// The client id it expects.
pub const CLIENT_ID: &str = "mft-gateway-test";
/// The client secret it expects.
pub const CLIENT_SECRET: &str = "client-secret-for-tests";

fn form_pairs(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let dec = |s: &str| {
                let s = s.replace('+', " ");
                let bytes = s.as_bytes();
                let mut out = Vec::new();
                let mut i = 0;
                while i < bytes.len() {
                    if bytes[i] == b'%' && i + 2 < bytes.len() {
                        let h = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                        if let Ok(b) = u8::from_str_radix(h, 16) {
                            out.push(b);
                            i += 3;
                            continue;
                        }
                    }
                    out.push(bytes[i]);
                    i += 1;
                }
                String::from_utf8_lossy(&out).to_string()
            };
            Some((dec(k), dec(v)))
        })
        .collect()
}

/// Starts the OAuth2 server.
pub async fn start_oauth() -> OAuthServer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(OAuthLog::default()));
    let shared = log.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let log = shared.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Head, then as much body as Content-Length says.
                let (head, mut body) = loop {
                    let n = match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break (
                            String::from_utf8_lossy(&buf[..i]).to_string(),
                            buf[i + 4..].to_vec(),
                        );
                    }
                };
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0usize);
                while body.len() < len {
                    let n = match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    body.extend_from_slice(&chunk[..n]);
                }
                let request_line = head.lines().next().unwrap_or("").to_string();
                let target = request_line.split(' ').nth(1).unwrap_or("").to_string();
                let body = String::from_utf8_lossy(&body).to_string();
                let (status, json) = if target.starts_with("/token") {
                    let form = form_pairs(&body);
                    let get = |k: &str| form.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
                    let refresh = get("refresh_token");
                    let ok = get("grant_type").as_deref() == Some("refresh_token")
                        && (refresh.as_deref() == Some(REFRESH_TOKEN)
                            || refresh.as_deref() == Some(REVOKED_REFRESH_TOKEN))
                        && get("client_id").as_deref() == Some(CLIENT_ID)
                        && get("client_secret").as_deref() == Some(CLIENT_SECRET);
                    let mut log = log.lock().unwrap();
                    log.token_requests.push(form);
                    if ok && refresh.as_deref() == Some(REVOKED_REFRESH_TOKEN) {
                        (
                            "200 OK",
                            r#"{"access_token":"revoked-access","expires_in":3600}"#.to_string(),
                        )
                    } else if ok {
                        // Numbered, and unique to this server so the
                        // suite-wide secrets scan can tell it from other bytes.
                        let token = format!(
                            "access-{}-{}-{}",
                            log.issued.len() + 1,
                            std::process::id(),
                            addr.port()
                        );
                        crate::record_secret("OAuth access token", &token);
                        log.issued.push(token.clone());
                        (
                            "200 OK",
                            format!(
                                r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":3600}}"#
                            ),
                        )
                    } else {
                        (
                            "400 Bad Request",
                            r#"{"error":"invalid_grant"}"#.to_string(),
                        )
                    }
                } else if target.starts_with("/introspect") {
                    // POST token=... (introspection_mode = post) or ?token= (tokeninfo).
                    let mut pairs = form_pairs(&body);
                    if let Some((_, q)) = target.split_once('?') {
                        pairs.extend(form_pairs(q));
                    }
                    let token = pairs
                        .iter()
                        .find(|(k, _)| k == "token")
                        .map(|(_, v)| v.clone())
                        .or_else(|| {
                            head.lines().find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("authorization")
                                    .then(|| v.trim().strip_prefix("Bearer ").map(str::to_string))?
                            })
                        })
                        .unwrap_or_default();
                    let mut log = log.lock().unwrap();
                    log.introspected.push(token.clone());
                    if log.issued.contains(&token) {
                        (
                            "200 OK",
                            format!(r#"{{"active":true,"username":"{USER}"}}"#),
                        )
                    } else {
                        ("200 OK", r#"{"active":false}"#.to_string())
                    }
                } else {
                    ("404 Not Found", "{}".to_string())
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    json.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    OAuthServer { addr, log, task }
}
