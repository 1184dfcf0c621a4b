//! The request an engine receives.
//!
//! A [`Request`] is the client's HTTP request reduced to what engines need: method, path and query,
//! headers, the [`Protocol`] of the route it arrived on, typed per-request [`Extensions`] (the
//! identity auth found, the attempts a retry made, …) and the lazy [`Body`]. Gemini carries the model
//! and the streaming choice in the URL rather than the body; the front records them in
//! [`RouteParams`] so [`Request::peek`] answers the same question for every protocol.

use std::net::SocketAddr;

use http::{Extensions, HeaderMap, Method, Uri};
use serde_json::Value;

use crate::body::{Body, Peek};
use crate::error::Error;
use crate::overhead::UpstreamTime;
use crate::protocol::Protocol;
use crate::record::RequestRecord;

/// Values a route's path carries (Gemini: `/v1beta/models/{model}:streamGenerateContent`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteParams {
    /// The model named in the path.
    pub model: Option<String>,
    /// Whether the path asks for a stream.
    pub stream: Option<bool>,
}

/// The client's socket address, inserted into every request's extensions by the front
/// (`http::Router`) when the connection has one. It lives here, not in `http`, so that engines
/// read it without the `http` feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// A client request travelling through engines.
#[derive(Debug, Clone)]
pub struct Request {
    /// The HTTP method.
    pub method: Method,
    /// Path and query as received.
    pub uri: Uri,
    /// The client's headers. Engines that call upstreams must not forward credentials from here.
    pub headers: HeaderMap,
    /// The protocol the client speaks.
    pub protocol: Protocol,
    /// Values from the route's path.
    pub route: RouteParams,
    /// Typed per-request state shared between engines.
    pub extensions: Extensions,
    /// The lazily parsed body.
    pub body: Body,
}

/// The routing scalars of a request, borrowed from it (see [`Request::peek_ref`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeekRef<'a> {
    /// The model, from the path or the body.
    pub model: Option<&'a str>,
    /// Whether the client asked for a stream.
    pub stream: bool,
}

impl Request {
    /// A request with empty headers and extensions.
    pub fn new(method: Method, uri: Uri, format: Protocol, body: Body) -> Self {
        Request {
            method,
            uri,
            headers: HeaderMap::new(),
            protocol: format,
            route: RouteParams::default(),
            extensions: Extensions::new(),
            body,
        }
    }

    /// A `POST` to `path` (for tests and embedding).
    ///
    /// # Panics
    /// If `path` is not a valid URI path.
    pub fn post(format: Protocol, path: &str, body: Body) -> Self {
        Self::new(
            Method::POST,
            path.parse().expect("a valid request path"),
            format,
            body,
        )
    }

    /// The model and stream flag, from the path where the protocol puts them there, else from a
    /// cheap scan of the body.
    ///
    /// # Errors
    /// A 400 when the body is not a JSON object.
    pub fn peek(&self) -> Result<Peek, Error> {
        let mut peek = self.body.peek()?;
        if let Some(model) = &self.route.model {
            peek.model = Some(model.clone());
        }
        if let Some(stream) = self.route.stream {
            peek.stream = stream;
        }
        Ok(peek)
    }

    /// As [`Request::peek`], borrowing: the model name is not copied (nothing is allocated once
    /// the body has been peeked).
    ///
    /// # Errors
    /// As [`Request::peek`].
    pub fn peek_ref(&self) -> Result<PeekRef<'_>, Error> {
        let peek = self.body.peek_ref()?;
        Ok(PeekRef {
            model: self.route.model.as_deref().or(peek.model.as_deref()),
            stream: self.route.stream.unwrap_or(peek.stream),
        })
    }

    /// The request's upstream-time accumulator ([`crate::overhead`]): its record's, or the one
    /// the front put in the extensions of a request it does not record.
    pub fn upstream_time(&self) -> Option<&UpstreamTime> {
        self.extensions.get::<UpstreamTime>().or_else(|| {
            self.extensions
                .get::<RequestRecord>()
                .map(RequestRecord::upstream_time)
        })
    }

    /// Points the request at another model name: in the path for path-routed protocols, in the body
    /// otherwise (by splicing bytes, so the rest of the body is unchanged).
    ///
    /// # Errors
    /// A 400 when the body is not a JSON object.
    pub fn set_model(&mut self, model: &str) -> Result<(), Error> {
        if self.route.model.is_some() {
            self.route.model = Some(model.to_owned());
            return Ok(());
        }
        // Already that model (the common passthrough case): keep the body as it is, no copy.
        if self
            .body
            .peek()
            .is_ok_and(|p| p.model.as_deref() == Some(model))
        {
            return Ok(());
        }
        self.body
            .set_top_level("model", &Value::String(model.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_model_to_the_same_name_keeps_the_bytes() {
        let raw = bytes::Bytes::from_static(br#"{ "model" : "m", "messages": [] }"#);
        let mut req = Request::post(
            Protocol::OpenAiChat,
            "/v1/chat/completions",
            Body::from_bytes(raw.clone()),
        );
        req.set_model("m").unwrap();
        let same = req.body.bytes();
        assert_eq!(same.as_ptr(), raw.as_ptr(), "no copy for the same model");
        req.set_model("n").unwrap();
        assert_eq!(
            &req.body.bytes()[..],
            br#"{ "model" : "n", "messages": [] }"#
        );
        assert_eq!(req.peek().unwrap().model.as_deref(), Some("n"));
    }

    #[test]
    fn peek_ref_reads_what_peek_reads_route_first() {
        let mut req = Request::post(
            Protocol::OpenAiChat,
            "/v1/chat/completions",
            Body::from_static(br#"{"model":"m","stream":true}"#),
        );
        let owned = req.peek().unwrap();
        let borrowed = req.peek_ref().unwrap();
        assert_eq!(borrowed.model, owned.model.as_deref());
        assert_eq!(borrowed.stream, owned.stream);
        req.route.model = Some("from-path".into());
        req.route.stream = Some(false);
        let owned = req.peek().unwrap();
        let borrowed = req.peek_ref().unwrap();
        assert_eq!(borrowed.model, Some("from-path"));
        assert_eq!(borrowed.model, owned.model.as_deref());
        assert!(!borrowed.stream && !owned.stream);
        // A parsed body's answer is cached too, and dropped by an edit.
        req.body.json().unwrap();
        assert_eq!(req.body.peek_ref().unwrap().model.as_deref(), Some("m"));
        req.body.json_mut().unwrap()["model"] = "edited".into();
        assert_eq!(
            req.body.peek_ref().unwrap().model.as_deref(),
            Some("edited")
        );
    }
}
