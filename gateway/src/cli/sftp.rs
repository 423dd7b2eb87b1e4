//! `mft-gateway sftp ...`: `hash-password` reads a password from stdin and
//! prints the argon2id PHC string for `[[sftp.users]] password_hash`;
//! `users add/list/remove` manage the SFTP users stored in the database
//! (docs/sftp.md), with or without a running gateway, like `keys`;
//! `deliveries list` shows the on_upload delivery jobs.

use crate::bridge::sftp::accounts::{self, AddUser, AddUserError};
use crate::store::sftp_deliveries::SftpDeliveryState;
use crate::store::sftp_users::{permission_words, SftpUserRecord};
use crate::store::{rfc3339, Store};
use anyhow::Context;
use clap::Subcommand;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// SFTP subcommands.
#[derive(Debug, Subcommand)]
pub enum SftpCommand {
    /// Read a password from stdin (first line) and print its argon2id hash.
    HashPassword,
    /// SFTP users stored in the database: add, list, remove (a running
    /// gateway sees a change within about a second).
    Users {
        /// What to do with users.
        #[command(subcommand)]
        command: UsersCommand,
        /// Config file: the store is auth.store, or SQLite in server.data_dir.
        #[arg(long, short, global = true, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// The on_upload delivery jobs in the database (queued, delivered, failed).
    Deliveries {
        /// What to do with the jobs.
        #[command(subcommand)]
        command: DeliveriesCommand,
        /// Config file: the store is auth.store, or SQLite in server.data_dir.
        #[arg(long, short, global = true, default_value = "gateway.toml")]
        config: PathBuf,
    },
}

/// `sftp deliveries` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// List the newest jobs, newest first.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// At most this many jobs.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// `sftp users` subcommands.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user who logs in with a password (`--password-stdin`, at least
    /// 12 characters), public keys (`--authorized-keys FILE`), or both.
    Add {
        /// 1 to 64 letters, digits, '-', '_' or '.'; not a [[sftp.users]] name.
        #[arg(value_name = "NAME")]
        name: String,
        /// The user's root folder in the backend ("" for the backend root).
        #[arg(long)]
        folder: String,
        /// Read the password from stdin (first line); stored as its argon2id hash.
        #[arg(long)]
        password_stdin: bool,
        /// An OpenSSH authorized_keys file (every key in it); repeatable.
        #[arg(long, value_name = "FILE")]
        authorized_keys: Vec<PathBuf>,
        /// Comma-separated: upload, download, list, delete (default: upload,download,list).
        #[arg(long, value_delimiter = ',')]
        permissions: Option<Vec<String>>,
        /// Concurrent sessions (default 10).
        #[arg(long)]
        max_connections: Option<u32>,
        /// A delivery to this address per completed upload; repeatable.
        #[arg(long, value_name = "ADDRESS")]
        deliver_to: Vec<String>,
    },
    /// List the users: config users and stored users.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a stored user: their next login is refused and a running
    /// gateway closes their sessions. Exits 1 if there is none.
    Remove {
        /// The user's name.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// Runs an sftp subcommand.
pub fn run(command: SftpCommand) -> anyhow::Result<ExitCode> {
    match command {
        SftpCommand::HashPassword => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                anyhow::bail!("empty password on stdin");
            }
            let phc = crate::auth::password::hash(password)
                .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
            println!("{phc}");
            Ok(ExitCode::SUCCESS)
        }
        SftpCommand::Users { command, config } => users(command, &config),
        SftpCommand::Deliveries { command, config } => {
            crate::cli::with_store(&config, async |store, _cfg| {
                let stdout = std::io::stdout();
                deliveries(store, command, &mut stdout.lock()).await
            })
        }
    }
}

/// Runs `sftp deliveries ...` against `store`, writing to `out`.
pub async fn deliveries(
    store: &Store,
    command: DeliveriesCommand,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let DeliveriesCommand::List { json, limit } = command;
    let jobs = store.list_sftp_deliveries(limit).await?;
    if json {
        let list: Vec<serde_json::Value> = jobs.iter().map(|j| j.to_json()).collect();
        writeln!(out, "{}", serde_json::Value::from(list))?;
        return Ok(ExitCode::SUCCESS);
    }
    if jobs.is_empty() {
        writeln!(out, "no SFTP deliveries")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<20} {:<16} {:<9} {:>8} {:<20} {:<30} PATH",
        "CREATED", "USER", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "DELIVERY / LAST ERROR"
    )?;
    for j in &jobs {
        let next = match j.state {
            SftpDeliveryState::Queued => rfc3339(j.next_attempt_at),
            _ => "-".to_string(),
        };
        let outcome = j
            .delivery_id
            .clone()
            .or_else(|| j.last_error.clone())
            .unwrap_or_else(|| "-".to_string());
        writeln!(
            out,
            "{:<20} {:<16} {:<9} {:>8} {:<20} {:<30} {}",
            rfc3339(j.created_at),
            j.user,
            j.state.as_str(),
            j.attempts,
            next,
            outcome.chars().take(60).collect::<String>(),
            j.path,
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn users(command: UsersCommand, config: &Path) -> anyhow::Result<ExitCode> {
    // Read the password before the store opens: the prompt is stdin's.
    let password = match &command {
        UsersCommand::Add {
            password_stdin: true,
            ..
        } => Some(read_password(&mut std::io::stdin().lock())?),
        _ => None,
    };
    crate::cli::with_store(config, async |store, cfg| {
        let stdout = std::io::stdout();
        execute(store, cfg, command, password, &mut stdout.lock()).await
    })
}

/// The first line of `input`, without its line end.
fn read_password(input: &mut dyn BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Runs `command` against `store`, writing to `out`; `password` is the
/// stdin password of `add --password-stdin`.
pub async fn execute(
    store: &Store,
    cfg: &mft_config::Config,
    command: UsersCommand,
    password: Option<String>,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match command {
        UsersCommand::Add {
            name,
            folder,
            password_stdin: _,
            authorized_keys,
            permissions,
            max_connections,
            deliver_to,
        } => {
            let mut lines = Vec::new();
            for path in &authorized_keys {
                lines.push(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                );
            }
            let req = AddUser {
                name,
                password,
                password_hash: None,
                authorized_keys: lines,
                folder,
                permissions,
                max_connections,
                deliver_to,
            };
            let user = match accounts::prepare(req, cfg) {
                Ok(user) => user,
                Err(e @ (AddUserError::Invalid(_) | AddUserError::InConfig(_))) => {
                    writeln!(out, "{e}")?;
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            };
            let record = store.add_sftp_user(&user).await?;
            writeln!(
                out,
                "Added SFTP user {} (folder {:?}, {}); a running gateway accepts it within about a second.",
                record.user.name,
                record.user.folder,
                logins(&record).join(" and "),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        UsersCommand::List { json } => {
            let stored = store.list_sftp_users().await?;
            let config_users: &[mft_config::sftp::SftpUser] =
                cfg.sftp.as_ref().map_or(&[], |s| &s.users);
            if json {
                // The admin API's shape, without the running bridge's sessions.
                let list: Vec<serde_json::Value> = config_users
                    .iter()
                    .map(|u| crate::admin::config_user_json(u, &[]))
                    .chain(
                        stored
                            .iter()
                            .filter(|r| !accounts::in_config(cfg, &r.user.name))
                            .map(|r| crate::admin::stored_user_json(r, &[])),
                    )
                    .map(|mut v| {
                        if let Some(o) = v.as_object_mut() {
                            o.remove("open_sessions");
                        }
                        v
                    })
                    .collect();
                writeln!(out, "{}", serde_json::Value::from(list))?;
                return Ok(ExitCode::SUCCESS);
            }
            if config_users.is_empty() && stored.is_empty() {
                writeln!(out, "no SFTP users (add one with `sftp users add NAME`)")?;
                return Ok(ExitCode::SUCCESS);
            }
            writeln!(
                out,
                "{:<24} {:<7} {:<24} {:<22} {:<20}",
                "NAME", "SOURCE", "FOLDER", "PERMISSIONS", "LAST LOGIN"
            )?;
            for u in config_users {
                writeln!(
                    out,
                    "{:<24} {:<7} {:<24} {:<22} {:<20}",
                    u.name,
                    "config",
                    show_folder(&u.folder),
                    permission_words(u.permissions).join(","),
                    "-"
                )?;
            }
            for r in &stored {
                writeln!(
                    out,
                    "{:<24} {:<7} {:<24} {:<22} {:<20}",
                    r.user.name,
                    "store",
                    show_folder(&r.user.folder),
                    permission_words(r.user.permissions).join(","),
                    r.last_login_at.map_or("never".to_string(), rfc3339),
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        UsersCommand::Remove { name } => {
            if accounts::in_config(cfg, &name) {
                writeln!(
                    out,
                    "{name:?} is a [[sftp.users]] of the config file: remove it there"
                )?;
                return Ok(ExitCode::FAILURE);
            }
            if store.remove_sftp_user(&name).await? {
                writeln!(
                    out,
                    "Removed SFTP user {name}; a running gateway refuses it and closes its sessions within about a second."
                )?;
                Ok(ExitCode::SUCCESS)
            } else {
                writeln!(out, "no stored SFTP user named {name:?}")?;
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

fn show_folder(folder: &str) -> &str {
    if folder.is_empty() {
        "/"
    } else {
        folder
    }
}

fn logins(r: &SftpUserRecord) -> Vec<&'static str> {
    let mut l = Vec::new();
    if r.user.password_hash.is_some() {
        l.push("password");
    }
    if !r.user.authorized_keys.is_empty() {
        l.push("public key");
    }
    l
}
