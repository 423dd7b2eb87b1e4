//! What a whole e2e run keeps for the suite-wide secrets scan (issue 21).
//!
//! With `MFT_E2E_RUN_DIR` set (scripts/test sets it), the harness
//!
//! - records every secret it makes or hands to a binary
//!   ([`record_secret`]: API keys, partner keys, passwords, OAuth tokens,
//!   signing and sealing keys) in `RUN/secrets/<pid>.jsonl`, and
//! - when a process it started is dropped ([`crate::Proc`]), copies what
//!   that process wrote: its stdout and stderr, and for `mft-gateway run`
//!   and `mft-gateway connector` the whole data_dir (audit trail, key
//!   store, spool, mailbox temp files) and an audit file kept elsewhere,
//!   into `RUN/files/<pid>-<n>-<name>/`.
//!
//! After nextest, `secrets-scan RUN` (src/bin/secrets_scan.rs) looks for
//! every recorded secret in every kept file. Without the variable nothing
//! is recorded or copied.
//!
//! The copy is made when the [`crate::Proc`] is dropped, so the test's
//! directory must outlive it: a struct holding both declares the
//! `TempDir` last (fields drop in declaration order). A process whose
//! output was gone by then is listed as lost, and the scan fails on it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the run directory.
pub const RUN_DIR_VAR: &str = "MFT_E2E_RUN_DIR";

/// Files larger than this are not kept (large uploads in spools and temp
/// files are test payloads, not something a secret is written into); the
/// scan reports how many were left out.
pub const KEEP_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Secrets shorter than this are not recorded: too short to tell apart
/// from ordinary bytes.
pub const MIN_SECRET_LEN: usize = 8;

/// The run directory, when this run keeps its outputs.
pub fn run_dir() -> Option<PathBuf> {
    std::env::var_os(RUN_DIR_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The test this process runs (nextest runs one per process).
fn test_name() -> String {
    std::env::var("NEXTEST_TEST_NAME")
        .ok()
        .or_else(|| std::thread::current().name().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// Records `value` as a secret of kind `kind` for the suite-wide scan.
pub fn record_secret(kind: &str, value: &str) {
    let Some(run) = run_dir() else {
        return;
    };
    if value.len() < MIN_SECRET_LEN {
        return;
    }
    let dir = run.join("secrets");
    let _ = std::fs::create_dir_all(&dir);
    let line = serde_json::json!({"kind": kind, "value": value, "test": test_name()});
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{}.jsonl", std::process::id())))
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Copies what a finished process wrote into the run directory (see the
/// module docs); does nothing without one. Never panics: it runs in `Drop`.
pub fn keep_outputs(name: &str, program: &Path, args: &[String], cwd: &Path, outputs: &[&Path]) {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let Some(run) = run_dir() else {
        return;
    };
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let to = run
        .join("files")
        .join(format!("{}-{n}-{name}", std::process::id()));
    let _ = std::fs::create_dir_all(&to);
    let mut manifest = format!("test {}\nprogram {}\n", test_name(), program.display());
    for out in outputs {
        if !out.exists() {
            // Its directory went first (a struct holding the TempDir before
            // the process): the scan reports it, so the order gets fixed.
            manifest.push_str(&format!("lost {}\n", out.display()));
        } else if let Some(file) = out.file_name() {
            copy_file(out, &to.join(file), &mut manifest);
        }
    }
    let is_gateway = program.file_name().and_then(|f| f.to_str()) == Some("mft-gateway")
        && matches!(args.first().map(String::as_str), Some("run" | "connector"));
    if is_gateway {
        if let Some(config) = config_of(args, cwd) {
            let text = std::fs::read_to_string(&config).unwrap_or_default();
            let data_dir =
                toml_string(&text, Some("server"), "data_dir").unwrap_or_else(|| "data".into());
            let data_dir = resolve(cwd, &data_dir);
            copy_tree(&data_dir, &to.join("data_dir"), &mut manifest);
            if let Some(audit) = toml_string(&text, Some("audit"), "file") {
                let audit = resolve(&data_dir, &audit);
                if !audit.starts_with(&data_dir) {
                    copy_file(&audit, &to.join("audit-file"), &mut manifest);
                }
            }
        }
    }
    let _ = std::fs::write(to.join("MANIFEST"), manifest);
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The `--config FILE` of a gateway's arguments, relative to `cwd`.
fn config_of(args: &[String], cwd: &Path) -> Option<PathBuf> {
    let i = args.iter().position(|a| a == "--config")?;
    args.get(i + 1).map(|c| resolve(cwd, c))
}

/// A string value `key = "..."` in `table` (`None`: before any table) of a
/// test config; enough for the configs the harness writes.
fn toml_string(text: &str, table: Option<&str>, key: &str) -> Option<String> {
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(t) = line.strip_prefix('[') {
            current = Some(t.trim_matches(|c| c == '[' || c == ']').trim().to_string());
            continue;
        }
        if current.as_deref() != table {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() == key {
            return Some(v.trim().trim_matches('"').to_string());
        }
    }
    None
}

fn copy_file(from: &Path, to: &Path, manifest: &mut String) {
    let Ok(meta) = std::fs::metadata(from) else {
        return;
    };
    if !meta.is_file() {
        return;
    }
    if from.extension().is_some_and(|e| e == "pending") {
        return copy_reserve(from, to, manifest);
    }
    if meta.len() > KEEP_MAX_BYTES {
        manifest.push_str(&format!("skipped {} {}\n", meta.len(), from.display()));
        return;
    }
    if std::fs::copy(from, to).is_ok() {
        manifest.push_str(&format!("kept {}\n", from.display()));
    }
}

/// The audit shutdown reserve (`<audit file>.pending`) is megabytes of
/// allocated zeros: only what it holds, the bytes before its first NUL,
/// can carry anything to scan.
fn copy_reserve(from: &Path, to: &Path, manifest: &mut String) {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(from) else {
        return;
    };
    let mut content = Vec::new();
    if f.take(KEEP_MAX_BYTES).read_to_end(&mut content).is_err() {
        return;
    }
    let end = content
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(content.len());
    if std::fs::write(to, &content[..end]).is_ok() {
        manifest.push_str(&format!("kept {} (up to its first NUL)\n", from.display()));
    }
}

fn copy_tree(from: &Path, to: &Path, manifest: &mut String) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    let _ = std::fs::create_dir_all(to);
    for e in entries.flatten() {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => copy_tree(&path, &to.join(e.file_name()), manifest),
            Ok(t) if t.is_file() => copy_file(&path, &to.join(e.file_name()), manifest),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_values_the_harness_writes() {
        let text = "[server]\ndata_dir = \"gateway-data\"\n\n[audit]\nfile = \"/x/audit.jsonl\"\n";
        assert_eq!(
            toml_string(text, Some("server"), "data_dir").as_deref(),
            Some("gateway-data")
        );
        assert_eq!(
            toml_string(text, Some("audit"), "file").as_deref(),
            Some("/x/audit.jsonl")
        );
        assert_eq!(toml_string(text, None, "data_dir"), None);
    }
}
