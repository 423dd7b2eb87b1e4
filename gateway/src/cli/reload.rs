//! `mft-gateway reload --config FILE`: validate the file exactly as `check`
//! does (same `file:line: key: message` lines, exit 1 on any error), then
//! ask the running gateway to apply it through `POST /admin/v1/reload` on
//! its admin listener (so the answer says what changed, what needs a
//! restart, or why nothing changed). Needs `[admin] token`; without one,
//! send the process SIGHUP instead (docs/operations.md).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Runs the command.
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let super::running::Answer { status, body } =
        match super::running::ask(path, "reload", "SIGHUP", Duration::from_secs(120))? {
            Ok(a) => a,
            Err(code) => return Ok(code),
        };
    let strings = |key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    if status != 200 {
        let detail = body["detail"].as_str().unwrap_or("refused");
        println!("FAIL  reload: the running gateway answered {status}: {detail}");
        for line in strings("errors") {
            println!("FAIL  config: {line}");
        }
        return Ok(ExitCode::FAILURE);
    }
    let served = body["config"].as_str().unwrap_or_default();
    if !same_file(Path::new(served), path) {
        println!(
            "warn  reload: the running gateway reloaded its own file {served}, not {}",
            path.display()
        );
    }
    let changed = strings("changed");
    println!(
        "ok    reload: applied{}",
        if changed.is_empty() {
            " (nothing changed)".to_string()
        } else {
            format!(": {}", changed.join(", "))
        }
    );
    for section in strings("needs_restart") {
        println!("warn  reload: {section} changed but takes effect only after a restart");
    }
    Ok(ExitCode::SUCCESS)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
