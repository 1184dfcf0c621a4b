//! The one error type engines return, and its rendering in each client protocol's error shape.
//!
//! An [`Error`] is opaque (as hyper's and reqwest's are): callers ask it questions — its
//! [`kind`](Error::kind), its HTTP [`status`](Error::status), whether it is
//! [`retryable`](Error::is_retryable), how long to wait before a retry — instead of matching on
//! strings. It renders itself in the client's own protocol ([`Error::render`]), so an OpenAI client
//! gets `{"error":{"message","type","param","code"}}`, an Anthropic client
//! `{"type":"error","error":{"type","message"}}` and a Gemini client
//! `{"error":{"code","message","status"}}`; an upstream error body that is already in the client's
//! shape is passed through verbatim.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::protocol::{ErrorFamily, Protocol};

/// The code of a refusal for spent quota (a budget): OpenAI answers it as a 429 whose `type` is
/// also `insufficient_quota`, which [`Error::render`] reproduces.
pub const INSUFFICIENT_QUOTA: &str = "insufficient_quota";

/// A boxed error usable as an [`Error`]'s source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, broadly; decides the default status and retryability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The client sent something malformed or unsupported (400).
    BadRequest,
    /// Missing or invalid credentials (401).
    Unauthorized,
    /// Valid credentials, not allowed (403).
    Forbidden,
    /// Unknown route or model (404).
    NotFound,
    /// The route exists for another method (405).
    MethodNotAllowed,
    /// The request body is over the configured limit (413).
    PayloadTooLarge,
    /// Too many requests (429); retryable after [`Error::retry_after`].
    RateLimited,
    /// The upstream failed: refused the connection, reset it, or answered non-2xx.
    Upstream,
    /// An upstream refused the gateway's own API key for it (it answered 401 or 403). Clients'
    /// credentials are never forwarded, so this is the gateway's failure, not the client's: a 502
    /// naming the backend, never the upstream's text (providers echo the presented key in it).
    /// Retryable: another key or backend may work.
    KeyRefused,
    /// A deadline passed: connect, first byte, idle gap or total (504).
    Timeout,
    /// The gateway cannot do this yet (501).
    Unsupported,
    /// A bug or an invariant broken inside the gateway (500).
    Internal,
}

impl ErrorKind {
    fn default_status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Upstream | ErrorKind::KeyRefused => StatusCode::BAD_GATEWAY,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An upstream's own error answer, kept so it can be passed through or re-shaped.
#[derive(Debug, Clone)]
pub struct UpstreamBody {
    /// The protocol the upstream speaks, when known.
    pub protocol: Option<Protocol>,
    /// The raw body bytes, at most the client endpoint's error-body limit.
    pub body: Bytes,
}

/// The error every [`Engine`](crate::Engine) returns.
///
/// ```
/// use octo_core::{Protocol, Error, ErrorKind};
///
/// let err = Error::not_found("model `gpt-5` is not configured").with_code("model_not_found");
/// assert_eq!(err.kind(), ErrorKind::NotFound);
/// assert_eq!(err.status().as_u16(), 404);
/// assert!(!err.is_retryable());
/// let rendered = err.render(Protocol::Anthropic);
/// let body: serde_json::Value = serde_json::from_slice(&rendered.body).unwrap();
/// assert_eq!(body["error"]["type"], "not_found_error");
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    status: StatusCode,
    message: String,
    retryable: bool,
    retry_after: Option<Duration>,
    param: Option<String>,
    code: Option<String>,
    upstream: Option<UpstreamBody>,
    source: Option<BoxError>,
    headers: Option<HeaderMap>,
}

impl Error {
    /// A new error of `kind` with its default status and retryability.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let status = kind.default_status();
        let retryable = matches!(
            kind,
            ErrorKind::RateLimited
                | ErrorKind::Upstream
                | ErrorKind::KeyRefused
                | ErrorKind::Timeout
        );
        Error {
            inner: Box::new(Inner {
                kind,
                status,
                message: message.into(),
                retryable,
                retry_after: None,
                param: None,
                code: None,
                upstream: None,
                source: None,
                headers: None,
            }),
        }
    }

    /// 400: the client sent something malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    /// 401: missing or wrong credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }
    /// 403: not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    /// 404: unknown route or model.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// 405: wrong method for the route.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::MethodNotAllowed, message)
    }
    /// 413: body over the limit.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PayloadTooLarge, message)
    }
    /// 429, retryable after `retry_after` if given.
    pub fn rate_limited(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        let mut e = Self::new(ErrorKind::RateLimited, message);
        e.inner.retry_after = retry_after;
        e
    }
    /// 502: the upstream could not be reached or broke the connection; retryable.
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Upstream, message)
    }
    /// An upstream's non-2xx answer: keeps its status, body and retry-after.
    ///
    /// Retryable when the status is 408, 429 or 5xx.
    pub fn upstream_status(
        status: StatusCode,
        message: impl Into<String>,
        body: UpstreamBody,
        retry_after: Option<Duration>,
    ) -> Self {
        let mut e = Self::new(ErrorKind::Upstream, message);
        e.inner.status = status;
        e.inner.retryable = status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error();
        e.inner.retry_after = retry_after;
        e.inner.upstream = Some(body);
        e
    }
    /// 502: an upstream refused the gateway's own key (see [`ErrorKind::KeyRefused`]); retryable.
    ///
    /// ```
    /// use octo_core::{Error, ErrorKind, Protocol};
    ///
    /// let e = Error::key_refused("backend `oa` refused the gateway's API key (it answered 401)");
    /// assert_eq!((e.kind(), e.status().as_u16()), (ErrorKind::KeyRefused, 502));
    /// assert!(e.is_retryable());
    /// let body: serde_json::Value =
    ///     serde_json::from_slice(&e.render(Protocol::OpenAiChat).body).unwrap();
    /// assert_eq!(body["error"]["code"], "upstream_key_refused");
    /// ```
    pub fn key_refused(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::KeyRefused, message)
    }
    /// 504: a deadline passed; retryable.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
    /// 501: not supported (yet).
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// 500: a gateway bug.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Overrides the HTTP status (for example a deny rule's configured status).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.inner.status = status;
        self
    }
    /// Sets the protocol `code` field (OpenAI `error.code`).
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.inner.code = Some(code.into());
        self
    }
    /// Sets the offending parameter (OpenAI `error.param`).
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.inner.param = Some(param.into());
        self
    }
    /// Overrides whether a retry may help.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.inner.retryable = retryable;
        self
    }
    /// Adds a header to the rendered answer (for example a rate limiter's
    /// `x-ratelimit-remaining-requests`). Headers the rendering sets itself (`content-type`,
    /// `retry-after`) win over one of the same name.
    ///
    /// ```
    /// use http::HeaderValue;
    /// use octo_core::{Error, Protocol};
    ///
    /// let e = Error::rate_limited("slow down", None)
    ///     .with_header("x-ratelimit-limit-requests", HeaderValue::from(5));
    /// assert_eq!(e.render(Protocol::Gemini).headers["x-ratelimit-limit-requests"], "5");
    /// ```
    pub fn with_header(
        mut self,
        name: impl http::header::IntoHeaderName,
        value: HeaderValue,
    ) -> Self {
        self.inner
            .headers
            .get_or_insert_with(HeaderMap::new)
            .append(name, value);
        self
    }
    /// The headers added with [`Error::with_header`].
    pub fn extra_headers(&self) -> Option<&HeaderMap> {
        self.inner.headers.as_ref()
    }
    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// The broad category.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }
    /// The HTTP status the client will see.
    pub fn status(&self) -> StatusCode {
        self.inner.status
    }
    /// The human-readable message (what happened and, where possible, what to do).
    pub fn message(&self) -> &str {
        &self.inner.message
    }
    /// Whether trying again (possibly elsewhere) may succeed.
    pub fn is_retryable(&self) -> bool {
        self.inner.retryable
    }
    /// How long the upstream asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }
    /// The protocol `code`, if set.
    pub fn code(&self) -> Option<&str> {
        self.inner.code.as_deref()
    }
    /// The offending parameter, if set.
    pub fn param(&self) -> Option<&str> {
        self.inner.param.as_deref()
    }
    /// The upstream's own error body, if this error came from an upstream answer.
    pub fn upstream_body(&self) -> Option<&UpstreamBody> {
        self.inner.upstream.as_ref()
    }

    /// Renders the error as a full HTTP answer in `client`'s protocol.
    pub fn render(&self, client: Protocol) -> RenderedError {
        let mut headers = self.inner.headers.clone().unwrap_or_default();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(after) = self.inner.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        let body = match self.passthrough_body(client) {
            Some(raw) => raw,
            None => Bytes::from(self.to_json(client).to_string()),
        };
        RenderedError {
            status: self.inner.status,
            headers,
            body,
        }
    }

    /// Renders the error as one in-band SSE frame for a stream already under way in `client`'s protocol.
    pub fn render_stream_frame(&self, client: Protocol) -> Bytes {
        let body = self.to_json(client);
        let text = match client {
            Protocol::Anthropic => format!("event: error\ndata: {body}\n\n"),
            Protocol::OpenAiResponses => {
                let mut flat = json!({"type": "error", "message": self.message()});
                flat["code"] = json!(self.code_or_default());
                flat["param"] = json!(self.inner.param);
                format!("event: error\ndata: {flat}\n\n")
            }
            _ => format!("data: {body}\n\n"),
        };
        Bytes::from(text)
    }

    /// An upstream body already in the client's error shape goes out verbatim.
    fn passthrough_body(&self, client: Protocol) -> Option<Bytes> {
        let up = self.inner.upstream.as_ref()?;
        let format = up.protocol?;
        if format.error_family() != client.error_family() || up.body.is_empty() {
            return None;
        }
        serde_json::from_slice::<serde::de::IgnoredAny>(&up.body).ok()?;
        Some(up.body.clone())
    }

    fn code_or_default(&self) -> String {
        if let Some(code) = &self.inner.code {
            return code.clone();
        }
        match self.inner.kind {
            ErrorKind::BadRequest => "invalid_request",
            ErrorKind::Unauthorized => "invalid_api_key",
            ErrorKind::Forbidden => "permission_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::PayloadTooLarge => "request_too_large",
            ErrorKind::RateLimited => "rate_limit_exceeded",
            ErrorKind::Upstream => "upstream_error",
            ErrorKind::KeyRefused => "upstream_key_refused",
            ErrorKind::Timeout => "upstream_timeout",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Internal => "gateway_internal_error",
        }
        .to_owned()
    }

    /// The message shown to the client: ours, plus the upstream's own message when it had one.
    fn client_message(&self) -> String {
        match self.inner.upstream.as_ref().and_then(upstream_message) {
            Some(up) => format!("{}: {}", self.inner.message, up),
            None => self.inner.message.clone(),
        }
    }

    fn to_json(&self, client: Protocol) -> Value {
        let status = self.inner.status.as_u16();
        let message = self.client_message();
        match client.error_family() {
            ErrorFamily::OpenAi => json!({
                "error": {
                    "message": message,
                    // OpenAI's out-of-quota answer is a 429 whose type is its code.
                    "type": match self.inner.code.as_deref() {
                        Some(INSUFFICIENT_QUOTA) => INSUFFICIENT_QUOTA,
                        _ => openai_type(status),
                    },
                    "param": self.inner.param,
                    "code": self.code_or_default(),
                }
            }),
            ErrorFamily::Anthropic => json!({
                "type": "error",
                "error": {"type": anthropic_type(status), "message": message},
            }),
            ErrorFamily::Gemini => json!({
                "error": {"code": status, "message": message, "status": gemini_status(status)}
            }),
        }
    }
}

/// An error rendered for the wire.
#[derive(Debug, Clone)]
pub struct RenderedError {
    /// HTTP status.
    pub status: StatusCode,
    /// `content-type` and, when known, `retry-after`.
    pub headers: HeaderMap,
    /// The JSON body.
    pub body: Bytes,
}

fn upstream_message(up: &UpstreamBody) -> Option<String> {
    let v: Value = serde_json::from_slice(&up.body).ok().or_else(|| {
        let text = String::from_utf8_lossy(&up.body);
        let text = text.trim();
        (!text.is_empty()).then(|| Value::String(text.chars().take(512).collect()))
    })?;
    let msg = v
        .pointer("/error/message")
        .or_else(|| v.get("message"))
        .or_else(|| v.get("error").filter(|e| e.is_string()))
        .unwrap_or(&v);
    match msg {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items
            .first()
            .and_then(|first| first.pointer("/error/message"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

fn openai_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

fn anthropic_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 | 503 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

fn gemini_status(status: u16) -> &'static str {
    match status {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500..=599 => "INTERNAL",
        _ => "INVALID_ARGUMENT",
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("status", &self.inner.status.as_u16())
            .field("message", &self.inner.message)
            .field("retryable", &self.inner.retryable);
        if let Some(after) = self.inner.retry_after {
            d.field("retry_after", &after);
        }
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.inner.message, self.inner.status.as_u16())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &RenderedError) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn insufficient_quota_is_openais_type_and_extra_headers_are_rendered() {
        let e = Error::rate_limited(
            "budget of key `acme/ci` is spent",
            Some(Duration::from_secs(90)),
        )
        .with_code(INSUFFICIENT_QUOTA)
        .with_header("x-ratelimit-limit-requests", HeaderValue::from(5))
        .with_header(header::RETRY_AFTER, HeaderValue::from(1));
        let oa = e.render(Protocol::OpenAiChat);
        assert_eq!(oa.status, 429);
        assert_eq!(body(&oa)["error"]["type"], "insufficient_quota");
        assert_eq!(body(&oa)["error"]["code"], "insufficient_quota");
        assert_eq!(oa.headers["x-ratelimit-limit-requests"], "5");
        // The error's own retry-after wins over an added one.
        assert_eq!(oa.headers[header::RETRY_AFTER], "90");
        assert_eq!(
            body(&e.render(Protocol::Anthropic))["error"]["type"],
            "rate_limit_error"
        );
        assert_eq!(
            body(&e.render(Protocol::Gemini))["error"]["status"],
            "RESOURCE_EXHAUSTED"
        );
        // Other 429s keep OpenAI's rate-limit type.
        let plain = Error::rate_limited("slow down", None);
        assert_eq!(
            body(&plain.render(Protocol::OpenAiChat))["error"]["type"],
            "rate_limit_error"
        );
    }

    #[test]
    fn renders_each_protocol_shape() {
        let e = Error::bad_request("body is not valid JSON").with_code("invalid_json");
        let oa = body(&e.render(Protocol::OpenAiChat));
        assert_eq!(oa["error"]["type"], "invalid_request_error");
        assert_eq!(oa["error"]["code"], "invalid_json");
        assert_eq!(oa["error"]["param"], Value::Null);
        assert_eq!(oa["error"]["message"], "body is not valid JSON");
        let an = body(&e.render(Protocol::Anthropic));
        assert_eq!(an["type"], "error");
        assert_eq!(an["error"]["type"], "invalid_request_error");
        let ge = body(&e.render(Protocol::Gemini));
        assert_eq!(ge["error"]["code"], 400);
        assert_eq!(ge["error"]["status"], "INVALID_ARGUMENT");
    }

    #[test]
    fn upstream_body_in_same_family_passes_verbatim() {
        let raw = Bytes::from_static(br#"{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":"x"}}"#);
        let e = Error::upstream_status(
            StatusCode::TOO_MANY_REQUESTS,
            "backend `oa` answered 429",
            UpstreamBody {
                protocol: Some(Protocol::OpenAiChat),
                body: raw.clone(),
            },
            Some(Duration::from_millis(1500)),
        );
        assert!(e.is_retryable());
        let r = e.render(Protocol::OpenAiResponses);
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.body, raw);
        assert_eq!(r.headers[header::RETRY_AFTER], "2");
        // Another family gets a re-shaped body that still carries the upstream's message.
        let an = body(&e.render(Protocol::Anthropic));
        assert_eq!(an["error"]["type"], "rate_limit_error");
        assert_eq!(
            an["error"]["message"],
            "backend `oa` answered 429: slow down"
        );
    }

    #[test]
    fn upstream_4xx_is_not_retryable_but_408_is() {
        let mk = |s: u16| {
            Error::upstream_status(
                StatusCode::from_u16(s).unwrap(),
                "x",
                UpstreamBody {
                    protocol: None,
                    body: Bytes::new(),
                },
                None,
            )
        };
        assert!(!mk(400).is_retryable());
        assert!(!mk(401).is_retryable());
        assert!(mk(408).is_retryable());
        assert!(mk(503).is_retryable());
    }

    #[test]
    fn stream_frames_follow_each_protocol() {
        let e = Error::upstream("backend `an` reset the connection");
        let an = e.render_stream_frame(Protocol::Anthropic);
        assert!(an.starts_with(b"event: error\ndata: {"));
        let ge = e.render_stream_frame(Protocol::Gemini);
        assert!(ge.starts_with(b"data: {\"error\":"));
        let rs = e.render_stream_frame(Protocol::OpenAiResponses);
        assert!(rs.starts_with(b"event: error\ndata: {"));
        assert!(rs.ends_with(b"\n\n"));
    }
}
