//! The record of one request: what the gateway learned while serving it, written by the engines as
//! the request moves through them and handed, finished, to [`Observer`]s exactly once.
//!
//! The front ([`crate::http::Router`]) creates a [`RequestRecord`] for every request to an engine
//! route and puts it in the request's extensions. Engines write what they learn through its
//! setters: the auth engine the org and key name, the rules engine the matched rule, the target set
//! one [`Attempt`] per upstream attempt, the upstream client the upstream protocol and model, the
//! time to first byte and the [`Usage`] it read from the answer. Every setter is a short critical
//! section on one uncontended lock; an engine that runs without a record (a library user calling an
//! engine directly) simply finds none.
//!
//! The record completes once, at the same point the request's overhead is measured: when a full
//! answer has been produced, when the last event of a stream has been handed to the connection,
//! when the request fails, or when the client goes away first (status 499). Completion builds a
//! plain [`Record`], prices it ([`Observers::with_pricing`]) and calls every observer with it.
//!
//! # Observers
//!
//! An [`Observer`] is called on the completing task, so it must only do cheap in-memory work
//! (counters, histograms) or hand the record to a bounded queue with `try_send`, counting what it
//! drops. It never blocks, awaits or does IO: the response must not wait for it.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use octo_core::record::{Observer, Observers, Record, RequestRecord};
//! use octo_core::Protocol;
//!
//! /// Counts finished requests per status class.
//! #[derive(Default)]
//! struct Errors(AtomicU64);
//! impl Observer for Errors {
//!     fn on_complete(&self, record: &Arc<Record>) {
//!         if record.status >= 400 {
//!             self.0.fetch_add(1, Ordering::Relaxed);
//!         }
//!     }
//! }
//!
//! let errors = Arc::new(Errors::default());
//! let observers = Arc::new(Observers::new().with(errors.clone()));
//! let record = RequestRecord::start(Protocol::OpenAiChat, observers);
//! record.set_model("gpt-4o", false);
//! record.complete(502, Some("upstream refused the connection".into()));
//! record.complete(200, None); // a second completion is ignored
//! assert_eq!(errors.0.load(Ordering::Relaxed), 1);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::overhead::UpstreamTime;
use crate::protocol::Protocol;
use crate::usage::Usage;

/// The status recorded when the client went away before the answer was complete (nginx's
/// convention).
pub const CLIENT_CLOSED: u16 = 499;

/// Attempts kept per record (a bound against runaway nesting).
const MAX_ATTEMPTS: usize = 64;

/// One upstream attempt made for a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The backend's name.
    pub backend: String,
    /// Which of the backend's keys was used, by name or position (`#2`); never the key itself.
    pub key: Option<String>,
    /// The HTTP status of the answer, or of the error the gateway recorded for it (502 when the
    /// upstream could not be reached, 504 on a timeout); `None` when the backend was skipped.
    pub status: Option<u16>,
    /// From the start of the request to the start of this attempt.
    #[serde(default)]
    pub offset_ms: u64,
    /// From the start of the attempt to its answer (to the first event for a stream) or error.
    pub duration_ms: u64,
    /// What went wrong, for failed or skipped attempts (never carries credentials).
    pub error: Option<String>,
    /// The attempt's span id, when the request is traced (sent upstream in `traceparent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
}

/// The price applied to a record, USD per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Price {
    /// Uncached input.
    pub input: f64,
    /// Output, reasoning included.
    pub output: f64,
    /// Input read from a prompt cache (`None`: billed as input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    /// Input written to a prompt cache (`None`: billed as input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    /// Where the price came from (`config`, `snapshot`, `sync`), and the model name it matched.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

impl Price {
    /// The cost of `usage` at this price, in USD. Cached tokens are counted once, at their own
    /// rate (or the input rate when the price has none).
    ///
    /// ```
    /// use octo_core::record::Price;
    /// use octo_core::usage::Usage;
    ///
    /// let p = Price { input: 3.0, output: 15.0, cache_read: Some(0.3), cache_write: Some(3.75), ..Price::default() };
    /// let u = Usage { input_tokens: 1_000_000, cache_read_tokens: 1_000_000, output_tokens: 100_000, ..Usage::default() };
    /// assert!((p.cost(&u) - (3.0 + 0.3 + 1.5)).abs() < 1e-9);
    /// ```
    pub fn cost(&self, usage: &Usage) -> f64 {
        let per = |tokens: u64, rate: f64| tokens as f64 * rate / 1_000_000.0;
        per(usage.input_tokens, self.input)
            + per(
                usage.cache_read_tokens,
                self.cache_read.unwrap_or(self.input),
            )
            + per(
                usage.cache_write_tokens,
                self.cache_write.unwrap_or(self.input),
            )
            + per(usage.output_tokens, self.output)
    }
}

/// A finished request, as observers, the request log and the admin API see it.
///
/// The JSON form is the request log's API shape (`GET /api/v1/logs`): `started_at` in RFC 3339,
/// protocols by their config names (`openai_chat`, `openai_responses`, `anthropic`, `gemini`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The request id, also sent to the client as `x-octollm-request-id`.
    pub id: String,
    /// When the request head arrived.
    #[serde(with = "rfc3339")]
    pub started_at: SystemTime,
    /// From the request head to the end of the answer.
    pub duration_ms: u64,
    /// From the request head to the first byte of the upstream's answer, when one came.
    pub ttfb_ms: Option<u64>,
    /// The protocol the client spoke.
    #[serde(with = "protocol_name")]
    pub client_protocol: Protocol,
    /// The model the client asked for.
    pub model: Option<String>,
    /// The caller's org, when authenticated.
    pub org: Option<String>,
    /// The name of the caller's key within the org (never the key).
    pub user: Option<String>,
    /// The rule that matched, if any.
    pub rule: Option<String>,
    /// The backend that produced the answer (the last attempted, on failure).
    pub backend: Option<String>,
    /// The protocol spoken to that backend.
    #[serde(with = "opt_protocol_name")]
    pub upstream_protocol: Option<Protocol>,
    /// The model name sent upstream.
    pub upstream_model: Option<String>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The final status: the HTTP status, or the error's status when a stream failed after its
    /// head was sent, or 499 when the client went away first.
    pub status: u16,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// Every upstream attempt, in order.
    pub attempts: Vec<Attempt>,
    /// Token usage as reported by the upstream; `None` when it reported none.
    pub usage: Option<Usage>,
    /// Why generation stopped, in the upstream's words (`stop`, `end_turn`, `STOP`, …).
    pub finish_reason: Option<String>,
    /// The cost in USD; `None` when no usage or no price is known (never a made-up zero).
    pub cost_usd: Option<f64>,
    /// The price the cost was computed with.
    pub price: Option<Price>,
    /// Whether the answer came from the response cache.
    #[serde(default)]
    pub cache_hit: bool,
    /// Gateway time: `duration` minus the time spent waiting on upstreams, in nanoseconds.
    #[serde(default)]
    pub overhead_ns: u64,
    /// The W3C trace context, when the request is traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
    /// The request's body and its answer, cut to a size, when bodies are kept
    /// ([`Router::log_bodies`](crate::http::Router::log_bodies)); flattened into the JSON as
    /// `request_body`, `response_body`, `request_body_bytes`, `response_body_bytes`.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub bodies: Option<Bodies>,
}

/// A request's body and its answer as kept with its [`Record`]: the first bytes of each (up to
/// the configured size) and each one's full size. The answer is what the client received: the
/// JSON of a unary answer, a stream's events as sent (SSE, or Gemini's JSON array).
///
/// In JSON the texts are strings (invalid UTF-8 replaced by U+FFFD); a text shorter than its
/// `…_bytes` was cut.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Bodies {
    /// The first bytes of the request body.
    #[serde(rename = "request_body", with = "lossy_text")]
    pub request: bytes::Bytes,
    /// The request body's full size in bytes.
    #[serde(rename = "request_body_bytes", default)]
    pub request_size: u64,
    /// The first bytes of the answer.
    #[serde(rename = "response_body", with = "lossy_text")]
    pub response: bytes::Bytes,
    /// The answer's full size in bytes.
    #[serde(rename = "response_body_bytes", default)]
    pub response_size: u64,
}

/// Bytes as a JSON string (lossy UTF-8) and back.
mod lossy_text {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(b))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        Ok(Bytes::from(String::deserialize(d)?))
    }
}

/// What a record keeps of the bodies while its request runs.
#[derive(Default)]
struct BodyCapture {
    request: bytes::Bytes,
    request_size: u64,
    response: Vec<u8>,
    response_size: u64,
}

/// A request's place in a distributed trace (W3C Trace Context), decided when it starts so the
/// upstream can be told (`traceparent`) before any span is exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// 32 lowercase hex digits: the client's trace id, or a fresh one.
    pub trace_id: String,
    /// 16 hex digits: the request span's id.
    pub span_id: String,
    /// 16 hex digits: the client's span, when it sent a `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// The client's trace flags were `sampled` (or there was no client context).
    pub sampled: bool,
}

impl TraceContext {
    /// Continues the client's `traceparent` header value, or starts a new trace when it is absent
    /// or malformed.
    ///
    /// ```
    /// use octo_core::record::TraceContext;
    ///
    /// let t = TraceContext::continue_or_start(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    /// assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    /// assert_eq!(t.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
    /// assert_ne!(t.span_id, "00f067aa0ba902b7");
    /// assert!(TraceContext::continue_or_start(Some("garbage")).parent_span_id.is_none());
    /// ```
    pub fn continue_or_start(traceparent: Option<&str>) -> Self {
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && s.bytes().any(|b| b != b'0')
        };
        if let Some(tp) = traceparent {
            let parts: Vec<&str> = tp.trim().split('-').collect();
            if parts.len() >= 4
                && parts[0].len() == 2
                && parts[0] != "ff"
                && hex(parts[1], 32)
                && hex(parts[2], 16)
                && parts[3].len() == 2
            {
                let flags = u8::from_str_radix(parts[3], 16).unwrap_or(0);
                return TraceContext {
                    trace_id: parts[1].to_owned(),
                    span_id: new_span_id(),
                    parent_span_id: Some(parts[2].to_owned()),
                    sampled: flags & 1 == 1,
                };
            }
        }
        TraceContext {
            trace_id: format!("{:032x}", next_random()),
            span_id: new_span_id(),
            parent_span_id: None,
            sampled: true,
        }
    }

    /// The `traceparent` value naming `span_id` as the parent (for the upstream request).
    pub fn traceparent(&self, span_id: &str) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id,
            span_id,
            if self.sampled { "01" } else { "00" }
        )
    }
}

/// A fresh, non-zero 16-hex-digit span id.
pub fn new_span_id() -> String {
    format!("{:016x}", (next_random() as u64) | 1)
}

impl Record {
    /// `started_at` in milliseconds since the Unix epoch.
    pub fn started_at_ms(&self) -> i64 {
        self.started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Something that wants every finished [`Record`]; see the [module docs](self).
pub trait Observer: Send + Sync + 'static {
    /// Called once per request, on the completing task. Must not block.
    fn on_complete(&self, record: &Arc<Record>);
}

/// Prices a record before observers see it: returns the cost and the price used.
pub type Pricing = dyn Fn(&Record) -> Option<(f64, Price)> + Send + Sync;

/// The observers of a front, and the pricing applied before them.
#[derive(Default, Clone)]
pub struct Observers {
    list: Vec<Arc<dyn Observer>>,
    pricing: Option<Arc<Pricing>>,
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observers")
            .field("observers", &self.list.len())
            .field("pricing", &self.pricing.is_some())
            .finish()
    }
}

impl Observers {
    /// No observers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an observer; observers are called in the order they were added.
    pub fn with(mut self, observer: Arc<dyn Observer>) -> Self {
        self.list.push(observer);
        self
    }

    /// Prices every record with `pricing` before the observers see it.
    pub fn with_pricing(mut self, pricing: Arc<Pricing>) -> Self {
        self.pricing = Some(pricing);
        self
    }

    /// Whether there is nobody to tell.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn notify(&self, mut record: Record) {
        if self.list.is_empty() {
            return;
        }
        if record.usage.is_some()
            && !record.cache_hit
            && let Some(pricing) = &self.pricing
            && let Some((cost, price)) = pricing(&record)
        {
            record.cost_usd = Some(cost);
            record.price = Some(price);
        }
        let record = Arc::new(record);
        for o in &self.list {
            o.on_complete(&record);
        }
    }
}

#[derive(Default)]
struct Fields {
    model: Option<Arc<str>>,
    stream: bool,
    org: Option<Arc<str>>,
    user: Option<Arc<str>>,
    rule: Option<Arc<str>>,
    backend: Option<Arc<str>>,
    upstream_protocol: Option<Protocol>,
    upstream_model: Option<Arc<str>>,
    attempts: Vec<Attempt>,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    error: Option<String>,
    cache_hit: bool,
    bodies: Option<BodyCapture>,
}

struct Shared {
    id: RequestId,
    started: Instant,
    started_at: SystemTime,
    client_protocol: Protocol,
    /// Nanoseconds from `started` to the first upstream byte, plus one (0 = not yet).
    ttfb: AtomicU64,
    upstream: UpstreamTime,
    fields: Mutex<Fields>,
    done: AtomicBool,
    observers: Arc<Observers>,
    trace: Option<TraceContext>,
    /// Bytes kept of each body, when bodies are kept.
    body_limit: Option<usize>,
}

/// The record of a request in flight, shared by every clone of the request (an `Arc`).
#[derive(Clone)]
pub struct RequestRecord(Arc<Shared>);

impl fmt::Debug for RequestRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestRecord")
            .field("id", &self.0.id)
            .finish_non_exhaustive()
    }
}

impl RequestRecord {
    /// Starts a record now, for a client speaking `client_protocol`.
    pub fn start(client_protocol: Protocol, observers: Arc<Observers>) -> Self {
        Self::start_at(
            Instant::now(),
            client_protocol,
            UpstreamTime::new(),
            observers,
        )
    }

    /// Starts a record that began at `started`, sharing the request's upstream-time accumulator.
    pub fn start_at(
        started: Instant,
        client_protocol: Protocol,
        upstream: UpstreamTime,
        observers: Arc<Observers>,
    ) -> Self {
        let since = started.elapsed();
        let started_at = SystemTime::now()
            .checked_sub(since)
            .unwrap_or_else(SystemTime::now);
        RequestRecord(Arc::new(Shared {
            id: RequestId::new(started_at),
            started,
            started_at,
            client_protocol,
            ttfb: AtomicU64::new(0),
            upstream,
            fields: Mutex::new(Fields::default()),
            done: AtomicBool::new(false),
            observers,
            trace: None,
            body_limit: None,
        }))
    }

    /// Keeps the first `max_bytes` of the request's body and of its answer (before it is
    /// shared); see [`Bodies`].
    pub fn with_bodies(mut self, max_bytes: usize) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.body_limit = Some(max_bytes);
            shared
                .fields
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .bodies = Some(BodyCapture::default());
        }
        self
    }

    /// Keeps the request body's first bytes, when bodies are kept. A body within the limit is
    /// shared, not copied; a longer one's head is copied, so the record never holds more than
    /// the limit.
    pub fn set_request_body(&self, body: &bytes::Bytes) {
        let Some(max) = self.0.body_limit else { return };
        let head = if body.len() <= max {
            body.clone()
        } else {
            bytes::Bytes::copy_from_slice(&body[..max])
        };
        self.with(|f| {
            if let Some(b) = &mut f.bodies {
                b.request = head;
                b.request_size = body.len() as u64;
            }
        });
    }

    /// Appends to the answer kept, when bodies are kept: a unary answer once, a stream's
    /// frames as they are sent (up to the limit; the size counts everything).
    pub fn append_response_body(&self, chunk: &[u8]) {
        let Some(max) = self.0.body_limit else { return };
        self.with(|f| {
            if let Some(b) = &mut f.bodies {
                let room = max.saturating_sub(b.response.len());
                b.response
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
                b.response_size += chunk.len() as u64;
            }
        });
    }

    /// Makes the record part of a trace (before it is shared).
    pub fn with_trace(mut self, trace: TraceContext) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.trace = Some(trace);
        }
        self
    }

    /// The trace context, when the request is traced.
    pub fn trace(&self) -> Option<&TraceContext> {
        self.0.trace.as_ref()
    }

    /// Milliseconds since the request started (an attempt's `offset_ms`).
    pub fn elapsed_ms(&self) -> u64 {
        millis(self.0.started.elapsed())
    }

    /// The request id (`x-octollm-request-id`).
    pub fn id(&self) -> &RequestId {
        &self.0.id
    }

    /// The request's upstream-time accumulator.
    pub fn upstream_time(&self) -> &UpstreamTime {
        &self.0.upstream
    }

    fn with(&self, f: impl FnOnce(&mut Fields)) {
        let mut guard = self.0.fields.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }

    /// The model the client asked for and whether it asked for a stream.
    pub fn set_model(&self, model: &str, stream: bool) {
        self.with(|f| {
            f.model = Some(model.into());
            f.stream = stream;
        });
    }

    /// The caller's org and key name.
    pub fn set_identity(&self, org: Arc<str>, user: Arc<str>) {
        self.with(|f| {
            f.org = Some(org);
            f.user = Some(user);
        });
    }

    /// The rule that matched.
    pub fn set_rule(&self, rule: Arc<str>) {
        self.with(|f| f.rule = Some(rule));
    }

    /// Appends an upstream attempt and makes its backend the record's backend.
    pub fn push_attempt(&self, attempt: Attempt) {
        self.with(|f| {
            if f.backend.as_deref() != Some(attempt.backend.as_str()) && attempt.status.is_some() {
                f.backend = Some(attempt.backend.as_str().into());
            }
            if f.attempts.len() < MAX_ATTEMPTS {
                f.attempts.push(attempt);
            }
        });
    }

    /// The backend being called, the protocol it is spoken to in and the model name sent.
    pub fn set_upstream(&self, backend: &str, protocol: Protocol, model: Option<&str>) {
        self.with(|f| {
            if f.backend.as_deref() != Some(backend) {
                f.backend = Some(backend.into());
            }
            f.upstream_protocol = Some(protocol);
            f.upstream_model = model.map(Into::into);
        });
    }

    /// Marks the first byte of the upstream's answer (only the first call counts).
    pub fn mark_first_byte(&self) {
        let ns = u64::try_from(self.0.started.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        let _ = self
            .0
            .ttfb
            .compare_exchange(0, ns + 1, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The usage the upstream reported (replaces an earlier snapshot) and, when known, the
    /// finish reason.
    pub fn set_usage(&self, usage: Option<Usage>, finish_reason: Option<&str>) {
        self.with(|f| {
            if usage.is_some() {
                f.usage = usage;
            }
            if let Some(r) = finish_reason {
                f.finish_reason = Some(r.to_owned());
            }
        });
    }

    /// Marks the answer as served from the response cache.
    pub fn set_cache_hit(&self) {
        self.with(|f| f.cache_hit = true);
    }

    /// The usage and finish reason recorded so far (what the response cache stores beside an
    /// answer, so that a hit reports the usage of the answer it replays).
    pub fn usage(&self) -> (Option<Usage>, Option<String>) {
        let f = self.0.fields.lock().unwrap_or_else(|e| e.into_inner());
        (f.usage, f.finish_reason.clone())
    }

    /// Records an error that did not end the request yet (a stream that failed after its head).
    pub fn set_error(&self, message: String) {
        self.with(|f| f.error = Some(message));
    }

    /// Whether the record has completed.
    pub fn is_complete(&self) -> bool {
        self.0.done.load(Ordering::Acquire)
    }

    /// Completes the record with the final status and error, and tells the observers. Only the
    /// first call counts.
    pub fn complete(&self, status: u16, error: Option<String>) {
        if self.0.done.swap(true, Ordering::AcqRel) {
            return;
        }
        let s = &self.0;
        let duration = s.started.elapsed();
        let ttfb = match s.ttfb.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n - 1)),
        };
        let overhead = duration.saturating_sub(s.upstream.get());
        let fields = std::mem::take(&mut *s.fields.lock().unwrap_or_else(|e| e.into_inner()));
        let record = Record {
            id: s.id.as_text().as_str().to_owned(),
            started_at: s.started_at,
            duration_ms: millis(duration),
            ttfb_ms: ttfb.map(millis),
            client_protocol: s.client_protocol,
            model: fields.model.map(|m| m.to_string()),
            org: fields.org.map(|m| m.to_string()),
            user: fields.user.map(|m| m.to_string()),
            rule: fields.rule.map(|m| m.to_string()),
            backend: fields.backend.map(|m| m.to_string()),
            upstream_protocol: fields.upstream_protocol,
            upstream_model: fields.upstream_model.map(|m| m.to_string()),
            stream: fields.stream,
            status,
            error: error.or(fields.error),
            attempts: fields.attempts,
            usage: fields.usage,
            finish_reason: fields.finish_reason,
            cost_usd: None,
            price: None,
            cache_hit: fields.cache_hit,
            overhead_ns: u64::try_from(overhead.as_nanos()).unwrap_or(u64::MAX),
            trace: s.trace.clone(),
            bodies: fields.bodies.map(|b| Bodies {
                request: b.request,
                request_size: b.request_size,
                response: b.response.into(),
                response_size: b.response_size,
            }),
        };
        s.observers.notify(record);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A request id: 128 bits, time-ordered (UUID version 7 layout), so ids sort by start time and
/// serve as the request log's cursor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u128);

impl RequestId {
    /// A fresh id for a request that started at `at`.
    pub fn new(at: SystemTime) -> Self {
        let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let rand = next_random();
        // 48 bits of milliseconds, version 7, 74 random bits, variant 0b10.
        let v = ((ms & 0xFFFF_FFFF_FFFF) << 80)
            | (0x7 << 76)
            | ((rand >> 64 & 0xFFF) << 64)
            | (0b10 << 62)
            | (rand & 0x3FFF_FFFF_FFFF_FFFF);
        RequestId(v)
    }
}

impl RequestId {
    /// The id's text (`8-4-4-4-12` lowercase hex digits, as [`Display`](fmt::Display) writes
    /// it), built without the formatting machinery: every request puts it in a header and in its
    /// record.
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use octo_core::record::RequestId;
    ///
    /// let id = RequestId::new(SystemTime::now());
    /// assert_eq!(id.as_text().as_str(), id.to_string());
    /// ```
    pub fn as_text(&self) -> RequestIdText {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; 36];
        let mut v = self.0;
        // Digits from the last, skipping the hyphens' places.
        for i in (0..36).rev() {
            if matches!(i, 8 | 13 | 18 | 23) {
                continue;
            }
            out[i] = HEX[(v & 0xF) as usize];
            v >>= 4;
        }
        RequestIdText(out)
    }
}

/// A [`RequestId`]'s text on the stack; see [`RequestId::as_text`].
#[derive(Clone, Copy)]
pub struct RequestIdText([u8; 36]);

impl RequestIdText {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and hyphens are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_text().as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// 128 random bits per call: a per-thread SplitMix64 stream seeded from the std hasher's random
/// keys, the clock and the thread. Ids need uniqueness, not unpredictability.
fn next_random() -> u128 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
            h.write(format!("{:?}", std::thread::current().id()).as_bytes());
            h.finish()
        });
    }
    fn splitmix(state: &Cell<u64>) -> u64 {
        let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    STATE.with(|s| (u128::from(splitmix(s)) << 64) | u128::from(splitmix(s)))
}

/// Completes a record when dropped, unless completed before: a client that goes away (the
/// front's future or body is dropped) is recorded as [`CLIENT_CLOSED`].
#[derive(Debug)]
pub struct CompleteOnDrop(Option<RequestRecord>);

impl CompleteOnDrop {
    /// Guards `record`.
    pub fn new(record: RequestRecord) -> Self {
        CompleteOnDrop(Some(record))
    }

    /// The guarded record.
    pub fn record(&self) -> Option<&RequestRecord> {
        self.0.as_ref()
    }

    /// Completes now with `status` and `error`.
    pub fn complete(&mut self, status: u16, error: Option<String>) {
        if let Some(r) = self.0.take() {
            r.complete(status, error);
        }
    }
}

impl Drop for CompleteOnDrop {
    fn drop(&mut self) {
        self.complete(
            CLIENT_CLOSED,
            Some("the client closed the connection before the answer was complete".into()),
        );
    }
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s).map_err(D::Error::custom)
    }
}

mod protocol_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::protocol::Protocol;

    pub(super) fn serialize<S: Serializer>(p: &Protocol, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.config_name())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

mod opt_protocol_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::protocol::Protocol;

    pub(super) fn serialize<S: Serializer>(p: &Option<Protocol>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_str(p.config_name()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Protocol>, D::Error> {
        let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        s.map(|s| s.parse().map_err(D::Error::custom)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Keep(Mutex<Vec<Arc<Record>>>);
    impl Observer for Keep {
        fn on_complete(&self, record: &Arc<Record>) {
            self.0.lock().unwrap().push(record.clone());
        }
    }

    fn observed() -> (Arc<Keep>, Arc<Observers>) {
        let keep = Arc::new(Keep(Mutex::new(Vec::new())));
        let observers = Arc::new(Observers::new().with(keep.clone()).with_pricing(Arc::new(
            |_r: &Record| {
                let p = Price {
                    input: 1.0,
                    output: 2.0,
                    ..Price::default()
                };
                Some((0.5, p))
            },
        )));
        (keep, observers)
    }

    #[test]
    fn completes_once_with_what_engines_wrote() {
        let (keep, observers) = observed();
        let r = RequestRecord::start(Protocol::Anthropic, observers);
        r.set_model("claude", true);
        r.set_identity("acme".into(), "ci".into());
        r.push_attempt(Attempt {
            backend: "a".into(),
            key: Some("#1".into()),
            status: Some(503),
            offset_ms: 0,
            duration_ms: 3,
            error: Some("busy".into()),
            span_id: None,
        });
        r.set_upstream("b", Protocol::OpenAiChat, Some("gpt"));
        r.mark_first_byte();
        r.set_usage(
            Some(Usage {
                input_tokens: 3,
                output_tokens: 4,
                ..Usage::default()
            }),
            Some("stop"),
        );
        r.clone().complete(200, None);
        r.complete(500, None);
        let got = keep.0.lock().unwrap();
        assert_eq!(got.len(), 1);
        let rec = &got[0];
        assert_eq!(rec.status, 200);
        assert_eq!(rec.backend.as_deref(), Some("b"));
        assert_eq!(rec.org.as_deref(), Some("acme"));
        assert_eq!(rec.upstream_protocol, Some(Protocol::OpenAiChat));
        assert_eq!(rec.attempts.len(), 1);
        assert!(rec.ttfb_ms.is_some());
        assert_eq!(rec.cost_usd, Some(0.5));
        assert_eq!(rec.finish_reason.as_deref(), Some("stop"));
        let json = serde_json::to_value(&**rec).unwrap();
        assert_eq!(json["client_protocol"], "anthropic");
        assert_eq!(json["upstream_protocol"], "openai_chat");
        assert!(json["started_at"].as_str().unwrap().ends_with('Z'));
        let back: Record = serde_json::from_value(json).unwrap();
        assert_eq!(back.id, rec.id);
        assert_eq!(back.started_at_ms(), rec.started_at_ms());
    }

    #[test]
    fn bodies_are_kept_to_the_limit_only_when_asked() {
        let (keep, observers) = observed();
        let r = RequestRecord::start(Protocol::OpenAiChat, observers.clone()).with_bodies(8);
        r.set_request_body(&bytes::Bytes::from_static(b"0123456789abc"));
        r.append_response_body(b"hello");
        r.append_response_body(b" world");
        r.complete(200, None);
        let off = RequestRecord::start(Protocol::OpenAiChat, observers);
        off.set_request_body(&bytes::Bytes::from_static(b"{}"));
        off.append_response_body(b"{}");
        off.complete(200, None);
        let got = keep.0.lock().unwrap();
        let b = got[0].bodies.as_ref().unwrap();
        assert_eq!((&b.request[..], b.request_size), (&b"01234567"[..], 13));
        assert_eq!((&b.response[..], b.response_size), (&b"hello wo"[..], 11));
        let json = serde_json::to_value(&*got[0]).unwrap();
        assert_eq!(json["request_body"], "01234567");
        assert_eq!(json["response_body_bytes"], 11);
        let back: Record = serde_json::from_value(json).unwrap();
        assert_eq!(back.bodies.as_ref(), Some(b));
        assert_eq!(got[1].bodies, None);
        let json = serde_json::to_value(&*got[1]).unwrap();
        assert!(json.get("request_body").is_none());
        assert_eq!(serde_json::from_value::<Record>(json).unwrap().bodies, None);
    }

    #[test]
    fn no_usage_means_no_cost_and_a_dropped_guard_is_499() {
        let (keep, observers) = observed();
        let r = RequestRecord::start(Protocol::OpenAiChat, observers);
        drop(CompleteOnDrop::new(r.clone()));
        assert!(r.is_complete());
        let got = keep.0.lock().unwrap();
        assert_eq!(got[0].status, CLIENT_CLOSED);
        assert_eq!(got[0].cost_usd, None);
        assert_eq!(got[0].usage, None);
    }

    #[test]
    fn ids_are_uuid_v7_shaped_unique_and_time_ordered() {
        let t0 = SystemTime::now();
        let a = RequestId::new(t0);
        let b = RequestId::new(t0 + Duration::from_millis(2));
        assert!(a < b);
        let s = a.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "7");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(RequestId::new(t0)));
        }
    }

    #[test]
    fn request_id_text_is_the_formatted_uuid() {
        let formatted = |v: u128| {
            format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                (v >> 96) as u32,
                (v >> 80) as u16,
                (v >> 64) as u16,
                (v >> 48) as u16,
                v & 0xFFFF_FFFF_FFFF
            )
        };
        let t0 = UNIX_EPOCH + Duration::from_millis(1_764_000_000_000);
        for v in [0, 1, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210]
            .into_iter()
            .chain((0..100).map(|_| RequestId::new(t0).0))
        {
            let id = RequestId(v);
            assert_eq!(id.as_text().as_str(), formatted(v));
            assert_eq!(id.to_string(), formatted(v));
        }
    }
}
