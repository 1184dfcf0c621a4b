//! OctoLLM's telemetry: what the gateway tells operators about the requests it serves.
//!
//! Each part is an [`Observer`](octo_core::record::Observer) of finished request
//! [`Record`](octo_core::record::Record)s, so the engines know nothing about it and a part that is
//! off costs nothing (it is simply not installed):
//!
//! - [`metrics::Metrics`]: Prometheus counters and histograms in atomics, rendered in the text
//!   format for `GET /metrics`, plus scrape-time callbacks for other components' figures;
//! - [`otlp::OtlpExporter`]: one span per request and one per upstream attempt, named and
//!   attributed by the OpenTelemetry GenAI conventions ([`otlp::semconv`]), exported over
//!   OTLP/HTTP by a background task fed by a bounded queue;
//! - [`access::AccessLog`]: one structured `tracing` event per request (target `octollm::access`),
//!   printed as one JSON line by [`logging::init_logging`] with [`logging::LogFormat::Json`].
//!
//! The configuration the server embeds is [`TelemetryConfig`].

pub mod access;
mod config;
pub mod logging;
pub mod metrics;
pub mod otlp;

pub use config::{TelemetryConfig, TelemetryError, TelemetryErrorKind};
