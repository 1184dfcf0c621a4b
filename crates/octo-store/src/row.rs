//! A [`Record`] as a `request_log` row and back, column for column ([`LOG_COLUMNS`] order).
//! Everything round-trips exactly except `started_at`, kept to the millisecond (the API's
//! precision).

use std::time::{Duration, UNIX_EPOCH};

use octo_core::Protocol;
use octo_core::record::{Bodies, Price, Record};
use octo_core::usage::Usage;

use crate::config::Secrets;
use crate::db::{Col, Value, i64_to_u64, u64_to_i64};
use crate::error::StoreError;
#[cfg(test)]
use crate::schema::LOG_COLUMNS;

fn int(v: i64) -> Value {
    Value::Int(Some(v))
}
fn opt_int(v: Option<u64>) -> Value {
    Value::Int(v.map(u64_to_i64))
}
fn text(v: &str) -> Value {
    Value::Text(Some(v.to_owned()))
}
fn opt_text(v: Option<&str>) -> Value {
    Value::Text(v.map(str::to_owned))
}

/// The row values of a record, in [`LOG_COLUMNS`] order.
#[cfg(test)]
pub(crate) fn to_row(r: &Record) -> Vec<Value> {
    let mut out = Vec::with_capacity(LOG_COLUMNS.len());
    push_row(r, &mut out);
    out
}

/// Appends the row values of a record, in [`LOG_COLUMNS`] order, to a batch's values (no
/// vector of its own per record).
pub(crate) fn push_row(r: &Record, out: &mut Vec<Value>) {
    let u = r.usage.as_ref();
    let p = r.price.as_ref();
    out.extend([
        text(&r.id),
        int(r.started_at_ms()),
        int(u64_to_i64(r.duration_ms)),
        opt_int(r.ttfb_ms),
        text(r.client_protocol.config_name()),
        opt_text(r.model.as_deref()),
        opt_text(r.org.as_deref()),
        opt_text(r.user.as_deref()),
        opt_text(r.rule.as_deref()),
        opt_text(r.backend.as_deref()),
        opt_text(r.upstream_protocol.map(Protocol::config_name)),
        opt_text(r.upstream_model.as_deref()),
        int(i64::from(r.stream)),
        int(i64::from(r.status)),
        opt_text(r.error.as_deref()),
        text(&serde_json::to_string(&r.attempts).unwrap_or_else(|_| "[]".into())),
        opt_int(u.map(|u| u.input_tokens)),
        opt_int(u.map(|u| u.cache_read_tokens)),
        opt_int(u.map(|u| u.cache_write_tokens)),
        opt_int(u.map(|u| u.output_tokens)),
        opt_int(u.map(|u| u.reasoning_tokens)),
        opt_text(r.finish_reason.as_deref()),
        Value::Real(r.cost_usd),
        Value::Real(p.map(|p| p.input)),
        Value::Real(p.map(|p| p.output)),
        Value::Real(p.and_then(|p| p.cache_read)),
        Value::Real(p.and_then(|p| p.cache_write)),
        opt_text(p.map(|p| p.source.as_str())),
        int(i64::from(r.cache_hit)),
        int(u64_to_i64(r.overhead_ns / 1_000)),
        Value::Text(r.trace.as_ref().and_then(|t| serde_json::to_string(t).ok())),
    ]);
}

/// A record from row values in [`LOG_COLUMNS`] order.
pub(crate) fn from_row(row: Vec<Value>) -> Result<Record, StoreError> {
    let mut it = row.into_iter();
    let mut next = || {
        it.next()
            .ok_or_else(|| StoreError::decode("request_log row: too few columns"))
    };
    let id = next()?
        .into_text()
        .ok_or_else(|| StoreError::decode("request_log row without an id"))?;
    let bad = |what: &str| StoreError::decode(format!("request_log row {id}: invalid {what}"));
    let started_ms = next()?.int().ok_or_else(|| bad("started_at"))?;
    let duration_ms = i64_to_u64(next()?.int().ok_or_else(|| bad("duration_ms"))?);
    let ttfb_ms = next()?.int().map(i64_to_u64);
    let client_protocol: Protocol = next()?
        .text()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("client_protocol"))?;
    let model = next()?.into_text();
    let org = next()?.into_text();
    let user = next()?.into_text();
    let rule = next()?.into_text();
    let backend = next()?.into_text();
    let upstream_protocol = match next()?.into_text() {
        Some(s) => Some(
            s.parse::<Protocol>()
                .map_err(|_| bad("upstream_protocol"))?,
        ),
        None => None,
    };
    let upstream_model = next()?.into_text();
    let stream = next()?.int().unwrap_or(0) != 0;
    let status = next()?
        .int()
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| bad("status"))?;
    let error = next()?.into_text();
    let attempts = serde_json::from_str(next()?.text().unwrap_or("[]"))
        .map_err(|e| bad(&format!("attempts ({e})")))?;
    let tokens: Vec<Option<i64>> = (0..5)
        .map(|_| next().map(|v| v.int()))
        .collect::<Result<_, _>>()?;
    let usage = match tokens[..] {
        [Some(i), Some(cr), Some(cw), Some(o), Some(r)] => Some(Usage {
            input_tokens: i64_to_u64(i),
            cache_read_tokens: i64_to_u64(cr),
            cache_write_tokens: i64_to_u64(cw),
            output_tokens: i64_to_u64(o),
            reasoning_tokens: i64_to_u64(r),
        }),
        _ => None,
    };
    let finish_reason = next()?.into_text();
    let cost_usd = next()?.real();
    let (pi, po, pcr, pcw) = (
        next()?.real(),
        next()?.real(),
        next()?.real(),
        next()?.real(),
    );
    let source = next()?.into_text();
    let price = match (pi, po) {
        (Some(input), Some(output)) => Some(Price {
            input,
            output,
            cache_read: pcr,
            cache_write: pcw,
            source: source.unwrap_or_default(),
        }),
        _ => None,
    };
    let cache_hit = next()?.int().unwrap_or(0) != 0;
    let overhead_us = i64_to_u64(next()?.int().unwrap_or(0));
    let trace = match next()?.into_text() {
        Some(s) => Some(serde_json::from_str(&s).map_err(|e| bad(&format!("trace ({e})")))?),
        None => None,
    };
    Ok(Record {
        started_at: UNIX_EPOCH + Duration::from_millis(i64_to_u64(started_ms)),
        id,
        duration_ms,
        ttfb_ms,
        client_protocol,
        model,
        org,
        user,
        rule,
        backend,
        upstream_protocol,
        upstream_model,
        stream,
        status,
        error,
        attempts,
        usage,
        finish_reason,
        cost_usd,
        price,
        cache_hit,
        overhead_ns: overhead_us.saturating_mul(1_000),
        trace,
        bodies: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample;

    #[test]
    fn a_row_has_one_value_per_column_and_reads_back() {
        for i in 0..4 {
            let r = sample(i);
            let row = to_row(&r);
            assert_eq!(row.len(), LOG_COLUMNS.len());
            assert_eq!(from_row(row).unwrap(), r);
        }
    }

    #[test]
    fn a_bad_protocol_is_a_decode_error() {
        let mut row = to_row(&sample(0));
        row[4] = text("smoke-signals");
        let e = from_row(row).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Decode);
    }
}

/// The `request_log_body` table's columns (schema version 2), in the order rows are written
/// and read: one row per record that kept its bodies.
pub(crate) const BODY_COLUMNS: &[(&str, Col)] = &[
    ("id", Col::Text),
    ("request_body", Col::Text),
    ("request_body_bytes", Col::Int),
    ("response_body", Col::Text),
    ("response_body_bytes", Col::Int),
];

/// A kept body as stored text: UTF-8 (an incomplete character where the body was cut is left
/// out, other invalid bytes become U+FFFD), with every secret redacted.
fn body_text(b: &[u8], redact: &Secrets) -> String {
    let valid = match std::str::from_utf8(b) {
        Ok(_) => b,
        // Cut inside a character: drop its first bytes.
        Err(e) if e.error_len().is_none() => &b[..e.valid_up_to()],
        Err(_) => b,
    };
    let text = String::from_utf8_lossy(valid);
    redact.redact(&text).into_owned()
}

/// The `request_log_body` row of a record that kept its bodies.
pub(crate) fn body_row(r: &Record, redact: &Secrets) -> Vec<Value> {
    let b = r.bodies.clone().unwrap_or_default();
    vec![
        text(&r.id),
        Value::Text(Some(body_text(&b.request, redact))),
        opt_int(Some(b.request_size)),
        Value::Text(Some(body_text(&b.response, redact))),
        opt_int(Some(b.response_size)),
    ]
}

/// The bodies of a `request_log_body` row.
pub(crate) fn bodies_from_row(row: Vec<Value>) -> Bodies {
    let mut it = row.into_iter().skip(1);
    let mut next = || it.next().unwrap_or(Value::Int(None));
    let request = next().into_text().unwrap_or_default();
    let request_size = i64_to_u64(next().int().unwrap_or(0));
    let response = next().into_text().unwrap_or_default();
    let response_size = i64_to_u64(next().int().unwrap_or(0));
    Bodies {
        request: request.into(),
        request_size,
        response: response.into(),
        response_size,
    }
}

#[cfg(test)]
mod body_tests {
    use super::*;

    #[test]
    fn bodies_are_stored_as_redacted_text_cut_on_a_character() {
        let secrets = Secrets::new(["sk-secret-1"]);
        assert_eq!(
            body_text(b"use sk-secret-1 now", &secrets),
            "use [REDACTED] now"
        );
        // "é" is two bytes; a body cut after the first keeps the text before it.
        assert_eq!(body_text(b"caf\xc3", &secrets), "caf");
        assert_eq!(body_text(b"a\xffb", &secrets), "a\u{fffd}b");
        let mut r = crate::testing::sample(0);
        r.bodies = Some(Bodies {
            request: "{\"k\":\"sk-secret-1\"}".into(),
            request_size: 99,
            response: "ok".into(),
            response_size: 2,
        });
        let back = bodies_from_row(body_row(&r, &secrets));
        assert_eq!(&back.request[..], b"{\"k\":\"[REDACTED]\"}");
        assert_eq!((back.request_size, back.response_size), (99, 2));
    }
}
