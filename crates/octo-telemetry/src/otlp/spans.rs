//! Turns a finished, traced [`Record`] into OTLP spans, after the fact: one `SERVER` span for the
//! request (the gateway serving its client) and one `CLIENT` span per upstream attempt (the
//! gateway calling an upstream, the GenAI inference span), each with the ids decided when the
//! request started so that the client's and the upstream's own spans join the same trace.
//!
//! | span | kind | id | parent | time |
//! |---|---|---|---|---|
//! | `chat {model}` (request) | `SERVER` | `trace.span_id` | the client's `traceparent` span, if any | `started_at` + `duration_ms` |
//! | `chat {upstream model}` (attempt) | `CLIENT` | `attempt.span_id` (sent upstream in `traceparent`) | the request span | `started_at + offset_ms` + `duration_ms` |
//!
//! Attributes follow [`semconv`](super::semconv): the request span carries the GenAI attributes of
//! the whole exchange (requested model, upstream model and provider, usage, finish reason,
//! streaming and time to first chunk) and the gateway's own (`octollm.*`); the attempt that
//! produced the answer carries the upstream model, usage and finish reason; every attempt its HTTP
//! status. A status of 400 or more sets `error.type` to the status; the span status is `ERROR` for
//! 5xx on the request span (HTTP server convention: a 4xx is the client's doing) and for any
//! status ≥ 400 on attempt spans. Attempts the gateway skipped (no status: breaker open, no key)
//! are not calls, so they become `octollm.attempt.skipped` events on the request span.

use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use octo_core::Protocol;
use octo_core::record::{Attempt, Record, TraceContext, new_span_id};
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{Span, SpanFlags, Status, status};

use super::semconv as sc;

/// The spans of a record, built with what the configuration knows about backends.
#[derive(Debug, Default, Clone)]
pub struct SpanBuilder {
    /// The protocol each backend is spoken to in (for `gen_ai.provider.name`).
    protocols: HashMap<String, Protocol>,
}

impl SpanBuilder {
    /// A builder that knows the protocol of each named backend.
    pub fn new<I, S>(backends: I) -> Self
    where
        I: IntoIterator<Item = (S, Protocol)>,
        S: Into<String>,
    {
        SpanBuilder {
            protocols: backends.into_iter().map(|(n, p)| (n.into(), p)).collect(),
        }
    }

    /// The request span followed by one span per attempt made, or `None` when the record is not
    /// traced or its ids are not valid hex.
    pub fn spans(&self, r: &Record) -> Option<Vec<Span>> {
        let trace = r.trace.as_ref()?;
        let trace_id = hex_bytes::<16>(&trace.trace_id)?;
        let span_id = hex_bytes::<8>(&trace.span_id)?;
        let parent = match &trace.parent_span_id {
            Some(p) => hex_bytes::<8>(p)?.to_vec(),
            None => Vec::new(),
        };
        let start = r
            .started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let at = |ms: u64| start.saturating_add(ms.saturating_mul(1_000_000));
        let operation = sc::operation_name(r.client_protocol);
        let name = |model: Option<&str>| match model {
            Some(m) => format!("{operation} {m}"),
            None => operation.to_owned(),
        };
        let flags = flags(trace);

        let mut spans = Vec::with_capacity(1 + r.attempts.len());
        let mut attrs = Attrs::default();
        attrs.str(sc::GEN_AI_OPERATION_NAME, operation);
        if let Some(p) = r.upstream_protocol.and_then(sc::provider_name) {
            attrs.str(sc::GEN_AI_PROVIDER_NAME, p);
        }
        attrs.opt_str(sc::GEN_AI_REQUEST_MODEL, r.model.as_deref());
        attrs.opt_str(sc::GEN_AI_RESPONSE_MODEL, r.upstream_model.as_deref());
        self.answer_attrs(&mut attrs, r);
        attrs.int(sc::HTTP_RESPONSE_STATUS_CODE, u64::from(r.status));
        if r.status >= 400 {
            attrs.string(sc::ERROR_TYPE, r.status.to_string());
        }
        attrs.string(sc::OCTOLLM_REQUEST_ID, r.id.clone());
        attrs.str(sc::OCTOLLM_CLIENT_PROTOCOL, r.client_protocol.config_name());
        attrs.opt_str(sc::OCTOLLM_BACKEND, r.backend.as_deref());
        attrs.opt_str(sc::OCTOLLM_ORG, r.org.as_deref());
        attrs.opt_str(sc::OCTOLLM_USER, r.user.as_deref());
        attrs.opt_str(sc::OCTOLLM_RULE, r.rule.as_deref());
        if let Some(c) = r.cost_usd {
            attrs.double(sc::OCTOLLM_COST_USD, c);
        }
        if r.cache_hit {
            attrs.bool(sc::OCTOLLM_CACHE_HIT, true);
        }
        attrs.int(sc::OCTOLLM_OVERHEAD_US, r.overhead_ns / 1_000);
        let events = r
            .attempts
            .iter()
            .filter(|a| a.status.is_none())
            .map(|a| {
                let mut e = Attrs::default();
                e.string(sc::OCTOLLM_BACKEND, a.backend.clone());
                e.opt_str(sc::OCTOLLM_REASON, a.error.as_deref());
                Event {
                    time_unix_nano: at(a.offset_ms),
                    name: sc::EVENT_ATTEMPT_SKIPPED.to_owned(),
                    attributes: e.0,
                    dropped_attributes_count: 0,
                }
            })
            .collect();
        spans.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: parent,
            flags: flags
                | if trace.parent_span_id.is_some() {
                    SpanFlags::ContextIsRemoteMask as u32
                } else {
                    0
                },
            name: name(r.model.as_deref()),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: at(r.duration_ms),
            attributes: attrs.0,
            events,
            status: Some(status_of(r.status >= 500, r.error.as_deref())),
            ..Span::default()
        });

        let last = r.attempts.iter().rposition(|a| a.status.is_some());
        for (i, a) in r.attempts.iter().enumerate() {
            let Some(status) = a.status else { continue };
            let answered = Some(i) == last;
            let mut attrs = Attrs::default();
            attrs.str(sc::GEN_AI_OPERATION_NAME, operation);
            if let Some(p) = self.protocol(a, r).and_then(sc::provider_name) {
                attrs.str(sc::GEN_AI_PROVIDER_NAME, p);
            }
            let model = if answered {
                r.upstream_model.as_deref().or(r.model.as_deref())
            } else {
                None
            };
            attrs.opt_str(sc::GEN_AI_REQUEST_MODEL, model);
            if answered {
                attrs.opt_str(sc::GEN_AI_RESPONSE_MODEL, r.upstream_model.as_deref());
                self.answer_attrs(&mut attrs, r);
            }
            attrs.int(sc::HTTP_RESPONSE_STATUS_CODE, u64::from(status));
            if status >= 400 {
                attrs.string(sc::ERROR_TYPE, status.to_string());
            }
            attrs.string(sc::OCTOLLM_BACKEND, a.backend.clone());
            attrs.opt_str(sc::OCTOLLM_KEY, a.key.as_deref());
            let id = a
                .span_id
                .as_deref()
                .and_then(hex_bytes::<8>)
                .map_or_else(new_span_id_bytes, |b| b.to_vec());
            let begin = at(a.offset_ms);
            spans.push(Span {
                trace_id: trace_id.to_vec(),
                span_id: id,
                parent_span_id: span_id.to_vec(),
                flags,
                name: name(model),
                kind: SpanKind::Client as i32,
                start_time_unix_nano: begin,
                end_time_unix_nano: begin.saturating_add(a.duration_ms.saturating_mul(1_000_000)),
                attributes: attrs.0,
                status: Some(status_of(status >= 400, a.error.as_deref())),
                ..Span::default()
            });
        }
        Some(spans)
    }

    /// The protocol `a`'s backend is spoken to in.
    fn protocol(&self, a: &Attempt, r: &Record) -> Option<Protocol> {
        self.protocols.get(&a.backend).copied().or_else(|| {
            (r.backend.as_deref() == Some(a.backend.as_str()))
                .then_some(r.upstream_protocol)
                .flatten()
        })
    }

    /// What the answer said: usage, finish reason, streaming and time to first chunk.
    fn answer_attrs(&self, attrs: &mut Attrs, r: &Record) {
        if r.stream {
            attrs.bool(sc::GEN_AI_REQUEST_STREAM, true);
            if let Some(t) = r.ttfb_ms {
                attrs.double(sc::GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, t as f64 / 1000.0);
            }
        }
        if let Some(reason) = &r.finish_reason {
            attrs.push(
                sc::GEN_AI_RESPONSE_FINISH_REASONS,
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(any_value::Value::StringValue(reason.clone())),
                    }],
                }),
            );
        }
        if let Some(u) = &r.usage {
            attrs.int(sc::GEN_AI_USAGE_INPUT_TOKENS, u.total_input_tokens());
            attrs.int(sc::GEN_AI_USAGE_OUTPUT_TOKENS, u.output_tokens);
            attrs.int(
                sc::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
                u.cache_read_tokens,
            );
            attrs.int(
                sc::GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
                u.cache_write_tokens,
            );
            attrs.int(sc::GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, u.reasoning_tokens);
        }
    }
}

/// W3C trace flags plus "the is-remote bit is set" (OTLP `SpanFlags`).
fn flags(trace: &TraceContext) -> u32 {
    SpanFlags::ContextHasIsRemoteMask as u32 | u32::from(trace.sampled)
}

fn status_of(error: bool, message: Option<&str>) -> Status {
    if error {
        Status {
            code: status::StatusCode::Error as i32,
            message: message.unwrap_or_default().to_owned(),
        }
    } else {
        Status::default()
    }
}

fn new_span_id_bytes() -> Vec<u8> {
    hex_bytes::<8>(&new_span_id()).map_or_else(|| vec![1; 8], |b| b.to_vec())
}

/// `N` bytes from `2N` hex digits.
fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(b[2 * i])? << 4 | digit(b[2 * i + 1])?;
    }
    Some(out)
}

/// A span's attribute list.
#[derive(Default)]
struct Attrs(Vec<KeyValue>);

impl Attrs {
    fn push(&mut self, key: &str, value: any_value::Value) {
        self.0.push(KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        });
    }

    fn str(&mut self, key: &str, v: &str) {
        self.string(key, v.to_owned());
    }

    fn string(&mut self, key: &str, v: String) {
        self.push(key, any_value::Value::StringValue(v));
    }

    fn opt_str(&mut self, key: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(key, v);
        }
    }

    fn int(&mut self, key: &str, v: u64) {
        self.push(
            key,
            any_value::Value::IntValue(i64::try_from(v).unwrap_or(i64::MAX)),
        );
    }

    fn double(&mut self, key: &str, v: f64) {
        self.push(key, any_value::Value::DoubleValue(v));
    }

    fn bool(&mut self, key: &str, v: bool) {
        self.push(key, any_value::Value::BoolValue(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex() {
        assert_eq!(hex_bytes::<2>("0aFf"), Some([0x0a, 0xff]));
        assert_eq!(hex_bytes::<2>("0aF"), None);
        assert_eq!(hex_bytes::<2>("0aFg"), None);
        assert_eq!(hex_bytes::<1>("é"), None);
    }

    #[test]
    fn untraced_or_malformed_records_make_no_spans() {
        let mut r: Record = serde_json::from_value(serde_json::json!({
            "id": "r1", "started_at": "2026-01-01T00:00:00Z", "duration_ms": 5, "ttfb_ms": null,
            "client_protocol": "openai_chat", "model": null, "org": null, "user": null,
            "rule": null, "backend": null, "upstream_protocol": null, "upstream_model": null,
            "stream": false, "status": 401, "error": "no key", "attempts": [], "usage": null,
            "finish_reason": null, "cost_usd": null, "price": null
        }))
        .unwrap();
        let b = SpanBuilder::default();
        assert!(b.spans(&r).is_none());
        r.trace = Some(TraceContext {
            trace_id: "zz".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: None,
            sampled: true,
        });
        assert!(b.spans(&r).is_none());
        r.trace = Some(TraceContext::continue_or_start(None));
        let spans = b.spans(&r).unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].name, "chat");
        assert!(spans[0].parent_span_id.is_empty());
        // A 401 is the client's doing: error.type, but no ERROR status on the server span.
        assert_eq!(spans[0].status.as_ref().unwrap().code, 0);
        assert!(
            spans[0]
                .attributes
                .iter()
                .any(|kv| kv.key == sc::ERROR_TYPE)
        );
        assert_eq!(
            spans[0].end_time_unix_nano - spans[0].start_time_unix_nano,
            5_000_000
        );
    }
}
