//! `mft-gateway upgrade --config FILE`: validate the file exactly as
//! `check` does, then ask the running gateway to hand its listening sockets
//! to the binary now on disk (`POST /admin/v1/upgrade` on its admin
//! listener) and wait for the outcome: the new process serves and the old
//! one drains (exit 0), or the new process failed and the old one keeps
//! serving (exit 1). Needs `[admin] token`; without one, send the process
//! SIGUSR2 instead (docs/operations.md, "Upgrade the binary").

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Runs the command.
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    // The new process gets READY_TIMEOUT to start serving.
    let timeout = crate::upgrade::READY_TIMEOUT + Duration::from_secs(30);
    let super::running::Answer { status, body } =
        match super::running::ask(path, "upgrade", "SIGUSR2", timeout)? {
            Ok(a) => a,
            Err(code) => return Ok(code),
        };
    if status != 200 {
        let detail = body["detail"].as_str().unwrap_or("refused");
        println!("FAIL  upgrade: the running gateway answered {status}: {detail}");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "ok    upgrade: new process {} serves on {} socket(s); old process {} drains and exits",
        body["new_pid"], body["sockets"], body["old_pid"]
    );
    Ok(ExitCode::SUCCESS)
}
