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
use octo_store::{Backend, LogWriter, Store, StoreConfig};
use octo_telemetry::access::AccessLog;
use octo_telemetry::metrics::Metrics;
use octo_telemetry::otlp::{OtlpExporter, OtlpWorker};

use octo_engines::responses::ResponseState;

use crate::config::{Config, Storage};
use crate::stored_responses::DbResponses;

/// How long startup waits for a network database (PostgreSQL, MySQL) to answer before serving
/// without it and opening it in the background.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often old log rows are pruned.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Each backend's upstream client, by name, as the current graph holds them.
type Endpoints = RwLock<Vec<(String, Arc<HttpEndpoint>)>>;

/// The process-wide operations state; see the [module docs](self).
pub struct Ops {
    /// The current graph's upstream clients, for the key-state metrics.
    endpoints: Arc<Endpoints>,
    writer: Option<Arc<LogWriter>>,
    /// Bytes of each body kept in the log (`storage.log_bodies`).
    log_bodies: Option<usize>,
    /// The configured credentials, redacted from stored Responses conversations.
    secrets: octo_store::Secrets,
    metrics: RwLock<Arc<Metrics>>,
    names: Mutex<(Vec<String>, Vec<String>)>,
    prices: Arc<PriceBook>,
    otlp: Option<Arc<OtlpExporter>>,
    otlp_worker: Mutex<Option<OtlpWorker>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Rate limits and budgets (see `crate::limits`); kept across reloads like the rest.
    limiter: Arc<octo_limits::Limiter>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("storage", &self.writer.as_ref().map(|w| w.is_up()))
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
        let writer = match &config.storage {
            Storage::Off => None,
            Storage::On(s) => {
                let url = octo_store::resolve_url(&s.url, base_dir);
                let mut cfg = StoreConfig::with_url(url);
                cfg.retention = s.retention;
                cfg.buffer_capacity = usize::try_from(s.buffer).unwrap_or(usize::MAX);
                cfg.write_timeout = s.write_timeout;
                cfg.redact = secrets(config);
                let writer = open_log(&cfg).await?;
                if !s.retention.is_zero() {
                    let w = writer.clone();
                    let retention = s.retention;
                    tasks.push(tokio::spawn(async move {
                        if let Some(store) = w.opened().await {
                            store.run_retention(retention, RETENTION_EVERY).await;
                        }
                    }));
                }
                Some(writer)
            }
        };
        if let Some(w) = &writer {
            let w1 = w.clone();
            metrics.counter_fn(
                "octollm_log_records_dropped_total",
                "Finished requests the request log could not keep (queue or buffer full, refused).",
                move || w1.dropped(),
            );
            let w2 = w.clone();
            metrics.gauge_fn(
                "octollm_log_database_up",
                "1 when the request log's database answered the last open or write, 0 while it is unreachable.",
                move || if w2.is_up() { 1.0 } else { 0.0 },
            );
            let w3 = w.clone();
            metrics.gauge_fn(
                "octollm_log_records_pending",
                "Finished requests waiting to be written to the request log (queued or buffered).",
                move || w3.pending() as f64,
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
        let limiter = crate::limits::start(config)?;
        limiter.set_cost(crate::limits::cost_fn(prices.clone(), config));
        crate::limits::register_metrics(&limiter, &metrics);
        if let Some(store) = writer.as_ref().and_then(|w| w.store()) {
            crate::limits::seed(&limiter, &store).await;
        }
        metrics.register_fn(crate::answer_layers::collect);
        Ok(Ops {
            endpoints,
            secrets: secrets(config),
            log_bodies: match &config.storage {
                Storage::On(s) if writer.is_some() => s.log_bodies,
                _ => None,
            },
            writer,
            metrics: RwLock::new(Arc::new(metrics)),
            names: Mutex::new((models, backends)),
            prices,
            otlp,
            otlp_worker: Mutex::new(worker),
            tasks,
            limiter,
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
            router = router.observe(w.clone()).log_bodies(self.log_bodies);
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
        self.limiter
            .set_cost(crate::limits::cost_fn(self.prices.clone(), config));
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

    /// Where Responses clients' answers are kept: the request log's database (also one that
    /// is still being opened: it is used once it answers), or nowhere when storage is off.
    pub fn responses(&self) -> ResponseState {
        match (self.store(), &self.writer) {
            (Some(store), _) => {
                ResponseState::new(Arc::new(DbResponses::new(store, self.secrets.clone())))
            }
            (None, Some(w)) => ResponseState::new(Arc::new(DbResponses::opening(
                w.clone(),
                self.secrets.clone(),
            ))),
            (None, None) => ResponseState::off(),
        }
    }

    /// The request log, when storage is on and its database is open.
    pub fn store(&self) -> Option<Store> {
        self.writer.as_ref().and_then(|w| w.store())
    }

    /// Whether storage is configured (on), opened or not yet.
    pub fn storage_configured(&self) -> bool {
        self.writer.is_some()
    }

    /// Waits until the database is open; `None` when storage is off or the database answered
    /// but cannot be used (see `LogWriter::spawn_opening`).
    pub async fn store_opened(&self) -> Option<Store> {
        match &self.writer {
            Some(w) => w.opened().await,
            None => None,
        }
    }

    /// Why [`store`](Self::store) is `None`, for an API answer.
    pub fn store_unavailable(&self) -> String {
        match &self.writer {
            None => {
                "storage is off (`storage: off`): there is no request log or statistics to read"
                    .into()
            }
            Some(w) => format!(
                "the request log's database is not available yet ({}); the gateway keeps retrying, and records wait in its buffer",
                w.stats()
                    .last_error
                    .unwrap_or_else(|| "not opened yet".into())
            ),
        }
    }

    /// The price book.
    pub fn prices(&self) -> &Arc<PriceBook> {
        &self.prices
    }

    /// The rate limiter (limits and budgets, counted in memory or in Redis).
    pub fn limiter(&self) -> &Arc<octo_limits::Limiter> {
        &self.limiter
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
        self.limiter.shutdown();
        if let Some(s) = self.store() {
            s.close().await;
        }
    }
}

/// Every credential the config holds in plain text (upstream keys and header values, gateway
/// keys, admin tokens): kept bodies are redacted of them before they are written.
fn secrets(config: &Config) -> octo_store::Secrets {
    use crate::config::KeySpec;
    let mut out: Vec<String> = Vec::new();
    for b in config.backends.values() {
        out.extend(b.keys());
        out.extend(
            b.headers
                .values()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_owned),
        );
    }
    for org in config.orgs.values() {
        for spec in org.api_keys.values() {
            let key = match spec {
                KeySpec::Key(k) => k,
                KeySpec::Detailed(d) => &d.key,
            };
            out.push(key.clone());
        }
    }
    if let Some(admin) = &config.admin {
        out.extend(admin.tokens.iter().cloned());
    }
    // Hashed keys are not the key; and very short values (a header set to `1`) would redact
    // ordinary text.
    out.retain(|s| !s.starts_with("sha256:") && s.len() >= 8);
    octo_store::Secrets::new(out)
}

/// Opens the request log for `cfg` and starts its writer.
///
/// A SQLite file is local: failing to open it is a startup error. A network database
/// (PostgreSQL, MySQL) that refuses the credentials or lacks the database, or whose schema
/// migration fails, is a startup error too (the operator must act). One that does not answer
/// within [`OPEN_TIMEOUT`] (down, restarting, unreachable) is not: the gateway serves at once,
/// says so in one warning, and the writer opens the database in the background with backoff,
/// holding records in its buffer meanwhile (`octollm_log_database_up` is 0 until it answers).
async fn open_log(cfg: &StoreConfig) -> Result<Arc<LogWriter>, (String, String)> {
    let key = || "storage.url".to_owned();
    let backend = cfg.backend().map_err(|e| (key(), e.message().to_owned()))?;
    let why = match tokio::time::timeout(OPEN_TIMEOUT, Store::open(cfg)).await {
        Ok(Ok(store)) => return Ok(LogWriter::spawn(store, cfg)),
        Ok(Err(e)) if backend == Backend::Sqlite || !e.is_retryable() => {
            return Err((
                key(),
                format!("cannot open the request log: {}", e.message()),
            ));
        }
        Ok(Err(e)) => e.message().to_owned(),
        Err(_) => format!("no answer within {OPEN_TIMEOUT:?}"),
    };
    tracing::warn!(
        backend = backend.name(),
        buffer = cfg.buffer_capacity,
        "storage: the request log's database (storage.url) is unreachable ({why}); serving without it: \
         records wait in the writer's buffer and are written once it answers (retried with backoff; \
         octollm_log_database_up is 0 until then)"
    );
    Ok(LogWriter::spawn_opening(cfg))
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
