//! `secrets-scan RUN_DIR`: after a whole e2e run with `MFT_E2E_RUN_DIR`
//! set, looks for every secret the suite recorded (and the harness's fixed
//! test secrets) in every file the suite's processes wrote: logs, audit
//! trails, key stores, spools (`mft_e2e::run`). Exit 0: nothing found;
//! 1: a secret was found (kind, test and file named, never the value);
//! 2: nothing to scan (no secret recorded or no file kept: the run did not
//! keep its outputs, which must not pass for a clean scan).

use aho_corasick::AhoCorasick;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A secret and who recorded it.
struct Secret {
    kind: String,
    test: String,
}

/// Secrets the harness uses as constants: in the scan whatever the tests
/// recorded.
fn fixed_secrets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SMTP bridge password", mft_e2e::smtp::BRIDGE_PASSWORD),
        ("mailbox password", mft_e2e::dovecot::PASSWORD),
        ("OAuth refresh token", mft_e2e::dovecot::REFRESH_TOKEN),
        (
            "OAuth refresh token",
            mft_e2e::dovecot::REVOKED_REFRESH_TOKEN,
        ),
        ("OAuth client secret", mft_e2e::dovecot::CLIENT_SECRET),
    ]
}

fn read_secrets(run: &Path) -> BTreeMap<String, Secret> {
    let mut out = BTreeMap::new();
    for (kind, value) in fixed_secrets() {
        out.insert(
            value.to_string(),
            Secret {
                kind: kind.into(),
                test: "(harness constant)".into(),
            },
        );
    }
    let Ok(entries) = std::fs::read_dir(run.join("secrets")) else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(f) = std::fs::File::open(e.path()) else {
            continue;
        };
        for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let (Some(value), Some(kind)) = (v["value"].as_str(), v["kind"].as_str()) else {
                continue;
            };
            if value.len() < mft_e2e::run::MIN_SECRET_LEN {
                continue;
            }
            out.entry(value.to_string()).or_insert(Secret {
                kind: kind.to_string(),
                test: v["test"].as_str().unwrap_or("?").to_string(),
            });
        }
    }
    out
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&e.path(), out),
            Ok(t) if t.is_file() && e.file_name() != "MANIFEST" => out.push(e.path()),
            _ => {}
        }
    }
}

fn main() -> ExitCode {
    let Some(run) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: secrets-scan RUN_DIR");
        return ExitCode::from(2);
    };
    let secrets = read_secrets(&run);
    let recorded = secrets
        .values()
        .filter(|s| s.test != "(harness constant)")
        .count();
    let mut files = Vec::new();
    files_under(&run.join("files"), &mut files);
    let processes = std::fs::read_dir(run.join("files"))
        .map(|d| d.count())
        .unwrap_or(0);
    if recorded == 0 || files.is_empty() {
        eprintln!(
            "secrets scan: NOTHING TO SCAN in {} ({recorded} secrets recorded, {} files kept): \
             the e2e run did not keep its outputs (MFT_E2E_RUN_DIR unset for the tests?)",
            run.display(),
            files.len()
        );
        return ExitCode::from(2);
    }
    let values: Vec<&String> = secrets.keys().collect();
    let ac = match AhoCorasick::new(&values) {
        Ok(ac) => ac,
        Err(e) => {
            eprintln!("secrets scan: cannot build the matcher: {e}");
            return ExitCode::from(2);
        }
    };
    let mut bytes = 0u64;
    let mut found = Vec::new();
    for f in &files {
        let Ok(file) = std::fs::File::open(f) else {
            continue;
        };
        bytes += file.metadata().map(|m| m.len()).unwrap_or(0);
        // Streamed: the matcher keeps what spans two reads itself.
        for m in ac.stream_find_iter(std::io::BufReader::with_capacity(1 << 16, file)) {
            match m {
                Ok(m) => {
                    let s = &secrets[values[m.pattern().as_usize()]];
                    found.push(format!(
                        "FOUND {} (recorded by {}) in {}",
                        s.kind,
                        s.test,
                        f.display()
                    ));
                }
                Err(e) => {
                    eprintln!("secrets scan: cannot read {}: {e}", f.display());
                    break;
                }
            }
        }
    }
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for s in secrets.values() {
        *kinds.entry(&s.kind).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let manifests: Vec<String> = std::fs::read_dir(run.join("files"))
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read_to_string(e.path().join("MANIFEST")).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    let count = |prefix: &str| {
        manifests
            .iter()
            .map(|m| m.lines().filter(|l| l.starts_with(prefix)).count())
            .sum::<usize>()
    };
    let skipped = count("skipped ");
    // Processes whose output was deleted before it could be kept: a hole
    // in the scan, reported with the test so its drop order gets fixed.
    let lost: Vec<&str> = manifests
        .iter()
        .filter(|m| m.lines().any(|l| l.starts_with("lost ")))
        .filter_map(|m| m.lines().next())
        .collect();
    println!(
        "secrets scan: {} secrets ({}) against {} files, {} bytes, of {processes} processes \
         ({skipped} files over {} MiB not kept)",
        secrets.len(),
        kinds.join(", "),
        files.len(),
        bytes,
        mft_e2e::run::KEEP_MAX_BYTES >> 20
    );
    if !lost.is_empty() {
        for t in &lost {
            println!("LOST the output of a process of {t} (its directory was deleted first)");
        }
    }
    if found.is_empty() && lost.is_empty() {
        println!("secrets scan: no secret found");
        return ExitCode::SUCCESS;
    }
    if found.is_empty() {
        println!(
            "secrets scan: no secret found, but {} processes' output was not scanned",
            lost.len()
        );
        return ExitCode::from(2);
    }
    found.sort();
    found.dedup();
    for f in &found {
        println!("{f}");
    }
    println!("secrets scan: {} finding(s)", found.len());
    ExitCode::FAILURE
}
