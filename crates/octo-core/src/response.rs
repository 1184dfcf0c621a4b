//! The response an engine returns: a full body or a stream of events.

use http::{Extensions, HeaderMap, StatusCode};

use crate::body::Body;
use crate::event::EventStream;

/// What a response carries.
#[derive(Debug)]
pub enum ResponseBody {
    /// A complete (lazily parsed) body.
    Full(Body),
    /// Server-sent events, pulled as the client reads.
    Stream(EventStream),
}

/// An engine's answer. The client sees `status` as is: the front never rewrites it to 200.
#[derive(Debug)]
pub struct Response {
    /// The HTTP status.
    pub status: StatusCode,
    /// Headers to send (hop-by-hop and length headers are recomputed by the front).
    pub headers: HeaderMap,
    /// Typed per-response state (for example which backend answered).
    pub extensions: Extensions,
    /// The body or event stream.
    pub body: ResponseBody,
}

impl Response {
    /// A full JSON response.
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code.
    pub fn json(status: u16, body: impl Into<Body>) -> Self {
        Response {
            status: StatusCode::from_u16(status).expect("a valid status code"),
            headers: HeaderMap::new(),
            extensions: Extensions::new(),
            body: ResponseBody::Full(body.into()),
        }
    }

    /// A 200 streaming response.
    pub fn stream(events: EventStream) -> Self {
        Response {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            extensions: Extensions::new(),
            body: ResponseBody::Stream(events),
        }
    }

    /// Whether the body is an event stream.
    pub fn is_stream(&self) -> bool {
        matches!(self.body, ResponseBody::Stream(_))
    }
}
