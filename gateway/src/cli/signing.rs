//! `mft-gateway signing-key generate`: a new key for signing requests toward
//! the backend, written with mode 0600, and its key id on stdout.

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use mft_filters::signing::keys::{
    generate_ed25519_pem, generate_hmac_secret, hmac_secret_from_text,
};
use mft_filters::signing::SigningKey;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Signing-key subcommands.
#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Write a new key to a file (refuses to overwrite) and print its key id.
    Generate {
        /// Algorithm of the new key.
        #[arg(long, value_enum, default_value = "hmac-sha256")]
        algorithm: AlgorithmArg,
        /// File for the key; for ed25519 the public key goes to PATH.pub.
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
}

/// Algorithms on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AlgorithmArg {
    /// A 256-bit shared secret, written as `base64:...`.
    #[value(name = "hmac-sha256")]
    HmacSha256,
    /// An Ed25519 private key (PKCS#8 PEM) and its public key (SPKI PEM).
    #[value(name = "ed25519")]
    Ed25519,
}

/// Runs a signing-key subcommand.
pub fn run(command: SigningKeyCommand) -> anyhow::Result<ExitCode> {
    match command {
        SigningKeyCommand::Generate { algorithm, out } => {
            generate(algorithm, &out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Creates `path` with `contents`, readable by the owner only; never overwrites.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn generate(algorithm: AlgorithmArg, out: &Path) -> anyhow::Result<()> {
    match algorithm {
        AlgorithmArg::HmacSha256 => {
            let text = generate_hmac_secret()?;
            let key = SigningKey::hmac(&hmac_secret_from_text(&text)?, None)?;
            write_new(out, format!("{text}\n").as_bytes(), 0o600)?;
            println!("wrote {} (hmac-sha256)", out.display());
            println!("key id: {}", key.id());
            println!(
                "gateway: [backend] signing_key = \"file:{}\"; backend: mft-backend --signing-key file:{}",
                out.display(),
                out.display()
            );
        }
        AlgorithmArg::Ed25519 => {
            let pem = generate_ed25519_pem()?;
            let key = SigningKey::ed25519_from_pem(&pem, None)?;
            let public = key
                .public_key_pem()
                .context("an Ed25519 key has a public key")?;
            let mut pub_path = out.as_os_str().to_owned();
            pub_path.push(".pub");
            let pub_path = PathBuf::from(pub_path);
            write_new(out, pem.as_bytes(), 0o600)?;
            write_new(&pub_path, public.as_bytes(), 0o644)?;
            println!(
                "wrote {} (ed25519 private key) and {}",
                out.display(),
                pub_path.display()
            );
            println!("key id: {}", key.id());
            print!("{public}");
            println!(
                "gateway: [backend] signing_algorithm = \"ed25519\", signing_key = \"file:{}\"; backend: mft-backend --verify-key file:{}",
                out.display(),
                pub_path.display()
            );
        }
    }
    Ok(())
}
