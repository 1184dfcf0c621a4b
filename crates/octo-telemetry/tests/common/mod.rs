//! Records for the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, UNIX_EPOCH};

use octo_core::Protocol;
use octo_core::record::{Attempt, Record};
use octo_core::usage::Usage;

/// A successful, non-streamed chat request for `model` served by `backend`.
pub fn record(model: Option<&str>, backend: Option<&str>, status: u16) -> Record {
    Record {
        id: "0190f3c2-0000-7000-8000-000000000001".into(),
        started_at: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        duration_ms: 1_200,
        ttfb_ms: Some(300),
        client_protocol: Protocol::OpenAiChat,
        model: model.map(Into::into),
        org: Some("acme".into()),
        user: Some("ci".into()),
        rule: None,
        backend: backend.map(Into::into),
        upstream_protocol: backend.map(|_| Protocol::Anthropic),
        upstream_model: model.map(|m| format!("{m}-upstream")),
        stream: false,
        status,
        error: (status >= 400).then(|| format!("failed with {status}")),
        attempts: Vec::new(),
        usage: None,
        finish_reason: None,
        cost_usd: None,
        price: None,
        cache_hit: false,
        overhead_ns: 150_000,
        trace: None,
        bodies: None,
    }
}

/// Usage with every kind of token.
pub fn usage() -> Usage {
    Usage {
        input_tokens: 100,
        cache_read_tokens: 50,
        cache_write_tokens: 10,
        output_tokens: 20,
        reasoning_tokens: 5,
    }
}

/// An attempt on `backend` that got `status` (`None`: skipped).
pub fn attempt(
    backend: &str,
    status: Option<u16>,
    offset_ms: u64,
    span_id: Option<&str>,
) -> Attempt {
    Attempt {
        backend: backend.into(),
        key: Some("#1".into()),
        status,
        offset_ms,
        duration_ms: 100,
        error: match status {
            Some(s) if s < 400 => None,
            Some(s) => Some(format!("upstream answered {s}")),
            None => Some("breaker open".into()),
        },
        span_id: span_id.map(Into::into),
    }
}
