//! The bodies of the hyper engine: the request body on its way upstream,
//! checked chunk by chunk by the guards, and the response body, which ends
//! the request's bookkeeping when hyper drops it.

use super::accept::ConnInfo;
use super::body_rate::RateFloor;
use super::digest_guard::DigestGuard;
use super::limits::{BodyWatch, MinBodyRate};
use super::pool::Checkin;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mft_filters::decision::Rejection;
use mft_filters::limits::BodyMeter;
use mft_protocols::multipart::MultipartGuard;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use thiserror::Error;
use tokio::time::Sleep;

/// What the request body did, read after the upstream call and at the end.
#[derive(Default)]
pub struct BodyStats {
    /// Bytes read from the client.
    pub bytes_in: AtomicU64,
    /// Why a guard stopped the body, answered in place of a 502.
    pub rejection: OnceLock<Rejection>,
    /// The client's body a guard stopped, kept so the refusal can linger.
    leftover: Mutex<Option<Incoming>>,
}

impl BodyStats {
    /// The body a guard stopped, if any.
    pub fn take_leftover(&self) -> Option<Incoming> {
        self.leftover
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// Why the upstream request body ended early.
#[derive(Debug, Error)]
pub enum BodyError {
    /// The client's stream failed.
    #[error("reading the request body: {0}")]
    Client(#[from] hyper::Error),
    /// A guard refused the body (see [`BodyStats::rejection`]).
    #[error("the request body was refused by an input limit")]
    Refused,
}

/// What [`GuardedBody::poll_frame`] yields.
type Polled = Poll<Option<Result<Frame<Bytes>, BodyError>>>;

type Feeding =
    Pin<Box<dyn Future<Output = (MultipartGuard, Option<Bytes>, Result<(), Rejection>)> + Send>>;

/// The client's body as it goes upstream: counted against the route's
/// limit, its multipart part headers checked before each chunk is released,
/// its digest checked before the last chunk is released, each read
/// bounded by the body idle timeout and the whole under the minimum body
/// rate's floor.
pub struct GuardedBody {
    /// `None` once handed back to [`BodyStats`] after a refusal.
    inner: Option<Incoming>,
    meter: Option<BodyMeter>,
    multipart: Option<MultipartGuard>,
    digest: Option<DigestGuard>,
    feeding: Option<Feeding>,
    idle: Duration,
    stall: Option<Pin<Box<Sleep>>>,
    /// Boxed, and only for a body still to come: most requests (GETs) have
    /// none, and this struct stays small on every request.
    rate: Option<Box<RateFloor>>,
    stats: Arc<BodyStats>,
    ended: bool,
    /// A body read ahead whole (sender binding): released first, through
    /// the digest guard; `inner` is then at its end.
    read_ahead: Option<Bytes>,
    /// Told when this body is dropped before its end (the upstream call
    /// failed or answered early), so the connection's close lingers.
    conn: Option<Arc<ConnInfo>>,
}

impl GuardedBody {
    /// Wraps `inner` with what `watch` and `digest` ask for.
    pub fn new(
        inner: Incoming,
        watch: BodyWatch,
        digest: Option<DigestGuard>,
        idle: Duration,
        min_rate: Option<MinBodyRate>,
        stats: Arc<BodyStats>,
    ) -> Self {
        let rate = match min_rate {
            Some(r) if !Body::is_end_stream(&inner) => Some(Box::new(RateFloor::new(r))),
            _ => None,
        };
        GuardedBody {
            inner: Some(inner),
            meter: watch.meter,
            multipart: watch.multipart,
            digest,
            feeding: None,
            idle,
            stall: None,
            rate,
            stats,
            ended: false,
            read_ahead: None,
            conn: None,
        }
    }

    /// `conn` learns if this body is dropped before the client sent all of it.
    pub fn on_connection(mut self, conn: Arc<ConnInfo>) -> Self {
        self.conn = Some(conn);
        self
    }

    /// The body was read ahead whole (`inner` is at its end): `read` goes
    /// upstream first. Its bytes were counted against the route's limit
    /// while they were read.
    pub fn with_read_ahead(mut self, read: Bytes) -> Self {
        self.read_ahead = Some(read).filter(|b| !b.is_empty());
        self
    }

    fn refuse(&mut self, rejection: Rejection) -> Polled {
        let _ = self.stats.rejection.set(rejection);
        *self
            .stats
            .leftover
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = self.inner.take();
        self.ended = true;
        Poll::Ready(Some(Err(BodyError::Refused)))
    }

    /// A chunk every guard has seen; the digest guard may hold it back.
    fn release(&mut self, chunk: Bytes) -> Option<Polled> {
        let Some(guard) = self.digest.as_mut() else {
            return Some(Poll::Ready(Some(Ok(Frame::data(chunk)))));
        };
        let mut body = Some(chunk);
        if let Err(r) = guard.feed(&mut body, false) {
            return Some(self.refuse(r));
        }
        body.filter(|b| !b.is_empty())
            .map(|b| Poll::Ready(Some(Ok(Frame::data(b)))))
    }

    /// The client's body ended and every guard agreed so far.
    fn conclude(&mut self) -> Polled {
        self.ended = true;
        let Some(mut guard) = self.digest.take() else {
            return Poll::Ready(None);
        };
        let mut body = None;
        if let Err(r) = guard.feed(&mut body, true) {
            return self.refuse(r);
        }
        Poll::Ready(body.filter(|b| !b.is_empty()).map(|b| Ok(Frame::data(b))))
    }
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        let unread = !self.ended && self.inner.as_ref().is_some_and(|b| !b.is_end_stream());
        if let (true, Some(conn)) = (unread, self.conn.as_ref()) {
            conn.body_left_unread();
        }
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            if let Some(feeding) = this.feeding.as_mut() {
                let (guard, chunk, verdict) = ready!(feeding.as_mut().poll(cx));
                this.feeding = None;
                this.multipart = Some(guard);
                if let Err(r) = verdict {
                    return this.refuse(r);
                }
                match chunk {
                    Some(chunk) => match this.release(chunk) {
                        Some(poll) => return poll,
                        None => continue,
                    },
                    None => return this.conclude(),
                }
            }
            if let Some(chunk) = this.read_ahead.take() {
                this.stats
                    .bytes_in
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                match this.release(chunk) {
                    Some(poll) => return poll,
                    None => continue,
                }
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(inner).poll_frame(cx) {
                Poll::Pending => {
                    let idle = this.idle;
                    let stall = this
                        .stall
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    if stall.as_mut().poll(cx).is_ready() {
                        return this.refuse(Rejection::bad_request(
                            "the request body stalled longer than the body idle timeout"
                                .to_string(),
                            "body_stalled",
                        ));
                    }
                    if let Some(rate) = this.rate.as_mut() {
                        if let Err(r) = rate.poll_waiting(cx) {
                            return this.refuse(r);
                        }
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(e))) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(BodyError::Client(e))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(stall) = this.stall.as_mut() {
                        stall
                            .as_mut()
                            .reset(tokio::time::Instant::now() + this.idle);
                    }
                    let chunk = match frame.into_data() {
                        Ok(chunk) => chunk,
                        Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                    };
                    if chunk.is_empty() {
                        continue;
                    }
                    this.stats
                        .bytes_in
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if let Some(meter) = this.meter.as_mut() {
                        if let Err(r) = meter.add(chunk.len()) {
                            return this.refuse(r);
                        }
                    }
                    if let Some(rate) = this.rate.as_mut() {
                        if let Err(r) = rate.arrived(chunk.len()) {
                            return this.refuse(r);
                        }
                    }
                    if let Some(mut guard) = this.multipart.take() {
                        this.feeding = Some(Box::pin(async move {
                            let verdict = guard.feed(Some(&chunk), false).await;
                            (guard, Some(chunk), verdict)
                        }));
                        continue;
                    }
                    match this.release(chunk) {
                        Some(poll) => return poll,
                        None => continue,
                    }
                }
                Poll::Ready(None) => {
                    if let Some(mut guard) = this.multipart.take() {
                        this.feeding = Some(Box::pin(async move {
                            let verdict = guard.feed(None, true).await;
                            (guard, None, verdict)
                        }));
                        continue;
                    }
                    return this.conclude();
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
            || (self.read_ahead.is_none()
                && self.inner.as_ref().is_none_or(|b| b.is_end_stream())
                && self.feeding.is_none()
                && self.multipart.is_none()
                && self.digest.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        // The guards hold chunks back but never add or drop bytes.
        if let Some(read) = &self.read_ahead {
            // Not exact: the client's Content-Length (if it sent one) says
            // it; an exact hint would make hyper add one the signature does
            // not cover.
            let mut hint = SizeHint::new();
            hint.set_lower(read.len() as u64);
            return hint;
        }
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

/// How long a refused HTTP/1.1 body is still read and discarded: closing
/// with unread data makes the kernel send a reset, and a client still
/// writing its body would then lose our answer.
pub const LINGER: Duration = Duration::from_secs(2);

/// A refused request's unread body, kept until the answer is out.
pub struct Linger {
    body: Incoming,
    /// HTTP/2: the answer ends the stream on our side at once; the body is
    /// then read and discarded for [`LINGER`] on its own task, and dropping
    /// it resets a stream still open with NO_ERROR (RFC 9113 §8.1). Reading
    /// first matters: curl 7.88 fails an upload whose stream is reset while
    /// it is still sending, even with NO_ERROR.
    http2: bool,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Linger {
    /// Keeps `body` (unless it is complete already).
    pub fn new(body: Incoming, http2: bool) -> Option<Linger> {
        (!body.is_end_stream()).then_some(Linger {
            body,
            http2,
            deadline: None,
        })
    }

    /// Reads and discards until the body ends or [`LINGER`] passed.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.http2 {
            return Poll::Ready(());
        }
        loop {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => {
                    let deadline = self
                        .deadline
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
                    return deadline.as_mut().poll(cx);
                }
            }
        }
    }
}

/// Called once when a response body is dropped: the request's logging phase.
pub trait OnFinish: Send {
    /// `bytes_out` were sent; `completed` if the body reached its end.
    fn finish(&mut self, bytes_out: u64, completed: bool);
}

enum Kind {
    Full(Option<Bytes>),
    Upstream(Upstream),
}

/// The backend's body and the bound on its silences.
struct Upstream {
    body: Incoming,
    /// `[backend] read_timeout`.
    idle: Duration,
    /// Armed on the first wait for the backend (a body that comes in one
    /// piece never allocates it), re-armed after each piece.
    deadline: Option<Pin<Box<Sleep>>>,
    /// A piece came since the deadline was armed.
    progress: bool,
}

/// The backend fell silent mid-body for longer than `read_timeout`.
#[derive(Debug, Error)]
#[error("the backend sent nothing for {0:?} in the middle of a response body")]
pub struct BackendStalled(Duration);

/// Errors of a response body toward the client.
pub type RespError = Box<dyn std::error::Error + Send + Sync>;

/// The response toward the client.
pub struct RespBody {
    kind: Kind,
    /// The backend connection an upstream body came on, released to the
    /// pool when the body has been read to its end.
    checkin: Option<Checkin>,
    linger: Option<Linger>,
    finish: Option<Box<dyn OnFinish>>,
    bytes_out: u64,
    completed: bool,
}

impl RespBody {
    /// A body we wrote ourselves.
    pub fn full(data: Bytes, linger: Option<Linger>, finish: Box<dyn OnFinish>) -> Self {
        let completed = data.is_empty() && linger.as_ref().is_none_or(|l| l.http2);
        RespBody {
            kind: Kind::Full((!data.is_empty()).then_some(data)),
            checkin: None,
            linger,
            finish: Some(finish),
            bytes_out: 0,
            completed,
        }
    }

    /// The backend's body, streamed; `checkin` is the pooled connection
    /// it comes on.
    /// A backend silent for longer than `idle` mid-body ends the body with
    /// an error (the client's transfer fails visibly; the connection is
    /// dropped, not returned to the pool).
    pub fn upstream(
        body: Incoming,
        checkin: Option<Checkin>,
        finish: Box<dyn OnFinish>,
        idle: Duration,
    ) -> Self {
        let completed = body.is_end_stream();
        let mut resp = RespBody {
            completed,
            kind: Kind::Upstream(Upstream {
                body,
                idle,
                deadline: None,
                progress: false,
            }),
            checkin,
            linger: None,
            finish: Some(finish),
            bytes_out: 0,
        };
        if completed {
            resp.release_connection();
        }
        resp
    }

    fn release_connection(&mut self) {
        if let Some(checkin) = self.checkin.take() {
            checkin.release();
        }
    }
}

/// Reads and discards an HTTP/2 request body whose answer is complete, for
/// at most [`LINGER`].
async fn discard(mut body: Incoming) {
    let drained = tokio::time::timeout(LINGER, async {
        while let Some(Ok(_)) = body.frame().await {}
    });
    let _ = drained.await;
}

impl Drop for RespBody {
    fn drop(&mut self) {
        if let Some(linger) = self.linger.take().filter(|l| l.http2) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(discard(linger.body));
            }
        }
        if let Some(mut finish) = self.finish.take() {
            finish.finish(self.bytes_out, self.completed);
        }
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = RespError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RespError>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(data) => {
                if let Some(data) = data.take() {
                    this.bytes_out += data.len() as u64;
                    // hyper stops polling once `is_end_stream` says so.
                    this.completed = this.linger.as_ref().is_none_or(|l| l.http2);
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                if let Some(linger) = this.linger.as_mut() {
                    ready!(linger.poll_drain(cx));
                    this.linger = None;
                }
                this.completed = true;
                Poll::Ready(None)
            }
            Kind::Upstream(up) => {
                let polled = match Pin::new(&mut up.body).poll_frame(cx) {
                    Poll::Ready(polled) => {
                        up.progress = true;
                        polled
                    }
                    Poll::Pending => {
                        let idle = up.idle;
                        let deadline = up
                            .deadline
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                        if std::mem::take(&mut up.progress) {
                            deadline.as_mut().reset(tokio::time::Instant::now() + idle);
                        }
                        ready!(deadline.as_mut().poll(cx));
                        return Poll::Ready(Some(Err(Box::new(BackendStalled(idle)))));
                    }
                };
                let body = &up.body;
                match &polled {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            this.bytes_out += data.len() as u64;
                        }
                        this.completed = body.is_end_stream();
                    }
                    None => this.completed = true,
                    Some(Err(_)) => {}
                }
                if this.completed {
                    this.release_connection();
                }
                Poll::Ready(polled.map(|r| r.map_err(RespError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            // h2 keeps the refused body only to drop it after END_STREAM.
            Kind::Full(data) => data.is_none() && self.linger.as_ref().is_none_or(|l| l.http2),
            Kind::Upstream(up) => up.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            // An HTTP/1.1 answer that lingers is sent chunked (see `answer`).
            Kind::Full(_) if self.linger.as_ref().is_some_and(|l| !l.http2) => SizeHint::default(),
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Upstream(up) => up.body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    /// hyper-util moves the upstream request, this body inline, about twenty
    /// times before it is pinned: every byte of it is copied per request.
    #[test]
    fn the_upstream_body_stays_small() {
        let size = std::mem::size_of::<super::GuardedBody>();
        assert!(size <= 256, "GuardedBody is {size} bytes");
    }
}
