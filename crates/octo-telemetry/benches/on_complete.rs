//! The per-request cost of the metrics observer, against the same metrics kept with the official
//! `prometheus-client` crate (label values interned as `&'static str`, its most favourable setup:
//! no allocation per request), and the cost of a scrape.
//!
//! Run with `cargo bench -p octo-telemetry --bench on_complete`; `cargo test --benches` runs each
//! once as a smoke test.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use octo_core::Protocol;
use octo_core::record::{Attempt, Observer, Record};
use octo_core::usage::Usage;
use octo_telemetry::metrics::{DURATION_BUCKETS, Metrics, OVERHEAD_BUCKETS, TTFT_BUCKETS, outcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

const MODELS: usize = 20;
const BACKENDS: usize = 10;

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn record(model: &str, backend: &str) -> Record {
    let attempt = |status| Attempt {
        backend: backend.into(),
        key: Some("#1".into()),
        status: Some(status),
        offset_ms: 0,
        duration_ms: 250,
        error: None,
        span_id: None,
    };
    Record {
        id: "0190f3c2-0000-7000-8000-000000000001".into(),
        started_at: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        duration_ms: 1_200,
        ttfb_ms: Some(300),
        client_protocol: Protocol::OpenAiChat,
        model: Some(model.into()),
        org: Some("acme".into()),
        user: Some("ci".into()),
        rule: None,
        backend: Some(backend.into()),
        upstream_protocol: Some(Protocol::Anthropic),
        upstream_model: Some(model.into()),
        stream: true,
        status: 200,
        error: None,
        attempts: vec![attempt(503), attempt(200)],
        usage: Some(Usage {
            input_tokens: 1000,
            cache_read_tokens: 500,
            cache_write_tokens: 0,
            output_tokens: 200,
            reasoning_tokens: 50,
        }),
        finish_reason: Some("stop".into()),
        cost_usd: Some(0.0042),
        price: None,
        cache_hit: false,
        overhead_ns: 180_000,
        trace: None,
        bodies: None,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    model: &'static str,
    backend: &'static str,
    client_protocol: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: &'static str,
    backend: &'static str,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PairLabels {
    model: &'static str,
    backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    backend: &'static str,
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The same metrics with `prometheus-client`: config names interned once, `other` for the rest.
struct Official {
    interned: HashMap<String, &'static str>,
    requests: Family<RequestLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<PairLabels, Counter<f64, AtomicU64>>,
    duration: HistogramFamily<ModelLabels>,
    ttft: HistogramFamily<ModelLabels>,
    overhead: Histogram,
    attempts: Family<AttemptLabels, Counter>,
    registry: Registry,
}

impl Official {
    fn new(models: &[String], backends: &[String]) -> Self {
        let interned = models
            .iter()
            .chain(backends)
            .map(|n| (n.clone(), &*Box::leak(n.clone().into_boxed_str())))
            .collect();
        let o = Official {
            interned,
            requests: Family::default(),
            tokens: Family::default(),
            cost: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(DURATION_BUCKETS.iter().copied())
            }),
            ttft: Family::new_with_constructor(|| Histogram::new(TTFT_BUCKETS.iter().copied())),
            overhead: Histogram::new(OVERHEAD_BUCKETS.iter().copied()),
            attempts: Family::default(),
            registry: Registry::default(),
        };
        let mut o = o;
        let mut r = Registry::with_prefix("octollm");
        r.register("requests", "", o.requests.clone());
        r.register("tokens", "", o.tokens.clone());
        r.register("cost_usd", "", o.cost.clone());
        r.register("request_duration_seconds", "", o.duration.clone());
        r.register("time_to_first_token_seconds", "", o.ttft.clone());
        r.register("gateway_overhead_seconds", "", o.overhead.clone());
        r.register("upstream_attempts", "", o.attempts.clone());
        o.registry = r;
        o
    }

    fn name(&self, n: Option<&str>) -> &'static str {
        match n {
            None => "none",
            Some(n) => self.interned.get(n).copied().unwrap_or("other"),
        }
    }

    fn record(&self, r: &Record) {
        let model = self.name(r.model.as_deref());
        let backend = self.name(r.backend.as_deref());
        self.requests
            .get_or_create_owned(&RequestLabels {
                model,
                backend,
                client_protocol: r.client_protocol.config_name(),
                status: r.status,
            })
            .inc();
        if let Some(u) = &r.usage {
            for (t, n) in [
                ("input", u.input_tokens),
                ("cache_read", u.cache_read_tokens),
                ("cache_write", u.cache_write_tokens),
                ("output", u.output_tokens),
                ("reasoning", u.reasoning_tokens),
            ] {
                self.tokens
                    .get_or_create_owned(&TokenLabels {
                        model,
                        backend,
                        r#type: t,
                    })
                    .inc_by(n);
            }
        }
        if let Some(c) = r.cost_usd {
            self.cost
                .get_or_create_owned(&PairLabels { model, backend })
                .inc_by(c);
        }
        self.duration
            .get_or_create_owned(&ModelLabels { model })
            .observe(r.duration_ms as f64 / 1000.0);
        if let (true, Some(t)) = (r.stream, r.ttfb_ms) {
            self.ttft
                .get_or_create_owned(&ModelLabels { model })
                .observe(t as f64 / 1000.0);
        }
        self.overhead.observe(r.overhead_ns as f64 / 1e9);
        for a in &r.attempts {
            self.attempts
                .get_or_create_owned(&AttemptLabels {
                    backend: self.name(Some(&a.backend)),
                    outcome: outcome(a),
                })
                .inc();
        }
    }
}

fn bench(c: &mut Criterion) {
    let models = names("model", MODELS);
    let backends = names("backend", BACKENDS);
    let records: Vec<Arc<Record>> = (0..64)
        .map(|i| Arc::new(record(&models[i % MODELS], &backends[i % BACKENDS])))
        .collect();

    let ours = Metrics::new(&models, &backends);
    let official = Official::new(&models, &backends);
    for r in &records {
        ours.on_complete(r);
        official.record(r);
    }

    let mut g = c.benchmark_group("on_complete");
    let mut i = 0;
    g.bench_function("octo_telemetry", |b| {
        b.iter(|| {
            i = (i + 1) % records.len();
            ours.on_complete(black_box(&records[i]));
        })
    });
    let mut i = 0;
    g.bench_function("prometheus_client", |b| {
        b.iter(|| {
            i = (i + 1) % records.len();
            official.record(black_box(&records[i]));
        })
    });
    g.finish();

    let mut g = c.benchmark_group("render");
    g.bench_function("octo_telemetry", |b| b.iter(|| black_box(ours.render())));
    g.bench_function("prometheus_client", |b| {
        b.iter(|| {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, &official.registry).unwrap();
            black_box(s)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
