//! An exact response cache: the same request from the same org gets the stored answer, without
//! reaching the upstream.
//!
//! [`CacheEngine`] sits in front of a model's targets. For each request it computes a
//! [`CacheKey`] (`key` lists what goes in and what is left out), looks it up in a
//! [`CacheStore`] and either replays the stored answer or sends the request on and stores what
//! comes back:
//!
//! - **What is stored:** a `200` answer only. A full body is stored as it was sent; a stream is
//!   collected event by event as the client reads it and stored when it has ended with the
//!   protocol's own end (OpenAI Chat `[DONE]`, Anthropic `message_stop`, Responses
//!   `response.completed`/`response.incomplete`, a Gemini chunk with a `finishReason`). Errors,
//!   streams that fail, carry an in-band error event, end without that marker (cut) or are dropped
//!   by the client are never stored, and neither is an answer larger than the store's
//!   [`max_entry_bytes`](CacheStore::max_entry_bytes).
//! - **Replay:** a hit sends the stored body, or the stored events in order as a fresh stream in
//!   the same protocol (the front adds keep-alives and Gemini's JSON-array form as for any stream).
//!   The answer carries `x-octollm-cache: hit`, a looked-up request that went upstream carries
//!   `miss`, one the cache did not look up `bypass`.
//! - **The record:** a hit is marked `cache_hit` and carries the stored usage and finish reason;
//!   it has no attempts and no backend, and pricing skips it, so its `cost_usd` is `null` (no
//!   upstream was paid).
//! - **The client's say:** `cache-control: no-cache` skips the lookup but stores the fresh answer;
//!   `no-store` neither looks up nor stores.
//! - **Failures:** every store call is bounded ([`STORE_TIMEOUT`]); an error or a timeout is a
//!   miss, or a skipped write, and a warning in the log. The cache never fails a request.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use octo_core::layer::Layer;
//! use octo_core::{Body, Engine, Protocol, Request, Response, engine_fn};
//! use octo_engines::cache::{CacheLayer, MemoryStore, CACHE_HEADER};
//!
//! let calls = Arc::new(AtomicUsize::new(0));
//! let c = calls.clone();
//! let upstream = Arc::new(engine_fn(move |_req: Request| {
//!     c.fetch_add(1, Ordering::SeqCst);
//!     async { Ok(Response::json(200, Body::from_static(br#"{"answer":42}"#))) }
//! }));
//! let cache = CacheLayer::new("m", Arc::new(MemoryStore::new(1 << 20)), Duration::from_secs(60))
//!     .layer(upstream);
//! let ask = || Request::post(Protocol::OpenAiChat, "/v1/chat/completions",
//!     Body::from_static(br#"{"model":"m","messages":[]}"#));
//! let first = cache.process(ask()).await.unwrap();
//! let second = cache.process(ask()).await.unwrap();
//! assert_eq!(first.headers[CACHE_HEADER], "miss");
//! assert_eq!(second.headers[CACHE_HEADER], "hit");
//! assert_eq!(calls.load(Ordering::SeqCst), 1);
//! # }
//! ```

mod entry;
mod key;
mod memory;
mod redis;
mod stats;
mod store;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use octo_core::layer::Layer;
use octo_core::record::RequestRecord;
use octo_core::{
    ArcEngine, Engine, Error, Event, EventStream, Protocol, Request, Response, ResponseBody,
};
use serde_json::Value;

pub use entry::{Answer, Entry, StoredEvent};
pub use key::{Bypass, CacheKey, IGNORED_FIELDS, KeyScope, cache_key};
pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use stats::{CacheCounters, CacheResult, counters, snapshot};
pub use store::CacheStore;

use crate::auth::Identity;
use crate::rules::MatchedRule;

/// The response header saying where the answer came from: `hit`, `miss` or `bypass`.
pub const CACHE_HEADER: &str = "x-octollm-cache";

/// The longest a store lookup or write may take before it counts as a miss or a skipped write.
pub const STORE_TIMEOUT: Duration = Duration::from_millis(250);

/// The cache of one model: settings checked once, waiting for the engine to wrap.
#[derive(Debug, Clone)]
pub struct CacheLayer {
    model: String,
    store: Arc<dyn CacheStore>,
    ttl: Duration,
    scope: String,
}

impl CacheLayer {
    /// The cache of model `model` (the metrics label) in `store`, entries living `ttl`.
    pub fn new(model: impl Into<String>, store: Arc<dyn CacheStore>, ttl: Duration) -> Self {
        CacheLayer {
            model: model.into(),
            store,
            ttl,
            scope: String::new(),
        }
    }

    /// Adds `scope` to every key: a fingerprint of the settings that shape the answer (the
    /// server passes the model's config), so entries written under other settings are not read.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }
}

impl Layer for CacheLayer {
    fn layer(&self, inner: ArcEngine) -> ArcEngine {
        Arc::new(CacheEngine {
            inner,
            store: self.store.clone(),
            ttl: self.ttl,
            scope: self.scope.clone(),
            counters: stats::counters(&self.model),
        })
    }
}

/// The cache in front of an engine; see the [module docs](self).
pub struct CacheEngine {
    inner: ArcEngine,
    store: Arc<dyn CacheStore>,
    ttl: Duration,
    scope: String,
    counters: Arc<CacheCounters>,
}

impl std::fmt::Debug for CacheEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheEngine")
            .field("store", &self.store)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// What the client's `cache-control` allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ClientSays {
    no_cache: bool,
    no_store: bool,
}

fn client_says(req: &Request) -> ClientSays {
    let mut says = ClientSays::default();
    for v in req.headers.get_all(header::CACHE_CONTROL) {
        for directive in v.to_str().unwrap_or("").split(',') {
            match directive.trim().to_ascii_lowercase().as_str() {
                "no-cache" => says.no_cache = true,
                "no-store" => says.no_store = true,
                _ => {}
            }
        }
    }
    says
}

fn set_header(resp: &mut Response, result: CacheResult) {
    resp.headers
        .insert(CACHE_HEADER, HeaderValue::from_static(result.as_str()));
}

#[async_trait]
impl Engine for CacheEngine {
    async fn process(&self, mut req: Request) -> Result<Response, Error> {
        let says = client_says(&req);
        let org = req.extensions.get::<Identity>().map(|i| i.org.clone());
        let rule = req.extensions.get::<MatchedRule>().map(|r| r.0.clone());
        let key = if says.no_store {
            None
        } else {
            let scope = KeyScope {
                org: org.as_deref(),
                rule: rule.as_deref(),
                scope: &self.scope,
            };
            cache_key(&mut req, scope)?.ok()
        };
        let Some(key) = key else {
            self.counters.count(CacheResult::Bypass);
            let mut resp = self.inner.process(req).await?;
            set_header(&mut resp, CacheResult::Bypass);
            return Ok(resp);
        };
        let record = req.extensions.get::<RequestRecord>().cloned();
        if !says.no_cache
            && let Some(entry) = self.lookup(&key).await
        {
            self.counters.count(CacheResult::Hit);
            if let Some(r) = &record {
                r.set_cache_hit();
                r.set_usage(entry.usage, entry.finish_reason.as_deref());
            }
            let mut resp = replay(entry);
            set_header(&mut resp, CacheResult::Hit);
            return Ok(resp);
        }
        self.counters.count(CacheResult::Miss);
        let protocol = req.protocol;
        let mut resp = self.inner.process(req).await?;
        set_header(&mut resp, CacheResult::Miss);
        if resp.status != StatusCode::OK {
            return Ok(resp);
        }
        let writer = Writer {
            store: self.store.clone(),
            key,
            ttl: self.ttl,
            record,
        };
        match &mut resp.body {
            ResponseBody::Full(body) => {
                let body = body.to_bytes();
                if body.len() <= self.store.max_entry_bytes() {
                    let content_type = resp
                        .headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    writer.write(Answer::Full { content_type, body }).await;
                }
            }
            ResponseBody::Stream(events) => {
                let events = std::mem::replace(events, EventStream::iter(Vec::new()));
                let collector = Collector::new(protocol, self.store.max_entry_bytes());
                resp.body = ResponseBody::Stream(collecting(events, collector, writer));
            }
        }
        Ok(resp)
    }
}

impl CacheEngine {
    async fn lookup(&self, key: &CacheKey) -> Option<Entry> {
        match tokio::time::timeout(STORE_TIMEOUT, self.store.get(key)).await {
            Ok(Ok(Some(bytes))) => {
                let entry = Entry::decode(&bytes);
                if entry.is_none() {
                    tracing::warn!(store = self.store.kind(), "unreadable cache entry ignored");
                }
                entry
            }
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::warn!(store = self.store.kind(), error = %e.message(), "cache lookup failed; treated as a miss");
                None
            }
            Err(_) => {
                tracing::warn!(store = self.store.kind(), timeout = ?STORE_TIMEOUT, "cache lookup timed out; treated as a miss");
                None
            }
        }
    }
}

/// The stored answer as a response.
fn replay(entry: Entry) -> Response {
    match entry.answer {
        Answer::Full { content_type, body } => {
            let mut resp = Response::json(200, body);
            if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                resp.headers.insert(header::CONTENT_TYPE, ct);
            }
            resp
        }
        Answer::Stream(events) => {
            let events: Vec<Event> = events.iter().map(StoredEvent::to_event).collect();
            Response::stream(EventStream::iter(events))
        }
    }
}

/// Writes one answer to the store, with the usage the record has by then.
struct Writer {
    store: Arc<dyn CacheStore>,
    key: CacheKey,
    ttl: Duration,
    record: Option<RequestRecord>,
}

impl Writer {
    async fn write(self, answer: Answer) {
        let (usage, finish_reason) = self
            .record
            .as_ref()
            .map(RequestRecord::usage)
            .unwrap_or_default();
        let bytes = Entry {
            answer,
            usage,
            finish_reason,
        }
        .encode();
        match tokio::time::timeout(STORE_TIMEOUT, self.store.put(&self.key, bytes, self.ttl)).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(store = self.store.kind(), error = %e.message(), "cache write failed");
            }
            Err(_) => {
                tracing::warn!(store = self.store.kind(), timeout = ?STORE_TIMEOUT, "cache write timed out");
            }
        }
    }
}

/// Collects a stream's events while they pass, and knows whether it ended properly.
struct Collector {
    protocol: Protocol,
    events: Vec<StoredEvent>,
    bytes: usize,
    max: usize,
    ended: bool,
}

impl Collector {
    fn new(protocol: Protocol, max: usize) -> Self {
        Collector {
            protocol,
            events: Vec::new(),
            bytes: 0,
            max,
            ended: false,
        }
    }

    /// Adds `ev`; `false` when the stream can no longer be stored (too large, an error event,
    /// an event after the end, an event that is not text).
    fn push(&mut self, ev: &Event) -> bool {
        if self.ended && !matches!(self.protocol, Protocol::Gemini) {
            // Nothing follows the end marker in a well-formed stream.
            return false;
        }
        let data = ev.data_body().to_bytes();
        if is_error_event(self.protocol, ev.name(), &data) {
            return false;
        }
        if ends_stream(self.protocol, ev, &data) {
            self.ended = true;
        }
        let stored = StoredEvent {
            name: ev.name().map(str::to_owned),
            id: ev.id().map(str::to_owned),
            data,
        };
        self.bytes += stored.encoded_len();
        if self.bytes > self.max {
            return false;
        }
        self.events.push(stored);
        true
    }
}

/// Whether `ev` is the protocol's own end of a complete stream.
fn ends_stream(protocol: Protocol, ev: &Event, data: &Bytes) -> bool {
    match protocol {
        Protocol::OpenAiChat => ev.is_done_marker(),
        Protocol::Anthropic => {
            ev.name() == Some("message_stop")
                || (ev.name().is_none() && json_type(data).as_deref() == Some("message_stop"))
        }
        Protocol::OpenAiResponses => {
            let kind = ev.name().map(str::to_owned).or_else(|| json_type(data));
            matches!(
                kind.as_deref(),
                Some("response.completed" | "response.incomplete")
            )
        }
        Protocol::Gemini => {
            memchr::memmem::find(data, b"finishReason").is_some()
                && serde_json::from_slice::<Value>(data).is_ok_and(|v| {
                    v.get("candidates")
                        .and_then(Value::as_array)
                        .is_some_and(|cs| {
                            cs.iter().any(|c| {
                                c.get("finishReason")
                                    .and_then(Value::as_str)
                                    .is_some_and(|r| !r.is_empty())
                            })
                        })
                })
        }
        _ => false,
    }
}

/// Whether `data` (named `name`) is an in-band error: such a stream is never stored.
fn is_error_event(protocol: Protocol, name: Option<&str>, data: &[u8]) -> bool {
    if matches!(name, Some("error" | "response.failed")) {
        return true;
    }
    if memchr::memmem::find(data, b"\"error\"").is_none()
        && memchr::memmem::find(data, b"response.failed").is_none()
    {
        return false;
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return false;
    };
    let kind = v.get("type").and_then(Value::as_str);
    match protocol {
        Protocol::Anthropic | Protocol::OpenAiResponses => {
            matches!(kind, Some("error" | "response.failed"))
        }
        _ => v.get("error").is_some_and(|e| !e.is_null()),
    }
}

fn json_type(data: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(data)
        .ok()?
        .get("type")?
        .as_str()
        .map(str::to_owned)
}

/// `events` as they pass, stored once they ended properly and the client read them all.
fn collecting(events: EventStream, collector: Collector, writer: Writer) -> EventStream {
    let state = (events, Some((collector, writer)));
    let stream = futures::stream::unfold(state, |(mut events, mut pending)| async move {
        match events.next().await {
            Some(Ok(ev)) => {
                if let Some((c, _)) = pending.as_mut()
                    && !c.push(&ev)
                {
                    pending = None;
                }
                Some((Ok(ev), (events, pending)))
            }
            Some(Err(e)) => Some((Err(e), (events, None))),
            None => {
                if let Some((c, writer)) = pending
                    && c.ended
                {
                    writer.write(Answer::Stream(c.events)).await;
                }
                None
            }
        }
    });
    EventStream::new(stream.fuse())
}

#[cfg(test)]
mod tests;
