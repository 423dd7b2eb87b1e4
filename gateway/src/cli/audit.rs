//! `mft-gateway audit verify [FILES...] [--anchor SEQ:SHA256]...`: checks the
//! audit trail's hash chain (docs/security.md#tamper-evident-audit-trail).
//! Without FILES, the configured `audit.file` and its rotated predecessors,
//! oldest first. Prints one `ok` line with the record count and the head,
//! or one `FAIL` line naming the first broken or missing record (file,
//! line, why) and exits 1.

use anyhow::Context;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of the audit files (default: the configured trail, oldest first).
    Verify {
        /// Audit files in order, oldest first.
        files: Vec<PathBuf>,
        /// `SEQ:SHA256` from `mft_audit_chain_head_info` taken earlier: that
        /// record must be there with that hash (catches records cut from the end).
        #[arg(long = "anchor", value_name = "SEQ:SHA256")]
        anchors: Vec<String>,
    },
}

/// Runs the command.
pub fn run(command: AuditCommand, config: &Path) -> anyhow::Result<ExitCode> {
    let AuditCommand::Verify { files, anchors } = command;
    let anchors = anchors
        .iter()
        .map(|a| {
            parse_anchor(a)
                .with_context(|| format!("--anchor {a}: expected SEQ:SHA256 (64 hex digits)"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut reserved = None;
    let files = if files.is_empty() {
        let loaded = super::load_config(config)?;
        reserved = Some((
            crate::audit::reserved_records(&loaded.config.audit),
            crate::audit::reserve::path_of(&loaded.config.audit.file),
        ));
        let files = crate::audit::trail_files(&loaded.config.audit);
        if files.is_empty() {
            println!(
                "FAIL  audit: no audit file at {}",
                loaded.config.audit.file.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        files
    } else {
        files
    };
    match crate::audit::verify(&files, &anchors) {
        Ok(v) => {
            let (seq, hash) = v
                .head
                .map_or((0, String::new()), |(s, h)| (s, hex::encode(h)));
            let first = v.first_seq.unwrap_or(0);
            print!(
                "ok    audit: {} records in {} file(s), seq {first}..{seq}, head {seq}:{hash}",
                v.records,
                files.len()
            );
            if v.unchained > 0 {
                print!(
                    " ({} older records without chain fields before them)",
                    v.unchained
                );
            }
            println!();
            if let Some((n @ 1.., path)) = reserved {
                println!(
                    "note  audit: {n} more record(s) in {} (a stop while the disk was full) are appended at the next start",
                    path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            println!("FAIL  audit: {broken}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn parse_anchor(a: &str) -> anyhow::Result<(u64, [u8; 32])> {
    let (seq, hash) = a.split_once(':').context("no ':'")?;
    let seq: u64 = seq.parse().context("SEQ is not a number")?;
    let mut h = [0u8; 32];
    hex::decode_to_slice(hash, &mut h).context("not 64 hex digits")?;
    Ok((seq, h))
}
