//! The terminal engine: an HTTP client for one upstream backend.
//!
//! One [`HttpEndpoint`] per backend owns one pooled HTTP client (connections are reused across
//! requests; HTTP/2 is used where the upstream offers it over TLS, or by `http_version: h2c`):
//! hyper-util's client for plain `http://` upstreams no proxy applies to, [`reqwest::Client`] for
//! the rest ([`Transport`]; `endpoint/transport.rs` says why and what stays identical). A request goes out with
//! a fresh header set: the protocol's auth header carrying the backend's key, a short allowlist of
//! protocol headers from the client (`anthropic-version` and `anthropic-beta` toward Anthropic,
//! `openai-beta` toward OpenAI), and the backend's configured extra headers. The client's own `Authorization`, `x-api-key`,
//! `x-goog-api-key` and `?key=` never leave the gateway.
//!
//! Deadlines: `connect`; `first_byte` (until the response head arrives); `idle` (the longest gap
//! between two body chunks, which is what catches a stalled stream); `total` (the whole exchange,
//! body included). Each expiry is a 504 naming the backend and the deadline.
//!
//! A non-2xx answer becomes an upstream [`Error`] that keeps the status, the body (up to 1 MiB) and
//! `retry-after`, so it can be passed through verbatim to a client of the same protocol; the
//! backend's keys are removed from that body first, and from in-band error events of streams
//! ([`REDACTED`]; providers echo the presented key). A 401 or 403 from the upstream refuses the
//! *gateway's* key (client credentials are never forwarded): it becomes a
//! [`KeyRefused`](octo_core::ErrorKind::KeyRefused) error, a 502 naming the backend without the
//! upstream's text, retryable so that the next key or a
//! [`TargetSet`](crate::balance::TargetSet)'s next backend may serve. A redirect (3xx) is not
//! followed (a key would go with it) and becomes a 502 naming the backend. A 2xx body that is
//! not JSON, and a stream that ends before the upstream said it finished (`endpoint/stream_end.rs`), are
//! retryable 502s too: never handed on as if they were answers.
//!
//! Keys: with several `api_keys`, a [`KeyPool`] picks one per request (round robin over the keys
//! not resting), rests a key answered 401, 403 or 429 and tries the next key before the backend is
//! given up; per (key, model) circuit breakers skip keys that keep failing. See [`keys`].
//!
//! Headers an engine put in the request's [`UpstreamHeaders`] extension are added last (they
//! replace the backend's configured value for the same name; protected names are ignored).
//!
//! Embeddings requests go to `POST /v1/embeddings` (OpenAI) or to Gemini's `embedContent` /
//! `batchEmbedContents` action, the one the request's own path names (a converted request's path
//! names the batch call).
//!
//! A request carrying the [`CountTokens`] extension goes to the protocol's token-counting call
//! instead of generation: Anthropic's messages path + `/count_tokens`, Gemini's `countTokens`
//! action. Other protocols have none (a 501).

mod headers;
pub mod keys;
mod redact;
mod stream_end;
mod timed_body;
mod transport;
mod usage_tap;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, header};
use octo_core::overhead::UpstreamTime;
use octo_core::record::{Attempt, RequestRecord, new_span_id};
use octo_core::sse::SseDecoder;
use octo_core::{
    Body, BuildError, BuildErrorKind, Engine, Error, EventStream, Protocol, Request, Response,
    ResponseBody, UpstreamBody, protocol_list,
};
use tokio::time::Instant;

use self::headers::{copy_response_headers, forwarded_client_headers};
use self::redact::Redactor;
use self::stream_end::EndCheck;
use self::timed_body::{BodyError, TimedBody};
use self::transport::HyperClient;
use crate::add_header::{UpstreamHeaders, is_protected};
use crate::balance::{Availability, Target};

pub use self::keys::{KeyError, KeyHealth, KeyLease, KeyPool, KeyPoolConfig, ModelHealth};
pub use self::redact::REDACTED;
pub use self::transport::Transport;

/// Deadlines for one upstream exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connection establishment.
    pub connect: Duration,
    /// From sending the request until the response head arrives.
    pub first_byte: Duration,
    /// The longest gap between two chunks of the response body.
    pub idle: Duration,
    /// The whole exchange, body included.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

/// Which HTTP version to speak to an upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/2 where a TLS upstream offers it by ALPN, HTTP/1.1 otherwise (always HTTP/1.1 to a
    /// plain `http://` upstream).
    #[default]
    Auto,
    /// HTTP/2 without TLS, by prior knowledge (h2c, RFC 9113 §3.3): for a plain `http://` upstream
    /// known to speak HTTP/2. Every request to the backend is multiplexed over one connection, so
    /// the upstream's `SETTINGS_MAX_CONCURRENT_STREAMS` caps the requests in flight to it (more
    /// wait for a free stream, within their `first_byte` deadline).
    H2c,
}

/// Where and how to reach one upstream.
#[derive(Clone)]
pub struct EndpointConfig {
    /// The backend's name, used in errors and logs.
    pub name: String,
    /// The host root, e.g. `https://api.openai.com`; the protocol's path is appended.
    pub base_url: String,
    /// The protocols the upstream speaks.
    pub protocols: Vec<Protocol>,
    /// API keys, used in turn.
    pub api_keys: Vec<String>,
    /// Extra headers sent on every request.
    pub headers: HeaderMap,
    /// Path overrides per protocol. Gemini paths may contain `{model}` and `{action}`.
    pub paths: HashMap<Protocol, String>,
    /// Deadlines.
    pub timeouts: Timeouts,
    /// The largest non-streaming response body accepted.
    pub max_response_bytes: usize,
    /// Key cooldowns and per-(key, model) circuit breakers.
    pub key_pool: KeyPoolConfig,
    /// The HTTP version spoken to the upstream.
    pub http_version: HttpVersion,
    /// The HTTP client used ([`Transport::Auto`]: hyper-util's for plain `http://` upstreams no
    /// proxy applies to, reqwest otherwise).
    pub transport: Transport,
    /// Ask an OpenAI Chat upstream for usage on streams the client did not ask it for
    /// (`stream_options.include_usage`), and remove that extra usage chunk from what the client
    /// receives; off for upstreams that refuse `stream_options`.
    pub stream_usage: bool,
}

impl fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are never printed.
        f.debug_struct("EndpointConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("protocols", &self.protocols)
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .field("paths", &self.paths)
            .field("timeouts", &self.timeouts)
            .field("key_pool", &self.key_pool)
            .field("http_version", &self.http_version)
            .field("transport", &self.transport)
            .field("stream_usage", &self.stream_usage)
            .finish()
    }
}

impl EndpointConfig {
    /// A config for `name` at `base_url` speaking `protocol`, with default timeouts and no key.
    pub fn new(name: impl Into<String>, base_url: impl Into<String>, protocol: Protocol) -> Self {
        EndpointConfig {
            name: name.into(),
            base_url: base_url.into(),
            protocols: vec![protocol],
            api_keys: Vec::new(),
            headers: HeaderMap::new(),
            paths: HashMap::new(),
            timeouts: Timeouts::default(),
            max_response_bytes: 64 * 1024 * 1024,
            key_pool: KeyPoolConfig::default(),
            http_version: HttpVersion::Auto,
            transport: Transport::Auto,
            stream_usage: true,
        }
    }

    /// Adds an API key.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_keys.push(key.into());
        self
    }
}

/// One attempt, as the record sees it.
struct Tap<'a> {
    record: &'a RequestRecord,
    key: usize,
    offset_ms: u64,
    started: Instant,
    span_id: Option<String>,
    protocol: Protocol,
    model: &'a str,
    strip_usage: bool,
    /// What a full answer said (read while checking it is JSON).
    tapped: Option<usage_tap::Tapped>,
}

/// Request extension: send the request to the upstream's token-counting call (Anthropic
/// `POST /v1/messages/count_tokens`, Gemini `models/{model}:countTokens`) instead of generating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountTokens;

/// The configured or default path of `format`.
fn path_template(paths: &HashMap<Protocol, String>, format: Protocol) -> &str {
    paths
        .get(&format)
        .map(String::as_str)
        .unwrap_or_else(|| default_upstream_path(format))
}

/// The default request path of each protocol on an upstream.
pub fn default_upstream_path(format: Protocol) -> &'static str {
    match format {
        Protocol::OpenAiChat => "/v1/chat/completions",
        Protocol::OpenAiResponses => "/v1/responses",
        Protocol::Anthropic => "/v1/messages",
        Protocol::ModelList => "/v1/models",
        Protocol::OpenAiEmbeddings => "/v1/embeddings",
        _ => "/v1beta/models/{model}:{action}",
    }
}

/// HTTP/2 flow-control window of each upstream stream: what one stream may buffer unread (a
/// slow client's). 256 KiB keeps a single stream at hundreds of MB/s on a LAN.
const H2_STREAM_WINDOW: u32 = 256 * 1024;

/// HTTP/2 flow-control window of an upstream connection: 1 GiB, so that streams held back by slow
/// clients never use up the window the other streams on the connection need.
const H2_CONNECTION_WINDOW: u32 = 1 << 30;

/// Cap on an upstream error body kept for pass-through.
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// The request URL of a protocol whose path is fixed, parsed once: parsing a URL (host, IDNA,
/// path) costs more than the rest of building a request.
struct FixedUrl {
    format: Protocol,
    url: reqwest::Url,
    /// The same as the hyper-util transport's request target (no `user:password@`).
    uri: Option<http::Uri>,
}

/// Where one request goes: a fixed URL, or one built from the request (Gemini's model path).
enum Dest<'a> {
    Fixed(&'a FixedUrl),
    Built(reqwest::Url),
}

impl Dest<'_> {
    fn url(&self) -> &reqwest::Url {
        match self {
            Dest::Fixed(f) => &f.url,
            Dest::Built(u) => u,
        }
    }
}

/// The HTTP client of an endpoint ([`Transport`]). One per backend, built once and never moved:
/// the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum UpstreamClient {
    Reqwest(reqwest::Client),
    Hyper {
        client: HyperClient,
        /// `Authorization: Basic` from the base URL's `user:password@`.
        basic_auth: Option<HeaderValue>,
    },
}

/// Calls one upstream backend. See the [module docs](self).
pub struct HttpEndpoint {
    config: EndpointConfig,
    base_url: String,
    fixed_urls: Vec<FixedUrl>,
    /// Whether the base URL has no `user:password@` (which reqwest's request builder would turn
    /// into a basic-auth header); requests are then assembled without the builder.
    plain_urls: bool,
    client: UpstreamClient,
    keys: KeyPool,
    /// Removes the backend's keys from upstream error text.
    redactor: Redactor,
}

impl fmt::Debug for HttpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpEndpoint")
            .field("config", &self.config)
            .finish()
    }
}

impl HttpEndpoint {
    /// Builds the endpoint and its connection pool.
    ///
    /// # Errors
    /// When the base URL is not `http(s)://…`, a key is not a valid header value, or the HTTP
    /// client cannot be built.
    pub fn new(config: EndpointConfig) -> Result<Self, BuildError> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let parsed: http::Uri = base_url.parse().map_err(|e| {
            BuildError::invalid(format!(
                "backend `{}`: base_url `{}` is not a URL: {e}",
                config.name, config.base_url
            ))
        })?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err(BuildError::invalid(format!(
                "backend `{}`: base_url `{}` must start with http:// or https:// and name a host",
                config.name, config.base_url
            )));
        }
        let keys = KeyPool::new(
            config.name.clone(),
            &config.api_keys,
            &config.protocols,
            config.key_pool,
        )?;
        let hyper = transport::use_hyper(config.transport, &parsed, &transport::env_proxies())
            .map_err(|e| {
                BuildError::new(
                    BuildErrorKind::Conflict,
                    format!("backend `{}`: {e}", config.name),
                )
            })?;
        let mut builder = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(config.timeouts.connect)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(USER_AGENT)
            // A gateway must not follow an upstream's redirect with a key attached; a 3xx is
            // handed back like any other answer.
            .redirect(reqwest::redirect::Policy::none())
            // reqwest's retry layer clones every request (header map, extensions, body handle)
            // in case an HTTP/2 upstream refuses the stream; with no retries allowed it clones
            // nothing. Failover between keys and backends is the engines' job.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            // HTTP/2 (h2c, or h2 by ALPN) puts every request to the backend on one connection.
            // A client that stops reading makes the gateway stop reading its stream, whose unread
            // data then counts against the connection's flow-control window; with hyper's
            // defaults (2 MiB per stream, 5 MiB per connection) three stalled clients stalled
            // every other stream to the backend. A connection window that is never the limit,
            // and a smaller stream window, keep streams independent, as separate HTTP/1.1
            // connections are: each stream buffers at most its window.
            .http2_initial_stream_window_size(H2_STREAM_WINDOW)
            .http2_initial_connection_window_size(H2_CONNECTION_WINDOW);
        if config.http_version == HttpVersion::H2c {
            if parsed.scheme_str() != Some("http") {
                return Err(BuildError::new(
                    BuildErrorKind::Conflict,
                    format!(
                        "backend `{}`: h2c is HTTP/2 without TLS and needs an http:// base_url; an https:// upstream negotiates HTTP/2 by itself",
                        config.name
                    ),
                ));
            }
            builder = builder.http2_prior_knowledge();
        }
        let client = if hyper {
            UpstreamClient::Hyper {
                client: transport::hyper_client(
                    config.timeouts.connect,
                    config.http_version == HttpVersion::H2c,
                    H2_STREAM_WINDOW,
                    H2_CONNECTION_WINDOW,
                ),
                basic_auth: reqwest::Url::parse(&base_url)
                    .ok()
                    .and_then(|u| transport::basic_auth(&u)),
            }
        } else {
            UpstreamClient::Reqwest(builder.build().map_err(|e| {
                BuildError::new(
                    BuildErrorKind::Resource,
                    format!("backend `{}`: HTTP client: {e}", config.name),
                )
            })?)
        };
        let mut fixed_urls = Vec::new();
        for &format in &config.protocols {
            if matches!(format, Protocol::Gemini | Protocol::GeminiEmbeddings) {
                continue;
            }
            let url = format!("{base_url}{}", path_template(&config.paths, format));
            let parsed = reqwest::Url::parse(&url).map_err(|e| {
                BuildError::invalid(format!(
                    "backend `{}`: `{}` is not a valid URL: {e}",
                    config.name,
                    redact_url(&url)
                ))
            })?;
            let uri = if hyper {
                Some(transport::uri_of(&parsed).ok_or_else(|| {
                    BuildError::invalid(format!(
                        "backend `{}`: `{}` is not a valid request target",
                        config.name,
                        redact_url(&url)
                    ))
                })?)
            } else {
                None
            };
            fixed_urls.push(FixedUrl {
                format,
                url: parsed,
                uri,
            });
        }
        let plain_urls = reqwest::Url::parse(&base_url)
            .is_ok_and(|u| u.username().is_empty() && u.password().is_none());
        let redactor = Redactor::new(&config.api_keys);
        Ok(HttpEndpoint {
            redactor,
            config,
            base_url,
            fixed_urls,
            plain_urls,
            client,
            keys,
        })
    }

    /// The backend's configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    fn url(&self, format: Protocol, model: Option<&str>, stream: bool) -> Result<Dest<'_>, Error> {
        if let Some(fixed) = self.fixed_urls.iter().find(|f| f.format == format) {
            return Ok(Dest::Fixed(fixed));
        }
        self.parse_url(&self.url_string(format, model, stream)?)
            .map(Dest::Built)
    }

    /// Whether requests go through the hyper-util transport.
    pub fn uses_hyper(&self) -> bool {
        matches!(self.client, UpstreamClient::Hyper { .. })
    }

    /// Parses a URL built from the request (a model name is part of Gemini's path).
    fn parse_url(&self, url: &str) -> Result<reqwest::Url, Error> {
        reqwest::Url::parse(url).map_err(|e| {
            Error::bad_request(format!(
                "backend `{}`: the request makes an invalid upstream URL `{}`: {e}",
                self.config.name,
                redact_url(url)
            ))
        })
    }

    /// Gemini's path for `model` and `action` (`generateContent`, `countTokens`, …).
    fn gemini_path(&self, model: Option<&str>, action: &str) -> Result<String, Error> {
        let model = model.ok_or_else(|| {
            Error::bad_request("the request names no model").with_code("model_required")
        })?;
        // Embeddings use the Gemini path template unless they have their own.
        let template = self
            .config
            .paths
            .get(&Protocol::GeminiEmbeddings)
            .filter(|_| matches!(action, "embedContent" | "batchEmbedContents"))
            .map_or_else(
                || path_template(&self.config.paths, Protocol::Gemini),
                String::as_str,
            );
        Ok(template
            .replace("{model}", &encode_path_segment(model))
            .replace("{action}", action))
    }

    /// The URL of a Gemini embeddings request: the action its own path names
    /// (`embedContent` or `batchEmbedContents`; the batch call when it names neither).
    fn gemini_embed_url(&self, model: Option<&str>, path: &str) -> Result<reqwest::Url, Error> {
        let action = if path.ends_with(":embedContent") {
            "embedContent"
        } else {
            "batchEmbedContents"
        };
        self.parse_url(&format!(
            "{}{}",
            self.base_url,
            self.gemini_path(model, action)?
        ))
    }

    fn url_string(
        &self,
        format: Protocol,
        model: Option<&str>,
        stream: bool,
    ) -> Result<String, Error> {
        let path = if format == Protocol::Gemini {
            let action = if stream {
                "streamGenerateContent?alt=sse"
            } else {
                "generateContent"
            };
            self.gemini_path(model, action)?
        } else {
            path_template(&self.config.paths, format).to_owned()
        };
        Ok(format!("{}{}", self.base_url, path))
    }

    /// The URL of the token-counting call of `format` for `model`.
    fn count_tokens_url(
        &self,
        format: Protocol,
        model: Option<&str>,
    ) -> Result<reqwest::Url, Error> {
        let url = match format {
            Protocol::Anthropic => format!(
                "{}{}/count_tokens",
                self.base_url,
                path_template(&self.config.paths, format).trim_end_matches('/')
            ),
            Protocol::Gemini => {
                format!(
                    "{}{}",
                    self.base_url,
                    self.gemini_path(model, "countTokens")?
                )
            }
            other => {
                return Err(Error::unsupported(format!(
                    "{other} has no token-counting call"
                )));
            }
        };
        self.parse_url(&url)
    }

    /// The backend's key pool.
    pub fn keys(&self) -> &KeyPool {
        &self.keys
    }

    fn map_send_error(&self, e: &reqwest::Error, url: &str) -> Error {
        let name = &self.config.name;
        if e.is_connect() {
            Error::upstream(format!(
                "backend `{name}` could not be reached at {}: {}",
                redact_url(url),
                root_cause(e)
            ))
        } else if e.is_timeout() {
            Error::timeout(format!(
                "backend `{name}` did not connect within {:?}",
                self.config.timeouts.connect
            ))
        } else {
            Error::upstream(format!(
                "backend `{name}` request failed: {}",
                root_cause(e)
            ))
        }
    }
}

/// A [`Target`] named after the endpoint's backend, whose key pool and per-(key, model) breakers
/// decide its availability.
///
/// ```
/// use std::sync::Arc;
/// use octo_core::Protocol;
/// use octo_engines::balance::Target;
/// use octo_engines::endpoint::{EndpointConfig, HttpEndpoint};
///
/// let ep = HttpEndpoint::new(EndpointConfig::new("oa", "http://127.0.0.1:9", Protocol::OpenAiChat))
///     .unwrap();
/// let target = Target::from(Arc::new(ep)).with_weight(2);
/// assert_eq!(target.name, "oa");
/// assert!(target.availability.is_some());
/// ```
impl From<Arc<HttpEndpoint>> for Target {
    fn from(endpoint: Arc<HttpEndpoint>) -> Self {
        Target::available(endpoint.config().name.clone(), endpoint)
    }
}

impl Availability for HttpEndpoint {
    fn is_available(&self, model: Option<&str>) -> bool {
        self.keys.is_available(model.unwrap_or_default())
    }

    fn available_in(&self, model: Option<&str>) -> Option<Duration> {
        self.keys.available_in(model.unwrap_or_default())
    }
}

#[async_trait]
impl Engine for HttpEndpoint {
    async fn process(&self, mut req: Request) -> Result<Response, Error> {
        let name = &self.config.name;
        let format = req.protocol;
        if !self.config.protocols.contains(&format) {
            return Err(Error::unsupported(format!(
                "backend `{name}` speaks {}, not {format}; protocol conversion is not available in this release",
                protocol_list(&self.config.protocols)
            )));
        }
        let strip_usage = format == Protocol::OpenAiChat
            && self.config.stream_usage
            && req.extensions.get::<RequestRecord>().is_some()
            && req.peek_ref()?.stream
            && usage_tap::ask_for_stream_usage(&mut req.body)?;
        let body = req.body.bytes();
        let peek = req.peek_ref()?;
        let url = if req.extensions.get::<CountTokens>().is_some() {
            Dest::Built(self.count_tokens_url(format, peek.model)?)
        } else if format == Protocol::GeminiEmbeddings {
            Dest::Built(self.gemini_embed_url(peek.model, req.uri.path())?)
        } else {
            self.url(format, peek.model, peek.stream)?
        };
        let model = peek.model.unwrap_or_default();
        let upstream = req.upstream_time().cloned();
        let record = req.extensions.get::<RequestRecord>().cloned();
        let mut tried: Vec<usize> = Vec::new();
        let mut last: Option<Error> = None;
        loop {
            let lease = match self.keys.acquire(model, &tried) {
                Ok(lease) => lease,
                // Keys were tried for this request: their own (last) answer says more.
                Err(e) => return Err(last.unwrap_or(e)),
            };
            tried.push(lease.index());
            let mut attempt_headers = self.upstream_headers(&req, peek.stream, &lease);
            let attempt = record.as_ref().map(|r| {
                let span_id = r.trace().map(|_| new_span_id());
                if let (Some(trace), Some(span)) = (r.trace(), &span_id)
                    && let Ok(v) = HeaderValue::from_str(&trace.traceparent(span))
                {
                    attempt_headers.insert("traceparent", v);
                }
                (r.elapsed_ms(), Instant::now(), span_id)
            });
            let sent = Instant::now();
            let (result, tapped) = match self
                .send(
                    req.method.clone(),
                    &url,
                    attempt_headers,
                    body.clone(),
                    format,
                    upstream.as_ref(),
                    record.is_some(),
                )
                .await
            {
                Ok((resp, tapped)) => (Ok(resp), tapped),
                Err(e) => (Err(e), None),
            };
            let key = lease.index() + 1;
            self.keys
                .note(lease.index(), model, sent.elapsed(), result.as_ref());
            let next_key = self.keys.finish(lease, result.as_ref());
            let result = match (&record, attempt) {
                (Some(r), Some((offset_ms, started, span_id))) => {
                    let tap = Tap {
                        record: r,
                        key,
                        offset_ms,
                        started,
                        span_id,
                        protocol: format,
                        model,
                        strip_usage,
                        tapped,
                    };
                    self.record_attempt(tap, result)
                }
                _ => result,
            };
            match result {
                Err(e) if next_key => {
                    tracing::debug!(backend = %name, key, status = e.status().as_u16(), "trying the next API key");
                    last = Some(e);
                }
                other => return other,
            }
        }
    }
}

impl HttpEndpoint {
    /// Notes one attempt in the request's record and taps the answer for usage.
    fn record_attempt(
        &self,
        tap: Tap<'_>,
        result: Result<Response, Error>,
    ) -> Result<Response, Error> {
        let Tap {
            record,
            key,
            offset_ms,
            started,
            span_id,
            protocol,
            model,
            strip_usage,
            tapped,
        } = tap;
        let name = self.config.name.as_str();
        let (status, error) = match &result {
            Ok(resp) => (Some(resp.status.as_u16()), None),
            // An upstream's own error status, or the one the gateway gives a connect failure
            // (502) or a timeout (504).
            Err(e) => (Some(e.status().as_u16()), Some(e.message().to_owned())),
        };
        record.push_attempt(Attempt {
            backend: name.to_owned(),
            key: Some(format!("#{key}")),
            status,
            offset_ms,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            error,
            span_id,
        });
        let Ok(mut resp) = result else {
            return result;
        };
        record.set_upstream(name, protocol, (!model.is_empty()).then_some(model));
        resp.body = match resp.body {
            ResponseBody::Full(body) => {
                record.mark_first_byte();
                if let Some(t) = &tapped {
                    usage_tap::record_full(record, t);
                }
                ResponseBody::Full(body)
            }
            ResponseBody::Stream(events) => ResponseBody::Stream(EventStream::new(
                usage_tap::TapStream::new(events, protocol, record.clone())
                    .strip_usage_chunk(strip_usage),
            )),
        };
        Ok(resp)
    }

    /// The header set of one attempt, built afresh (sized once) rather than cloned from a base
    /// set: the protocol's content headers, the allowlisted client headers, the key's auth
    /// header, the backend's configured headers, then an engine's [`UpstreamHeaders`].
    fn upstream_headers(&self, req: &Request, stream: bool, lease: &KeyLease) -> HeaderMap {
        let format = req.protocol;
        let extra = req.extensions.get::<UpstreamHeaders>();
        let mut headers = HeaderMap::with_capacity(
            4 + self.config.headers.len() + extra.map_or(0, |UpstreamHeaders(h)| h.len()),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(if stream {
                "text/event-stream"
            } else {
                "application/json"
            }),
        );
        forwarded_client_headers(format, &req.headers, &mut headers);
        for (k, v) in self.keys.auth(lease) {
            if header_applies(format, k) {
                headers.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &self.config.headers {
            headers.insert(k.clone(), v.clone());
        }
        if let Some(UpstreamHeaders(extra)) = extra {
            for k in extra.keys().filter(|k| !is_protected(k)) {
                headers.remove(k);
            }
            for (k, v) in extra.iter().filter(|(k, _)| !is_protected(k)) {
                headers.append(k.clone(), v.clone());
            }
        }
        headers
    }

    /// One upstream exchange with a fixed header set. With `tap`, a full answer's usage and
    /// finish reason are read in the pass that checks it is JSON.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        method: http::Method,
        dest: &Dest<'_>,
        headers: HeaderMap,
        body: Bytes,
        format: Protocol,
        upstream: Option<&UpstreamTime>,
        tap: bool,
    ) -> Result<(Response, Option<usage_tap::Tapped>), Error> {
        let name = &self.config.name;
        let t = self.config.timeouts;
        let now = Instant::now();
        let deadline = now.checked_add(t.total).unwrap_or(now);
        let first_byte = t.first_byte.min(t.total);
        let head_deadline = now.checked_add(first_byte).unwrap_or(now);
        let first_byte_timeout = || {
            Error::timeout(format!(
                "backend `{name}` sent no response within {first_byte:?} (first_byte timeout)"
            ))
        };
        let (status, resp_headers, body) = match &self.client {
            UpstreamClient::Reqwest(client) => {
                let request = self.reqwest_request(client, method, dest.url(), headers, body)?;
                let head = tokio::time::timeout_at(head_deadline, client.execute(request)).await;
                if let Some(acc) = upstream {
                    acc.add(now.elapsed());
                }
                let mut resp = match head {
                    Ok(Ok(resp)) => resp,
                    Ok(Err(e)) => return Err(self.map_send_error(&e, dest.url().as_str())),
                    Err(_) => return Err(first_byte_timeout()),
                };
                let status = resp.status();
                let headers = std::mem::take(resp.headers_mut());
                let stream = resp.bytes_stream().map(|r| r.map_err(BodyError::from));
                (
                    status,
                    headers,
                    TimedBody::new(stream, name.clone(), t.idle, deadline),
                )
            }
            UpstreamClient::Hyper { client, basic_auth } => {
                let request =
                    self.hyper_request(basic_auth.as_ref(), method, dest, headers, body)?;
                let head = tokio::time::timeout_at(head_deadline, client.request(request)).await;
                if let Some(acc) = upstream {
                    acc.add(now.elapsed());
                }
                let resp = match head {
                    Ok(Ok(resp)) => resp,
                    Ok(Err(e)) => return Err(self.map_hyper_error(&e, dest.url().as_str())),
                    Err(_) => return Err(first_byte_timeout()),
                };
                let (parts, incoming) = resp.into_parts();
                let stream = http_body_util::BodyDataStream::new(incoming)
                    .map(|r| r.map_err(BodyError::from));
                (
                    parts.status,
                    parts.headers,
                    TimedBody::new(stream, name.clone(), t.idle, deadline),
                )
            }
        };
        let body = body.count_waits(upstream.cloned());
        let mut out_headers = HeaderMap::with_capacity(resp_headers.len());
        copy_response_headers(&resp_headers, &mut out_headers);
        let is_sse = resp_headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));

        if !status.is_success() {
            let retry_after = retry_after(&resp_headers);
            let bytes = collect_limited(body, MAX_ERROR_BODY, true).await?;
            // Providers echo the presented key in their error text: it never goes further.
            let bytes = self.redactor.redact(bytes);
            let code = status.as_u16();
            tracing::debug!(backend = %name, status = code, "upstream error");
            if matches!(code, 401 | 403) {
                // The gateway's own key was refused (clients' credentials are never forwarded):
                // the gateway's failure, told without the upstream's text. The operator gets that
                // text (without keys) in the log.
                tracing::warn!(
                    backend = %name,
                    status = code,
                    upstream_message = %excerpt(&bytes),
                    "the upstream refused the gateway's API key"
                );
                return Err(Error::key_refused(format!(
                    "backend `{name}` refused the gateway's API key (it answered {code}); the gateway's operator must check the backend's api_key"
                )));
            }
            if status.is_redirection() {
                // Redirects are never followed with a key attached, and a 3xx without its
                // location means nothing to the client.
                return Err(Error::upstream(format!(
                    "backend `{name}` answered a redirect ({code}), which the gateway does not follow; check the backend's base_url"
                )));
            }
            return Err(Error::upstream_status(
                status,
                format!("backend `{name}` answered {code}"),
                UpstreamBody {
                    protocol: Some(format),
                    body: bytes,
                },
                retry_after,
            ));
        }
        let mut tapped = None;
        let body = if is_sse {
            let events = EndCheck::new(SseDecoder::new(body), format, name.clone());
            if self.redactor.is_empty() {
                ResponseBody::Stream(EventStream::new(events))
            } else {
                let redactor = self.redactor.clone();
                ResponseBody::Stream(EventStream::new(
                    events.map(move |item| redactor.item(item)),
                ))
            }
        } else {
            let bytes = collect_limited(body, self.config.max_response_bytes, false).await?;
            // Every answer of the protocols is JSON: anything else (an HTML page from a proxy,
            // a cut-off body) is the upstream's failure, not an answer to hand on as a 200.
            let checked = if tap {
                usage_tap::read_full_checked(format, &bytes).map(|t| tapped = Some(t))
            } else {
                serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map(drop)
            };
            if let Err(e) = checked {
                return Err(Error::upstream(format!(
                    "backend `{name}` answered {} with a body that is not JSON ({e})",
                    status.as_u16()
                )));
            }
            ResponseBody::Full(Body::from_bytes(bytes))
        };
        let resp = Response {
            status,
            headers: out_headers,
            extensions: http::Extensions::new(),
            body,
        };
        Ok((resp, tapped))
    }

    /// The request for reqwest.
    fn reqwest_request(
        &self,
        client: &reqwest::Client,
        method: http::Method,
        url: &reqwest::Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Request, Error> {
        if self.plain_urls {
            // The request reqwest's builder would make, without re-inserting every header into a
            // new map: the URLs carry no credentials for the builder to turn into basic auth.
            let mut request = reqwest::Request::new(method, url.clone());
            *request.headers_mut() = headers;
            *request.body_mut() = Some(body.into());
            Ok(request)
        } else {
            client
                .request(method, url.clone())
                .headers(headers)
                .body(body)
                .build()
                .map_err(|e| {
                    Error::internal(format!(
                        "backend `{}`: building the request: {e}",
                        self.config.name
                    ))
                })
        }
    }

    /// The request for the hyper-util client: what reqwest would send (its `User-Agent`, basic
    /// auth from the base URL unless the key is an `Authorization` header).
    fn hyper_request(
        &self,
        basic_auth: Option<&HeaderValue>,
        method: http::Method,
        dest: &Dest<'_>,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<http::Request<http_body_util::Full<Bytes>>, Error> {
        let uri = match dest {
            Dest::Fixed(FixedUrl { uri: Some(uri), .. }) => uri.clone(),
            other => transport::uri_of(other.url()).ok_or_else(|| {
                Error::bad_request(format!(
                    "backend `{}`: the request makes an invalid upstream URL `{}`",
                    self.config.name,
                    redact_url(other.url().as_str())
                ))
            })?,
        };
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        if let Some(auth) = basic_auth
            && !headers.contains_key(header::AUTHORIZATION)
        {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        let mut request = http::Request::new(http_body_util::Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        Ok(request)
    }

    /// A hyper-util client error as the gateway's error, worded as [`Self::map_send_error`]
    /// words reqwest's.
    fn map_hyper_error(&self, e: &hyper_util::client::legacy::Error, url: &str) -> Error {
        let name = &self.config.name;
        if e.is_connect() {
            Error::upstream(format!(
                "backend `{name}` could not be reached at {}: {}",
                redact_url(url),
                root_cause(e)
            ))
        } else {
            Error::upstream(format!(
                "backend `{name}` request failed: {}",
                root_cause(e)
            ))
        }
    }
}

/// The `User-Agent` of upstream requests.
const USER_AGENT: &str = concat!("octollm/", env!("CARGO_PKG_VERSION"));

/// Reads a whole body, up to `limit` bytes (truncating when `truncate`, failing otherwise).
///
/// A body that arrives in one chunk (most small answers) is returned as that chunk, without a
/// copy; a second chunk starts a buffer sized for both.
async fn collect_limited(
    mut body: TimedBody,
    limit: usize,
    truncate: bool,
) -> Result<Bytes, Error> {
    let mut first: Option<Bytes> = None;
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        let len = first.as_ref().map_or(out.len(), Bytes::len);
        if len + chunk.len() > limit {
            if truncate {
                let mut out = match first.take() {
                    Some(f) => BytesMut::from(f),
                    None => out,
                };
                out.extend_from_slice(&chunk[..limit - len]);
                return Ok(out.freeze());
            }
            return Err(Error::upstream(format!(
                "backend `{}` sent a response larger than {limit} bytes",
                body.backend()
            )));
        }
        if out.is_empty() && first.is_none() {
            first = Some(chunk);
            continue;
        }
        if let Some(f) = first.take() {
            out.reserve(f.len() + chunk.len());
            out.extend_from_slice(&f);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(first.unwrap_or_else(|| out.freeze()))
}

/// Whether an auth header built for the backend applies to a request in `format`.
fn header_applies(format: Protocol, name: &http::HeaderName) -> bool {
    let wanted: &[&str] = match format {
        Protocol::Anthropic => &["x-api-key"],
        Protocol::Gemini | Protocol::GeminiEmbeddings => &["x-goog-api-key"],
        _ => &["authorization"],
    };
    wanted.contains(&name.as_str())
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The start of an upstream error body, as one line of text for a log.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Drops any query string from a URL before it goes into a message.
fn redact_url(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_paths_carry_model_and_action() {
        let ep =
            HttpEndpoint::new(EndpointConfig::new("g", "http://h:1/", Protocol::Gemini)).unwrap();
        assert_eq!(
            ep.url(Protocol::Gemini, Some("gemini-2.5-flash"), true)
                .unwrap()
                .url()
                .as_str(),
            "http://h:1/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            ep.url(Protocol::Gemini, Some("a/b c"), false)
                .unwrap()
                .url()
                .as_str(),
            "http://h:1/v1beta/models/a%2Fb%20c:generateContent"
        );
    }

    #[test]
    fn count_tokens_urls() {
        let mut cfg = EndpointConfig::new("a", "http://h:1/base/", Protocol::Anthropic);
        cfg.protocols = vec![Protocol::Anthropic, Protocol::Gemini, Protocol::OpenAiChat];
        let ep = HttpEndpoint::new(cfg).unwrap();
        assert_eq!(
            ep.count_tokens_url(Protocol::Anthropic, Some("m"))
                .unwrap()
                .as_str(),
            "http://h:1/base/v1/messages/count_tokens"
        );
        assert_eq!(
            ep.count_tokens_url(Protocol::Gemini, Some("g-1"))
                .unwrap()
                .as_str(),
            "http://h:1/base/v1beta/models/g-1:countTokens"
        );
        assert_eq!(
            ep.count_tokens_url(Protocol::OpenAiChat, Some("m"))
                .unwrap_err()
                .status(),
            501
        );
    }

    #[test]
    fn fixed_paths_are_parsed_once_with_overrides() {
        let mut cfg = EndpointConfig::new("o", "http://h:1/base/", Protocol::OpenAiChat);
        cfg.protocols.push(Protocol::Anthropic);
        cfg.paths
            .insert(Protocol::Anthropic, "/anthropic/v1/messages".into());
        let ep = HttpEndpoint::new(cfg).unwrap();
        assert_eq!(ep.fixed_urls.len(), 2);
        assert_eq!(
            ep.url(Protocol::OpenAiChat, None, false)
                .unwrap()
                .url()
                .as_str(),
            "http://h:1/base/v1/chat/completions"
        );
        assert_eq!(
            ep.url(Protocol::Anthropic, Some("m"), true)
                .unwrap()
                .url()
                .as_str(),
            "http://h:1/base/anthropic/v1/messages"
        );
    }

    #[test]
    fn only_urls_without_credentials_skip_the_request_builder() {
        let plain = |url: &str| {
            HttpEndpoint::new(EndpointConfig::new("x", url, Protocol::OpenAiChat))
                .unwrap()
                .plain_urls
        };
        assert!(plain("http://h:1"));
        assert!(plain("https://api.example.com/base/"));
        // reqwest's builder turns `user:pass@` into a basic-auth header: keep it for those.
        assert!(!plain("http://user:pw@h:1"));
        assert!(!plain("http://user@h:1"));
    }

    #[test]
    fn bad_base_urls_are_refused() {
        assert!(
            HttpEndpoint::new(EndpointConfig::new("x", "ftp://h", Protocol::Anthropic)).is_err()
        );
        assert!(
            HttpEndpoint::new(EndpointConfig::new("x", "not a url", Protocol::Anthropic)).is_err()
        );
    }

    fn timed(chunks: &[&'static str]) -> TimedBody {
        let chunks: Vec<Result<Bytes, BodyError>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        TimedBody::new(
            futures::stream::iter(chunks),
            "b".into(),
            Duration::from_secs(60),
            deadline,
        )
    }

    #[tokio::test]
    async fn collect_limited_keeps_a_single_chunk_and_joins_several() {
        let one: &'static str = "{\"ok\":true}";
        let got = collect_limited(timed(&[one]), 100, false).await.unwrap();
        assert_eq!(got, one);
        // The chunk itself, not a copy.
        assert_eq!(got.as_ptr(), one.as_ptr());
        let got = collect_limited(timed(&["ab", "", "cd", "e"]), 100, false)
            .await
            .unwrap();
        assert_eq!(got, "abcde");
        assert_eq!(collect_limited(timed(&[]), 100, false).await.unwrap(), "");
        assert_eq!(
            collect_limited(timed(&["", "a"]), 100, false)
                .await
                .unwrap(),
            "a"
        );
    }

    #[tokio::test]
    async fn collect_limited_truncates_or_refuses_past_the_limit() {
        assert_eq!(
            collect_limited(timed(&["abc", "def"]), 4, true)
                .await
                .unwrap(),
            "abcd"
        );
        assert_eq!(
            collect_limited(timed(&["abcdef"]), 4, true).await.unwrap(),
            "abcd"
        );
        assert_eq!(
            collect_limited(timed(&["ab", "cd", "ef"]), 5, true)
                .await
                .unwrap(),
            "abcde"
        );
        let e = collect_limited(timed(&["abc", "def"]), 4, false)
            .await
            .unwrap_err();
        assert!(
            e.message().contains("larger than 4 bytes"),
            "{}",
            e.message()
        );
        assert_eq!(
            collect_limited(timed(&["ab", "cd"]), 4, false)
                .await
                .unwrap(),
            "abcd"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_ms() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        // Absurd or negative values are ignored instead of panicking.
        h.insert("retry-after-ms", HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&h), None);
        h.remove("retry-after-ms");
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1e300"));
        assert_eq!(retry_after(&h), None);
    }

    use octo_test::{mock, mock_with};

    fn chat() -> Request {
        octo_test::Prompt::new(Protocol::OpenAiChat, "m", "hi").request()
    }

    #[tokio::test]
    async fn upstream_headers_are_sent_but_never_override_credentials() {
        let mock = mock().await;
        let mut cfg =
            EndpointConfig::new("oa", mock.url(), Protocol::OpenAiChat).api_key("sk-real");
        cfg.headers
            .insert("x-team", HeaderValue::from_static("backend"));
        let ep = HttpEndpoint::new(cfg).unwrap();
        let mut req = chat();
        let mut extra = HeaderMap::new();
        extra.insert("x-team", HeaderValue::from_static("rule"));
        extra.insert("x-extra", HeaderValue::from_static("1"));
        extra.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer evil"),
        );
        extra.insert(header::HOST, HeaderValue::from_static("evil.example"));
        req.extensions.insert(UpstreamHeaders(extra));
        // A client header is still not forwarded.
        req.headers
            .insert("x-client", HeaderValue::from_static("1"));
        assert_eq!(ep.process(req).await.unwrap().status, 200);
        let seen = &mock.requests()[0];
        assert_eq!(seen.header("authorization"), Some("Bearer sk-real"));
        assert_eq!(seen.header("x-team"), Some("rule"));
        assert_eq!(seen.header("x-extra"), Some("1"));
        assert_ne!(seen.header("host"), Some("evil.example"));
        assert_eq!(seen.header("x-client"), None);
    }

    #[tokio::test]
    async fn both_transports_send_the_same_request() {
        let mock = mock().await;
        for transport in [Transport::Hyper, Transport::Reqwest] {
            let mut cfg =
                EndpointConfig::new("oa", mock.url(), Protocol::OpenAiChat).api_key("sk-real");
            cfg.protocols.push(Protocol::Gemini);
            cfg.transport = transport;
            let ep = HttpEndpoint::new(cfg).unwrap();
            assert_eq!(ep.uses_hyper(), transport == Transport::Hyper);
            let resp = ep.process(chat()).await.unwrap();
            assert_eq!(resp.status, 200);
            assert_eq!(
                resp.headers.get(header::CONTENT_TYPE).unwrap(),
                "application/json"
            );
            // A URL built per request (Gemini's model path).
            let gemini = octo_test::Prompt::new(Protocol::Gemini, "g/1", "hi").request();
            assert_eq!(ep.process(gemini).await.unwrap().status, 200);
        }
        let seen = mock.requests();
        assert_eq!(seen.len(), 4);
        for (hyper, reqwest) in [(&seen[0], &seen[2]), (&seen[1], &seen[3])] {
            assert_eq!(hyper.path_and_query, reqwest.path_and_query);
            assert_eq!(hyper.version, reqwest.version);
            assert_eq!(hyper.body, reqwest.body);
            let names = |r: &octo_mock::RecordedRequest| {
                let mut n: Vec<String> = r.headers.keys().map(|k| k.to_string()).collect();
                n.sort();
                n
            };
            assert_eq!(names(hyper), names(reqwest));
            for (k, v) in &hyper.headers {
                assert_eq!(Some(v), reqwest.headers.get(k), "{k}");
            }
        }
        assert_eq!(
            seen[0].header("user-agent"),
            Some(concat!("octollm/", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(
            seen[1].path_and_query,
            "/v1beta/models/g%2F1:generateContent"
        );
    }

    #[tokio::test]
    async fn basic_auth_from_the_base_url_on_both_transports() {
        let mock = mock().await;
        let url = mock.url().replacen("http://", "http://us%40er:pw@", 1);
        for transport in [Transport::Hyper, Transport::Reqwest] {
            // Anthropic's key is `x-api-key`: the URL's basic auth goes along.
            let mut cfg = EndpointConfig::new("an", url.clone(), Protocol::Anthropic).api_key("k");
            cfg.transport = transport;
            let ep = HttpEndpoint::new(cfg).unwrap();
            let req = octo_test::Prompt::new(Protocol::Anthropic, "m", "hi").request();
            assert_eq!(ep.process(req).await.unwrap().status, 200);
            // OpenAI's key is an `Authorization` header: it wins over the URL's.
            let mut cfg = EndpointConfig::new("oa", url.clone(), Protocol::OpenAiChat).api_key("k");
            cfg.transport = transport;
            let ep = HttpEndpoint::new(cfg).unwrap();
            assert_eq!(ep.process(chat()).await.unwrap().status, 200);
        }
        let seen = mock.requests();
        let auth: Vec<Option<&str>> = seen.iter().map(|r| r.header("authorization")).collect();
        // base64("us@er:pw")
        let basic = Some("Basic dXNAZXI6cHc=");
        assert_eq!(auth, [basic, Some("Bearer k"), basic, Some("Bearer k")]);
        for r in &seen {
            assert!(!r.header("host").unwrap().contains('@'));
        }
    }

    #[test]
    fn transport_hyper_needs_a_plain_http_base_url() {
        let mut cfg = EndpointConfig::new("x", "https://h", Protocol::OpenAiChat);
        cfg.transport = Transport::Hyper;
        let e = HttpEndpoint::new(cfg).unwrap_err();
        assert!(e.message().contains("http://"), "{}", e.message());
        let tls = HttpEndpoint::new(EndpointConfig::new("x", "https://h", Protocol::OpenAiChat));
        assert!(!tls.unwrap().uses_hyper(), "TLS upstreams use reqwest");
    }

    #[tokio::test]
    async fn refused_keys_rotate_and_the_error_is_retryable() {
        let mock = mock().await;
        let mut cfg = EndpointConfig::new("oa", mock.url(), Protocol::OpenAiChat)
            .api_key("sk-1")
            .api_key("sk-2");
        cfg.key_pool.cooldown = Duration::from_secs(120);
        let ep = HttpEndpoint::new(cfg).unwrap();
        let mut req = chat();
        let mut extra = HeaderMap::new();
        extra.insert("x-mock-status", HeaderValue::from_static("401"));
        req.extensions.insert(UpstreamHeaders(extra));
        let e = ep.process(req).await.unwrap_err();
        // The gateway's key was refused: a 502 naming the backend, without the upstream's text,
        // and retryable, so another backend may serve.
        assert_eq!(e.kind(), octo_core::ErrorKind::KeyRefused);
        assert_eq!(e.status(), 502);
        assert!(e.is_retryable());
        assert!(e.upstream_body().is_none());
        assert!(e.message().contains("backend `oa`"), "{}", e.message());
        let keys: Vec<String> = mock
            .requests()
            .iter()
            .map(|r| r.header("authorization").unwrap().to_owned())
            .collect();
        assert_eq!(keys, ["Bearer sk-1", "Bearer sk-2"]);
        assert!(!ep.is_available(Some("m")));
        assert!(ep.keys().cooling_for(0).unwrap() > Duration::from_secs(100));
        // Both keys rest: the next request fails at once, naming the backend only.
        let e = ep.process(chat()).await.unwrap_err();
        assert_eq!(e.status(), 429);
        assert!(e.message().contains("backend `oa`"), "{}", e.message());
        assert!(!e.message().contains("sk-"));
        assert_eq!(mock.stats().requests, 2);
    }

    #[tokio::test]
    async fn h2c_speaks_http2_to_a_plain_http_upstream() {
        let mock = mock().await;
        let stream = || {
            Request::post(
                Protocol::OpenAiChat,
                "/v1/chat/completions",
                Body::from_static(
                    br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
                ),
            )
        };
        let mut cfg = EndpointConfig::new("h2", mock.url(), Protocol::OpenAiChat);
        cfg.http_version = HttpVersion::H2c;
        let ep = HttpEndpoint::new(cfg).unwrap();
        for _ in 0..2 {
            let resp = ep.process(stream()).await.unwrap();
            assert_eq!(resp.status, 200);
            let ResponseBody::Stream(mut events) = resp.body else {
                panic!("not a stream");
            };
            let mut n = 0;
            while let Some(e) = events.next().await {
                e.unwrap();
                n += 1;
            }
            assert!(n > 2);
        }
        let plain =
            HttpEndpoint::new(EndpointConfig::new("h1", mock.url(), Protocol::OpenAiChat)).unwrap();
        assert_eq!(plain.process(chat()).await.unwrap().status, 200);
        let versions: Vec<http::Version> = mock.requests().iter().map(|r| r.version).collect();
        assert_eq!(
            versions,
            [
                http::Version::HTTP_2,
                http::Version::HTTP_2,
                http::Version::HTTP_11
            ]
        );
    }

    #[tokio::test]
    async fn h2c_requests_beyond_the_upstreams_stream_limit_wait_for_a_free_stream() {
        let config = octo_mock::MockConfig {
            h2_max_concurrent_streams: Some(1),
            ..Default::default()
        };
        let mock = mock_with(config).await;
        let mut cfg = EndpointConfig::new("h2", mock.url(), Protocol::OpenAiChat);
        cfg.http_version = HttpVersion::H2c;
        let ep = HttpEndpoint::new(cfg).unwrap();
        let slow = || {
            let mut req = chat();
            let mut extra = HeaderMap::new();
            extra.insert("x-mock-latency-ms", HeaderValue::from_static("50"));
            req.extensions.insert(UpstreamHeaders(extra));
            req
        };
        let (a, b, c) = tokio::join!(ep.process(slow()), ep.process(slow()), ep.process(slow()));
        for r in [a, b, c] {
            assert_eq!(r.unwrap().status, 200);
        }
        assert_eq!(mock.stats().requests, 3);
    }

    #[tokio::test]
    async fn h2c_streams_held_back_by_slow_clients_do_not_stall_the_others() {
        let config = octo_mock::MockConfig {
            h2_max_concurrent_streams: Some(100),
            ..Default::default()
        };
        let mock = mock_with(config).await;
        let mut cfg = EndpointConfig::new("h2", mock.url(), Protocol::OpenAiChat);
        cfg.http_version = HttpVersion::H2c;
        let ep = HttpEndpoint::new(cfg).unwrap();
        // Three long streams (about 3 MB each) that nobody reads, as behind stalled clients:
        // with hyper's default windows (2 MiB per stream, 5 MiB per connection) their unread
        // data used up the connection's window and every later stream on it hung.
        let long = || {
            Request::post(
                Protocol::OpenAiChat,
                "/v1/chat/completions",
                Body::from_static(
                    br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"[mock:events=20000] x"}]}"#,
                ),
            )
        };
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(ep.process(long()).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let probe = tokio::time::timeout(Duration::from_secs(10), async {
            let resp = ep.process(chat()).await.unwrap();
            match resp.body {
                ResponseBody::Full(mut b) => b.bytes().len(),
                ResponseBody::Stream(_) => 0,
            }
        })
        .await;
        assert!(
            matches!(probe, Ok(n) if n > 0),
            "a request behind three unread streams did not complete"
        );
        drop(held);
    }

    #[test]
    fn h2c_needs_a_plain_http_base_url() {
        let mut cfg = EndpointConfig::new("x", "https://h", Protocol::OpenAiChat);
        cfg.http_version = HttpVersion::H2c;
        let e = HttpEndpoint::new(cfg).unwrap_err();
        assert!(e.message().contains("http://"), "{}", e.message());
    }

    #[test]
    fn debug_output_never_shows_keys() {
        let cfg = EndpointConfig::new("x", "http://h", Protocol::OpenAiChat).api_key("sk-secret");
        assert!(!format!("{cfg:?}").contains("sk-secret"));
    }
}
