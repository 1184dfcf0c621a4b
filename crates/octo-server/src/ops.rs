//! The operations half of the server: the request log, metrics, prices, traces and the access
//! log, built once per process and kept across config reloads, and attached as observers to every
//! router the config builds (see `octo_core::record`).
//!
//! ```text
//! Router ── finished Record ──▶ pricing (PriceBook) ──▶ Metrics ─▶ LogWriter ─▶ AccessLog ─▶ OTLP
//!                                                        (atomics)  (bounded queue → batches → DB)
//! ```
//!
//! Nothing here runs on a request's path but the observers' `on_complete`, which only touch
//! atomics or `try_send` into bounded queues: a slow or absent database, collector or price
//! source never delays an answer.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use octo_core::http::Router;
use octo_engines::endpoint::HttpEndpoint;
use octo_prices::PriceBook;
use octo_store::{LogWriter, Store, StoreConfig};
use octo_telemetry::access::AccessLog;
use octo_telemetry::metrics::Metrics;
use octo_telemetry::otlp::{OtlpExporter, OtlpWorker};

use crate::config::{Config, Storage};

/// How long opening the database may take at startup before the server gives up with an error.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// How often old log rows are pruned.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Each backend's upstream client, by name, as the current graph holds them.
type Endpoints = RwLock<Vec<(String, Arc<HttpEndpoint>)>>;

/// The process-wide operations state; see the [module docs](self).
pub struct Ops {
    /// The current graph's upstream clients, for the key-state metrics.
    endpoints: Arc<Endpoints>,
    store: Option<Store>,
    writer: Option<Arc<LogWriter>>,
    metrics: RwLock<Arc<Metrics>>,
    names: Mutex<(Vec<String>, Vec<String>)>,
    prices: Arc<PriceBook>,
    otlp: Option<Arc<OtlpExporter>>,
    otlp_worker: Mutex<Option<OtlpWorker>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("storage", &self.store.as_ref().map(Store::backend))
            .field("traces", &self.otlp.is_some())
            .finish_non_exhaustive()
    }
}

fn names(config: &Config) -> (Vec<String>, Vec<String>) {
    (
        config.models.keys().cloned().collect(),
        config.backends.keys().cloned().collect(),
    )
}

impl Ops {
    /// Opens the database (running migrations), starts the log writer, retention, the price
    /// sync and the trace exporter for `config`. `base_dir` is where a relative SQLite path is
    /// resolved (the config file's directory). Must run inside the tokio runtime.
    ///
    /// # Errors
    /// A `(key path, message)` when the database cannot be opened or a setting is refused.
    pub async fn start(config: &Config, base_dir: &Path) -> Result<Ops, (String, String)> {
        let (models, backends) = names(config);
        let metrics = Metrics::new(&models, &backends);
        let prices = Arc::new(PriceBook::new(&config.prices).map_err(first)?);
        let mut tasks = Vec::new();
        if let Some(sync) = &config.price_sync {
            let settings = sync.settings().map_err(first)?;
            tasks.push(prices.spawn_sync(settings));
        }
        let (store, writer) = match &config.storage {
            Storage::Off => (None, None),
            Storage::On(s) => {
                let url = octo_store::resolve_url(&s.url, base_dir);
                let mut cfg = StoreConfig::with_url(url);
                cfg.retention = s.retention;
                let store = tokio::time::timeout(OPEN_TIMEOUT, Store::open(&cfg))
                    .await
                    .map_err(|_| {
                        (
                            "storage.url".to_owned(),
                            format!(
                                "the database did not answer within {OPEN_TIMEOUT:?}; check that it runs, or set `storage: off`"
                            ),
                        )
                    })?
                    .map_err(|e| {
                        (
                            "storage.url".to_owned(),
                            format!("cannot open the request log: {}", e.message()),
                        )
                    })?;
                if !s.retention.is_zero() {
                    tasks.push(store.spawn_retention(s.retention, RETENTION_EVERY));
                }
                let writer = LogWriter::spawn(store.clone(), &cfg);
                (Some(store), Some(writer))
            }
        };
        if let Some(writer) = &writer {
            let w = writer.clone();
            metrics.counter_fn(
                "octollm_log_records_dropped_total",
                "Finished requests the request log could not keep (queue or buffer full, refused).",
                move || w.dropped(),
            );
            let w = writer.clone();
            metrics.gauge_fn(
                "octollm_log_records_pending",
                "Finished requests queued or buffered for the request log, not yet written.",
                move || w.pending() as f64,
            );
        }
        let protocols = config
            .backends
            .iter()
            .map(|(name, b)| (name.clone(), b.protocol[0]));
        let (otlp, worker) = match OtlpExporter::start(&config.telemetry, protocols)
            .map_err(|e| ("telemetry".to_owned(), e.to_string()))?
        {
            Some((exporter, worker)) => (Some(exporter), Some(worker)),
            None => (None, None),
        };
        if let Some(e) = &otlp {
            metrics.register(e.clone());
        }
        let endpoints: Arc<Endpoints> = Arc::default();
        let states = endpoints.clone();
        metrics.register_fn(move |out| key_states(&states, out));
        Ok(Ops {
            endpoints,
            store,
            writer,
            metrics: RwLock::new(Arc::new(metrics)),
            names: Mutex::new((models, backends)),
            prices,
            otlp,
            otlp_worker: Mutex::new(worker),
            tasks,
        })
    }

    /// Follows the backends of a newly built graph (their key states are exported).
    pub fn track(&self, endpoints: &[(String, Arc<HttpEndpoint>)]) {
        *self.endpoints.write().unwrap_or_else(|e| e.into_inner()) = endpoints.to_vec();
    }

    /// Adds the observers and pricing to a router built from the config.
    pub fn attach(&self, mut router: Router) -> Router {
        router = router
            .pricing(self.prices.clone().pricing())
            .observe(self.metrics())
            .observe(Arc::new(AccessLog));
        if let Some(w) = &self.writer {
            router = router.observe(w.clone());
        }
        if let Some(o) = &self.otlp {
            router = router.observe(o.clone()).trace_requests(true);
        }
        router
    }

    /// Follows a reloaded config: price overrides, and the metrics' label sets when models or
    /// backends were added or removed (counters then restart, which Prometheus treats as a
    /// reset). Storage, admin and telemetry settings need a restart.
    pub fn reconfigure(&self, config: &Config) {
        if let Err(problems) = self.prices.set_overrides(&config.prices) {
            tracing::warn!(?problems, "price overrides not applied");
        }
        let next = names(config);
        let mut current = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if *current != next {
            let metrics = self.metrics().reconfigured(&next.0, &next.1);
            *self.metrics.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(metrics);
            *current = next;
        }
    }

    /// The current metrics (what `/metrics` renders).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The request log, when storage is on.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// The price book.
    pub fn prices(&self) -> &Arc<PriceBook> {
        &self.prices
    }

    /// Writes what is still queued (log records, spans) within `deadline`, then stops the
    /// background tasks. Called after the listener drained on SIGTERM.
    pub async fn shutdown(&self, deadline: Instant) {
        if let Some(w) = &self.writer
            && let Err(e) = w.shutdown(deadline).await
        {
            tracing::warn!(error = %e.message(), "request log not fully written at shutdown");
        }
        let worker = self
            .otlp_worker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(worker) = worker {
            worker
                .shutdown(deadline.saturating_duration_since(Instant::now()))
                .await;
        }
        for t in &self.tasks {
            t.abort();
        }
        if let Some(s) = &self.store {
            s.close().await;
        }
    }
}

/// `octollm_backend_keys{backend,state}`: how many of each backend's keys are usable or resting
/// (after a 401/403/429); labels are bounded by the config, no key text appears.
fn key_states(endpoints: &Endpoints, out: &mut octo_telemetry::metrics::Exposition) {
    let endpoints = endpoints.read().unwrap_or_else(|e| e.into_inner());
    let mut family = out.family(
        "octollm_backend_keys",
        "Upstream keys per backend: usable, or resting after a 401, 403 or 429.",
        octo_telemetry::metrics::MetricKind::Gauge,
    );
    for (name, ep) in endpoints.iter() {
        let keys = ep.keys();
        let resting = (0..keys.len())
            .filter(|&i| keys.cooling_for(i).is_some())
            .count();
        family.sample_u64(
            &[("backend", name), ("state", "usable")],
            (keys.len() - resting) as u64,
        );
        family.sample_u64(&[("backend", name), ("state", "resting")], resting as u64);
    }
    let mut family = out.family(
        "octollm_backend_breakers",
        "Circuit breakers (one per backend key and model used) by state.",
        octo_telemetry::metrics::MetricKind::Gauge,
    );
    for (name, ep) in endpoints.iter() {
        let c = ep.keys().breaker_counts();
        for (state, n) in [
            ("closed", c.closed),
            ("open", c.open),
            ("half_open", c.half_open),
        ] {
            family.sample_u64(&[("backend", name), ("state", state)], n as u64);
        }
    }
}

fn first(mut problems: Vec<(String, String)>) -> (String, String) {
    if problems.is_empty() {
        return (String::new(), "invalid settings".into());
    }
    problems.swap_remove(0)
}
