//! `mft-gateway admins ...`: console administrators (docs/console.md).
//!
//! Works with or without a running gateway, like `keys`: it opens the same
//! store. The password comes from stdin (first line) and is stored as an
//! argon2id hash; TOTP is enrolled at the first sign-in in the console.

use crate::store::admins::{AdminRecord, Role};
use crate::store::Store;
use anyhow::Context;
use clap::Subcommand;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

/// Shortest console password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// `admins` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminsCommand {
    /// Add an administrator; the password is read from stdin (first line).
    ///
    /// The first sign-in at /console/ enrols TOTP (authenticator app).
    Add {
        /// 1 to 64 letters, digits, '-', '_' or '.'.
        #[arg(value_name = "NAME")]
        name: String,
        /// `admin` (may change everything) or `viewer` (read only).
        #[arg(long, default_value = "admin", value_parser = ["admin", "viewer"])]
        role: String,
    },
    /// List administrators: role, TOTP state, recovery codes left, last sign-in.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove an administrator and end their sessions. Exits 1 if there is none.
    Remove {
        /// The administrator's name.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Forget an administrator's TOTP secret and recovery codes (lost phone):
    /// the next sign-in enrols again. Ends their sessions.
    ResetTotp {
        /// The administrator's name.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// Runs an `admins` command against the store configured in `config`.
pub fn run(command: AdminsCommand, config: &Path) -> anyhow::Result<ExitCode> {
    // Read and hash the password before opening the store: argon2 is slow
    // on purpose and the store needs no async runtime for it.
    let hashed = match &command {
        AdminsCommand::Add { .. } => Some(read_password_hash(&mut std::io::stdin().lock())?),
        _ => None,
    };
    crate::cli::with_store(config, async |store, _| {
        let stdout = std::io::stdout();
        execute(store, command, hashed.as_deref(), &mut stdout.lock()).await
    })
}

/// The first line of `input`, checked and hashed (argon2id PHC string).
pub fn read_password_hash(input: &mut dyn BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.chars().count() < MIN_PASSWORD_CHARS {
        anyhow::bail!("the password on stdin must have at least {MIN_PASSWORD_CHARS} characters");
    }
    crate::auth::password::hash(password).map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

/// Runs `command` against `store`, writing to `out`; `password_hash` is
/// the hashed stdin password of `add`.
pub async fn execute(
    store: &Store,
    command: AdminsCommand,
    password_hash: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match command {
        AdminsCommand::Add { name, role } => {
            let role = Role::parse(&role).context("role must be admin or viewer")?;
            let hash = password_hash.context("no password read")?;
            let record = store.add_admin(&name, role, hash).await?;
            writeln!(
                out,
                "Added {} {}; the first sign-in at /console/ enrols TOTP.",
                record.role.as_str(),
                record.name
            )?;
            Ok(ExitCode::SUCCESS)
        }
        AdminsCommand::List { json } => {
            let all = store.list_admins().await?;
            if json {
                let list: Vec<serde_json::Value> = all.iter().map(AdminRecord::to_json).collect();
                writeln!(out, "{}", serde_json::Value::from(list))?;
            } else if all.is_empty() {
                writeln!(out, "no admins (add one with `admins add NAME`)")?;
            } else {
                writeln!(
                    out,
                    "{:<24} {:<7} {:<9} {:>8} {:<20}",
                    "NAME", "ROLE", "TOTP", "RECOVERY", "LAST SIGN-IN"
                )?;
                for a in &all {
                    let v = a.to_json();
                    writeln!(
                        out,
                        "{:<24} {:<7} {:<9} {:>8} {:<20}",
                        a.name,
                        a.role.as_str(),
                        v["totp"].as_str().unwrap_or("-"),
                        a.recovery_hashes.len(),
                        v["last_sign_in_at"].as_str().unwrap_or("never"),
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AdminsCommand::Remove { name } => {
            if store.remove_admin(&name).await? {
                writeln!(out, "Removed admin {name}; their sessions are ended.")?;
                Ok(ExitCode::SUCCESS)
            } else {
                writeln!(out, "no admin named {name:?}")?;
                Ok(ExitCode::FAILURE)
            }
        }
        AdminsCommand::ResetTotp { name } => {
            if store.reset_admin_totp(&name).await? {
                writeln!(
                    out,
                    "TOTP of {name} reset; the next sign-in enrols a new authenticator."
                )?;
                Ok(ExitCode::SUCCESS)
            } else {
                writeln!(out, "no admin named {name:?}")?;
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
