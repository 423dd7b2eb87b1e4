//! The one place that turns a decision or an error into a response:
//! RFC 9457 problem details with the request id.

use super::ctx::RequestCtx;
use bytes::Bytes;
use mft_filters::decision::Rejection;
use mft_filters::problem::{Problem, CONTENT_TYPE};
use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Status for a failed proxy attempt; 0 means the client is gone and nothing can be sent.
pub fn status_for(e: &Error) -> u16 {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(code) => *code,
        _ => match e.esource() {
            ErrorSource::Upstream => match e.etype() {
                ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => 504,
                _ => 502,
            },
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// What to tell the client for a status we produced ourselves. Never carries
/// upstream addresses or internal error text.
pub fn detail_for(status: u16) -> &'static str {
    match status {
        502 => "the backend could not be reached or sent an invalid response",
        504 => "the backend did not answer in time",
        400 => "the request could not be parsed",
        _ => "the request could not be completed",
    }
}

/// Writes `problem` as the whole response.
pub async fn respond(
    session: &mut Session,
    ctx: &RequestCtx,
    problem: Problem,
) -> pingora_core::Result<()> {
    write_problem(session, ctx, problem, &[]).await
}

/// Writes a filter's rejection: problem+json plus its headers (WWW-Authenticate, Retry-After).
pub async fn reject(
    session: &mut Session,
    ctx: &RequestCtx,
    rejection: &Rejection,
) -> pingora_core::Result<()> {
    write_problem(session, ctx, rejection.to_problem(), &rejection.headers).await
}

async fn write_problem(
    session: &mut Session,
    ctx: &RequestCtx,
    problem: Problem,
    extra: &[(http::HeaderName, std::borrow::Cow<'static, str>)],
) -> pingora_core::Result<()> {
    let status = problem.status;
    let body = Bytes::from(problem.with_request_id(ctx.id.clone()).to_json());
    let mut header = ResponseHeader::build(status, Some(6 + extra.len()))?;
    header.insert_header(http::header::CONTENT_TYPE, CONTENT_TYPE)?;
    header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    header.insert_header("x-request-id", ctx.id.as_str())?;
    header.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    for (name, value) in extra {
        header.insert_header(name.clone(), value.as_ref())?;
    }
    // Our own answers (401, 403, 404) tell the client what its limits left too,
    // unless the rejection is a rate limit describing itself.
    if !extra.iter().any(|(n, _)| *n == super::names::RATELIMIT) {
        if let (Some(policy), Some(state)) = (ctx.rate_headers.policy(), ctx.rate_headers.state()) {
            header.insert_header(super::names::RATELIMIT_POLICY, policy)?;
            header.insert_header(super::names::RATELIMIT, state)?;
        }
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

/// Writes a JSON body built per request with `status` and extra headers.
pub async fn respond_owned_json(
    session: &mut Session,
    ctx: &RequestCtx,
    status: u16,
    body: Vec<u8>,
    headers: crate::trust::inbound::AnswerFields,
) -> pingora_core::Result<()> {
    let mut header = ResponseHeader::build(status, Some(4 + headers.len()))?;
    header.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    header.insert_header("x-request-id", ctx.id.as_str())?;
    header.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    for (name, value) in headers {
        header.insert_header(name, value.as_ref())?;
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await
}

/// Writes a small JSON body with status 200.
pub async fn respond_json(
    session: &mut Session,
    ctx: &RequestCtx,
    body: &'static [u8],
) -> pingora_core::Result<()> {
    let mut header = ResponseHeader::build(200, Some(4))?;
    header.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    header.insert_header("x-request-id", ctx.id.as_str())?;
    header.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(header), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(Bytes::from_static(body)), true)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(t: ErrorType, s: ErrorSource) -> Box<Error> {
        let mut e = Error::new(t);
        e.esource = s;
        e
    }

    #[test]
    fn maps_upstream_failures_to_502_and_504() {
        assert_eq!(
            status_for(&err(ErrorType::ConnectRefused, ErrorSource::Upstream)),
            502
        );
        assert_eq!(
            status_for(&err(ErrorType::ConnectTimedout, ErrorSource::Upstream)),
            504
        );
        assert_eq!(
            status_for(&err(ErrorType::ReadTimedout, ErrorSource::Upstream)),
            504
        );
        assert_eq!(
            status_for(&err(ErrorType::InvalidHTTPHeader, ErrorSource::Upstream)),
            502
        );
    }

    #[test]
    fn dead_client_gets_nothing_and_bad_request_gets_400() {
        assert_eq!(
            status_for(&err(ErrorType::ReadError, ErrorSource::Downstream)),
            0
        );
        assert_eq!(
            status_for(&err(ErrorType::InvalidHTTPHeader, ErrorSource::Downstream)),
            400
        );
        assert_eq!(
            status_for(&err(ErrorType::HTTPStatus(413), ErrorSource::Internal)),
            413
        );
    }
}
