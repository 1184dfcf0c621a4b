//! Cache lookups per model, for `octollm_cache_requests_total{model,result}`.
//!
//! The counters live in a process-wide registry so they survive config reloads (a reload builds
//! new engines that find the same counters by model name) and so the metrics endpoint can read
//! them without knowing the engine graph. Labels are bounded: one entry per configured model
//! that has the cache on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// What a lookup found, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// Served from the cache.
    Hit,
    /// Looked up, not found (or the store failed): sent upstream.
    Miss,
    /// Not looked up: the client said `cache-control: no-cache`/`no-store`, or the request
    /// depends on provider state.
    Bypass,
}

impl CacheResult {
    /// The label value (and the `x-octollm-cache` header value).
    pub const fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Bypass => "bypass",
        }
    }

    /// Every result, in label order.
    pub const ALL: [CacheResult; 3] = [CacheResult::Hit, CacheResult::Miss, CacheResult::Bypass];
}

/// One model's lookup counters.
#[derive(Debug, Default)]
pub struct CacheCounters([AtomicU64; 3]);

impl CacheCounters {
    /// Counts one lookup.
    pub fn count(&self, result: CacheResult) {
        self.0[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The count of `result` so far.
    pub fn get(&self, result: CacheResult) -> u64 {
        self.0[result as usize].load(Ordering::Relaxed)
    }
}

type Registry = Mutex<BTreeMap<String, Arc<CacheCounters>>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::default)
}

/// The process-wide counters of `model` (created on first use).
pub fn counters(model: &str) -> Arc<CacheCounters> {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(model.to_owned())
        .or_default()
        .clone()
}

/// Every model's counters, by name (for the metrics endpoint).
pub fn snapshot() -> Vec<(String, Arc<CacheCounters>)> {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
