//! OpenTelemetry traces over OTLP/HTTP: [`OtlpExporter`] is an [`Observer`] that queues each
//! finished, sampled, traced [`Record`] (an `Arc` clone and a `try_send`: it never blocks, and a
//! full queue drops and counts), and [`OtlpWorker`] is the background task that turns queued
//! records into spans ([`spans`]) and POSTs them in batches, protobuf-encoded
//! (`application/x-protobuf`), to `<endpoint>/v1/traces`.
//!
//! Batches go out when [`MAX_BATCH`] records are waiting or every [`BATCH_DELAY`] (the
//! OpenTelemetry SDK's defaults); each POST is bounded by `telemetry.otlp_timeout`; a failed
//! export is logged and its records counted as dropped, not retried (the SDK's default too).
//! [`OtlpWorker::shutdown`] exports what is queued within a deadline.
//!
//! Spans are built after the request, from the record, rather than with a tracing SDK during it:
//! the request path only carries the ids decided at its start ([`TraceContext`]), and the exporter
//! needs no span processor, context propagation or runtime hooks. Without an endpoint nothing is
//! started or installed.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use octo_core::Protocol;
//! use octo_telemetry::TelemetryConfig;
//! use octo_telemetry::otlp::OtlpExporter;
//!
//! let off = TelemetryConfig::default();
//! assert!(OtlpExporter::start(&off, [("oa", Protocol::OpenAiChat)]).unwrap().is_none());
//!
//! let on = TelemetryConfig { otlp_endpoint: Some("http://127.0.0.1:9".into()), ..off };
//! let (exporter, worker) = OtlpExporter::start(&on, [("oa", Protocol::OpenAiChat)]).unwrap().unwrap();
//! // observers = observers.with(exporter.clone()); metrics.register(exporter.clone());
//! worker.shutdown(Duration::from_secs(1)).await;
//! assert_eq!(exporter.dropped(), 0);
//! # }
//! ```

pub mod semconv;
pub mod spans;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use octo_core::Protocol;
use octo_core::record::{Observer, Record, TraceContext};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::metrics::{Collect, Exposition, MetricKind};
use crate::{TelemetryConfig, TelemetryError};
use spans::SpanBuilder;

/// Records waiting for export before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 2048;
/// Records per export request.
pub const MAX_BATCH: usize = 512;
/// The longest a record waits before its batch is sent.
pub const BATCH_DELAY: Duration = Duration::from_secs(5);

/// Which traces are kept: those the client's `traceparent` marks sampled, and a share
/// (`telemetry.sample`) of those the gateway starts, chosen from the trace id so every
/// component that sees the id decides alike (as OpenTelemetry's `TraceIdRatioBased`).
///
/// ```
/// use octo_core::record::TraceContext;
/// use octo_telemetry::otlp::Sampler;
///
/// let fresh = TraceContext::continue_or_start(None);
/// assert!(Sampler::new(1.0).keep(&fresh));
/// assert!(!Sampler::new(0.0).keep(&fresh));
/// let client = TraceContext::continue_or_start(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
/// assert!(Sampler::new(0.0).keep(&client)); // the client decided
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    ratio: f64,
}

impl Sampler {
    /// Keeps `ratio` (0 to 1) of new traces.
    pub fn new(ratio: f64) -> Self {
        Sampler {
            ratio: ratio.clamp(0.0, 1.0),
        }
    }

    /// Whether `trace` is exported. The gateway can apply it when a request starts, to send
    /// upstream a `traceparent` whose sampled flag agrees.
    pub fn keep(&self, trace: &TraceContext) -> bool {
        if !trace.sampled {
            return false;
        }
        if trace.parent_span_id.is_some() || self.ratio >= 1.0 {
            return true;
        }
        // The trace id's last 16 hex digits, as OpenTelemetry's ratio sampler reads them.
        let tail = trace.trace_id.get(16..).unwrap_or("");
        let Ok(n) = u64::from_str_radix(tail, 16) else {
            return false;
        };
        (n >> 11) < (self.ratio * (1u64 << 53) as f64) as u64
    }
}

impl TelemetryConfig {
    /// The sampler `sample` describes.
    pub fn sampler(&self) -> Sampler {
        Sampler::new(self.sample)
    }
}

#[derive(Debug, Default)]
struct Stats {
    queue_full: AtomicU64,
    export_failed: AtomicU64,
    invalid: AtomicU64,
    spans: AtomicU64,
}

/// The tracing [`Observer`]; see the [module docs](self).
#[derive(Debug)]
pub struct OtlpExporter {
    tx: mpsc::Sender<Arc<Record>>,
    sampler: Sampler,
    stats: Arc<Stats>,
}

/// The export task; hold it to [`shutdown`](OtlpWorker::shutdown) at exit.
#[derive(Debug)]
pub struct OtlpWorker {
    stop: oneshot::Sender<Instant>,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpExporter {
    /// Starts the export task when `config` has an endpoint (`Ok(None)` otherwise: install no
    /// observer). `backends` names each backend's protocol, for `gen_ai.provider.name` on attempt
    /// spans. Must be called within a tokio runtime.
    pub fn start<I, S>(
        config: &TelemetryConfig,
        backends: I,
    ) -> Result<Option<(Arc<OtlpExporter>, OtlpWorker)>, TelemetryError>
    where
        I: IntoIterator<Item = (S, Protocol)>,
        S: Into<String>,
    {
        let Some(url) = config.traces_url() else {
            return Ok(None);
        };
        config.validate()?;
        let mut headers = HeaderMap::new();
        for (k, v) in &config.otlp_headers {
            let (Ok(k), Ok(mut v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) else {
                return Err(TelemetryError::config(format!(
                    "telemetry.otlp_headers: `{k}` is not a valid header"
                )));
            };
            v.set_sensitive(true);
            headers.insert(k, v);
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        let client = reqwest::Client::builder()
            .timeout(config.otlp_timeout)
            .default_headers(headers)
            .build()
            .map_err(|e| TelemetryError::config(format!("cannot build the OTLP client: {e}")))?;
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (stop, stopped) = oneshot::channel();
        let stats = Arc::new(Stats::default());
        let export = Export {
            client,
            url,
            builder: SpanBuilder::new(backends),
            resource: resource(&config.service_name),
            stats: stats.clone(),
        };
        let task = tokio::spawn(export.run(rx, stopped));
        Ok(Some((
            Arc::new(OtlpExporter {
                tx,
                sampler: config.sampler(),
                stats,
            }),
            OtlpWorker { stop, task },
        )))
    }

    /// Records not exported: the queue was full, the export failed, or the trace ids were
    /// invalid.
    pub fn dropped(&self) -> u64 {
        self.stats.queue_full.load(Ordering::Relaxed)
            + self.stats.export_failed.load(Ordering::Relaxed)
            + self.stats.invalid.load(Ordering::Relaxed)
    }

    /// Spans the collector accepted.
    pub fn exported_spans(&self) -> u64 {
        self.stats.spans.load(Ordering::Relaxed)
    }
}

impl Observer for OtlpExporter {
    fn on_complete(&self, record: &Arc<Record>) {
        let Some(trace) = &record.trace else { return };
        if !self.sampler.keep(trace) {
            return;
        }
        if self.tx.try_send(record.clone()).is_err() {
            self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Exports `octollm_trace_records_dropped_total{reason}` (`queue_full`, `export_failed`,
/// `invalid`) and `octollm_trace_spans_exported_total`.
impl Collect for OtlpExporter {
    fn collect(&self, out: &mut Exposition) {
        let s = &self.stats;
        out.family(
            "octollm_trace_records_dropped_total",
            "Traced requests whose spans were not exported.",
            MetricKind::Counter,
        )
        .sample_u64(
            &[("reason", "queue_full")],
            s.queue_full.load(Ordering::Relaxed),
        )
        .sample_u64(
            &[("reason", "export_failed")],
            s.export_failed.load(Ordering::Relaxed),
        )
        .sample_u64(&[("reason", "invalid")], s.invalid.load(Ordering::Relaxed));
        out.family(
            "octollm_trace_spans_exported_total",
            "Spans accepted by the OTLP collector.",
            MetricKind::Counter,
        )
        .sample_u64(&[], s.spans.load(Ordering::Relaxed));
    }
}

impl OtlpWorker {
    /// Exports what is queued, giving up at `deadline` from now, and stops the task.
    pub async fn shutdown(self, deadline: Duration) {
        let until = Instant::now() + deadline;
        let OtlpWorker { stop, mut task } = self;
        let _ = stop.send(until);
        if tokio::time::timeout_at(until, &mut task).await.is_err() {
            task.abort();
        }
    }
}

fn resource(service_name: &str) -> Resource {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_owned())),
        }),
        ..KeyValue::default()
    };
    Resource {
        attributes: vec![
            kv(semconv::SERVICE_NAME, service_name),
            kv(semconv::SERVICE_VERSION, env!("CARGO_PKG_VERSION")),
        ],
        ..Resource::default()
    }
}

/// The export task's state.
struct Export {
    client: reqwest::Client,
    url: String,
    builder: SpanBuilder,
    resource: Resource,
    stats: Arc<Stats>,
}

impl Export {
    async fn run(self, mut rx: mpsc::Receiver<Arc<Record>>, mut stop: oneshot::Receiver<Instant>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut tick = tokio::time::interval(BATCH_DELAY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A dropped worker handle leaves the task running until the queue's senders are gone.
        let mut stoppable = true;
        loop {
            tokio::select! {
                biased;
                until = &mut stop, if stoppable => {
                    let Ok(until) = until else {
                        stoppable = false;
                        continue;
                    };
                    rx.close();
                    while let Some(r) = rx.recv().await {
                        batch.push(r);
                        if batch.len() >= MAX_BATCH {
                            self.send_until(&mut batch, until).await;
                        }
                    }
                    self.send_until(&mut batch, until).await;
                    return;
                }
                r = rx.recv() => match r {
                    Some(r) => {
                        batch.push(r);
                        if batch.len() >= MAX_BATCH {
                            self.send(&mut batch).await;
                        }
                    }
                    None => {
                        self.send(&mut batch).await;
                        return;
                    }
                },
                _ = tick.tick() => self.send(&mut batch).await,
            }
        }
    }

    async fn send_until(&self, batch: &mut Vec<Arc<Record>>, until: Instant) {
        let n = batch.len() as u64;
        if tokio::time::timeout_at(until, self.send(batch))
            .await
            .is_err()
        {
            batch.clear();
            self.stats.export_failed.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Exports and empties `batch`.
    async fn send(&self, batch: &mut Vec<Arc<Record>>) {
        if batch.is_empty() {
            return;
        }
        let records = batch.len() as u64;
        let mut spans = Vec::with_capacity(batch.len() * 2);
        for r in batch.drain(..) {
            match self.builder.spans(&r) {
                Some(s) => spans.extend(s),
                None => {
                    self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if spans.is_empty() {
            return;
        }
        let n = spans.len() as u64;
        let body = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "octollm".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..InstrumentationScope::default()
                    }),
                    spans,
                    schema_url: semconv::SCHEMA_URL.into(),
                }],
                schema_url: String::new(),
            }],
        }
        .encode_to_vec();
        let result = self.client.post(&self.url).body(body).send().await;
        let failure = match result {
            Ok(resp) if resp.status().is_success() => None,
            Ok(resp) => Some(format!("the collector answered {}", resp.status())),
            Err(e) if e.is_timeout() => Some("the collector did not answer in time".into()),
            Err(e) => Some(format!("cannot reach the collector: {e}")),
        };
        match failure {
            None => {
                self.stats.spans.fetch_add(n, Ordering::Relaxed);
            }
            Some(why) => {
                self.stats
                    .export_failed
                    .fetch_add(records, Ordering::Relaxed);
                tracing::warn!(target: "octollm::otlp", "{records} traced requests not exported: {why}");
            }
        }
    }
}
