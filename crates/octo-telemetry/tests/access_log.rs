//! The access log through the JSON subscriber: one JSON line per request with the record's fields.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{record, usage};
use octo_core::record::Observer;
use octo_telemetry::access::AccessLog;
use octo_telemetry::logging::{LogFormat, subscriber};

/// A writer that keeps what it is given.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Tests that install different filters run one at a time: tracing caches each callsite's
/// interest process-wide, so a filter installed by a parallel test could silence this one's events.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn lines(filter: &str, records: &[octo_core::record::Record]) -> Vec<serde_json::Value> {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let buf = Buffer::default();
    let out = buf.clone();
    let sub = subscriber(LogFormat::Json, filter, move || out.clone()).unwrap();
    tracing::subscriber::with_default(sub, || {
        // Interest cached under the other test's filter must not apply to this subscriber.
        tracing::callsite::rebuild_interest_cache();
        for r in records {
            AccessLog.on_complete(&Arc::new(r.clone()));
        }
    });
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn one_json_line_per_request_with_its_fields() {
    let mut ok = record(Some("gpt-4o"), Some("oa"), 200);
    ok.usage = Some(usage());
    ok.cost_usd = Some(0.5);
    let failed = record(None, None, 401);
    let got = lines("info", &[ok.clone(), failed]);
    assert_eq!(got.len(), 2);
    let a = &got[0];
    assert_eq!(a["target"], "octollm::access");
    assert_eq!(a["level"], "INFO");
    assert_eq!(a["message"], "request");
    assert_eq!(a["id"], ok.id);
    assert_eq!(a["client_protocol"], "openai_chat");
    assert_eq!(a["model"], "gpt-4o");
    assert_eq!(a["backend"], "oa");
    assert_eq!(a["status"], 200);
    assert_eq!(a["duration_ms"], 1200);
    assert_eq!(a["ttfb_ms"], 300);
    assert_eq!(a["input_tokens"], 100);
    assert_eq!(a["cache_read_tokens"], 50);
    assert_eq!(a["output_tokens"], 20);
    assert_eq!(a["cost_usd"], 0.5);
    assert_eq!(a["user"], "ci");
    assert!(a.get("error").is_none());
    let b = &got[1];
    assert_eq!(b["status"], 401);
    assert_eq!(b["error"], "failed with 401");
    assert!(b.get("model").is_none(), "unknown values are left out");
    assert!(b.get("input_tokens").is_none());
}

#[test]
fn the_filter_silences_it() {
    let r = record(Some("gpt-4o"), Some("oa"), 200);
    assert!(lines("info,octollm::access=off", &[r]).is_empty());
}
