//! The price book: the one place a finished record is priced. It layers config overrides over the
//! last synced table over the embedded snapshot, and hands the gateway a [`Pricing`] function
//! for [`octo_core::record::Observers::with_pricing`].
//!
//! A record is priced by, in order: an override named like its exposed `model`, an override named
//! like its `upstream_model`, the tables on the upstream model (protocol of the backend as the
//! provider hint), the tables on the exposed model. "The tables" means the synced one, when a sync
//! has succeeded, then the snapshot: a synced file that lacks a model does not unprice it.
//!
//! The synced table sits behind an `RwLock<Option<Arc<PriceTable>>>`: each priced record takes
//! the read lock once to clone the `Arc` (uncontended, nanoseconds, no IO under the lock), and a
//! sync swaps in a whole new table under the write lock once per interval. Readers never see a
//! half-updated table, and no extra dependency (such as `arc-swap`) is needed for a swap that
//! happens once a day. The overrides are held the same way, so a config reload
//! ([`PriceBook::set_overrides`]) replaces them without restarting the sync.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use octo_core::Protocol;
use octo_core::record::{Price, Pricing, Record};
use tokio::sync::watch;

use crate::config::PricesConfig;
use crate::sync::SyncStatus;
use crate::table::{PriceTable, Rates};
use crate::unpriced::Unpriced;

/// Lowercased model name → (the name as configured, its rates).
type Overrides = HashMap<String, (String, Rates)>;

fn overrides(config: &PricesConfig) -> Result<Overrides, Vec<(String, String)>> {
    let problems = config.validate();
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(config
        .0
        .iter()
        .map(|(name, p)| (name.to_ascii_lowercase(), (name.clone(), p.rates())))
        .collect())
}

/// Model prices for the gateway; see the [module docs](self).
///
/// ```
/// use std::sync::Arc;
/// use octo_prices::{PriceBook, PricesConfig};
///
/// let config: PricesConfig = serde_json::from_str(r#"{"my-model": {"input": 1, "output": 2}}"#).unwrap();
/// let book = Arc::new(PriceBook::new(&config).unwrap());
/// let pricing = book.clone().pricing(); // for Observers::with_pricing
/// # let _ = pricing;
/// assert!(book.unpriced().is_empty());
/// ```
#[derive(Debug)]
pub struct PriceBook {
    /// Lowercased name → (name as configured, rates); replaced whole on a config reload.
    overrides: RwLock<Arc<Overrides>>,
    snapshot: Arc<PriceTable>,
    pub(crate) synced: RwLock<Option<Arc<PriceTable>>>,
    pub(crate) status: watch::Sender<SyncStatus>,
    unpriced: Unpriced,
}

impl PriceBook {
    /// A book with the embedded snapshot and the configured overrides; the problems of an invalid
    /// config as `(key path, message)` (see [`PricesConfig::validate`]).
    pub fn new(config: &PricesConfig) -> Result<PriceBook, Vec<(String, String)>> {
        Self::with_snapshot(config, PriceTable::embedded())
    }

    /// Like [`PriceBook::new`] with another base table instead of the embedded snapshot.
    pub fn with_snapshot(
        config: &PricesConfig,
        snapshot: Arc<PriceTable>,
    ) -> Result<PriceBook, Vec<(String, String)>> {
        Ok(PriceBook {
            overrides: RwLock::new(Arc::new(overrides(config)?)),
            snapshot,
            synced: RwLock::new(None),
            status: watch::Sender::new(SyncStatus::default()),
            unpriced: Unpriced::default(),
        })
    }

    /// Replaces the configured overrides (on a config reload), keeping the synced table, the sync
    /// task and the counters. An invalid config changes nothing and returns its problems.
    pub fn set_overrides(&self, config: &PricesConfig) -> Result<(), Vec<(String, String)>> {
        let new = Arc::new(overrides(config)?);
        *self.overrides.write().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }

    /// The embedded snapshot (or the base table given to [`PriceBook::with_snapshot`]).
    pub fn snapshot(&self) -> &Arc<PriceTable> {
        &self.snapshot
    }

    /// The last successfully synced table, if any.
    pub fn synced(&self) -> Option<Arc<PriceTable>> {
        self.synced
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The price for `record`, with its tier chosen from the record's usage (total input tokens:
    /// uncached, cache reads and cache writes). `None` when no price is known. Does not count
    /// unpriced records; [`PriceBook::pricing`] does.
    pub fn price_for(&self, record: &Record) -> Option<Price> {
        let total_input = record.usage.map_or(0, |u| u.total_input_tokens());
        let overrides = self
            .overrides
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // A passthrough request's upstream model is its model: one lookup of each name, not two
        // of the same (a name looked up costs its spellings, in every table).
        let model = record.model.as_deref();
        let upstream_model = record
            .upstream_model
            .as_deref()
            .filter(|m| model != Some(*m));
        for name in [model, upstream_model].into_iter().flatten() {
            if let Some((configured, rates)) = overrides.get(&name.to_ascii_lowercase()) {
                return Some(rates.to_price(format!("config:{configured}")));
            }
        }
        let synced = self.synced();
        let hint = record.upstream_protocol;
        for name in [upstream_model, model].into_iter().flatten() {
            if let Some(p) = self.table_price(synced.as_deref(), name, hint, total_input) {
                return Some(p);
            }
        }
        None
    }

    /// The price of `model` in the tables (synced, then snapshot), below every tier; overrides
    /// are not consulted. For the admin API's price listing and tests.
    pub fn table_price_of(&self, model: &str, hint: Option<Protocol>) -> Option<Price> {
        self.table_price(self.synced().as_deref(), model, hint, 0)
    }

    fn table_price(
        &self,
        synced: Option<&PriceTable>,
        model: &str,
        hint: Option<Protocol>,
        total_input: u64,
    ) -> Option<Price> {
        if let Some(t) = synced
            && let Some(m) = t.lookup(model, hint)
        {
            return Some(m.price(total_input, "sync"));
        }
        self.snapshot
            .lookup(model, hint)
            .map(|m| m.price(total_input, "snapshot"))
    }

    /// The pricing function for [`octo_core::record::Observers::with_pricing`]: cost by
    /// [`Price::cost`] at [`PriceBook::price_for`]'s price. A record without a price is counted
    /// in [`PriceBook::unpriced`] under its upstream model (else its exposed model).
    pub fn pricing(self: Arc<Self>) -> Arc<Pricing> {
        Arc::new(move |record: &Record| {
            let usage = record.usage?;
            match self.price_for(record) {
                Some(price) => Some((price.cost(&usage), price)),
                None => {
                    self.unpriced
                        .count(record.upstream_model.as_deref().or(record.model.as_deref()));
                    None
                }
            }
        })
    }

    /// Records that had usage but no price, by model, sorted by name (bounded; see
    /// [`crate::unpriced`]). For the metrics.
    pub fn unpriced(&self) -> Vec<(String, u64)> {
        self.unpriced.snapshot()
    }

    /// The sync's state: when it last succeeded, its last error. Default (all empty) when no sync
    /// is configured.
    pub fn sync_status(&self) -> SyncStatus {
        self.status.borrow().clone()
    }

    /// A receiver that changes after every sync attempt (for tests and the admin API).
    pub fn subscribe_sync(&self) -> watch::Receiver<SyncStatus> {
        self.status.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use octo_core::usage::Usage;
    use serde_json::json;

    use super::*;

    fn record(model: &str, upstream: &str, protocol: Protocol, usage: Usage) -> Record {
        Record {
            id: "r".into(),
            started_at: UNIX_EPOCH,
            duration_ms: 1,
            ttfb_ms: None,
            client_protocol: Protocol::OpenAiChat,
            model: Some(model.into()),
            org: None,
            user: None,
            rule: None,
            backend: Some("b".into()),
            upstream_protocol: Some(protocol),
            upstream_model: Some(upstream.into()),
            stream: false,
            status: 200,
            error: None,
            attempts: Vec::new(),
            usage: Some(usage),
            finish_reason: None,
            cost_usd: None,
            price: None,
            cache_hit: false,
            overhead_ns: 0,
            trace: None,
            bodies: None,
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    fn book(config: serde_json::Value) -> Arc<PriceBook> {
        Arc::new(PriceBook::new(&serde_json::from_value(config).unwrap()).unwrap())
    }

    #[test]
    fn anthropic_usage_counts_cached_tokens_once() {
        // 1000 uncached + 20_000 read + 5000 written; 800 output.
        let usage = Usage::from_anthropic(&json!({
            "input_tokens": 1000, "cache_read_input_tokens": 20000,
            "cache_creation_input_tokens": 5000, "output_tokens": 800
        }))
        .unwrap();
        let r = record(
            "sonnet",
            "claude-sonnet-4-5-20250929",
            Protocol::Anthropic,
            usage,
        );
        let b = book(json!({}));
        let (cost, price) = (b.clone().pricing())(&r).unwrap();
        assert_eq!(price.source, "snapshot:claude-sonnet-4-5-20250929");
        // $3 in, $0.30 read, $3.75 write, $15 out per million.
        let expected = (1000.0 * 3.0 + 20_000.0 * 0.3 + 5000.0 * 3.75 + 800.0 * 15.0) / 1e6;
        close(cost, expected);
        close(expected, 0.03975);
    }

    #[test]
    fn openai_usage_counts_cached_tokens_once_and_reasoning_as_output() {
        // prompt_tokens includes the 1024 cached; completion_tokens includes the 300 reasoning.
        let usage = Usage::from_openai_chat(&json!({
            "prompt_tokens": 2024, "completion_tokens": 500,
            "prompt_tokens_details": {"cached_tokens": 1024},
            "completion_tokens_details": {"reasoning_tokens": 300}
        }))
        .unwrap();
        let r = record("fast", "gpt-4o-2024-08-06", Protocol::OpenAiChat, usage);
        let (cost, price) = (book(json!({})).pricing())(&r).unwrap();
        assert_eq!(price.source, "snapshot:gpt-4o-2024-08-06");
        // $2.50 in, $1.25 cached, $10 out per million.
        let expected = (1000.0 * 2.5 + 1024.0 * 1.25 + 500.0 * 10.0) / 1e6;
        close(cost, expected);
        close(expected, 0.00878);
    }

    #[test]
    fn a_model_without_cache_prices_bills_cache_tokens_as_input() {
        let b = book(json!({"plain": {"input": 2, "output": 8}}));
        let usage = Usage {
            input_tokens: 100,
            cache_read_tokens: 900,
            cache_write_tokens: 1000,
            output_tokens: 50,
            reasoning_tokens: 20,
        };
        let r = record("plain", "upstream-plain", Protocol::OpenAiChat, usage);
        let (cost, price) = (b.pricing())(&r).unwrap();
        assert_eq!(price.source, "config:plain");
        close(cost, (2000.0 * 2.0 + 50.0 * 8.0) / 1e6);
    }

    #[test]
    fn overrides_win_exposed_name_first() {
        let b = book(json!({
            "Exposed": {"input": 1, "output": 1},
            "claude-sonnet-4-5": {"input": 2, "output": 2, "cache_read": 0.2}
        }));
        let u = Usage::default();
        let by_exposed = b
            .price_for(&record(
                "exposed",
                "claude-sonnet-4-5",
                Protocol::Anthropic,
                u,
            ))
            .unwrap();
        assert_eq!(
            (by_exposed.input, by_exposed.source.as_str()),
            (1.0, "config:Exposed")
        );
        let by_upstream = b
            .price_for(&record("x", "claude-sonnet-4-5", Protocol::Anthropic, u))
            .unwrap();
        assert_eq!(by_upstream.source, "config:claude-sonnet-4-5");
        assert_eq!(by_upstream.cache_read, Some(0.2));
        // The snapshot is tried on the upstream model, then the exposed one.
        let by_exposed_snapshot = b
            .price_for(&record("gpt-4o", "my-finetune", Protocol::OpenAiChat, u))
            .unwrap();
        assert_eq!(by_exposed_snapshot.source, "snapshot:gpt-4o");
    }

    #[test]
    fn a_context_tier_applies_to_every_category() {
        let b = book(json!({}));
        let at = |input_tokens, cache_read_tokens| {
            let usage = Usage {
                input_tokens,
                cache_read_tokens,
                output_tokens: 1000,
                ..Usage::default()
            };
            let r = record("g", "gemini-2.5-pro", Protocol::Gemini, usage);
            (b.clone().pricing())(&r).unwrap()
        };
        let (cost, price) = at(100_000, 100_000);
        assert_eq!(price.source, "snapshot:gemini/gemini-2.5-pro");
        close(
            cost,
            (100_000.0 * 1.25 + 100_000.0 * 0.125 + 1000.0 * 10.0) / 1e6,
        );
        // 100_001 uncached + 100_000 cached > 200k: the tier is chosen on the total input.
        let (cost, price) = at(100_001, 100_000);
        assert_eq!(price.source, "snapshot:gemini/gemini-2.5-pro >200k");
        assert_eq!(
            (price.input, price.output, price.cache_read),
            (2.5, 15.0, Some(0.25))
        );
        close(
            cost,
            (100_001.0 * 2.5 + 100_000.0 * 0.25 + 1000.0 * 15.0) / 1e6,
        );
    }

    #[test]
    fn no_price_is_none_and_counted_never_zero() {
        let b = book(json!({}));
        let pricing = b.clone().pricing();
        let r = record(
            "mystery",
            "mystery-model-9",
            Protocol::OpenAiChat,
            Usage::default(),
        );
        assert_eq!(pricing(&r), None);
        assert_eq!(pricing(&r), None);
        assert_eq!(b.unpriced(), [("mystery-model-9".to_owned(), 2)]);
        // No usage: nothing to price, nothing counted.
        let mut no_usage = r.clone();
        no_usage.usage = None;
        assert_eq!(pricing(&no_usage), None);
        assert_eq!(b.unpriced(), [("mystery-model-9".to_owned(), 2)]);
    }

    #[test]
    fn invalid_overrides_are_refused() {
        let c: PricesConfig =
            serde_json::from_value(json!({"m": {"input": 1, "output": -2}})).unwrap();
        let e = PriceBook::new(&c).unwrap_err();
        assert_eq!(e[0].0, "prices.m.output");
    }

    #[test]
    fn a_reload_replaces_the_overrides_or_keeps_them_when_invalid() {
        let b = book(json!({"m": {"input": 1, "output": 1}}));
        let r = record("m", "m-up", Protocol::OpenAiChat, Usage::default());
        assert_eq!(b.price_for(&r).unwrap().input, 1.0);
        let bad: PricesConfig =
            serde_json::from_value(json!({"m": {"input": -5, "output": 1}})).unwrap();
        assert!(b.set_overrides(&bad).is_err());
        assert_eq!(b.price_for(&r).unwrap().input, 1.0);
        let good: PricesConfig =
            serde_json::from_value(json!({"m-up": {"input": 7, "output": 1}})).unwrap();
        b.set_overrides(&good).unwrap();
        assert_eq!(b.price_for(&r).unwrap().source, "config:m-up");
        b.set_overrides(&PricesConfig::default()).unwrap();
        assert_eq!(b.price_for(&r), None);
    }
}
