//! `mft-gateway sftp hash-password`: reads a password from stdin and prints
//! the argon2id PHC string for `[[sftp.users]] password_hash`.

use anyhow::Context;
use clap::Subcommand;
use std::io::BufRead;
use std::process::ExitCode;

/// SFTP subcommands.
#[derive(Debug, Subcommand)]
pub enum SftpCommand {
    /// Read a password from stdin (first line) and print its argon2id hash.
    HashPassword,
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
    }
}
