//! Runs transfers in the background: `queued` → `running` → `completed` | `failed`.
//!
//! Each transfer is its own task, throttled by [`AppState::transfer_slots`].
//! A copy goes to `tmp/` first and is committed like an upload, so a crash
//! mid-copy leaves nothing behind; at startup unfinished transfers are
//! simply run again from the start.

use crate::file_records::{self, FileRecord};
use crate::ids;
use crate::state::AppState;
use crate::storage::CHUNK;
use crate::transfer_store::{self as store, Transfer};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::PathBuf;

/// Starts working on transfer `id` in the background.
pub fn spawn(state: AppState, id: String) {
    tokio::spawn(async move {
        if let Err(e) = run(&state, &id).await {
            tracing::error!(transfer_id = %id, error = %e, "cannot record transfer state");
        }
    });
}

/// Re-queues every transfer a previous run did not finish.
pub async fn resume(state: &AppState) -> sqlx::Result<usize> {
    let ids = store::unfinished(&state.db).await?;
    for id in &ids {
        store::set_status(&state.db, id, store::QUEUED, None).await?;
        spawn(state.clone(), id.clone());
    }
    if !ids.is_empty() {
        tracing::info!(count = ids.len(), "resuming unfinished transfers");
    }
    Ok(ids.len())
}

async fn run(state: &AppState, id: &str) -> sqlx::Result<()> {
    // A closed semaphore only happens at shutdown; the next start resumes.
    let Ok(_slot) = state.transfer_slots.clone().acquire_owned().await else {
        return Ok(());
    };
    let Some(transfer) = store::get(&state.db, id).await? else {
        return Ok(());
    };
    store::set_status(&state.db, id, store::RUNNING, None).await?;
    match copy(state, &transfer).await {
        Ok(copy) => {
            if let Err(e) = store::complete(&state.db, id, &copy).await {
                // The copy's bytes become an orphan that the startup sweep removes.
                let reason = "the copy was made but could not be recorded";
                store::set_status(&state.db, id, store::FAILED, Some(reason)).await?;
                return Err(e);
            }
            tracing::info!(transfer_id = %id, file_id = %copy.id, "transfer completed");
        }
        Err(reason) => {
            tracing::warn!(transfer_id = %id, %reason, "transfer failed");
            store::set_status(&state.db, id, store::FAILED, Some(&reason)).await?;
        }
    }
    Ok(())
}

/// Copies the source into a new stored file; the error is the text the
/// caller sees in `error`.
async fn copy(state: &AppState, t: &Transfer) -> Result<FileRecord, String> {
    let source = file_records::get(&state.db, &t.file_id)
        .await
        .map_err(|e| format!("cannot read the source's metadata: {e}"))?
        .ok_or_else(|| format!("source file {} no longer exists", t.file_id))?;
    let temp = state
        .storage
        .temp_file()
        .await
        .map_err(|e| format!("cannot create a temporary file: {e}"))?;
    let from = state.storage.file_path(&source.id);
    let to = temp.path().to_path_buf();
    let (size, sha256) = tokio::task::spawn_blocking(move || copy_blocking(from, to))
        .await
        .map_err(|e| format!("copy task failed: {e}"))?
        .map_err(|e| format!("cannot copy the source: {e}"))?;
    if sha256 != source.sha256 || size != source.size {
        return Err("the copy does not match the source's size and SHA-256".to_string());
    }
    let copy = FileRecord {
        id: ids::new_id(),
        name: t.name.clone().unwrap_or_else(|| source.name.clone()),
        folder: t.folder.clone(),
        size,
        sha256,
        created_at: ids::now(),
        created_by: t.created_by.clone(),
    };
    state
        .storage
        .commit(temp, &copy.id)
        .await
        .map_err(|e| format!("cannot store the copy: {e}"))?;
    Ok(copy)
}

/// Streams `from` into `to` in bounded chunks, hashing as it goes, and fsyncs.
fn copy_blocking(from: PathBuf, to: PathBuf) -> std::io::Result<(u64, String)> {
    let mut src = std::fs::File::open(from)?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(to)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        size += n as u64;
    }
    dst.sync_all()?;
    Ok((size, hex::encode(hasher.finalize())))
}
