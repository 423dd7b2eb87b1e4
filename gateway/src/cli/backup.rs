//! `mft-gateway backup --config FILE --out DIR`: a consistent copy of what
//! the gateway keeps in `data_dir` and cannot rebuild, taken while it runs:
//! the SQLite key store (keys, partners, connectors, admins, sealed
//! secrets, relay and webhook queues, mailbox positions), the audit trail,
//! the SFTP host keys and the ACME account and certificates. The config
//! file and the secrets it references (`env:`/`file:`, among them
//! `[trust] encryption_key`, without which sealed secrets cannot be
//! opened) are the operator's to keep; restoring is copying the files back
//! into an empty `data_dir` before the gateway starts (docs/operations.md).

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs the command.
pub fn run(config: &Path, out: &Path) -> anyhow::Result<ExitCode> {
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        anyhow::bail!(
            "{}: exists and is not empty; give a new directory",
            out.display()
        );
    }
    create_private_dir(out)?;
    super::with_store(config, async |store, cfg| {
        let keys = out.join(crate::store::SQLITE_FILE);
        if store.backup_sqlite(&keys).await? {
            restrict(&keys)?;
            println!("ok    key store: {}", keys.display());
        } else {
            println!(
                "skip  key store: [auth] store is PostgreSQL; back it up with pg_dump (docs/operations.md)"
            );
        }
        let data_dir = &cfg.server.data_dir;
        let mut copied = Vec::new();
        for file in crate::audit::trail_files(&cfg.audit) {
            copied.push(copy_into(&file, &out.join("audit"))?);
        }
        let sftp_keys = cfg
            .sftp
            .iter()
            .flat_map(|s| [s.host_key.clone(), s.rsa_host_key.clone()])
            .flatten()
            .chain([data_dir.join("sftp_host_ed25519_key")]);
        for key in sftp_keys.filter(|k| k.exists()) {
            copied.push(copy_into(&key, out)?);
        }
        let acme = data_dir.join("acme");
        if acme.is_dir() {
            for entry in std::fs::read_dir(&acme)? {
                let path = entry?.path();
                if path.is_file() {
                    copied.push(copy_into(&path, &out.join("acme"))?);
                }
            }
        }
        for file in &copied {
            println!("ok    copied: {}", file.display());
        }
        println!(
            "ok    backup in {} (restore: docs/operations.md, \"Back up and restore\")",
            out.display()
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Copies `file` into `dir` (created 0700) under its own name, 0600.
fn copy_into(file: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    create_private_dir(dir)?;
    let name = file
        .file_name()
        .with_context(|| format!("{}: not a file", file.display()))?;
    let dest = dir.join(name);
    std::fs::copy(file, &dest)
        .with_context(|| format!("cannot copy {} to {}", file.display(), dest.display()))?;
    restrict(&dest)?;
    Ok(dest)
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Backups hold hashed keys and sealed secrets: owner only.
fn restrict(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))
}
