//! The access log: one structured `tracing` event per finished request, at info level with target
//! `octollm::access`, so any subscriber can print, filter or ship it; with
//! [`LogFormat::Json`](crate::logging::LogFormat::Json) each is one JSON line.
//!
//! The event's fields are the record's: `id`, `client_protocol`, `model`, `org`, `user` (the key's
//! name, never the key), `rule`, `backend`, `upstream_model`, `stream`, `status`, `duration_ms`,
//! `ttfb_ms`, `overhead_us`, `input_tokens` (uncached), `cache_read_tokens`, `cache_write_tokens`,
//! `output_tokens`, `reasoning_tokens`, `cost_usd`, `cache_hit`, `attempts` (how many) and
//! `error`; a field whose value is unknown is left out. Filter it with
//! `OCTOLLM_LOG=info,octollm::access=off` to silence it.
//!
//! Formatting happens on the completing task, like any log line; with
//! [`init_logging`](crate::logging::init_logging) the line is handed to a writer thread through a
//! bounded buffer, so a slow terminal or pipe never holds a request.

use std::sync::Arc;

use octo_core::record::{Observer, Record};

/// The access-log target.
pub const TARGET: &str = "octollm::access";

/// The access-log [`Observer`]; see the [module docs](self).
#[derive(Debug, Default, Clone, Copy)]
pub struct AccessLog;

impl Observer for AccessLog {
    fn on_complete(&self, r: &Arc<Record>) {
        let u = r.usage.as_ref();
        tracing::info!(
            target: "octollm::access",
            id = %r.id,
            client_protocol = r.client_protocol.config_name(),
            model = r.model.as_deref(),
            org = r.org.as_deref(),
            user = r.user.as_deref(),
            rule = r.rule.as_deref(),
            backend = r.backend.as_deref(),
            upstream_model = r.upstream_model.as_deref(),
            stream = r.stream,
            status = r.status,
            duration_ms = r.duration_ms,
            ttfb_ms = r.ttfb_ms,
            overhead_us = r.overhead_ns / 1_000,
            input_tokens = u.map(|u| u.input_tokens),
            cache_read_tokens = u.map(|u| u.cache_read_tokens),
            cache_write_tokens = u.map(|u| u.cache_write_tokens),
            output_tokens = u.map(|u| u.output_tokens),
            reasoning_tokens = u.map(|u| u.reasoning_tokens),
            cost_usd = r.cost_usd,
            cache_hit = r.cache_hit,
            attempts = r.attempts.len(),
            error = r.error.as_deref(),
            "request"
        );
    }
}
