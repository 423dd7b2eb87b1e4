//! Serving the gateway's requests on one attached connection, as HTTP/2 or
//! HTTP/1.1 (the gateway chose at attach). Every request goes to the
//! configured backend ([`super::backend`]); the one exception is the
//! HTTP/1.1 heartbeat, answered here and never forwarded.

use super::backend::AnswerBody;
use super::dial::Attached;
use super::slot::{Busy, LinkState, SlotState};
use super::Parts;
use crate::connector::wire;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use mft_config::connector::LinkMode;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Interval of the connector's own PINGs on an HTTP/2 link, so it notices
/// a dead gateway (or a dropped path through the firewall) and reconnects.
const PING_INTERVAL: Duration = Duration::from_secs(5);

/// Serves `attached` until it ends; returns why it ended.
pub async fn serve(
    parts: &Arc<Parts>,
    slot: &Arc<SlotState>,
    link: &Arc<LinkState>,
    attached: Attached,
) -> String {
    let served = match attached.mode {
        LinkMode::H2 => serve_h2(parts, attached.stream).await,
        LinkMode::Http1 => {
            serve_http1(parts, slot, link, attached.stream, attached.heartbeat).await
        }
    };
    match served {
        Ok(()) => "closed by the gateway".to_string(),
        Err(e) => format!("connection failed: {e}"),
    }
}

async fn serve_h2(parts: &Arc<Parts>, upgraded: Upgraded) -> hyper::Result<()> {
    let me = parts.clone();
    let service = hyper::service::service_fn(move |req| {
        let me = me.clone();
        async move { Ok::<_, std::convert::Infallible>(me.backend.forward(req).await) }
    });
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(wire::STREAM_WINDOW)
        .initial_connection_window_size(wire::CONNECTION_WINDOW)
        .max_frame_size(wire::MAX_FRAME)
        .max_concurrent_streams(wire::MAX_STREAMS)
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(wire::ping_timeout(PING_INTERVAL))
        .serve_connection(upgraded, service)
        .await
}

/// One exchange at a time. Idle, the connection must hear the gateway's
/// heartbeat: silent for [`wire::idle_deadline`], it is taken for dead
/// (hyper's header read timeout also runs while a kept-alive connection
/// waits for its next request).
async fn serve_http1(
    parts: &Arc<Parts>,
    slot: &Arc<SlotState>,
    link: &Arc<LinkState>,
    upgraded: Upgraded,
    heartbeat: Duration,
) -> hyper::Result<()> {
    let (me, slot, link) = (parts.clone(), slot.clone(), link.clone());
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (me, slot, link) = (me.clone(), slot.clone(), link.clone());
        async move {
            if req.uri().path() == wire::HEARTBEAT_PATH {
                return Ok::<_, std::convert::Infallible>(heartbeat_answer(&slot, &link));
            }
            let busy = Busy::take(&slot, &link);
            let response = me.backend.forward(req).await;
            Ok(response.map(|body| Holding {
                body,
                _busy: Some(busy),
            }))
        }
    });
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(wire::idle_deadline(heartbeat))
        .keep_alive(true)
        .serve_connection(upgraded, service)
        .await
}

/// `204`; with `Connection: close` when the slot has more idle connections
/// than it keeps, which retires this one (the gateway sends nothing more on
/// a connection whose last answer said close, so no request is lost).
fn heartbeat_answer(slot: &SlotState, link: &LinkState) -> http::Response<Holding> {
    let mut response = http::Response::new(Holding {
        body: Either::Right(Full::new(Bytes::new())),
        _busy: None,
    });
    *response.status_mut() = http::StatusCode::NO_CONTENT;
    if slot.retire_if_surplus() {
        link.retire();
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// A response body holding its connection busy until it is dropped (sent
/// to its end, or abandoned with the connection).
pub struct Holding {
    body: AnswerBody,
    _busy: Option<Busy>,
}

impl Body for Holding {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.body {
            Either::Left(b) => Pin::new(b).poll_frame(cx),
            Either::Right(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
