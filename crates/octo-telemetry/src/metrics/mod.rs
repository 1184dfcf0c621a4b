//! Prometheus metrics of finished requests: [`Metrics`] is an [`Observer`] that counts every
//! [`Record`] in atomics and renders them, with whatever registered [`Collect`] callbacks add, in
//! the Prometheus text format.
//!
//! # Series and their bounds
//!
//! The model and backend labels only take configured names ([`Metrics::new`]), `other` (anything
//! else) or `none` (the record has none), so the number of series is bounded by the config: a
//! client asking for a random model adds to `model="other"`. No label carries a key. Status is
//! the HTTP status as a number.
//!
//! | family | type | labels |
//! |---|---|---|
//! | `octollm_requests_total` | counter | `model, backend, client_protocol, status` |
//! | `octollm_tokens_total` | counter | `model, backend, type` (`input` uncached, `cache_read`, `cache_write`, `output` incl. reasoning, `reasoning`) |
//! | `octollm_cost_usd_total` | counter | `model, backend` |
//! | `octollm_unpriced_requests_total` | counter | `model`: requests with usage but no known price |
//! | `octollm_request_duration_seconds` | histogram | `model` |
//! | `octollm_time_to_first_token_seconds` | histogram | `model`: streams that received a first byte |
//! | `octollm_gateway_overhead_seconds` | histogram | none |
//! | `octollm_upstream_attempts_total` | counter | `backend, outcome` (see [`outcome`]) |
//!
//! Tokens of answers served from the response cache are not counted (no upstream spent them).
//!
//! # Hot path
//!
//! Label sets resolve to atomics through maps built once at start: per request, two map lookups
//! (model, backend), one read-locked scan of the few statuses seen for that model, backend and
//! protocol, and a handful of relaxed atomic adds. Nothing allocates after a series' first use.
//!
//! # Other components' metrics
//!
//! Counters and gauges owned elsewhere (the request store's dropped records, the backends'
//! breaker and key states) are read at scrape time through [`Collect`] callbacks, so this crate
//! depends on none of them:
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use octo_telemetry::metrics::{Metrics, MetricKind};
//!
//! let metrics = Metrics::new(["gpt-4o"], ["oa"]);
//! let dropped = Arc::new(AtomicU64::new(3));
//! let d = dropped.clone();
//! metrics.counter_fn("octollm_log_records_dropped_total", "Records the request log dropped.",
//!     move || d.load(Ordering::Relaxed));
//! metrics.register_fn(|out| {
//!     out.family("octollm_backend_key_state", "1 for the state each key is in.", MetricKind::Gauge)
//!         .sample(&[("backend", "oa"), ("key", "#1"), ("state", "closed")], 1.0);
//! });
//! let text = metrics.render();
//! assert!(text.contains("octollm_log_records_dropped_total 3\n"));
//! assert!(text.contains("octollm_backend_key_state{backend=\"oa\",key=\"#1\",state=\"closed\"} 1\n"));
//! ```

mod histogram;
mod labels;
pub mod text;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use octo_core::Protocol;
use octo_core::record::{Attempt, Observer, Record};

use histogram::Histogram;
pub use histogram::{DURATION_BUCKETS, OVERHEAD_BUCKETS, TTFT_BUCKETS};
use labels::Bounded;
pub use labels::{NONE, OTHER};
pub use text::{CONTENT_TYPE, Exposition, Family, MetricKind};

/// Something that adds samples to every scrape; see the [module docs](self).
///
/// It runs on the scraping task, so it may take locks of its own, but should be quick. Each
/// family name may be written by one collector only (a repeated family is skipped).
pub trait Collect: Send + Sync + 'static {
    /// Writes this collector's families into `out`.
    fn collect(&self, out: &mut Exposition);
}

impl<F> Collect for F
where
    F: Fn(&mut Exposition) + Send + Sync + 'static,
{
    fn collect(&self, out: &mut Exposition) {
        self(out)
    }
}

/// The `type` label values of `octollm_tokens_total`, in the order of [`Cell::tokens`].
const TOKEN_TYPES: [&str; 5] = ["input", "cache_read", "cache_write", "output", "reasoning"];

/// The `outcome` label values of `octollm_upstream_attempts_total`.
const OUTCOMES: [&str; 3] = ["ok", "error", "skipped"];

/// Client protocol slots: the seven protocols, then `other` for variants added later.
const PROTOCOLS: [&str; 8] = [
    Protocol::OpenAiChat.config_name(),
    Protocol::OpenAiResponses.config_name(),
    Protocol::Anthropic.config_name(),
    Protocol::Gemini.config_name(),
    Protocol::ModelList.config_name(),
    Protocol::OpenAiEmbeddings.config_name(),
    Protocol::GeminiEmbeddings.config_name(),
    OTHER,
];

fn protocol_index(p: Protocol) -> usize {
    match p {
        Protocol::OpenAiChat => 0,
        Protocol::OpenAiResponses => 1,
        Protocol::Anthropic => 2,
        Protocol::Gemini => 3,
        Protocol::ModelList => 4,
        Protocol::OpenAiEmbeddings => 5,
        Protocol::GeminiEmbeddings => 6,
        _ => 7,
    }
}

/// How an upstream attempt ended, as the `outcome` label says it:
///
/// - `ok`: the upstream answered with a status below 400;
/// - `error`: the upstream answered with a status of 400 or more, or the attempt failed with the
///   status of its error (a connect error or timeout is recorded as 502/504 by the engines);
/// - `skipped`: the attempt has no status: the backend was not called (breaker open, no key
///   available).
///
/// ```
/// use octo_core::record::Attempt;
/// use octo_telemetry::metrics::outcome;
///
/// let a = Attempt { backend: "oa".into(), key: None, status: Some(429), offset_ms: 0,
///     duration_ms: 12, error: Some("rate limited".into()), span_id: None };
/// assert_eq!(outcome(&a), "error");
/// ```
pub fn outcome(attempt: &Attempt) -> &'static str {
    OUTCOMES[outcome_index(attempt)]
}

fn outcome_index(attempt: &Attempt) -> usize {
    match attempt.status {
        Some(s) if s < 400 => 0,
        Some(_) => 1,
        None => 2,
    }
}

/// The series of one (model, backend) pair, allocated on its first request.
#[derive(Default)]
struct Cell {
    /// Per client protocol: the statuses seen and their counts.
    requests: [RwLock<Vec<(u16, AtomicU64)>>; PROTOCOLS.len()],
    tokens: [AtomicU64; TOKEN_TYPES.len()],
    /// USD as `f64` bits.
    cost: AtomicU64,
    /// Whether usage or cost was ever recorded (tokens and cost are rendered only then).
    used: AtomicBool,
}

impl Cell {
    fn count_request(&self, protocol: usize, status: u16) {
        let lock = &self.requests[protocol];
        {
            let seen = lock.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, n)) = seen.iter().find(|(s, _)| *s == status) {
                n.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut seen = lock.write().unwrap_or_else(|e| e.into_inner());
        match seen.iter().find(|(s, _)| *s == status) {
            Some((_, n)) => {
                n.fetch_add(1, Ordering::Relaxed);
            }
            None => seen.push((status, AtomicU64::new(1))),
        }
    }

    fn add_cost(&self, usd: f64) {
        let _ = self
            .cost
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + usd).to_bits())
            });
    }
}

/// The gateway's request metrics; see the [module docs](self).
pub struct Metrics {
    models: Bounded,
    backends: Bounded,
    /// `models.len() × backends.len()`, row-major by model.
    cells: Box<[OnceLock<Box<Cell>>]>,
    duration: Box<[Histogram]>,
    ttft: Box<[Histogram]>,
    overhead: Histogram,
    unpriced: Box<[AtomicU64]>,
    /// Per backend, per outcome.
    attempts: Box<[[AtomicU64; OUTCOMES.len()]]>,
    collectors: RwLock<Vec<Arc<dyn Collect>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("models", &(self.models.len() - 2))
            .field("backends", &(self.backends.len() - 2))
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics whose `model` label takes the names in `models` (the models clients may ask for)
    /// and whose `backend` label takes the names in `backends`; any other value is `other`.
    pub fn new<M, B>(models: M, backends: B) -> Self
    where
        M: IntoIterator,
        M::Item: AsRef<str>,
        B: IntoIterator,
        B::Item: AsRef<str>,
    {
        let models = Bounded::new(models);
        let backends = Bounded::new(backends);
        let per_model =
            |bounds: &'static [f64]| (0..models.len()).map(|_| Histogram::new(bounds)).collect();
        Metrics {
            cells: (0..models.len() * backends.len())
                .map(|_| OnceLock::new())
                .collect(),
            duration: per_model(DURATION_BUCKETS),
            ttft: per_model(TTFT_BUCKETS),
            overhead: Histogram::new(OVERHEAD_BUCKETS),
            unpriced: (0..models.len()).map(|_| AtomicU64::new(0)).collect(),
            attempts: (0..backends.len()).map(|_| Default::default()).collect(),
            collectors: RwLock::new(Vec::new()),
            models,
            backends,
        }
    }

    /// New, empty metrics for another set of names (after a config reload), keeping the
    /// registered collectors. Counters restart from zero, which Prometheus' `rate()` and
    /// `increase()` treat as a reset.
    pub fn reconfigured<M, B>(&self, models: M, backends: B) -> Self
    where
        M: IntoIterator,
        M::Item: AsRef<str>,
        B: IntoIterator,
        B::Item: AsRef<str>,
    {
        let next = Metrics::new(models, backends);
        *next.collectors.write().unwrap_or_else(|e| e.into_inner()) = self.collectors_snapshot();
        next
    }

    /// Adds a collector, called at every scrape after the request metrics.
    pub fn register(&self, collector: Arc<dyn Collect>) {
        self.collectors
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(collector);
    }

    /// Adds a closure as a collector.
    pub fn register_fn(&self, f: impl Fn(&mut Exposition) + Send + Sync + 'static) {
        self.register(Arc::new(f));
    }

    /// Exports an unlabelled counter read from `value` at scrape time (its name should end in
    /// `_total`).
    pub fn counter_fn(
        &self,
        name: &'static str,
        help: &'static str,
        value: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.register_fn(move |out| {
            out.family(name, help, MetricKind::Counter)
                .sample_u64(&[], value());
        });
    }

    /// Exports an unlabelled gauge read from `value` at scrape time.
    pub fn gauge_fn(
        &self,
        name: &'static str,
        help: &'static str,
        value: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.register_fn(move |out| {
            out.family(name, help, MetricKind::Gauge)
                .sample(&[], value());
        });
    }

    fn collectors_snapshot(&self) -> Vec<Arc<dyn Collect>> {
        self.collectors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn cell(&self, model: usize, backend: usize) -> &Cell {
        self.cells[model * self.backends.len() + backend].get_or_init(Box::default)
    }

    /// Counts one finished request (what [`Observer::on_complete`] does).
    pub fn record(&self, r: &Record) {
        let m = self.models.index(r.model.as_deref());
        let b = self.backends.index(r.backend.as_deref());
        let cell = self.cell(m, b);
        cell.count_request(protocol_index(r.client_protocol), r.status);
        if let Some(u) = &r.usage
            && !r.cache_hit
        {
            let add = |i: usize, n: u64| {
                if n > 0 {
                    cell.tokens[i].fetch_add(n, Ordering::Relaxed);
                }
            };
            add(0, u.input_tokens);
            add(1, u.cache_read_tokens);
            add(2, u.cache_write_tokens);
            add(3, u.output_tokens);
            add(4, u.reasoning_tokens);
            cell.used.store(true, Ordering::Relaxed);
            if r.cost_usd.is_none() {
                self.unpriced[m].fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(c) = r.cost_usd
            && c.is_finite()
            && c > 0.0
        {
            cell.add_cost(c);
            cell.used.store(true, Ordering::Relaxed);
        }
        self.duration[m].record_us(r.duration_ms.saturating_mul(1000));
        if r.stream
            && let Some(t) = r.ttfb_ms
        {
            self.ttft[m].record_us(t.saturating_mul(1000));
        }
        self.overhead.record_us(r.overhead_ns / 1_000);
        for a in &r.attempts {
            let b = self.backends.index(Some(&a.backend));
            self.attempts[b][outcome_index(a)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The metrics in the Prometheus text format, version 0.0.4 (serve with [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = Exposition::new();
        self.write_requests(&mut out);
        self.write_usage(&mut out);
        self.write_histograms(&mut out);
        self.write_attempts(&mut out);
        for c in self.collectors_snapshot() {
            c.collect(&mut out);
        }
        out.finish()
    }

    fn cells(&self) -> impl Iterator<Item = (&str, &str, &Cell)> {
        let nb = self.backends.len();
        self.cells.iter().enumerate().filter_map(move |(i, c)| {
            c.get()
                .map(|c| (self.models.name(i / nb), self.backends.name(i % nb), &**c))
        })
    }

    fn write_requests(&self, out: &mut Exposition) {
        let mut f = out.family(
            "octollm_requests_total",
            "Finished requests by requested model, backend, client protocol and final status.",
            MetricKind::Counter,
        );
        let mut status = String::new();
        for (model, backend, cell) in self.cells() {
            for (p, lock) in cell.requests.iter().enumerate() {
                let mut seen: Vec<(u16, u64)> = lock
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .map(|(s, n)| (*s, n.load(Ordering::Relaxed)))
                    .collect();
                seen.sort_unstable();
                for (s, n) in seen {
                    status.clear();
                    status.push_str(&s.to_string());
                    f.sample_u64(
                        &[
                            ("model", model),
                            ("backend", backend),
                            ("client_protocol", PROTOCOLS[p]),
                            ("status", &status),
                        ],
                        n,
                    );
                }
            }
        }
    }

    fn write_usage(&self, out: &mut Exposition) {
        let mut f = out.family(
            "octollm_tokens_total",
            "Tokens reported by upstreams: input (uncached), cache_read, cache_write, output (reasoning included) and reasoning.",
            MetricKind::Counter,
        );
        for (model, backend, cell) in self.cells() {
            if cell.used.load(Ordering::Relaxed) {
                for (i, t) in TOKEN_TYPES.iter().enumerate() {
                    let n = cell.tokens[i].load(Ordering::Relaxed);
                    f.sample_u64(&[("model", model), ("backend", backend), ("type", t)], n);
                }
            }
        }
        let mut f = out.family(
            "octollm_cost_usd_total",
            "Cost of priced requests in US dollars.",
            MetricKind::Counter,
        );
        for (model, backend, cell) in self.cells() {
            if cell.used.load(Ordering::Relaxed) {
                let usd = f64::from_bits(cell.cost.load(Ordering::Relaxed));
                f.sample(&[("model", model), ("backend", backend)], usd);
            }
        }
        let mut f = out.family(
            "octollm_unpriced_requests_total",
            "Requests with token usage but no known price (their cost is null, never zero).",
            MetricKind::Counter,
        );
        for (i, n) in self.unpriced.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 || self.models.is_configured(i) {
                f.sample_u64(&[("model", self.models.name(i))], n);
            }
        }
    }

    fn write_histograms(&self, out: &mut Exposition) {
        for (name, help, series) in [
            (
                "octollm_request_duration_seconds",
                "From the request head to the end of the answer, by requested model.",
                &self.duration,
            ),
            (
                "octollm_time_to_first_token_seconds",
                "Streams: from the request head to the upstream's first byte, by requested model.",
                &self.ttft,
            ),
        ] {
            let mut f = out.start(name, help, "histogram");
            for (i, h) in series.iter().enumerate() {
                if h.count() > 0 {
                    h.write(&mut f, &[("model", self.models.name(i))]);
                }
            }
        }
        let mut f = out.start(
            "octollm_gateway_overhead_seconds",
            "The gateway's own time per request: its duration minus the time spent waiting on upstreams.",
            "histogram",
        );
        self.overhead.write(&mut f, &[]);
    }

    fn write_attempts(&self, out: &mut Exposition) {
        let mut f = out.family(
            "octollm_upstream_attempts_total",
            "Upstream attempts by backend and outcome (ok: status below 400; error: status 400 or more; skipped: not called).",
            MetricKind::Counter,
        );
        for (b, counts) in self.attempts.iter().enumerate() {
            let loaded = counts.each_ref().map(|c| c.load(Ordering::Relaxed));
            if self.backends.is_configured(b) || loaded.iter().any(|&n| n > 0) {
                for (o, n) in OUTCOMES.iter().zip(loaded) {
                    f.sample_u64(&[("backend", self.backends.name(b)), ("outcome", o)], n);
                }
            }
        }
    }
}

impl Observer for Metrics {
    fn on_complete(&self, record: &Arc<Record>) {
        self.record(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_counted_per_protocol() {
        let c = Cell::default();
        c.count_request(0, 200);
        c.count_request(0, 200);
        c.count_request(0, 502);
        c.count_request(2, 200);
        let seen = c.requests[0].read().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].1.load(Ordering::Relaxed), 2);
        assert_eq!(c.requests[2].read().unwrap().len(), 1);
    }

    #[test]
    fn protocol_names_are_config_names() {
        for p in Protocol::CHAT_PROTOCOLS {
            assert_eq!(PROTOCOLS[protocol_index(p)], p.config_name());
        }
    }
}
