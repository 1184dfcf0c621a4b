//! The rendered metrics, read back by a Prometheus text-format parser after known records.

mod common;

use std::sync::Arc;

use common::{attempt, record, usage};
use octo_core::Protocol;
use octo_core::record::Observer;
use octo_telemetry::metrics::{MetricKind, Metrics};
use prometheus_parse::{Sample, Scrape, Value};

fn scrape(text: &str) -> Scrape {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    // The parser skips what it cannot read: every sample line must have been read.
    let lines = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let parsed: usize = scrape
        .samples
        .iter()
        .map(|s| match &s.value {
            Value::Histogram(b) => b.len(),
            _ => 1,
        })
        .sum();
    assert_eq!(lines, parsed, "{text}");
    scrape
}

fn find<'a>(s: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    s.samples.iter().find(|x| {
        x.metric == metric
            && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
            && x.labels.len() == labels.len()
    })
}

fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, metric, labels).map(|x| &x.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        other => panic!("{metric} {labels:?}: {other:?}"),
    }
}

#[test]
fn counts_known_records_with_bounded_labels() {
    let m = Arc::new(Metrics::new(["gpt-4o", "claude"], ["oa", "an"]));

    // A streamed, priced request that failed over from a 503 to a 200 on the same backend.
    let mut a = record(Some("gpt-4o"), Some("oa"), 200);
    a.stream = true;
    a.usage = Some(usage());
    a.cost_usd = Some(0.25);
    a.attempts = vec![
        attempt("oa", Some(503), 0, None),
        attempt("oa", Some(200), 110, None),
    ];
    m.on_complete(&Arc::new(a.clone()));
    m.on_complete(&Arc::new(a));

    // An unknown model on `an`, with usage but no price; `an` was skipped once before.
    let mut b = record(Some("random-model-1234"), Some("an"), 200);
    b.client_protocol = Protocol::Anthropic;
    b.usage = Some(usage());
    b.attempts = vec![
        attempt("an", None, 0, None),
        attempt("an", Some(200), 0, None),
    ];
    m.on_complete(&Arc::new(b));

    // A request refused before any model or backend was known.
    m.on_complete(&Arc::new(record(None, None, 401)));

    // A response-cache hit: no tokens counted, no unpriced count.
    let mut c = record(Some("claude"), Some("an"), 200);
    c.usage = Some(usage());
    c.cache_hit = true;
    m.on_complete(&Arc::new(c));

    // An attempt on a backend the config does not name.
    let mut d = record(Some("claude"), Some("an"), 502);
    d.attempts = vec![attempt("gone", Some(502), 0, None)];
    m.on_complete(&Arc::new(d));

    let text = m.render();
    let s = scrape(&text);
    let req = |model, backend, proto, status| {
        value(
            &s,
            "octollm_requests_total",
            &[
                ("model", model),
                ("backend", backend),
                ("client_protocol", proto),
                ("status", status),
            ],
        )
    };
    assert_eq!(req("gpt-4o", "oa", "openai_chat", "200"), 2.0);
    assert_eq!(req("other", "an", "anthropic", "200"), 1.0);
    assert_eq!(req("none", "none", "openai_chat", "401"), 1.0);
    assert_eq!(req("claude", "an", "openai_chat", "200"), 1.0);
    assert_eq!(req("claude", "an", "openai_chat", "502"), 1.0);
    assert!(
        !text.contains("random-model-1234"),
        "an unknown model must not make a series"
    );

    let tok = |model, backend, t| {
        value(
            &s,
            "octollm_tokens_total",
            &[("model", model), ("backend", backend), ("type", t)],
        )
    };
    assert_eq!(tok("gpt-4o", "oa", "input"), 200.0);
    assert_eq!(tok("gpt-4o", "oa", "cache_read"), 100.0);
    assert_eq!(tok("gpt-4o", "oa", "cache_write"), 20.0);
    assert_eq!(tok("gpt-4o", "oa", "output"), 40.0);
    assert_eq!(tok("gpt-4o", "oa", "reasoning"), 10.0);
    assert_eq!(tok("other", "an", "input"), 100.0);
    assert!(
        find(
            &s,
            "octollm_tokens_total",
            &[("model", "claude"), ("backend", "an"), ("type", "input")]
        )
        .is_none()
    );

    assert_eq!(
        value(
            &s,
            "octollm_cost_usd_total",
            &[("model", "gpt-4o"), ("backend", "oa")]
        ),
        0.5
    );
    assert_eq!(
        value(&s, "octollm_unpriced_requests_total", &[("model", "other")]),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "octollm_unpriced_requests_total",
            &[("model", "claude")]
        ),
        0.0
    );

    let att = |backend, outcome| {
        value(
            &s,
            "octollm_upstream_attempts_total",
            &[("backend", backend), ("outcome", outcome)],
        )
    };
    assert_eq!(att("oa", "ok"), 2.0);
    assert_eq!(att("oa", "error"), 2.0);
    assert_eq!(att("an", "skipped"), 1.0);
    assert_eq!(att("an", "ok"), 1.0);
    assert_eq!(att("other", "error"), 1.0);

    // Histograms: two gpt-4o requests of 1.2 s, streamed with a 0.3 s first byte.
    let hist = |metric, labels: &[(&str, &str)]| match &find(&s, metric, labels).unwrap().value {
        Value::Histogram(b) => b.clone(),
        v => panic!("{v:?}"),
    };
    let d = hist("octollm_request_duration_seconds", &[("model", "gpt-4o")]);
    let le = |b: &[prometheus_parse::HistogramCount], x: f64| {
        b.iter().find(|c| c.less_than == x).unwrap().count
    };
    assert_eq!(le(&d, 0.64), 0.0);
    assert_eq!(le(&d, 1.28), 2.0);
    assert_eq!(le(&d, f64::INFINITY), 2.0);
    assert_eq!(
        value(
            &s,
            "octollm_request_duration_seconds_count",
            &[("model", "gpt-4o")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &s,
            "octollm_request_duration_seconds_sum",
            &[("model", "gpt-4o")]
        ),
        2.4
    );
    let t = hist(
        "octollm_time_to_first_token_seconds",
        &[("model", "gpt-4o")],
    );
    assert_eq!(le(&t, 0.16), 0.0);
    assert_eq!(le(&t, 0.32), 2.0);
    assert!(
        find(
            &s,
            "octollm_time_to_first_token_seconds",
            &[("model", "claude")]
        )
        .is_none(),
        "not streamed"
    );
    let o = hist("octollm_gateway_overhead_seconds", &[]);
    assert_eq!(le(&o, 0.0001), 0.0);
    assert_eq!(le(&o, 0.00025), 6.0);
    assert_eq!(
        value(&s, "octollm_gateway_overhead_seconds_count", &[]),
        6.0
    );

    // Every family has its type.
    for name in [
        "octollm_requests_total",
        "octollm_tokens_total",
        "octollm_cost_usd_total",
        "octollm_upstream_attempts_total",
    ] {
        assert!(text.contains(&format!("# TYPE {name} counter\n")), "{name}");
    }
    assert!(text.contains("# TYPE octollm_request_duration_seconds histogram\n"));
}

#[test]
fn callbacks_are_read_at_scrape_time() {
    let m = Metrics::new(Vec::<String>::new(), ["oa"]);
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let d = dropped.clone();
    m.counter_fn(
        "octollm_log_records_dropped_total",
        "Dropped records.",
        move || d.load(std::sync::atomic::Ordering::Relaxed),
    );
    m.gauge_fn("octollm_log_queue_depth", "Records waiting.", || 7.0);
    m.register_fn(|out| {
        let mut f = out.family(
            "octollm_backend_key_state",
            "Key states.",
            MetricKind::Gauge,
        );
        for state in ["closed", "open", "half_open"] {
            f.sample(
                &[("backend", "oa"), ("key", "#1"), ("state", state)],
                f64::from(state == "open"),
            );
        }
    });
    dropped.store(4, std::sync::atomic::Ordering::Relaxed);
    let s = scrape(&m.render());
    assert_eq!(value(&s, "octollm_log_records_dropped_total", &[]), 4.0);
    assert_eq!(value(&s, "octollm_log_queue_depth", &[]), 7.0);
    assert_eq!(
        value(
            &s,
            "octollm_backend_key_state",
            &[("backend", "oa"), ("key", "#1"), ("state", "open")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "octollm_backend_key_state",
            &[("backend", "oa"), ("key", "#1"), ("state", "closed")]
        ),
        0.0
    );

    // A reload keeps the callbacks and restarts the counts under the new names.
    let next = m.reconfigured(["gpt-4o"], ["oa", "an"]);
    let s = scrape(&next.render());
    assert_eq!(value(&s, "octollm_log_records_dropped_total", &[]), 4.0);
    assert_eq!(
        value(
            &s,
            "octollm_upstream_attempts_total",
            &[("backend", "an"), ("outcome", "ok")]
        ),
        0.0
    );
}
