//! The request body type on connector connections: any body boxed once, so
//! the proxy's guarded bodies and the backend client's bodies share one
//! h2 connection, counted as they go for the connector's byte totals.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Any error a request body ends with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every request sent over a connector connection.
pub type UpBody = UnsyncBoxBody<Bytes, BoxError>;

/// Boxes `body` for a connector connection.
pub fn boxed<B>(body: B) -> UpBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// An empty body (the retry of a GET or HEAD).
pub fn empty() -> UpBody {
    boxed(http_body_util::Empty::<Bytes>::new())
}

/// Counts the data bytes of `inner` into `total` as they pass.
pub struct Counted {
    inner: UpBody,
    total: Arc<AtomicU64>,
}

impl Counted {
    /// Wraps `inner`.
    pub fn new(inner: UpBody, total: Arc<AtomicU64>) -> Self {
        Counted { inner, total }
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.total.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_every_data_byte() {
        let total = Arc::new(AtomicU64::new(0));
        let body = Counted::new(
            boxed(http_body_util::Full::new(Bytes::from_static(b"hello"))),
            total.clone(),
        );
        let collected = body.collect().await.map(|c| c.to_bytes());
        assert_eq!(collected.ok().as_deref(), Some(&b"hello"[..]));
        assert_eq!(total.load(Ordering::Relaxed), 5);
    }
}
