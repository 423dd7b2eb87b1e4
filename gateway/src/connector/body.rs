//! The request body type on connector connections: any body boxed once, so
//! the proxy's guarded bodies and the backend client's bodies share one
//! h2 connection (the connector's byte totals are counted on the stream,
//! [`super::counted_io`]).

use bytes::Bytes;
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;

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
