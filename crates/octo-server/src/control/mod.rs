//! The control plane: the one place a config change goes through, from the admin API, the file
//! watcher or another instance sharing the database.
//!
//! ```text
//! admin API ─┐                     ┌─ merge: file document + API objects + API keys
//! file watch ┼─▶ ControlPlane::apply ─┼─ type and validate (config::from_document: the file's checks)
//! DB poll ───┘   (one at a time)   ├─ build the graph (gateway::build_with + BackendRegistry)
//!                                  ├─ persist (API changes: object + audit + counter, one tx)
//!                                  └─ swap (SharedRouter) and commit the registry
//! ```
//!
//! Objects from the YAML file are `source: file` and read-only here; objects created through the
//! admin API are `source: api`, stored in the database (upstream keys sealed, see [`secrets`])
//! and merged into the file's document on every start, so the same validation and key paths
//! apply to both. A name in both places is refused, naming both. API objects are taken as
//! written: `${VAR}` in them is not interpolated (only the file is).
//!
//! Gateway keys created through the API ([`Change::CreateKey`]) are stored as their SHA-256
//! digest and merged as `orgs.ORG.api_keys.NAME: {key: "sha256:…", …}`; the key itself is
//! returned once.
//!
//! Other instances on the same database follow changes ([`ControlPlane::sync_once`]: read the
//! change counter, and when it moved, the state, and rebuild if it differs from theirs). On
//! PostgreSQL a change sends `NOTIFY octollm_config` and every instance `LISTEN`s, so it is in
//! force everywhere at once; the counter is still polled as the fallback (every
//! [`NOTIFIED_POLL_EVERY`] while the listener is up: a notification lost with a dropped
//! connection or swallowed by a pooler costs only that delay). MySQL and SQLite have no
//! notification: they poll every [`SYNC_EVERY`]. `GET /api/v1/health` and the metrics say which
//! way is in use ([`Follow`]).
//!
//! A PostgreSQL/MySQL database that does not answer at startup does not stop the gateway
//! (`crate::ops` opens it in the background): the control plane then serves the config file's
//! objects only, says so (a warning, `octollm_config_api_objects_loaded` 0, the health answer's
//! `api_objects: "pending"`), refuses admin API changes with 503, and applies the stored objects
//! and keys as soon as the database answers.

pub mod model_sync;
pub mod objects;
pub mod secrets;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use octo_core::http::{ServeConfig, SharedRouter};
use octo_core::record::{Observer, Record};
use octo_store::{ControlWrite, NewAudit, Store, StoredKey, StoredObject};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

use crate::config::limits::{Budget, RateLimit};
use crate::config::{Config, ConfigError, from_document};
use crate::gateway::build_limited;
use crate::ops::Ops;
use crate::registry::BackendRegistry;

pub use objects::Kind;
use secrets::Sealer;

/// How often other instances' changes are looked for when no notification comes (MySQL,
/// SQLite, or PostgreSQL while its listener is down).
pub const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How often the counter is still read while PostgreSQL notifications arrive (the fallback).
pub const NOTIFIED_POLL_EVERY: Duration = Duration::from_secs(5);
/// How long to wait before trying to listen again after the listener failed.
const LISTEN_RETRY: Duration = Duration::from_secs(10);
/// How often key use is written to the database.
const KEY_USE_EVERY: Duration = Duration::from_secs(2);
/// The longest object or key name.
const MAX_NAME: usize = 150;

/// The settings of a gateway key created through the admin API (everything but the key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    /// Models the key may use (default: all its org may use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// RFC 3339 time after which the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Request, token and concurrency caps (enforced by the limits engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Spend cap per period (enforced by the limits engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
}

/// An object created through the admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiObject {
    /// The object as YAML-shaped JSON, secrets in plaintext (memory only).
    pub body: Json,
    /// When it was last written, Unix ms.
    pub updated_at: i64,
    /// Who wrote it.
    pub updated_by: String,
}

/// A gateway key created through the admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// `sha256:<hex>` of the key.
    pub hash: String,
    /// Its settings.
    pub settings: KeySettings,
    /// When it was created, Unix ms.
    pub created_at: i64,
    /// Who created it.
    pub created_by: String,
}

/// One change.
#[derive(Debug, Clone)]
pub enum Change {
    /// Create an object; refused when the name exists.
    Create {
        /// Its kind.
        kind: Kind,
        /// Its name.
        name: String,
        /// Its fields, as in the YAML.
        body: Json,
    },
    /// Create or replace an API object; refused for a file object.
    Put {
        /// Its kind.
        kind: Kind,
        /// Its name.
        name: String,
        /// Its fields; masked secrets equal to the current ones keep them.
        body: Json,
    },
    /// Delete an API object.
    Delete {
        /// Its kind.
        kind: Kind,
        /// Its name.
        name: String,
    },
    /// Create a gateway key in `org`.
    CreateKey {
        /// The org (from the file or the API).
        org: String,
        /// The key's name in the org.
        name: String,
        /// Its settings.
        settings: KeySettings,
    },
    /// Revoke (delete) an API key.
    DeleteKey {
        /// Its org.
        org: String,
        /// Its name.
        name: String,
    },
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    /// The result would not validate (400); each problem with its key path.
    Invalid(String),
    /// The change conflicts with a file object or an existing name (409).
    Conflict(String),
    /// No such object (404).
    NotFound(String),
    /// The database could not take the change (503); nothing changed.
    Unavailable(String),
}

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeError::Invalid(m)
            | ChangeError::Conflict(m)
            | ChangeError::NotFound(m)
            | ChangeError::Unavailable(m) => f.write_str(m),
        }
    }
}

/// What an applied change returns.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// A created key, shown this once.
    pub key: Option<String>,
    /// Whether an object was created (rather than replaced).
    pub created: bool,
}

/// The control plane's state: what is in force and where it came from.
#[derive(Debug, Clone)]
pub struct State {
    /// The file's document (interpolated), or the demo's.
    pub file_doc: Yaml,
    /// API objects by (kind, name).
    pub objects: BTreeMap<(Kind, String), ApiObject>,
    /// API keys by (org, name).
    pub keys: BTreeMap<(String, String), ApiKey>,
    /// The merged config in force.
    pub config: Arc<Config>,
    /// Bumped by every applied change or reload.
    pub generation: u64,
}

impl State {
    /// Whether `name` is an object of `kind` in the file.
    pub fn in_file(&self, kind: Kind, name: &str) -> bool {
        section(&self.file_doc, kind.section()).is_some_and(|m| m.contains_key(name))
    }

    /// The file's object `name` of `kind`, as JSON.
    pub fn file_object(&self, kind: Kind, name: &str) -> Option<Json> {
        section(&self.file_doc, kind.section())?
            .get(name)
            .and_then(|v| serde_json::to_value(v).ok())
    }

    /// The names of the file's objects of `kind`.
    pub fn file_names(&self, kind: Kind) -> Vec<String> {
        section(&self.file_doc, kind.section())
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn section<'a>(doc: &'a Yaml, name: &str) -> Option<&'a serde_yaml_ng::Mapping> {
    doc.as_mapping()?.get(name)?.as_mapping()
}

/// How this instance follows the stored API objects: whether they are in force, and how other
/// instances' changes reach it (the health answer and the `octollm_config_*` metrics).
#[derive(Debug, Default)]
pub struct Follow {
    /// The stored objects and keys are in force (always true with storage off).
    loaded: std::sync::atomic::AtomicBool,
    /// 0: storage off, 1: polling, 2: PostgreSQL notifications (and the fallback poll).
    mechanism: std::sync::atomic::AtomicU8,
    /// Change notifications received.
    notifications: std::sync::atomic::AtomicU64,
    /// Other instances' changes applied after a notification.
    applied_notify: std::sync::atomic::AtomicU64,
    /// Other instances' changes applied by the poll.
    applied_poll: std::sync::atomic::AtomicU64,
}

impl Follow {
    /// Whether the stored API objects and keys are in force.
    pub fn loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `off`, `poll` or `notify`.
    pub fn mechanism(&self) -> &'static str {
        match self.mechanism.load(std::sync::atomic::Ordering::Relaxed) {
            0 => "off",
            1 => "poll",
            _ => "notify",
        }
    }

    /// Change notifications received so far.
    pub fn notifications(&self) -> u64 {
        self.notifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Other instances' changes applied so far: (after a notification, by the poll).
    pub fn applied(&self) -> (u64, u64) {
        (
            self.applied_notify
                .load(std::sync::atomic::Ordering::Relaxed),
            self.applied_poll.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    fn set_mechanism(&self, m: u8) {
        self.mechanism
            .store(m, std::sync::atomic::Ordering::Relaxed);
    }

    fn register(self: &Arc<Self>, metrics: &octo_telemetry::metrics::Metrics) {
        let f = self.clone();
        metrics.gauge_fn(
            "octollm_config_api_objects_loaded",
            "1 when the objects and keys made through the admin API (stored in the database) are in force; 0 while the gateway serves the config file's only (the database has not answered since startup).",
            move || if f.loaded() { 1.0 } else { 0.0 },
        );
        let f = self.clone();
        metrics.gauge_fn(
            "octollm_config_follow_notify",
            "1 while other instances' changes arrive by PostgreSQL notification (LISTEN/NOTIFY); 0 when they are only polled for (MySQL, SQLite, a listener down) or storage is off.",
            move || if f.mechanism() == "notify" { 1.0 } else { 0.0 },
        );
        let f = self.clone();
        metrics.counter_fn(
            "octollm_config_notifications_total",
            "Change notifications received from the database (PostgreSQL NOTIFY on octollm_config).",
            move || f.notifications(),
        );
        let f = self.clone();
        metrics.register_fn(move |out| {
            let (notify, poll) = f.applied();
            let mut family = out.family(
                "octollm_config_changes_applied_total",
                "Changes made through another instance's admin API applied here, by how they were noticed.",
                octo_telemetry::metrics::MetricKind::Counter,
            );
            family.sample_u64(&[("via", "notify")], notify);
            family.sample_u64(&[("via", "poll")], poll);
        });
    }
}

/// How the process started the control plane.
#[derive(Debug)]
pub struct Startup {
    /// The config file, watched for changes (`None` for the demo).
    pub file: Option<PathBuf>,
    /// The file's name in messages.
    pub label: String,
    /// The file's interpolated document.
    pub document: Yaml,
    /// Where the sealing key file lives when `OCTOLLM_SECRET_KEY` is not set.
    pub state_dir: PathBuf,
}

/// The control plane; see the [module docs](self).
pub struct ControlPlane {
    label: String,
    file: Option<PathBuf>,
    state: tokio::sync::Mutex<State>,
    view: RwLock<Arc<State>>,
    router: Arc<SharedRouter>,
    serve: ServeConfig,
    registry: BackendRegistry,
    ops: Arc<Ops>,
    sealer: Option<Sealer>,
    key_use: Arc<KeyUse>,
    seen_version: Mutex<i64>,
    follow: Arc<Follow>,
    syncs: model_sync::SyncBook,
    /// Set at shutdown: the background loops end.
    stopped: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("file", &self.label)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn json_to_yaml(v: &Json) -> Yaml {
    serde_yaml_ng::to_value(v).unwrap_or(Yaml::Null)
}

fn problems_text(e: &ConfigError) -> String {
    e.problems
        .iter()
        .map(|(p, m)| {
            if p.is_empty() {
                m.clone()
            } else {
                format!("at `{p}`: {m}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The merged document: the file's, with API objects and keys added. Problems (a name in both
/// places, a key of an unknown org) name the key path and both places.
fn merge(
    file_doc: &Yaml,
    label: &str,
    objects: &BTreeMap<(Kind, String), ApiObject>,
    keys: &BTreeMap<(String, String), ApiKey>,
) -> Result<Yaml, Vec<(String, String)>> {
    let mut doc = file_doc.clone();
    let mut problems = Vec::new();
    let Some(root) = doc.as_mapping_mut() else {
        return Err(vec![(String::new(), "the file is not a mapping".into())]);
    };
    for ((kind, name), o) in objects {
        let sec = root
            .entry(Yaml::String(kind.section().to_owned()))
            .or_insert_with(|| Yaml::Mapping(Default::default()));
        if sec.is_null() {
            *sec = Yaml::Mapping(Default::default());
        }
        let Some(sec) = sec.as_mapping_mut() else {
            continue;
        };
        let key = Yaml::String(name.clone());
        if sec.contains_key(&key) {
            problems.push((
                format!("{}.{name}", kind.section()),
                format!(
                    "defined both in {label} and through the admin API (stored in the database, written by {}); delete one of them: `DELETE /api/v1/{}/{name}` or remove it from the file",
                    o.updated_by,
                    kind.section()
                ),
            ));
            continue;
        }
        sec.insert(key, json_to_yaml(&o.body));
    }
    for ((org, name), k) in keys {
        let orgs = root
            .entry(Yaml::String("orgs".into()))
            .or_insert_with(|| Yaml::Mapping(Default::default()));
        let Some(orgs) = orgs.as_mapping_mut() else {
            continue;
        };
        let Some(o) = orgs.get_mut(org.as_str()) else {
            problems.push((
                format!("orgs.{org}.api_keys.{name}"),
                format!(
                    "the key `{org}/{name}` (created through the admin API) belongs to org `{org}`, which is no longer defined; define the org again or revoke the key (`DELETE /api/v1/keys/{org}/{name}`)"
                ),
            ));
            continue;
        };
        if o.is_null() {
            *o = Yaml::Mapping(Default::default());
        }
        let Some(o) = o.as_mapping_mut() else {
            continue;
        };
        let api_keys = o
            .entry(Yaml::String("api_keys".into()))
            .or_insert_with(|| Yaml::Mapping(Default::default()));
        if api_keys.is_null() {
            *api_keys = Yaml::Mapping(Default::default());
        }
        let Some(api_keys) = api_keys.as_mapping_mut() else {
            continue;
        };
        if api_keys.contains_key(name.as_str()) {
            problems.push((
                format!("orgs.{org}.api_keys.{name}"),
                format!(
                    "defined both in {label} and through the admin API (created by {}); revoke one of them",
                    k.created_by
                ),
            ));
            continue;
        }
        let mut spec = serde_json::to_value(&k.settings).unwrap_or_default();
        if let Some(m) = spec.as_object_mut() {
            m.insert("key".into(), Json::String(k.hash.clone()));
        }
        api_keys.insert(Yaml::String(name.clone()), json_to_yaml(&spec));
    }
    if problems.is_empty() {
        Ok(doc)
    } else {
        Err(problems)
    }
}

fn check_name(what: &str, name: &str) -> Result<(), ChangeError> {
    if name.is_empty()
        || name.len() > MAX_NAME
        || name.trim() != name
        || name.chars().any(char::is_control)
    {
        return Err(ChangeError::Invalid(format!(
            "at `name`: `{name}` is not a valid {what} name: 1 to {MAX_NAME} characters, no control characters, no leading or trailing spaces"
        )));
    }
    Ok(())
}

/// A fresh gateway key: `sk-octo-` and 48 hex digits (24 random bytes).
fn new_key() -> Result<String, ChangeError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| ChangeError::Unavailable(format!("cannot make a key: {e}")))?;
    let mut s = String::from("sk-octo-");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    Ok(s)
}

impl ControlPlane {
    /// Reads the API objects and keys from storage, merges them into the file's document,
    /// validates and builds the graph. Must run inside the tokio runtime.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key path (and both places for a name defined twice).
    pub async fn start(startup: Startup, ops: Arc<Ops>) -> Result<Arc<ControlPlane>, ConfigError> {
        let Startup {
            file,
            label,
            document,
            state_dir,
        } = startup;
        let fail = |problems: Vec<(String, String)>| ConfigError {
            source: label.clone(),
            problems,
        };
        let sealer = if ops.storage_configured() {
            Some(Sealer::from_env_or_file(&state_dir).map_err(|m| fail(vec![(String::new(), m)]))?)
        } else {
            None
        };
        let follow = Arc::new(Follow::default());
        let (objects, keys, version) = match (ops.store(), &sealer) {
            (Some(store), Some(sealer)) => {
                let stored = store.control_state().await.map_err(|e| {
                    fail(vec![(
                        "storage".into(),
                        format!("cannot read the admin API's objects: {e}"),
                    )])
                })?;
                let (o, k) = decode(&stored, sealer).map_err(fail)?;
                follow
                    .loaded
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                follow.set_mechanism(1);
                (o, k, stored.version)
            }
            (None, Some(_)) => {
                tracing::warn!(
                    "control plane: the database is unreachable; serving the config file's objects only: the backends, models, orgs, prices and keys made through the admin API apply once it answers (octollm_config_api_objects_loaded is 0 until then; admin API changes answer 503)"
                );
                follow.set_mechanism(1);
                (BTreeMap::new(), BTreeMap::new(), 0)
            }
            _ => {
                follow
                    .loaded
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                (BTreeMap::new(), BTreeMap::new(), 0)
            }
        };
        follow.register(&ops.metrics());
        let merged = merge(&document, &label, &objects, &keys).map_err(fail)?;
        let config = from_document(merged, &label)?;
        let registry = BackendRegistry::new(ops.responses());
        let gateway = build_limited(&config, &label, &registry, Some(ops.limiter().clone()))?;
        let serve = gateway.serve;
        ops.limiter().set_policy(gateway.policy.clone());
        // The budgets of keys made through the admin API are in this policy, not in the file's
        // that `Ops::start` seeded: bring their period's spend back too (seeding keeps the
        // larger of two counts, so the file's are unchanged).
        if let Some(store) = ops.store()
            && !keys.is_empty()
        {
            crate::limits::seed(ops.limiter(), &store).await;
        }
        ops.track(&gateway.endpoints);
        let key_use = Arc::new(KeyUse::default());
        let mut router = ops.attach(gateway.router);
        if ops.storage_configured() {
            router = router.observe(key_use.clone());
        }
        registry.commit(&gateway.backends);
        let state = State {
            file_doc: document,
            objects,
            keys,
            config: Arc::new(config),
            generation: 1,
        };
        let cp = Arc::new(ControlPlane {
            label,
            file,
            view: RwLock::new(Arc::new(state.clone())),
            state: tokio::sync::Mutex::new(state),
            router: SharedRouter::new(router),
            serve,
            registry,
            ops,
            sealer,
            key_use,
            seen_version: Mutex::new(version),
            follow,
            syncs: model_sync::SyncBook::default(),
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        cp.clone().spawn_model_sync();
        if cp.ops.storage_configured() {
            cp.clone().spawn_sync();
            cp.clone().spawn_key_use();
        }
        Ok(cp)
    }

    /// The router in force (swapped by every change).
    pub fn router(&self) -> Arc<SharedRouter> {
        self.router.clone()
    }

    /// The server settings of the config the process started with.
    pub fn serve_config(&self) -> ServeConfig {
        self.serve.clone()
    }

    /// The backends' long-lived state.
    pub fn registry(&self) -> &BackendRegistry {
        &self.registry
    }

    /// The request log and statistics, when storage is on.
    pub fn store(&self) -> Option<Store> {
        self.ops.store()
    }

    /// Whether the stored objects are in force and how changes of other instances arrive.
    pub fn follow(&self) -> &Follow {
        &self.follow
    }

    /// The state in force (a snapshot; cheap).
    pub fn view(&self) -> Arc<State> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Ends the background loops (database poll, key-use writes, model list reads); called at
    /// shutdown, before the database is closed.
    pub fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The last model list read of each backend.
    pub fn syncs(&self) -> &model_sync::SyncBook {
        &self.syncs
    }

    /// Reads the model list of every backend with `models_sync_interval` whose last read is at
    /// least that old (checked every second).
    fn spawn_model_sync(self: Arc<Self>) {
        let weak = Arc::downgrade(&self);
        drop(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut running: std::collections::HashSet<String> = Default::default();
            let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    Some(name) = done_rx.recv() => {
                        running.remove(&name);
                        continue;
                    }
                }
                let Some(cp) = weak.upgrade().filter(|cp| !cp.is_stopped()) else {
                    return;
                };
                // The view is read inside `retain` (under the book's lock): a snapshot taken
                // before it could miss a backend created meanwhile and drop the list its
                // `models/sync` call just put.
                cp.syncs
                    .retain(&|b| cp.view().config.backends.contains_key(b));
                let config = cp.view().config.clone();
                for (name, b) in &config.backends {
                    let Some(every) = b.models_sync_interval else {
                        continue;
                    };
                    let due = cp
                        .syncs
                        .get(name)
                        .is_none_or(|s| s.at.elapsed().map_or(true, |age| age >= every));
                    if !due || !running.insert(name.clone()) {
                        continue;
                    }
                    let (cp, name, b, done) =
                        (cp.clone(), name.clone(), b.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let synced = model_sync::fetch(&name, &b).await;
                        if let Err(e) = &synced.result {
                            tracing::warn!(backend = %name, error = %e, "model list not read");
                        }
                        cp.syncs.put(&name, synced);
                        let _ = done.send(name);
                    });
                }
            }
        });
    }

    /// The config file's name in messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn install(&self, gateway: crate::Gateway, config: &Config) {
        self.ops.limiter().set_policy(gateway.policy.clone());
        self.ops.reconfigure(config);
        self.ops.track(&gateway.endpoints);
        let mut router = self.ops.attach(gateway.router);
        // Key use is only noted where it can be written.
        if self.ops.storage_configured() {
            router = router.observe(self.key_use.clone());
        }
        self.router.store(router);
        self.registry.commit(&gateway.backends);
    }

    /// Validates `objects` and `keys` merged into `file_doc` and builds the graph.
    fn prepare(
        &self,
        file_doc: &Yaml,
        objects: &BTreeMap<(Kind, String), ApiObject>,
        keys: &BTreeMap<(String, String), ApiKey>,
    ) -> Result<(Config, crate::Gateway), ChangeError> {
        let merged = merge(file_doc, &self.label, objects, keys).map_err(|p| {
            ChangeError::Conflict(problems_text(&ConfigError {
                source: self.label.clone(),
                problems: p,
            }))
        })?;
        let config = from_document(merged, "the admin API change")
            .map_err(|e| ChangeError::Invalid(problems_text(&e)))?;
        let gateway = build_limited(
            &config,
            "the admin API change",
            &self.registry,
            Some(self.ops.limiter().clone()),
        )
        .map_err(|e| ChangeError::Invalid(problems_text(&e)))?;
        Ok((config, gateway))
    }

    /// Applies one change made by `actor`: validated as the file is, persisted with its audit
    /// entry, then in force (this instance at once, others within a few seconds).
    ///
    /// # Errors
    /// See [`ChangeError`]: nothing changed.
    pub async fn apply(&self, change: Change, actor: &str) -> Result<Applied, ChangeError> {
        let Some(store) = self.ops.store().filter(|_| self.follow.loaded()) else {
            if !self.ops.storage_configured() {
                return Err(ChangeError::Unavailable(
                    "storage is off (`storage: off`): objects and keys made through the admin API live in the database; turn storage on, or edit the config file".into(),
                ));
            }
            return Err(ChangeError::Unavailable(format!(
                "the database has not answered since the gateway started, so the objects and keys stored through the admin API are not in force yet and nothing can be changed; the gateway serves the config file's objects meanwhile and applies the stored ones once it answers ({})",
                self.ops.store_unavailable()
            )));
        };
        let sealer = self
            .sealer
            .as_ref()
            .expect("a sealer whenever storage is on");
        let mut st = self.state.lock().await;
        let mut objects = st.objects.clone();
        let mut keys = st.keys.clone();
        let mut applied = Applied::default();
        let file = &self.label;
        let now = now_ms();
        let (write, audit) = match change {
            Change::Create { kind, name, body } | Change::Put { kind, name, body }
                if st.in_file(kind, &name) =>
            {
                let _ = body;
                return Err(ChangeError::Conflict(format!(
                    "`{}.{name}` is defined in {file} (key path `{}.{name}`) and is read-only through the admin API; edit the file instead",
                    kind.section(),
                    kind.section()
                )));
            }
            Change::Create { kind, name, .. } if objects.contains_key(&(kind, name.clone())) => {
                return Err(ChangeError::Conflict(format!(
                    "`{}.{name}` exists already; replace it with `PUT /api/v1/{}/{name}`",
                    kind.section(),
                    kind.section()
                )));
            }
            Change::Create { kind, name, body } | Change::Put { kind, name, body } => {
                check_name(kind.section().trim_end_matches('s'), &name)?;
                let mut body = body;
                let old = objects.get(&(kind, name.clone())).cloned();
                objects::incoming(kind, &mut body, old.as_ref().map(|o| &o.body));
                applied.created = old.is_none();
                objects.insert(
                    (kind, name.clone()),
                    ApiObject {
                        body: body.clone(),
                        updated_at: now,
                        updated_by: actor.to_owned(),
                    },
                );
                let detail = serde_json::json!({
                    "old": old.as_ref().map(|o| objects::masked(kind, &o.body)),
                    "new": objects::masked(kind, &body),
                });
                (
                    ControlWrite::PutObject(StoredObject {
                        kind: kind.section().to_owned(),
                        name: name.clone(),
                        body: objects::sealed(kind, &body, sealer).to_string(),
                        updated_at: now,
                        updated_by: actor.to_owned(),
                    }),
                    NewAudit {
                        actor: actor.to_owned(),
                        kind: kind.section().to_owned(),
                        name,
                        action: if old.is_none() { "create" } else { "update" }.into(),
                        detail: detail.to_string(),
                    },
                )
            }
            Change::Delete { kind, name } => {
                if st.in_file(kind, &name) {
                    return Err(ChangeError::Conflict(format!(
                        "`{}.{name}` is defined in {file} (key path `{}.{name}`) and is read-only through the admin API; remove it from the file instead",
                        kind.section(),
                        kind.section()
                    )));
                }
                let Some(old) = objects.remove(&(kind, name.clone())) else {
                    return Err(ChangeError::NotFound(format!(
                        "no {} `{name}` was created through the admin API",
                        kind.section().trim_end_matches('s')
                    )));
                };
                if kind == Kind::Orgs {
                    let held: Vec<&str> = keys
                        .keys()
                        .filter(|(o, _)| *o == name)
                        .map(|(_, k)| k.as_str())
                        .collect();
                    if !held.is_empty() {
                        return Err(ChangeError::Conflict(format!(
                            "org `{name}` still has keys created through the admin API ({}); revoke them first (`DELETE /api/v1/keys/{name}/KEY`)",
                            held.join(", ")
                        )));
                    }
                }
                (
                    ControlWrite::DeleteObject {
                        kind: kind.section().to_owned(),
                        name: name.clone(),
                    },
                    NewAudit {
                        actor: actor.to_owned(),
                        kind: kind.section().to_owned(),
                        name,
                        action: "delete".into(),
                        detail: serde_json::json!({"old": objects::masked(kind, &old.body)})
                            .to_string(),
                    },
                )
            }
            Change::CreateKey {
                org,
                name,
                settings,
            } => {
                check_name("key", &name)?;
                check_name("org", &org)?;
                if !st.config.orgs.contains_key(&org) {
                    let known: Vec<&str> = st.config.orgs.keys().map(String::as_str).collect();
                    return Err(ChangeError::Invalid(format!(
                        "at `org`: unknown org `{org}`; defined orgs: {} (create one with `POST /api/v1/orgs`)",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    )));
                }
                if keys.contains_key(&(org.clone(), name.clone()))
                    || st.config.orgs[&org].api_keys.contains_key(&name)
                {
                    return Err(ChangeError::Conflict(format!(
                        "org `{org}` has a key named `{name}` already; choose another name or revoke it first"
                    )));
                }
                let key = new_key()?;
                let hash = crate::admin::tokens::hashed(&key);
                applied.key = Some(key);
                applied.created = true;
                keys.insert(
                    (org.clone(), name.clone()),
                    ApiKey {
                        hash: hash.clone(),
                        settings: settings.clone(),
                        created_at: now,
                        created_by: actor.to_owned(),
                    },
                );
                (
                    ControlWrite::PutKey(StoredKey {
                        org: org.clone(),
                        name: name.clone(),
                        key_hash: hash,
                        body: serde_json::to_string(&settings).unwrap_or_default(),
                        created_at: now,
                        created_by: actor.to_owned(),
                    }),
                    NewAudit {
                        actor: actor.to_owned(),
                        kind: "keys".into(),
                        name: format!("{org}/{name}"),
                        action: "create".into(),
                        detail: serde_json::json!({"new": settings}).to_string(),
                    },
                )
            }
            Change::DeleteKey { org, name } => {
                let Some(old) = keys.remove(&(org.clone(), name.clone())) else {
                    let in_file = st
                        .config
                        .orgs
                        .get(&org)
                        .is_some_and(|o| o.api_keys.contains_key(&name));
                    return Err(if in_file {
                        ChangeError::Conflict(format!(
                            "the key `{org}/{name}` is defined in {file} (key path `orgs.{org}.api_keys.{name}`) and is read-only through the admin API; remove it from the file instead"
                        ))
                    } else {
                        ChangeError::NotFound(format!("no key `{name}` in org `{org}`"))
                    });
                };
                (
                    ControlWrite::DeleteKey {
                        org: org.clone(),
                        name: name.clone(),
                    },
                    NewAudit {
                        actor: actor.to_owned(),
                        kind: "keys".into(),
                        name: format!("{org}/{name}"),
                        action: "delete".into(),
                        detail: serde_json::json!({"old": old.settings}).to_string(),
                    },
                )
            }
        };
        let (config, gateway) = self.prepare(&st.file_doc, &objects, &keys)?;
        store.control_write(&write, &audit).await.map_err(|e| {
            if octo_store::control::is_duplicate(&e) {
                ChangeError::Conflict(format!(
                    "`{}` was created meanwhile (by another instance)",
                    audit.name
                ))
            } else {
                ChangeError::Unavailable(format!(
                    "the database did not take the change, nothing changed: {e}"
                ))
            }
        })?;
        self.install(gateway, &config);
        st.objects = objects;
        st.keys = keys;
        st.config = Arc::new(config);
        st.generation += 1;
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(st.clone());
        tracing::info!(actor, kind = %audit.kind, name = %audit.name, action = %audit.action, "admin API change applied");
        Ok(applied)
    }

    /// Re-reads the config file (`reason`: `SIGHUP` or `file change`) and applies it with the
    /// API objects; returns the line to print. An invalid file leaves everything as it was.
    pub async fn reload_file(&self, reason: &str) -> String {
        let Some(path) = &self.file else {
            return "octollm-server: no config file to reload".into();
        };
        let source = path.display().to_string();
        let mut st = self.state.lock().await;
        let outcome = crate::config::load_document(path).and_then(|doc| {
            let merged = merge(&doc, &source, &st.objects, &st.keys).map_err(|p| ConfigError {
                source: source.clone(),
                problems: p,
            })?;
            let config = from_document(merged, &source)?;
            let gateway = build_limited(
                &config,
                &source,
                &self.registry,
                Some(self.ops.limiter().clone()),
            )?;
            Ok((doc, config, gateway))
        });
        match outcome {
            Ok((doc, config, gateway)) => {
                let restart = crate::reload::restart_needed(&st.config, &config);
                let detail = file_diff(&st.file_doc, &doc);
                self.install(gateway, &config);
                st.file_doc = doc;
                st.config = Arc::new(config);
                st.generation += 1;
                let generation = st.generation;
                *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(st.clone());
                drop(st);
                if let Some(store) = self.ops.store() {
                    let audit = NewAudit {
                        actor: "file".into(),
                        kind: "config".into(),
                        name: source.clone(),
                        action: "reload".into(),
                        detail: detail.to_string(),
                    };
                    if let Err(e) = store.audit(&audit).await {
                        tracing::warn!(error = %e, "audit entry of a reload not written");
                    }
                }
                tracing::info!(reason, generation, "config reloaded");
                let mut line =
                    format!("octollm-server reloaded {source} (generation {generation}, {reason})");
                if !restart.is_empty() {
                    line.push_str(&format!("; restart to apply {}", restart.join(", ")));
                }
                line
            }
            Err(e) => {
                tracing::error!(reason, "config reload refused:\n{e}");
                format!(
                    "octollm-server kept the previous config ({reason}): {}",
                    e.to_string().replace('\n', " ")
                )
            }
        }
    }

    /// Looks for changes other instances wrote: reads the counter, and when it moved reads the
    /// state and applies it if it differs from this instance's. The first call after the
    /// database answered (when it was down at startup) reads and applies the stored state
    /// whatever the counter says.
    pub async fn sync_once(&self) -> Result<bool, String> {
        let (Some(store), Some(sealer)) = (self.ops.store(), &self.sealer) else {
            return Ok(false);
        };
        let loading = !self.follow.loaded();
        let version = store.control_version().await.map_err(|e| e.to_string())?;
        if !loading && version == *self.seen_version.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(false);
        }
        // Read under the lock `apply` holds while it writes: a state read before a change of
        // this instance committed must not be applied after it (it would undo the change).
        let mut st = self.state.lock().await;
        let stored = store.control_state().await.map_err(|e| e.to_string())?;
        let (objects, keys) = decode(&stored, sealer).map_err(|p| {
            problems_text(&ConfigError {
                source: "the database".into(),
                problems: p,
            })
        })?;
        let changed = st.objects != objects || st.keys != keys;
        if changed {
            let (config, gateway) = self
                .prepare(&st.file_doc, &objects, &keys)
                .map_err(|e| e.to_string())?;
            self.install(gateway, &config);
            st.objects = objects;
            st.keys = keys;
            st.config = Arc::new(config);
            st.generation += 1;
            *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(st.clone());
            if !loading {
                tracing::info!(version, "applied changes made by another instance");
            }
        }
        *self.seen_version.lock().unwrap_or_else(|e| e.into_inner()) = stored.version;
        if loading {
            // The database was down at startup: no budget's spend was read back yet.
            crate::limits::seed(self.ops.limiter(), &store).await;
            self.follow
                .loaded
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                objects = st.objects.len(),
                keys = st.keys.len(),
                "control plane: the database answered; the objects and keys made through the admin API are in force"
            );
            return Ok(false);
        }
        Ok(changed)
    }

    /// Follows the database: waits until it is open (it may have been down at startup), then
    /// applies other instances' changes, noticed by PostgreSQL notification when it can listen
    /// and by polling the counter otherwise (and as the fallback); see the [module docs](self).
    fn spawn_sync(self: Arc<Self>) {
        let weak = Arc::downgrade(&self);
        let ops = self.ops.clone();
        drop(self);
        tokio::spawn(async move {
            let Some(store) = ops.store_opened().await else {
                return;
            };
            drop(ops);
            let mut listener: Option<octo_store::ControlListener> = None;
            let mut can_listen = store.backend() == octo_store::Backend::Postgres;
            let mut listen_at = tokio::time::Instant::now();
            let mut poll_at = tokio::time::Instant::now();
            let mut warned = false;
            loop {
                let mut via_notify = false;
                match listener.as_mut() {
                    Some(l) => tokio::select! {
                        heard = l.recv() => match heard {
                            Ok(octo_store::Heard::Changed) => {
                                via_notify = true;
                                if let Some(cp) = weak.upgrade() {
                                    cp.follow.notifications.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                            }
                            // Notifications sent while it was away are lost: read the state.
                            Ok(octo_store::Heard::Reconnected) => via_notify = true,
                            Err(e) => {
                                tracing::warn!(error = %e, "control plane: stopped listening for other instances' changes; polling every {SYNC_EVERY:?} until listening again");
                                listener = None;
                                listen_at = tokio::time::Instant::now() + LISTEN_RETRY;
                                if let Some(cp) = weak.upgrade() {
                                    cp.follow.set_mechanism(1);
                                }
                            }
                        },
                        () = tokio::time::sleep_until(poll_at) => {}
                    },
                    None => tokio::time::sleep_until(poll_at).await,
                }
                let Some(cp) = weak.upgrade().filter(|cp| !cp.is_stopped()) else {
                    return;
                };
                // Listen before reading the state, so no change falls between the two.
                if listener.is_none() && can_listen && tokio::time::Instant::now() >= listen_at {
                    match tokio::time::timeout(Duration::from_secs(10), store.control_listener())
                        .await
                    {
                        Ok(Ok(Some(l))) => {
                            listener = Some(l);
                            cp.follow.set_mechanism(2);
                            tracing::debug!(
                                "control plane: listening for other instances' changes (PostgreSQL NOTIFY)"
                            );
                        }
                        Ok(Ok(None)) => can_listen = false,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "control plane: cannot listen for changes yet; polling");
                            listen_at = tokio::time::Instant::now() + LISTEN_RETRY;
                        }
                        Err(_) => listen_at = tokio::time::Instant::now() + LISTEN_RETRY,
                    }
                }
                let now = tokio::time::Instant::now();
                if !via_notify || now >= poll_at {
                    poll_at = now
                        + if listener.is_some() {
                            NOTIFIED_POLL_EVERY
                        } else {
                            SYNC_EVERY
                        };
                }
                match tokio::time::timeout(Duration::from_secs(10), cp.sync_once()).await {
                    Ok(Ok(changed)) => {
                        warned = false;
                        if changed {
                            let counter = if via_notify {
                                &cp.follow.applied_notify
                            } else {
                                &cp.follow.applied_poll
                            };
                            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    Ok(Err(e)) if !warned => {
                        warned = true;
                        if cp.follow.loaded() {
                            tracing::warn!(error = %e, "cannot follow changes made by other instances; retrying");
                        } else {
                            tracing::error!(error = %e, "control plane: the objects and keys stored through the admin API cannot be applied; serving the config file's only, retrying");
                        }
                    }
                    _ => {}
                }
            }
        });
    }

    fn spawn_key_use(self: Arc<Self>) {
        let weak = Arc::downgrade(&self);
        drop(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEY_USE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(cp) = weak.upgrade().filter(|cp| !cp.is_stopped()) else {
                    return;
                };
                cp.flush_key_use().await;
            }
        });
    }

    /// Writes the key use noted since the last flush.
    pub async fn flush_key_use(&self) {
        let uses = self.key_use.take();
        if uses.is_empty() {
            return;
        }
        match self.ops.store() {
            Some(store) => {
                if let Err(e) = store.touch_keys(&uses).await {
                    tracing::debug!(error = %e, "key use not written; keeping it for the next try");
                    self.key_use.restore(uses);
                }
            }
            // Not open yet (down at startup): kept for when it is.
            None => self.key_use.restore(uses),
        }
    }
}

/// Why [`check_stored`] could not check the merged config.
#[derive(Debug)]
pub enum CheckError {
    /// The database could not be read (down, unreachable, refused): only the file was checked.
    Unreachable(String),
    /// The file with the stored objects does not validate: each problem with its key path (a
    /// name in both places names both).
    Invalid(ConfigError),
}

/// What [`check_stored`] found: the merged config and how many objects and keys the database
/// added to the file's.
#[derive(Debug)]
pub struct Checked {
    /// The file's config with the stored objects and keys merged in.
    pub config: Config,
    /// Objects stored through the admin API.
    pub objects: usize,
    /// Keys stored through the admin API.
    pub keys: usize,
}

/// `octollm-server --check` with storage on: reads the objects and keys stored through the
/// admin API from the database at `url` (without changing it: no migration, no file made),
/// merges them into the file's `document` as a start would, and validates the whole. A database
/// with no control-plane tables yet adds nothing.
///
/// # Errors
/// See [`CheckError`].
pub async fn check_stored(
    document: &Yaml,
    label: &str,
    url: &str,
    state_dir: &std::path::Path,
) -> Result<Checked, CheckError> {
    let fail = |problems| {
        CheckError::Invalid(ConfigError {
            source: label.to_owned(),
            problems,
        })
    };
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        octo_store::Store::read_control_state(url),
    )
    .await;
    let stored = match read {
        Ok(Ok(Some(stored))) => stored,
        Ok(Ok(None)) => Default::default(),
        Ok(Err(e)) if !e.is_retryable() => {
            return Err(fail(vec![(
                "storage.url".into(),
                format!("cannot read the admin API's objects: {}", e.message()),
            )]));
        }
        Ok(Err(e)) => return Err(CheckError::Unreachable(e.message().to_owned())),
        Err(_) => return Err(CheckError::Unreachable("no answer within 5s".into())),
    };
    let sealer = match secrets::Sealer::from_env_or_existing_file(state_dir) {
        Ok(Some(s)) => s,
        // No key to open sealed upstream keys with: objects holding one are reported.
        Ok(None) => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| fail(vec![(String::new(), e.to_string())]))?;
            secrets::Sealer::new(key)
        }
        Err(m) => return Err(fail(vec![(String::new(), m)])),
    };
    let (objects, keys) = decode(&stored, &sealer).map_err(fail)?;
    let merged = merge(document, label, &objects, &keys).map_err(fail)?;
    let config = from_document(merged, label).map_err(CheckError::Invalid)?;
    Ok(Checked {
        config,
        objects: objects.len(),
        keys: keys.len(),
    })
}

/// Decodes stored objects and keys (secrets opened); problems name the object.
#[allow(clippy::type_complexity)]
fn decode(
    stored: &octo_store::ControlState,
    sealer: &Sealer,
) -> Result<
    (
        BTreeMap<(Kind, String), ApiObject>,
        BTreeMap<(String, String), ApiKey>,
    ),
    Vec<(String, String)>,
> {
    let mut problems = Vec::new();
    let mut objects = BTreeMap::new();
    for o in &stored.objects {
        let Some(kind) = Kind::parse(&o.kind) else {
            continue;
        };
        let at = format!("{}.{}", o.kind, o.name);
        let body = serde_json::from_str::<Json>(&o.body)
            .map_err(|e| e.to_string())
            .and_then(|b| objects::opened(kind, &b, sealer));
        match body {
            Ok(body) => {
                objects.insert(
                    (kind, o.name.clone()),
                    ApiObject {
                        body,
                        updated_at: o.updated_at,
                        updated_by: o.updated_by.clone(),
                    },
                );
            }
            Err(e) => problems.push((at, format!("stored through the admin API: {e}"))),
        }
    }
    let mut keys = BTreeMap::new();
    for k in &stored.keys {
        match serde_json::from_str::<KeySettings>(&k.body) {
            Ok(settings) => {
                keys.insert(
                    (k.org.clone(), k.name.clone()),
                    ApiKey {
                        hash: k.key_hash.clone(),
                        settings,
                        created_at: k.created_at,
                        created_by: k.created_by.clone(),
                    },
                );
            }
            Err(e) => problems.push((
                format!("orgs.{}.api_keys.{}", k.org, k.name),
                format!("stored through the admin API: {e}"),
            )),
        }
    }
    if problems.is_empty() {
        Ok((objects, keys))
    } else {
        Err(problems)
    }
}

/// Which file objects a reload added, changed or removed, by section.
fn file_diff(old: &Yaml, new: &Yaml) -> Json {
    let mut out = serde_json::Map::new();
    for kind in Kind::ALL {
        let a = section(old, kind.section());
        let b = section(new, kind.section());
        let names = |m: Option<&serde_yaml_ng::Mapping>| -> Vec<String> {
            m.map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
        };
        let (an, bn) = (names(a), names(b));
        let added: Vec<&String> = bn.iter().filter(|n| !an.contains(n)).collect();
        let removed: Vec<&String> = an.iter().filter(|n| !bn.contains(n)).collect();
        let changed: Vec<&String> = bn
            .iter()
            .filter(|n| {
                an.contains(n)
                    && a.and_then(|m| m.get(n.as_str())) != b.and_then(|m| m.get(n.as_str()))
            })
            .collect();
        if added.is_empty() && removed.is_empty() && changed.is_empty() {
            continue;
        }
        out.insert(
            kind.section().into(),
            serde_json::json!({"added": added, "changed": changed, "removed": removed}),
        );
    }
    Json::Object(out)
}

/// The record observer noting when each (org, key) was last used; flushed to the database in
/// batches, so a request only takes a short lock.
#[derive(Debug, Default)]
pub struct KeyUse {
    seen: Mutex<std::collections::HashMap<(String, String), i64>>,
}

impl KeyUse {
    fn take(&self) -> Vec<(String, String, i64)> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.drain().map(|((o, k), at)| (o, k, at)).collect()
    }

    fn restore(&self, uses: Vec<(String, String, i64)>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for (o, k, at) in uses {
            let slot = seen.entry((o, k)).or_insert(at);
            *slot = (*slot).max(at);
        }
    }
}

impl Observer for KeyUse {
    fn on_complete(&self, record: &Arc<Record>) {
        let (Some(org), Some(user)) = (&record.org, &record.user) else {
            return;
        };
        let at = record
            .started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get_mut(&(org.clone(), user.clone())) {
            Some(t) => *t = (*t).max(at),
            None => {
                seen.insert((org.clone(), user.clone()), at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Yaml {
        crate::config::document(text, "f.yaml", &|_| None).unwrap()
    }

    #[test]
    fn merge_adds_objects_and_keys_and_refuses_names_in_both_places() {
        let file = doc(
            "backends:\n  a: {base_url: 'http://x', protocol: openai_chat}\norgs:\n  acme: {api_keys: {alice: sk-alice-key}}\n",
        );
        let mut objects = BTreeMap::new();
        objects.insert(
            (Kind::Backends, "b".to_owned()),
            ApiObject {
                body: serde_json::json!({"base_url": "http://y", "protocol": "anthropic"}),
                updated_at: 0,
                updated_by: "token:0".into(),
            },
        );
        let mut keys = BTreeMap::new();
        keys.insert(
            ("acme".to_owned(), "ci".to_owned()),
            ApiKey {
                hash: crate::admin::tokens::hashed("k"),
                settings: KeySettings::default(),
                created_at: 0,
                created_by: "token:0".into(),
            },
        );
        let merged = merge(&file, "f.yaml", &objects, &keys).unwrap();
        let c = from_document(merged, "f.yaml").unwrap();
        assert_eq!(c.backends.len(), 2);
        assert_eq!(c.orgs["acme"].api_keys.len(), 2);
        objects.insert(
            (Kind::Backends, "a".to_owned()),
            objects[&(Kind::Backends, "b".to_owned())].clone(),
        );
        let p = merge(&file, "f.yaml", &objects, &keys).unwrap_err();
        assert_eq!(p[0].0, "backends.a");
        assert!(
            p[0].1.contains("f.yaml") && p[0].1.contains("admin API"),
            "{p:?}"
        );
    }
}

#[cfg(test)]
mod race_tests {
    use super::*;

    /// The database poll must never put back a state read before a change of this instance
    /// committed: the poll runs back to back here while each change depends on the one before
    /// (a model on the backend just created). Reading the state before taking the apply lock
    /// (the bug behind the flaky `test_request_and_model_sync`) fails this within a few rounds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_poll_never_undoes_a_change_of_this_instance() {
        let dir = std::env::temp_dir().join(format!("octo-cp-poll-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "storage: {{url: 'sqlite://{}'}}\nbackends:\n  a: {{base_url: 'http://127.0.0.1:9', protocol: openai_chat}}\n",
            dir.join("cp.db").display()
        );
        let document = crate::config::document(&text, "f.yaml", &|_| None).unwrap();
        let config = from_document(document.clone(), "f.yaml").unwrap();
        let ops = Arc::new(Ops::start(&config, &dir).await.unwrap());
        let cp = ControlPlane::start(
            Startup {
                file: None,
                label: "f.yaml".into(),
                document,
                state_dir: dir.clone(),
            },
            ops.clone(),
        )
        .await
        .unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let poller = {
            let (cp, stop) = (cp.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    cp.sync_once().await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        for i in 0..30 {
            let backend = Change::Create {
                kind: Kind::Backends,
                name: format!("b{i}"),
                body: serde_json::json!({"base_url": "http://127.0.0.1:9", "protocol": "anthropic"}),
            };
            cp.apply(backend, "test").await.unwrap();
            let model = Change::Create {
                kind: Kind::Models,
                name: format!("m{i}"),
                body: serde_json::json!({"targets": [{"backend": format!("b{i}")}]}),
            };
            cp.apply(model, "test")
                .await
                .unwrap_or_else(|e| panic!("round {i}: the backend was undone: {e}"));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        poller.await.unwrap();
        assert_eq!(cp.view().objects.len(), 60);
        cp.stop();
        ops.shutdown(std::time::Instant::now() + Duration::from_secs(5))
            .await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
