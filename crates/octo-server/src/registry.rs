//! Long-lived backend state, apart from the engine graph that a config change rebuilds.
//!
//! A backend's upstream client ([`HttpEndpoint`]: its connection pool, its key pool with key
//! cooldowns, per-(key, model) circuit breakers, recent errors and latency averages) and the
//! latency averages `lowest_latency` learns per upstream model are worth keeping when the config
//! changes elsewhere. The [`BackendRegistry`] holds them by backend name, together with a digest
//! of the backend's settings: a rebuilt graph ([`crate::gateway::build_with`]) asks the registry
//! for each backend and gets the existing entry when the settings are unchanged, a fresh one
//! otherwise. The new graph is swapped in whole (`SharedRouter` is an `ArcSwap`-like pointer),
//! so requests never take a lock to find their backend, and requests in flight keep the graph
//! (and the entries) they started with.
//!
//! Entries are replaced only by [`BackendRegistry::commit`], after the new graph is in force: a
//! refused change leaves the registry as it was.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use octo_core::{ArcEngine, BuildError, Protocol};
use octo_engines::balance::{BalanceMemory, LatencyAverage};
use octo_engines::endpoint::HttpEndpoint;
use octo_engines::responses::ResponseState;
use sha2::{Digest, Sha256};

use crate::config::BackendConfig;

/// One backend, built once and shared by every model, rule and later graph that targets it.
pub struct BackendEntry {
    /// The digest of the settings it was built from.
    fingerprint: [u8; 32],
    /// The upstream client (connection pool, keys, breakers).
    pub endpoint: Arc<HttpEndpoint>,
    /// What targets call: passthrough or conversion, rewrites, then the endpoint.
    pub engine: ArcEngine,
    /// The protocols the backend speaks.
    pub protocols: Vec<Protocol>,
    /// Time-to-first-byte averages per upstream model, for `lowest_latency`.
    latency: Mutex<HashMap<String, Arc<LatencyAverage>>>,
}

impl std::fmt::Debug for BackendEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendEntry")
            .field("endpoint", &self.endpoint)
            .field("protocols", &self.protocols)
            .finish_non_exhaustive()
    }
}

impl BackendEntry {
    /// The shared latency average of `model` on this backend (created on first use).
    pub fn latency(&self, model: &str) -> Arc<LatencyAverage> {
        self.latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(model.to_owned())
            .or_default()
            .clone()
    }

    /// Every upstream model's latency average measured so far.
    pub fn latencies(&self) -> Vec<(String, std::time::Duration)> {
        let map = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = map
            .iter()
            .filter_map(|(m, a)| a.get().map(|d| (m.clone(), d)))
            .collect();
        out.sort();
        out
    }
}

/// The backends of one built graph, by name.
pub type Backends = BTreeMap<String, Arc<BackendEntry>>;

/// Backends by name, kept across config changes; see the [module docs](self).
#[derive(Debug, Default)]
pub struct BackendRegistry {
    entries: Mutex<Backends>,
    /// Where Responses clients' answers are kept for backends that do not speak the Responses
    /// API: the process's, shared by every graph built from this registry.
    responses: ResponseState,
    /// Balancer counters, sticky sessions and concurrency slots, carried from graph to graph.
    balance: Arc<BalanceMemory>,
}

/// The digest of a backend's settings (its keys included, never kept in plaintext here).
fn fingerprint(name: &str, config: &BackendConfig) -> [u8; 32] {
    // Settings that do not shape the built backend leave it as it is.
    let mut c = config.clone();
    c.models_sync_interval = None;
    Sha256::digest(format!("{name}\u{0}{c:?}").as_bytes()).into()
}

impl BackendRegistry {
    /// An empty registry whose backends keep Responses clients' answers in `responses`.
    pub fn new(responses: ResponseState) -> Self {
        BackendRegistry {
            entries: Mutex::default(),
            responses,
            balance: Arc::default(),
        }
    }

    /// The balancing state every graph built from this registry takes over from the one before
    /// (see [`BalanceMemory`]).
    pub fn balance(&self) -> &Arc<BalanceMemory> {
        &self.balance
    }

    /// Where Responses clients' answers are kept (off without storage).
    pub fn responses(&self) -> &ResponseState {
        &self.responses
    }

    /// The entry for backend `name` with settings `config`: the current one when its settings
    /// are the same, else a new one made by `build`.
    ///
    /// # Errors
    /// What `build` returns.
    pub fn resolve(
        &self,
        name: &str,
        config: &BackendConfig,
        build: impl FnOnce() -> Result<(Arc<HttpEndpoint>, ArcEngine, Vec<Protocol>), BuildError>,
    ) -> Result<Arc<BackendEntry>, BuildError> {
        let fp = fingerprint(name, config);
        if let Some(e) = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .filter(|e| e.fingerprint == fp)
        {
            return Ok(e.clone());
        }
        let (endpoint, engine, protocols) = build()?;
        Ok(Arc::new(BackendEntry {
            fingerprint: fp,
            endpoint,
            engine,
            protocols,
            latency: Mutex::default(),
        }))
    }

    /// Makes `backends` (those of the graph just put in force) the registry's entries; entries
    /// of backends no longer configured are dropped (their state goes with the last request
    /// that holds them).
    pub fn commit(&self, backends: &Backends) {
        *self.entries.lock().unwrap_or_else(|e| e.into_inner()) = backends.clone();
        // The graph in force asked for its balancer scopes while it was built: forget the rest.
        self.balance.sweep();
    }

    /// The entry of backend `name` in force.
    pub fn get(&self, name: &str) -> Option<Arc<BackendEntry>> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> BackendConfig {
        crate::config::parse(
            &format!("backends:\n  b: {{base_url: '{url}', protocol: openai_chat, api_key: k}}\n"),
            "t.yaml",
            &|_| None,
        )
        .unwrap()
        .backends
        .remove("b")
        .unwrap()
    }

    fn build(
        url: &str,
    ) -> impl FnOnce() -> Result<(Arc<HttpEndpoint>, ArcEngine, Vec<Protocol>), BuildError> {
        let url = url.to_owned();
        move || {
            let ep = Arc::new(HttpEndpoint::new(
                octo_engines::endpoint::EndpointConfig::new("b", url, Protocol::OpenAiChat),
            )?);
            Ok((ep.clone(), ep as ArcEngine, vec![Protocol::OpenAiChat]))
        }
    }

    #[test]
    fn unchanged_settings_keep_the_entry_and_changed_ones_get_a_new_one() {
        let r = BackendRegistry::default();
        let a = config("http://127.0.0.1:1");
        let first = r.resolve("b", &a, build("http://127.0.0.1:1")).unwrap();
        first
            .latency("m")
            .observe(std::time::Duration::from_millis(5), 1.0);
        // Not committed yet: a refused change leaves the registry as it was.
        let again = r.resolve("b", &a, build("http://127.0.0.1:1")).unwrap();
        assert!(!Arc::ptr_eq(&first, &again));
        r.commit(&BTreeMap::from([("b".to_owned(), first.clone())]));
        let same = r.resolve("b", &a, || panic!("not rebuilt")).unwrap();
        assert!(Arc::ptr_eq(&first, &same));
        assert_eq!(same.latencies().len(), 1, "the latency average is kept");
        let changed = r
            .resolve(
                "b",
                &config("http://127.0.0.1:2"),
                build("http://127.0.0.1:2"),
            )
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &changed));
        assert!(changed.latencies().is_empty());
        r.commit(&BTreeMap::new());
        assert!(r.get("b").is_none(), "removed backends are dropped");
    }
}
