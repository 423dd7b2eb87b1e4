//! Sender binding of API-key deliveries (docs/keys.md, "Sender binding").
//!
//! A key created with `--allowed-senders` may only send
//! `POST /api/v1/deliveries` as a sender its list allows. For such a key,
//! and only for it, the delivery's JSON is read before anything goes
//! upstream (at most [`MAX_DELIVERY_JSON`] bytes, 413 beyond) and its
//! `sender` checked: 403 `urn:mft:problem:sender-not-allowed`, 400 when
//! there is no readable sender. Every other request keeps the streaming
//! path untouched.
//!
//! The hyper engine reads the body ahead ([`read_ahead`]) and forwards the
//! bytes it read; the pingora engine holds the body's chunks in a
//! [`SenderGuard`] until it is complete, so a refused body never completes
//! upstream (the backend stores nothing, as with the digest guard).

use super::body_rate::{next_frame, RateFloor, Waited};
use super::limits::MinBodyRate;
use super::service::{Exchange, Stop};
use crate::auth::Identity;
use bytes::{Bytes, BytesMut};
use mft_filters::auth::senders::{check_delivery, SenderBinding, MAX_DELIVERY_JSON};
use mft_filters::decision::Rejection;
use std::sync::Arc;
use std::time::Duration;

/// The binding to enforce on this request: a bound key's
/// `POST /api/v1/deliveries`; `None` for everything else.
pub fn binding_for(
    identity: Option<&Identity>,
    method: &http::Method,
    path: &str,
) -> Option<Arc<SenderBinding>> {
    let senders = identity?.senders.as_ref()?;
    let path = path.strip_suffix('/').unwrap_or(path);
    (method == http::Method::POST && path == crate::backend_client::paths::DELIVERIES)
        .then(|| senders.clone())
}

fn too_large() -> Rejection {
    Rejection::payload_too_large(MAX_DELIVERY_JSON as u64)
}

/// Hyper engine: reads the delivery whole (bounded, each read within
/// `idle`, the whole at no less than `min_rate`), checks its sender and
/// returns the bytes to forward. On a refusal the rest of the body stays
/// in `x.body`, so the answer lingers or closes as for any other refusal.
pub async fn read_ahead(
    x: &mut Exchange,
    binding: &SenderBinding,
    idle: Duration,
    min_rate: Option<MinBodyRate>,
) -> Result<Bytes, Stop> {
    let declared = x
        .head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_DELIVERY_JSON as u64) {
        return Err(Stop::Reject(too_large()));
    }
    let Some(mut body) = x.body.take() else {
        return Err(Stop::Reject(Rejection::bad_request(
            "the request has no body".into(),
            "sender_unreadable",
        )));
    };
    let mut read = BytesMut::with_capacity(declared.map_or(4096, |n| n as usize));
    let mut floor = min_rate.map(RateFloor::new);
    let outcome = loop {
        let frame = match next_frame(&mut body, idle, floor.as_mut()).await {
            Err(Waited::Idle) => {
                break Err(Rejection::bad_request(
                    "the request body stalled longer than the body idle timeout".into(),
                    "body_stalled",
                ))
            }
            Err(Waited::TooSlow(r)) => {
                x.error = Some("client_body_too_slow");
                break Err(r);
            }
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => {
                tracing::debug!(request_id = %x.ctx.id, error = %e, "delivery body failed");
                x.error = Some("client_body");
                break Err(Rejection::bad_request(
                    "the request body could not be read".into(),
                    "client_body",
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        if read.len() + chunk.len() > MAX_DELIVERY_JSON {
            break Err(too_large());
        }
        // A body of unknown length counts against the route's own limit
        // here; the guarded body does not count these bytes again.
        if let Some(meter) = x.ctx.body.meter.as_mut() {
            if let Err(r) = meter.add(chunk.len()) {
                break Err(r);
            }
        }
        read.extend_from_slice(&chunk);
    };
    x.body = Some(body);
    outcome.map_err(Stop::Reject)?;
    check_delivery(binding, &read).map_err(Stop::Reject)?;
    Ok(read.freeze())
}

/// Pingora engine: holds a bound key's delivery body until it is complete
/// and its sender allowed, then releases it in one piece.
pub struct SenderGuard {
    binding: Arc<SenderBinding>,
    held: BytesMut,
}

impl SenderGuard {
    /// A guard for `binding`.
    pub fn new(binding: Arc<SenderBinding>) -> SenderGuard {
        SenderGuard {
            binding,
            held: BytesMut::new(),
        }
    }

    /// Takes `body`'s chunk; at the end puts the whole body back once its
    /// sender is allowed.
    pub fn feed(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) -> Result<(), Rejection> {
        if let Some(chunk) = body.take() {
            if self.held.len() + chunk.len() > MAX_DELIVERY_JSON {
                return Err(too_large());
            }
            self.held.extend_from_slice(&chunk);
        }
        if end_of_stream {
            check_delivery(&self.binding, &self.held)?;
            *body = Some(std::mem::take(&mut self.held).freeze());
        } else {
            // Held back: an empty chunk, never `None`, which pingora takes
            // for the end of the body and would end the upstream body with.
            *body = Some(Bytes::new());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_holds_until_the_end_and_checks_the_sender() {
        let binding = Arc::new(SenderBinding::parse("ops@ourcorp.example").unwrap());
        let mut g = SenderGuard::new(binding.clone());
        let mut chunk = Some(Bytes::from_static(br#"{"sender":"ops@"#));
        g.feed(&mut chunk, false).unwrap();
        assert_eq!(chunk.as_deref(), Some(&b""[..]), "held back");
        let mut chunk = Some(Bytes::from_static(br#"ourcorp.example"}"#));
        g.feed(&mut chunk, true).unwrap();
        assert_eq!(
            chunk.as_deref(),
            Some(&br#"{"sender":"ops@ourcorp.example"}"#[..])
        );

        let mut g = SenderGuard::new(binding.clone());
        let mut chunk = Some(Bytes::from_static(br#"{"sender":"ceo@ourcorp.example"}"#));
        assert_eq!(g.feed(&mut chunk, true).unwrap_err().status, 403);

        let mut g = SenderGuard::new(binding);
        let mut big = Some(Bytes::from(vec![b' '; MAX_DELIVERY_JSON + 1]));
        assert_eq!(g.feed(&mut big, false).unwrap_err().status, 413);
    }
}
