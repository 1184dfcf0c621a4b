//! Mounts engines on the protocols' routes and turns HTTP requests into engine calls.
//!
//! [`Router`] knows the paths of the four protocols (`/v1/chat/completions`, `/v1/responses`,
//! `/v1/messages`, and Gemini's `/{v1,v1beta}/models/{model}:generateContent` and
//! `:streamGenerateContent`) and of the two embeddings protocols (`/v1/embeddings`, Gemini's
//! `:embedContent` and `:batchEmbedContents`), answers 404 and 405 in the shape the path implies, enforces the body
//! limit (413) before buffering, and writes the engine's response with the engine's status. It never
//! panics on client input and never answers a blanket 200.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Either, Full};

use super::sse_body::{SseBody, StreamEncoding};
use crate::body::Body;
use crate::engine::ArcEngine;
use crate::error::{BoxError, Error};
use crate::overhead::{self, OverheadObserver, UpstreamTime};
use crate::protocol::Protocol;
use crate::record::{CompleteOnDrop, Observer, Observers, Pricing, RequestRecord, TraceContext};
use crate::request::{ClientAddr, Request, RouteParams};
use crate::response::ResponseBody;
use crate::sse::KeepAlive;

/// The body type the front writes.
pub type FrontBody = Either<Full<Bytes>, SseBody>;

/// The response header naming the request's record (`x-octollm-request-id`), on every answer of
/// an engine route, errors included.
pub const REQUEST_ID_HEADER: &str = "x-octollm-request-id";

/// The default request body limit: 32 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How far past the limit a body is still read (and discarded) so the client can read the 413.
const OVERSIZE_DRAIN_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone)]
enum Target {
    Engine {
        format: Protocol,
        engine: ArcEngine,
        /// Whether requests are recorded for the observers (generation routes) or only timed
        /// (listings, token counting).
        recorded: bool,
    },
    Static {
        content_type: &'static str,
        body: Bytes,
    },
    /// The overhead histogram as JSON.
    Overhead,
}

#[derive(Clone)]
enum Pattern {
    Exact(String),
    /// `{prefix}{id}`: one model by id (`/v1/models/gpt-4o`), but not a Gemini action path
    /// (`/v1/models/x:generateContent`), which belongs to the Gemini routes.
    ModelId(String),
    /// `/{version}/models/{model}:{generateContent|streamGenerateContent}` for the listed versions.
    GeminiModels,
    /// `/{version}/models/{model}:countTokens`.
    GeminiCountTokens,
    /// `/{version}/models/{model}:{embedContent|batchEmbedContents}`.
    GeminiEmbed,
}

#[derive(Clone)]
struct Route {
    pattern: Pattern,
    method: Method,
    target: Target,
}

/// Routes HTTP requests to engines. Cheap to clone.
///
/// ```
/// use std::sync::Arc;
/// use octo_core::http::Router;
/// use octo_core::{engine_fn, Protocol, Response};
///
/// let echo = Arc::new(engine_fn(|req: octo_core::Request| async move { Ok(Response::json(200, req.body)) }));
/// let router = Router::new()
///     .engine(Protocol::OpenAiChat, echo.clone())
///     .engine(Protocol::Gemini, echo)
///     .health_routes();
/// ```
#[derive(Clone)]
pub struct Router {
    routes: Vec<Route>,
    max_body_bytes: usize,
    keep_alive: Option<Duration>,
    /// Told about every recorded request (the overhead histogram first).
    observers: Arc<Observers>,
    /// Told about requests to unrecorded routes: the overhead histogram only.
    overhead_only: Arc<Observers>,
    /// Whether requests join or start a W3C trace.
    trace: bool,
    /// Keep this many bytes of each recorded request's body and answer with its record.
    log_bodies: Option<usize>,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes.len())
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// The default path of each protocol's endpoint (Gemini's is a pattern, see [`Router::engine`]).
pub fn default_path(format: Protocol) -> Option<&'static str> {
    match format {
        Protocol::OpenAiChat => Some("/v1/chat/completions"),
        Protocol::OpenAiResponses => Some("/v1/responses"),
        Protocol::Anthropic => Some("/v1/messages"),
        Protocol::OpenAiEmbeddings => Some("/v1/embeddings"),
        _ => None,
    }
}

impl Router {
    /// An empty router with the default body limit and a 15 s keep-alive.
    pub fn new() -> Self {
        let overhead = Arc::new(Observers::new().with(Arc::new(OverheadObserver::global())));
        Router {
            routes: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            keep_alive: Some(KeepAlive::DEFAULT_INTERVAL),
            observers: overhead.clone(),
            overhead_only: overhead,
            trace: false,
            log_bodies: None,
        }
    }

    /// Keeps the first `max_bytes` of every recorded request's body and of its answer (the
    /// bytes the client received: a stream's events as sent) in its record
    /// ([`Record::bodies`](crate::record::Record::bodies)); `None` keeps none (the default).
    pub fn log_bodies(mut self, max_bytes: Option<usize>) -> Self {
        self.log_bodies = max_bytes;
        self
    }

    /// Adds an observer of every finished request to a recorded route (see
    /// [`crate::record`]). Observers run in the order they were added, after the overhead
    /// histogram's.
    pub fn observe(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers = Arc::new((*self.observers).clone().with(observer));
        self
    }

    /// Prices every finished request before the observers see it.
    pub fn pricing(mut self, pricing: Arc<Pricing>) -> Self {
        self.observers = Arc::new((*self.observers).clone().with_pricing(pricing));
        self
    }

    /// Makes every recorded request part of a W3C trace: the client's `traceparent` is
    /// continued, or a trace is started ([`TraceContext`]); the upstream client sends the
    /// attempt's `traceparent` upstream.
    pub fn trace_requests(mut self, on: bool) -> Self {
        self.trace = on;
        self
    }

    /// Mounts `engine` on the protocol's standard route(s) for `POST`.
    ///
    /// Gemini is mounted on `/v1/models/{model}:…` and `/v1beta/models/{model}:…`, for both
    /// `generateContent` and `streamGenerateContent` (SSE with `?alt=sse`, a JSON array without);
    /// Gemini embeddings on the same paths' `embedContent` and `batchEmbedContents`.
    pub fn engine(self, format: Protocol, engine: ArcEngine) -> Self {
        let pattern = match (default_path(format), format) {
            (Some(path), _) => Pattern::Exact(path.to_owned()),
            (None, Protocol::GeminiEmbeddings) => Pattern::GeminiEmbed,
            (None, _) => Pattern::GeminiModels,
        };
        self.mount(pattern, Method::POST, format, engine, true)
    }

    fn mount(
        mut self,
        pattern: Pattern,
        method: Method,
        format: Protocol,
        engine: ArcEngine,
        recorded: bool,
    ) -> Self {
        self.routes.push(Route {
            pattern,
            method,
            target: Target::Engine {
                format,
                engine,
                recorded,
            },
        });
        self
    }

    /// Mounts `engine` for `POST path`, treating requests as `format`; requests are recorded.
    pub fn engine_at(self, path: &str, format: Protocol, engine: ArcEngine) -> Self {
        self.mount(
            Pattern::Exact(path.to_owned()),
            Method::POST,
            format,
            engine,
            true,
        )
    }

    /// As [`Router::engine_at`], for a route that does not generate (token counting): its
    /// requests are timed but not recorded for the observers.
    pub fn engine_at_unrecorded(self, path: &str, format: Protocol, engine: ArcEngine) -> Self {
        self.mount(
            Pattern::Exact(path.to_owned()),
            Method::POST,
            format,
            engine,
            false,
        )
    }

    /// Mounts `engine` for `method path` (for example `GET /v1/models`).
    pub fn engine_for(
        self,
        method: Method,
        path: &str,
        format: Protocol,
        engine: ArcEngine,
    ) -> Self {
        self.mount(
            Pattern::Exact(path.to_owned()),
            method,
            format,
            engine,
            false,
        )
    }

    /// Mounts `engine` on Gemini's `POST /{v1,v1beta}/models/{model}:countTokens`.
    pub fn gemini_count_tokens(self, engine: ArcEngine) -> Self {
        self.mount(
            Pattern::GeminiCountTokens,
            Method::POST,
            Protocol::Gemini,
            engine,
            false,
        )
    }

    /// Mounts `engine` for `method` on `{prefix}{id}`: one model by id, e.g. `/v1/models/` +
    /// `gpt-4o`. Gemini action paths (`…:generateContent`) never match, so they keep their 405s.
    pub fn engine_model_id(
        self,
        method: Method,
        prefix: &str,
        format: Protocol,
        engine: ArcEngine,
    ) -> Self {
        self.mount(
            Pattern::ModelId(prefix.to_owned()),
            method,
            format,
            engine,
            false,
        )
    }

    /// Serves a fixed body for `GET path`.
    pub fn static_get(mut self, path: &str, content_type: &'static str, body: Bytes) -> Self {
        self.routes.push(Route {
            pattern: Pattern::Exact(path.to_owned()),
            method: Method::GET,
            target: Target::Static { content_type, body },
        });
        self
    }

    /// Adds `GET /healthz` and `GET /readyz` (both `{"status":"ok"}` once serving).
    pub fn health_routes(self) -> Self {
        let ok = Bytes::from_static(b"{\"status\":\"ok\"}");
        self.static_get("/healthz", "application/json", ok.clone())
            .static_get("/readyz", "application/json", ok)
    }

    /// Adds `GET /debug/overhead`: the process-wide histogram of the gateway's own time per request
    /// (total minus upstream wait), as JSON. See [`crate::overhead`].
    pub fn overhead_route(mut self) -> Self {
        self.routes.push(Route {
            pattern: Pattern::Exact("/debug/overhead".to_owned()),
            method: Method::GET,
            target: Target::Overhead,
        });
        self
    }

    /// Sets the request body limit (bodies over it get 413).
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// Sets the idle interval for stream keep-alives (`None` disables them).
    pub fn keep_alive(mut self, interval: Option<Duration>) -> Self {
        self.keep_alive = interval;
        self
    }

    /// Handles one HTTP request. Never fails: errors become responses in the client's protocol.
    pub async fn handle<B>(
        &self,
        req: http::Request<B>,
        client: Option<SocketAddr>,
    ) -> http::Response<FrontBody>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        let mut found_path = false;
        let mut matched = None;
        for route in &self.routes {
            let Some(params) = route.pattern.matches(path) else {
                continue;
            };
            found_path = true;
            if route.method == parts.method {
                matched = Some((route, params));
                break;
            }
        }
        let Some((route, params)) = matched else {
            let format = guess_format(path);
            if found_path {
                let allow = self.allowed_methods(path);
                let err = Error::method_not_allowed(format!(
                    "{} is not allowed on {path}; use {allow}",
                    parts.method
                ));
                let mut resp = error_response(&err, format);
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    resp.headers_mut().insert(header::ALLOW, v);
                }
                return resp;
            }
            let err = Error::not_found(format!("no route for {} {path}", parts.method))
                .with_code("unknown_route");
            return error_response(&err, format);
        };
        let target = match &route.target {
            Target::Static { content_type, body } => {
                return full_response(StatusCode::OK, content_type, body.clone());
            }
            Target::Overhead => {
                let body = overhead::global().snapshot().to_json_bytes();
                return full_response(StatusCode::OK, "application/json", body);
            }
            Target::Engine {
                format,
                engine,
                recorded,
            } => (*format, engine, *recorded),
        };
        let (format, engine, recorded) = target;
        let upstream = UpstreamTime::new();
        let observers = if recorded {
            self.observers.clone()
        } else {
            self.overhead_only.clone()
        };
        let mut record = RequestRecord::start_at(started, format, upstream.clone(), observers);
        if recorded && self.trace {
            let parent = parts
                .headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok());
            record = record.with_trace(TraceContext::continue_or_start(parent));
        }
        if recorded && let Some(max) = self.log_bodies {
            record = record.with_bodies(max);
        }
        let request_id = HeaderValue::from_str(record.id().as_text().as_str()).ok();
        // Completes the record as 499 if this future is dropped (the client went away).
        let mut guard = CompleteOnDrop::new(record.clone());
        let with_id = |mut resp: http::Response<FrontBody>| {
            if let Some(id) = &request_id {
                resp.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
            }
            resp
        };
        let bytes = match self.read_body(&parts.headers, body).await {
            Ok(b) => b,
            Err(e) => {
                guard.complete(e.status().as_u16(), Some(e.message().to_owned()));
                return with_id(error_response(&e, format));
            }
        };
        record.set_request_body(&bytes);
        let encoding = if params.stream == Some(true) && !query_has(parts.uri.query(), "alt", "sse")
        {
            StreamEncoding::JsonArray
        } else {
            StreamEncoding::Sse
        };
        let mut request = Request::new(parts.method, parts.uri, format, Body::from_bytes(bytes));
        request.headers = parts.headers;
        request.route = params;
        if let Some(addr) = client {
            request.extensions.insert(ClientAddr(addr));
        }
        if recorded {
            if (format.is_chat() || format.is_embeddings())
                && let Ok(peek) = request.peek_ref()
            {
                record.set_model(peek.model.unwrap_or_default(), peek.stream);
            }
            // The record carries the upstream-time accumulator (`Request::upstream_time`).
            request.extensions.insert(record);
        } else {
            request.extensions.insert(upstream);
        }
        match engine.process(request).await {
            Ok(resp) => with_id(self.write_response(resp, format, encoding, guard)),
            Err(e) => {
                tracing::debug!(error = ?e, "request failed");
                guard.complete(e.status().as_u16(), Some(e.message().to_owned()));
                with_id(error_response(&e, format))
            }
        }
    }

    fn allowed_methods(&self, path: &str) -> String {
        let mut methods: Vec<&str> = self
            .routes
            .iter()
            .filter(|r| r.pattern.matches(path).is_some())
            .map(|r| r.method.as_str())
            .collect();
        methods.dedup();
        methods.join(", ")
    }

    async fn read_body<B>(&self, headers: &HeaderMap, body: B) -> Result<Bytes, Error>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<BoxError>,
    {
        let limit = self.max_body_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_large = || {
            Error::payload_too_large(format!(
                "request body is larger than the {limit}-byte limit; send a smaller request or raise `limits.max_body_bytes`"
            ))
        };
        // A body that is over the limit by a bounded amount is read and discarded, so that the
        // client, still sending, gets to read the 413 instead of a broken pipe. Far larger ones
        // are refused at once.
        let drain_cap = limit.saturating_add(OVERSIZE_DRAIN_BYTES);
        if declared.is_some_and(|n| n > drain_cap as u64) {
            return Err(too_large());
        }
        let mut body = std::pin::pin!(body);
        let mut buf = bytes::BytesMut::with_capacity(
            declared.map_or(0, |n| usize::try_from(n).unwrap_or(0).min(limit)),
        );
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                Error::bad_request(format!("could not read the request body: {}", e.into()))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen = seen.saturating_add(data.len());
            if seen > drain_cap {
                return Err(too_large());
            }
            if seen <= limit {
                buf.extend_from_slice(&data);
            }
        }
        if seen > limit {
            return Err(too_large());
        }
        Ok(buf.freeze())
    }

    fn write_response(
        &self,
        resp: crate::Response,
        format: Protocol,
        encoding: StreamEncoding,
        mut record: CompleteOnDrop,
    ) -> http::Response<FrontBody> {
        let status = resp.status.as_u16();
        let mut headers = resp.headers;
        strip_hop_by_hop(&mut headers);
        let mut out = match resp.body {
            ResponseBody::Full(body) => {
                if !headers.contains_key(header::CONTENT_TYPE) {
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                }
                let bytes = body.into_bytes();
                if let Some(r) = record.record() {
                    r.append_response_body(&bytes);
                }
                record.complete(status, None);
                http::Response::new(Either::Left(Full::new(bytes)))
            }
            ResponseBody::Stream(events) => {
                let content_type = match encoding {
                    StreamEncoding::Sse => "text/event-stream",
                    StreamEncoding::JsonArray => "application/json",
                };
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
                let keep_alive = self
                    .keep_alive
                    .and_then(|interval| KeepAlive::for_format(format, interval));
                http::Response::new(Either::Right(
                    SseBody::new(events, format, encoding, keep_alive).with_record(record, status),
                ))
            }
        };
        *out.status_mut() = resp.status;
        *out.headers_mut() = headers;
        out
    }
}

impl Pattern {
    fn matches(&self, path: &str) -> Option<RouteParams> {
        match self {
            Pattern::Exact(p) => (p == path).then(RouteParams::default),
            Pattern::ModelId(p) => {
                let id = path.strip_prefix(p.as_str())?;
                let gemini_action = [
                    ":generateContent",
                    ":streamGenerateContent",
                    ":countTokens",
                    ":embedContent",
                    ":batchEmbedContents",
                ]
                .iter()
                .any(|action| id.ends_with(action));
                (!id.is_empty() && !gemini_action).then(RouteParams::default)
            }
            Pattern::GeminiModels | Pattern::GeminiCountTokens | Pattern::GeminiEmbed => {
                let rest = path
                    .strip_prefix("/v1beta/models/")
                    .or_else(|| path.strip_prefix("/v1/models/"))?;
                let (model, action) = rest.rsplit_once(':')?;
                if model.is_empty() || model.contains('/') {
                    return None;
                }
                let stream = match (self, action) {
                    (Pattern::GeminiModels, "generateContent") => false,
                    (Pattern::GeminiModels, "streamGenerateContent") => true,
                    (Pattern::GeminiCountTokens, "countTokens")
                    | (Pattern::GeminiEmbed, "embedContent" | "batchEmbedContents") => false,
                    _ => return None,
                };
                Some(RouteParams {
                    model: Some(model.to_owned()),
                    stream: Some(stream),
                })
            }
        }
    }
}

/// The protocol a path most likely belongs to, for shaping 404s and 405s.
fn guess_format(path: &str) -> Protocol {
    if path.starts_with("/v1/messages") {
        Protocol::Anthropic
    } else if path.starts_with("/v1beta/")
        || (path.starts_with("/v1/models/") && path.contains(':'))
    {
        Protocol::Gemini
    } else if path.starts_with("/v1/responses") {
        Protocol::OpenAiResponses
    } else if path.starts_with("/v1/embeddings") {
        Protocol::OpenAiEmbeddings
    } else {
        Protocol::OpenAiChat
    }
}

fn query_has(query: Option<&str>, key: &str, value: &str) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|pair| {
            pair.split_once('=')
                .is_some_and(|(k, v)| k == key && v == value)
        })
    })
}

const HOP_BY_HOP: [header::HeaderName; 7] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::CONTENT_LENGTH,
];

/// Removes headers that describe one hop (and the length, which hyper recomputes).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One look at each of an answer's few names is cheaper than nine removals by name (each
    // hashes the name), and answers rarely carry any of them.
    let hop = |name: &header::HeaderName| {
        HOP_BY_HOP.contains(name) || matches!(name.as_str(), "keep-alive" | "proxy-connection")
    };
    if !headers.keys().any(hop) {
        return;
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn full_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> http::Response<FrontBody> {
    let mut resp = http::Response::new(Either::Left(Full::new(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Renders `err` for a client speaking `format`.
pub fn error_response(err: &Error, format: Protocol) -> http::Response<FrontBody> {
    let rendered = err.render(format);
    let mut resp = http::Response::new(Either::Left(Full::new(rendered.body)));
    *resp.status_mut() = rendered.status;
    *resp.headers_mut() = rendered.headers;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Response, engine_fn};
    use std::sync::Arc;

    fn echo_router() -> Router {
        let echo: ArcEngine = Arc::new(engine_fn(|req: Request| async move {
            let peek = req.peek()?;
            let mut resp = Response::json(201, req.body);
            resp.headers.insert(
                "x-model",
                HeaderValue::from_str(&peek.model.unwrap_or_default()).unwrap(),
            );
            Ok(resp)
        }));
        let mut r = Router::new().health_routes();
        for f in Protocol::CHAT_PROTOCOLS {
            r = r.engine(f, echo.clone());
        }
        r.max_body_bytes(1024)
    }

    async fn call(
        r: &Router,
        method: Method,
        uri: &str,
        body: &'static str,
    ) -> (StatusCode, HeaderMap, serde_json::Value) {
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let resp = r.handle(req, None).await;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, v)
    }

    #[tokio::test]
    async fn engine_status_is_kept() {
        let (s, h, v) = call(
            &echo_router(),
            Method::POST,
            "/v1/chat/completions",
            r#"{"model":"m"}"#,
        )
        .await;
        assert_eq!(s, 201);
        assert_eq!(h["x-model"], "m");
        assert_eq!(v["model"], "m");
    }

    #[tokio::test]
    async fn gemini_model_comes_from_the_path() {
        let r = echo_router();
        let (s, h, _) = call(
            &r,
            Method::POST,
            "/v1beta/models/gemini-x:generateContent",
            "{}",
        )
        .await;
        assert_eq!(
            (s, &h["x-model"]),
            (StatusCode::CREATED, &HeaderValue::from_static("gemini-x"))
        );
        let (s, h, _) = call(
            &r,
            Method::POST,
            "/v1/models/g2:streamGenerateContent?alt=sse",
            "{}",
        )
        .await;
        assert_eq!(
            (s, &h["x-model"]),
            (StatusCode::CREATED, &HeaderValue::from_static("g2"))
        );
        let (s, _, v) = call(&r, Method::POST, "/v1beta/models/g:countEverything", "{}").await;
        assert_eq!(s, 404);
        assert_eq!(v["error"]["status"], "NOT_FOUND");
    }

    #[tokio::test]
    async fn embeddings_routes_carry_their_protocol_and_model() {
        let seen: ArcEngine = Arc::new(engine_fn(|req: Request| async move {
            let peek = req.peek()?;
            let mut resp = Response::json(200, Body::from_static(b"{}"));
            resp.headers.insert(
                "x-seen",
                HeaderValue::from_str(&format!(
                    "{} {}",
                    req.protocol,
                    peek.model.unwrap_or_default()
                ))
                .unwrap(),
            );
            Ok(resp)
        }));
        let r = Router::new()
            .engine(Protocol::Gemini, seen.clone())
            .engine(Protocol::OpenAiEmbeddings, seen.clone())
            .engine(Protocol::GeminiEmbeddings, seen);
        let cases = [
            ("/v1/embeddings", r#"{"model":"e"}"#, "openai_embeddings e"),
            ("/v1beta/models/g:embedContent", "{}", "gemini_embeddings g"),
            (
                "/v1/models/g:batchEmbedContents",
                "{}",
                "gemini_embeddings g",
            ),
            ("/v1beta/models/g:generateContent", "{}", "gemini g"),
        ];
        for (path, body, want) in cases {
            let (s, h, _) = call(&r, Method::POST, path, body).await;
            assert_eq!((s, h["x-seen"].to_str().unwrap()), (StatusCode::OK, want));
        }
        let (s, _, v) = call(&r, Method::GET, "/v1beta/models/g:embedContent", "").await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
        assert!(
            v["error"]["status"].is_string(),
            "a Gemini-shaped error: {v}"
        );
    }

    #[tokio::test]
    async fn wrong_method_is_405_in_the_paths_protocol() {
        let (s, h, v) = call(&echo_router(), Method::GET, "/v1/messages", "").await;
        assert_eq!(s, 405);
        assert_eq!(h[header::ALLOW], "POST");
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }

    #[tokio::test]
    async fn oversized_bodies_get_413() {
        let big: &'static str =
            Box::leak(format!("{{\"model\":\"{}\"}}", "x".repeat(2000)).into_boxed_str());
        let (s, _, v) = call(&echo_router(), Method::POST, "/v1/chat/completions", big).await;
        assert_eq!(s, 413);
        assert_eq!(v["error"]["code"], "request_too_large");
    }

    #[tokio::test]
    async fn malformed_json_is_400_in_protocol_shape() {
        let (s, _, v) = call(&echo_router(), Method::POST, "/v1/messages", "{\"model\":").await;
        assert_eq!(s, 400);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn hop_by_hop_headers_are_stripped_and_others_kept() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert("x-request-id", HeaderValue::from_static("r1"));
        let untouched = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, untouched);
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "content-length",
            "te",
        ] {
            let mut with = untouched.clone();
            with.insert(name, HeaderValue::from_static("1"));
            with.append(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            strip_hop_by_hop(&mut with);
            assert_eq!(with, untouched, "{name}");
        }
    }

    #[tokio::test]
    async fn health_routes_answer() {
        let (s, _, v) = call(&echo_router(), Method::GET, "/healthz", "").await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    }
}
