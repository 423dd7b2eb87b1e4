//! A panic inside a third-party parser, caught where the session that fed
//! it can end with an error. imap-proto 0.17 panics on some malformed
//! server answers (a non-ASCII byte right after a response code's `]`,
//! found by fuzzing, docs/reliability.md): a hostile or broken server must
//! cost one session and a back-off, not the task that polls it.

use futures_util::FutureExt;
use std::future::Future;

/// The future panicked; the panic message went to the panic hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a parser panicked on the peer's input")]
pub struct Panicked;

/// Runs `fut`, turning a panic inside it into [`Panicked`].
pub async fn caught<F: Future>(fut: F) -> Result<F::Output, Panicked> {
    std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|_| Panicked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_an_error_and_a_value_passes_through() {
        assert_eq!(caught(async { 7 }).await, Ok(7));
        let r = caught(async {
            let v: Vec<u8> = Vec::new();
            v[usize::from(v.is_empty())]
        })
        .await;
        assert_eq!(r, Err(Panicked));
    }
}
