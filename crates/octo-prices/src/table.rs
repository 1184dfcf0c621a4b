//! A price table: model prices read from one document (the embedded snapshot or a synced file),
//! indexed for the name spellings the gateway sees.
//!
//! Two document formats are read:
//!
//! - **Our snapshot format** (`crates/octo-prices/data/prices.json`, written by
//!   `scripts/update_prices.py`): `{"format": "octollm-prices/1", "source", "version", "date",
//!   "license", "unit": "USD per million tokens", "models": {key: {provider, input, output,
//!   cache_read?, cache_write?, tiers?: [{above, input?, output?, cache_read?, cache_write?}]}}}`.
//! - **LiteLLM's `model_prices_and_context_window.json`**: `{key: {litellm_provider, mode,
//!   input_cost_per_token, output_cost_per_token, cache_read_input_token_cost?,
//!   cache_creation_input_token_cost?, input_cost_per_token_above_200k_tokens?, …}}`, USD per
//!   token. Chat and responses models with both token prices are kept, as the script does.
//!
//! A document with a top-level `models` object is ours; anything else is read as LiteLLM's.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};

use octo_core::Protocol;
use octo_core::record::Price;
use serde::Deserialize;
use serde_json::Value;

use crate::names::{spellings, unprefixed};

/// Prices of one model in one context tier, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Uncached input.
    pub input: f64,
    /// Output, reasoning included.
    pub output: f64,
    /// Input read from a prompt cache; `None` bills it as input.
    pub cache_read: Option<f64>,
    /// Input written to a prompt cache; `None` bills it as input.
    pub cache_write: Option<f64>,
}

impl Rates {
    /// These rates as the [`Price`] stored on a record, with its `source`.
    pub fn to_price(self, source: String) -> Price {
        Price {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
            source,
        }
    }

    fn valid(&self) -> bool {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        ok(self.input)
            && ok(self.output)
            && self.cache_read.is_none_or(ok)
            && self.cache_write.is_none_or(ok)
    }
}

/// Rates that apply when a request's total input exceeds `above` tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tier {
    /// The threshold: the tier applies when total input tokens (uncached, cache reads and cache
    /// writes) are strictly more than this.
    pub above: u64,
    /// Every category's rate in this tier (categories the source did not give keep the base rate).
    pub rates: Rates,
}

/// One model's prices.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPrice {
    /// The key as the source spells it (`claude-sonnet-4-5`, `gemini/gemini-2.5-pro`).
    pub key: String,
    /// The source's provider id (`anthropic`, `gemini`, `vertex_ai-language-models`, …).
    pub provider: String,
    /// Rates below every tier.
    pub rates: Rates,
    /// Context tiers, by ascending threshold.
    pub tiers: Vec<Tier>,
}

impl ModelPrice {
    /// The price for a request with `total_input` input tokens: the highest tier it exceeds, chosen
    /// once and applied to every category. `origin` starts the price's source (`snapshot`, `sync`).
    ///
    /// ```
    /// use octo_prices::table::{ModelPrice, Rates, Tier};
    /// let r = |i, o| Rates { input: i, output: o, cache_read: None, cache_write: None };
    /// let m = ModelPrice {
    ///     key: "gemini-2.5-pro".into(),
    ///     provider: "gemini".into(),
    ///     rates: r(1.25, 10.0),
    ///     tiers: vec![Tier { above: 200_000, rates: r(2.5, 15.0) }],
    /// };
    /// assert_eq!(m.price(200_000, "snapshot").input, 1.25);
    /// let above = m.price(200_001, "snapshot");
    /// assert_eq!((above.input, above.output), (2.5, 15.0));
    /// assert_eq!(above.source, "snapshot:gemini-2.5-pro >200k");
    /// ```
    pub fn price(&self, total_input: u64, origin: &str) -> Price {
        match self.tiers.iter().rev().find(|t| total_input > t.above) {
            Some(t) => t
                .rates
                .to_price(format!("{origin}:{} >{}", self.key, tier_label(t.above))),
            None => self.rates.to_price(format!("{origin}:{}", self.key)),
        }
    }
}

/// `200000` → `200k`; other numbers as they are.
fn tier_label(above: u64) -> String {
    if above >= 1000 && above % 1000 == 0 {
        format!("{}k", above / 1000)
    } else {
        above.to_string()
    }
}

/// Where a table came from, as its document says.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableInfo {
    /// The document's own description of its source (LiteLLM files have none).
    pub source: Option<String>,
    /// The source's version (for the snapshot: the litellm package version).
    pub version: Option<String>,
    /// When the snapshot was taken.
    pub date: Option<String>,
    /// The source's licence.
    pub license: Option<String>,
    /// `octollm` (our snapshot format) or `litellm`.
    pub format: &'static str,
}

/// Why a price document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError(String);

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TableError {}

/// The providers a backend's protocol hints at, most likely first.
fn hinted(protocol: Option<Protocol>) -> &'static [&'static str] {
    match protocol {
        Some(Protocol::Anthropic) => &["anthropic"],
        Some(Protocol::Gemini) => &["gemini", "vertex_ai-language-models"],
        Some(Protocol::OpenAiChat | Protocol::OpenAiResponses) => &["openai"],
        _ => &[],
    }
}

/// How many of [`PROVIDER_ORDER`] make the models they serve (the rest host others' models).
const MAKERS: usize = 11;

/// The order among providers the hint does not name: the model makers first, then hosts.
const PROVIDER_ORDER: &[&str] = &[
    "openai",
    "anthropic",
    "gemini",
    "vertex_ai-language-models",
    "deepseek",
    "mistral",
    "xai",
    "moonshot",
    "zai",
    "dashscope",
    "cohere_chat",
    "groq",
    "cerebras",
    "perplexity",
];

/// A price table; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct PriceTable {
    info: TableInfo,
    models: Vec<ModelPrice>,
    /// Lowercased key → index.
    exact: HashMap<String, usize>,
    /// Lowercased key without its provider prefix → indexes.
    bare: HashMap<String, Vec<usize>>,
}

static EMBEDDED: &str = include_str!("../data/prices.json");

impl PriceTable {
    /// The snapshot compiled into the binary (parsed once, on first use).
    ///
    /// ```
    /// let t = octo_prices::PriceTable::embedded();
    /// assert!(t.len() > 100);
    /// assert_eq!(t.info().format, "octollm");
    /// ```
    pub fn embedded() -> Arc<PriceTable> {
        static TABLE: OnceLock<Arc<PriceTable>> = OnceLock::new();
        TABLE
            .get_or_init(|| {
                // The file is tested to parse; should it ever not, prices are unknown rather than
                // the gateway down.
                Arc::new(PriceTable::parse(EMBEDDED.as_bytes()).unwrap_or_else(|e| {
                    tracing::error!("the embedded price snapshot is unreadable: {e}");
                    PriceTable::from_models(TableInfo::default(), Vec::new())
                }))
            })
            .clone()
    }

    /// Reads a document in either format (see the [module docs](self)). Entries with negative or
    /// non-finite prices are skipped; a document with no usable entry is an error.
    pub fn parse(bytes: &[u8]) -> Result<PriceTable, TableError> {
        let doc: Value = serde_json::from_slice(bytes)
            .map_err(|e| TableError(format!("not a JSON price document: {e}")))?;
        let Value::Object(map) = doc else {
            return Err(TableError("a price document must be a JSON object".into()));
        };
        let table = if map.get("models").is_some_and(Value::is_object) {
            let file: SnapshotFile = serde_json::from_value(Value::Object(map))
                .map_err(|e| TableError(format!("not an OctoLLM price snapshot: {e}")))?;
            let info = TableInfo {
                source: file.source,
                version: file.version,
                date: file.date,
                license: file.license,
                format: "octollm",
            };
            let models = file
                .models
                .into_iter()
                .filter_map(|(k, e)| e.into_model(k))
                .collect();
            PriceTable::from_models(info, models)
        } else {
            let info = TableInfo {
                format: "litellm",
                ..TableInfo::default()
            };
            let models = map
                .into_iter()
                .filter_map(|(k, v)| litellm_model(k, &v))
                .collect();
            PriceTable::from_models(info, models)
        };
        if table.is_empty() {
            return Err(TableError(
                "the price document has no model with token prices".into(),
            ));
        }
        Ok(table)
    }

    /// A table of `models` (later duplicates of a key are ignored).
    pub fn from_models(info: TableInfo, mut models: Vec<ModelPrice>) -> PriceTable {
        models.sort_by(|a, b| a.key.cmp(&b.key));
        let mut exact = HashMap::with_capacity(models.len());
        let mut kept = Vec::with_capacity(models.len());
        for m in models {
            let lower = m.key.to_ascii_lowercase();
            if exact.contains_key(&lower) {
                continue;
            }
            exact.insert(lower, kept.len());
            kept.push(m);
        }
        let mut bare: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, m) in kept.iter().enumerate() {
            if let Some(rest) = unprefixed(&m.key) {
                bare.entry(rest.to_ascii_lowercase()).or_default().push(i);
            }
        }
        PriceTable {
            info,
            models: kept,
            exact,
            bare,
        }
    }

    /// Where the table came from.
    pub fn info(&self) -> &TableInfo {
        &self.info
    }

    /// How many models it prices.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether it prices nothing.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Every model, sorted by key.
    pub fn models(&self) -> &[ModelPrice] {
        &self.models
    }

    /// The model priced under exactly `key` (case-insensitive).
    pub fn get(&self, key: &str) -> Option<&ModelPrice> {
        self.exact
            .get(&key.to_ascii_lowercase())
            .map(|&i| &self.models[i])
    }

    /// The price entry for `model` as an upstream spells it, with the backend's protocol as a
    /// provider hint. The candidates are, for each of [`spellings`], the key equal to it and the
    /// keys equal to it after a provider prefix (`anthropic/…`, `gemini/…`). The best candidate
    /// is from a hinted provider, else from a model maker (OpenAI, Anthropic, Google, DeepSeek,
    /// …), else from a host (Groq, Perplexity, …); then from the most specific spelling, the usual
    /// provider order, an unprefixed key.
    ///
    /// ```
    /// use octo_core::Protocol;
    /// let t = octo_prices::PriceTable::embedded();
    /// let m = t.lookup("claude-sonnet-4-5-20990101", Some(Protocol::Anthropic)).unwrap();
    /// assert_eq!(m.key, "claude-sonnet-4-5");
    /// let g = t.lookup("gemini-2.5-pro", Some(Protocol::Gemini)).unwrap();
    /// assert_eq!((g.key.as_str(), g.provider.as_str()), ("gemini/gemini-2.5-pro", "gemini"));
    /// ```
    pub fn lookup(&self, model: &str, hint: Option<Protocol>) -> Option<&ModelPrice> {
        let hint = hinted(hint);
        let rank = |i: usize, spelling: usize, exact: bool| {
            let p = self.models[i].provider.as_str();
            let (class, order) = match hint.iter().position(|h| *h == p) {
                Some(n) => (0, n),
                None => match PROVIDER_ORDER.iter().position(|h| *h == p) {
                    Some(n) if n < MAKERS => (1, n),
                    Some(n) => (2, n),
                    None => (2, PROVIDER_ORDER.len()),
                },
            };
            (class, spelling, order, !exact, i)
        };
        let mut best = None;
        for (s, name) in spellings(model).iter().enumerate() {
            let exact = self.exact.get(name).map(|&i| rank(i, s, true));
            let prefixed = self
                .bare
                .get(name)
                .into_iter()
                .flatten()
                .map(|&i| rank(i, s, false));
            best = exact.into_iter().chain(prefixed).chain(best).min();
        }
        best.map(|(_, _, _, _, i)| &self.models[i])
    }
}

#[derive(Deserialize)]
struct SnapshotFile {
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    license: Option<String>,
    models: BTreeMap<String, SnapshotEntry>,
}

#[derive(Deserialize)]
struct SnapshotEntry {
    #[serde(default)]
    provider: String,
    input: f64,
    output: f64,
    #[serde(default)]
    cache_read: Option<f64>,
    #[serde(default)]
    cache_write: Option<f64>,
    #[serde(default)]
    tiers: Vec<SnapshotTier>,
}

#[derive(Deserialize)]
struct SnapshotTier {
    above: u64,
    #[serde(default)]
    input: Option<f64>,
    #[serde(default)]
    output: Option<f64>,
    #[serde(default)]
    cache_read: Option<f64>,
    #[serde(default)]
    cache_write: Option<f64>,
}

impl SnapshotEntry {
    fn into_model(self, key: String) -> Option<ModelPrice> {
        let rates = Rates {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
        };
        let tiers = self
            .tiers
            .into_iter()
            .map(|t| Tier {
                above: t.above,
                rates: Rates {
                    input: t.input.unwrap_or(rates.input),
                    output: t.output.unwrap_or(rates.output),
                    cache_read: t.cache_read.or(rates.cache_read),
                    cache_write: t.cache_write.or(rates.cache_write),
                },
            })
            .collect();
        model(key, self.provider, rates, tiers)
    }
}

/// Checks and orders a model's prices; `None` when any is negative or not finite.
fn model(key: String, provider: String, rates: Rates, mut tiers: Vec<Tier>) -> Option<ModelPrice> {
    if key.trim().is_empty() || !rates.valid() || !tiers.iter().all(|t| t.rates.valid()) {
        return None;
    }
    tiers.sort_by_key(|t| t.above);
    tiers.dedup_by_key(|t| t.above);
    Some(ModelPrice {
        key,
        provider,
        rates,
        tiers,
    })
}

/// LiteLLM's token-price fields and the category each sets.
const LITELLM_FIELDS: [(&str, usize); 4] = [
    ("input_cost_per_token", 0),
    ("output_cost_per_token", 1),
    ("cache_read_input_token_cost", 2),
    ("cache_creation_input_token_cost", 3),
];

/// One LiteLLM entry as a model price (USD per token → per million), the way
/// `scripts/update_prices.py` converts it.
fn litellm_model(key: String, v: &Value) -> Option<ModelPrice> {
    if key == "sample_spec" || key.starts_with("ft:") {
        return None;
    }
    let entry = v.as_object()?;
    if let Some(mode) = entry.get("mode").and_then(Value::as_str)
        && mode != "chat"
        && mode != "responses"
    {
        return None;
    }
    let num = |f: &str| entry.get(f).and_then(Value::as_f64).map(per_million);
    let input = num("input_cost_per_token")?;
    let output = num("output_cost_per_token")?;
    if input == 0.0 && output == 0.0 {
        // Free models and per-request placeholders look alike: better unknown than zero.
        return None;
    }
    let rates = Rates {
        input,
        output,
        cache_read: num("cache_read_input_token_cost"),
        cache_write: num("cache_creation_input_token_cost"),
    };
    let mut tiers: BTreeMap<u64, [Option<f64>; 4]> = BTreeMap::new();
    for (field, value) in entry {
        let Some((base, above)) = field
            .strip_suffix("k_tokens")
            .and_then(|f| f.rsplit_once("_above_"))
        else {
            continue;
        };
        let Some(&(_, slot)) = LITELLM_FIELDS.iter().find(|(f, _)| *f == base) else {
            continue;
        };
        let (Ok(k), Some(price)) = (above.parse::<u64>(), value.as_f64()) else {
            continue;
        };
        tiers.entry(k.saturating_mul(1000)).or_default()[slot] = Some(per_million(price));
    }
    let tiers = tiers
        .into_iter()
        .map(|(above, [i, o, r, w])| Tier {
            above,
            rates: Rates {
                input: i.unwrap_or(rates.input),
                output: o.unwrap_or(rates.output),
                cache_read: r.or(rates.cache_read),
                cache_write: w.or(rates.cache_write),
            },
        })
        .collect();
    let provider = entry
        .get("litellm_provider")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    model(key, provider, rates, tiers)
}

/// USD per token → USD per million tokens, rounded to 10 significant digits so `3e-06` reads 3.0
/// (the script rounds the same way).
fn per_million(per_token: f64) -> f64 {
    let v = per_token * 1_000_000.0;
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    format!("{v:.9e}").parse().unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> PriceTable {
        PriceTable::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn the_embedded_snapshot_parses_and_names_its_source() {
        let t = PriceTable::embedded();
        assert!(t.len() > 300, "{}", t.len());
        let info = t.info();
        assert!(info.source.as_deref().unwrap().contains("LiteLLM"));
        assert!(info.license.as_deref().unwrap().starts_with("MIT"));
        assert!(info.version.is_some() && info.date.is_some());
        let s = t.get("claude-sonnet-4-5").unwrap();
        assert_eq!(s.provider, "anthropic");
        assert_eq!(
            s.rates,
            Rates {
                input: 3.0,
                output: 15.0,
                cache_read: Some(0.3),
                cache_write: Some(3.75)
            }
        );
        let g = t.get("gemini/gemini-2.5-pro").unwrap();
        assert_eq!(g.tiers.len(), 1);
        assert_eq!(g.tiers[0].above, 200_000);
        assert_eq!(
            (g.tiers[0].rates.input, g.tiers[0].rates.output),
            (2.5, 15.0)
        );
    }

    #[test]
    fn litellm_documents_are_converted_like_the_script_does() {
        let t = doc(json!({
            "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "litellm_provider": "x"},
            "claude-x": {
                "litellm_provider": "anthropic", "mode": "chat",
                "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
                "cache_read_input_token_cost": 3e-07, "cache_creation_input_token_cost": 3.75e-06,
                "input_cost_per_token_above_200k_tokens": 6e-06,
                "output_cost_per_token_above_200k_tokens": 2.25e-05,
                "input_cost_per_token_above_200k_tokens_priority": 1.0,
                "cache_creation_input_token_cost_above_1hr": 6e-06
            },
            "text-embedding-3-small": {"mode": "embedding", "input_cost_per_token": 2e-08, "output_cost_per_token": 0.0},
            "free": {"mode": "chat", "input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
            "bad": {"mode": "chat", "input_cost_per_token": -1.0, "output_cost_per_token": 1.0},
            "no-output": {"mode": "chat", "input_cost_per_token": 1e-06}
        }));
        assert_eq!(t.info().format, "litellm");
        assert_eq!(t.len(), 1);
        let m = t.get("CLAUDE-X").unwrap();
        assert_eq!(m.rates.input, 3.0);
        assert_eq!(m.rates.cache_write, Some(3.75));
        assert_eq!(
            m.tiers,
            [Tier {
                above: 200_000,
                rates: Rates {
                    input: 6.0,
                    output: 22.5,
                    cache_read: Some(0.3),
                    cache_write: Some(3.75)
                }
            }]
        );
    }

    #[test]
    fn empty_or_malformed_documents_are_errors() {
        for bad in [
            &b"[]"[..],
            b"not json",
            b"{}",
            br#"{"models": {"x": {"input": "a"}}}"#,
        ] {
            assert!(
                PriceTable::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let only_bad = json!({"models": {"x": {"input": -1.0, "output": 1.0}}});
        assert!(PriceTable::parse(only_bad.to_string().as_bytes()).is_err());
    }

    #[test]
    fn the_protocol_hint_picks_among_providers() {
        let e = |p: &str, input: f64| json!({"provider": p, "input": input, "output": 1.0});
        let t = doc(json!({"models": {
            "gemini-2.5-pro": e("vertex_ai-language-models", 1.0),
            "gemini/gemini-2.5-pro": e("gemini", 2.0),
            "openrouter/gemini-2.5-pro": e("openrouter", 3.0),
            "deepseek-chat": e("deepseek", 4.0),
            "deepseek/deepseek-chat": e("deepseek", 5.0),
            "anthropic/claude-x": e("anthropic", 6.0),
            "groq/openai/gpt-oss-120b": e("groq", 7.0),
        }}));
        let key = |m: &str, p: Option<Protocol>| t.lookup(m, p).map(|m| m.key.clone());
        assert_eq!(
            key("gemini-2.5-pro", Some(Protocol::Gemini)).as_deref(),
            Some("gemini/gemini-2.5-pro")
        );
        // Without a hint that names either, the unprefixed key wins over a prefixed one of a
        // provider ranked after it, and providers keep their usual order.
        assert_eq!(
            key("gemini-2.5-pro", Some(Protocol::OpenAiChat)).as_deref(),
            Some("gemini/gemini-2.5-pro")
        );
        assert_eq!(key("deepseek-chat", None).as_deref(), Some("deepseek-chat"));
        assert_eq!(
            key("Claude-X-20250101", Some(Protocol::Anthropic)).as_deref(),
            Some("anthropic/claude-x")
        );
        assert_eq!(
            key("openai/gpt-oss-120b", None).as_deref(),
            Some("groq/openai/gpt-oss-120b")
        );
        assert_eq!(
            key("models/gemini-2.5-pro", None).as_deref(),
            Some("gemini/gemini-2.5-pro")
        );
        assert_eq!(key("unknown-model", Some(Protocol::Gemini)), None);
    }

    #[test]
    fn the_snapshot_matches_common_spellings() {
        let t = PriceTable::embedded();
        let key = |m: &str, p| t.lookup(m, Some(p)).map(|m| m.key.clone());
        assert_eq!(
            key("claude-sonnet-4-5-20250929", Protocol::Anthropic).as_deref(),
            Some("claude-sonnet-4-5-20250929")
        );
        assert_eq!(
            key("gpt-4o-2031-01-01", Protocol::OpenAiChat).as_deref(),
            Some("gpt-4o")
        );
        assert_eq!(
            key("GPT-4o", Protocol::OpenAiResponses).as_deref(),
            Some("gpt-4o")
        );
        assert_eq!(
            key("anthropic/claude-opus-4-6", Protocol::OpenAiChat).as_deref(),
            Some("claude-opus-4-6")
        );
        assert_eq!(
            key("deepseek-chat", Protocol::OpenAiChat).as_deref(),
            Some("deepseek-chat")
        );
    }

    #[test]
    fn per_million_drops_float_noise() {
        assert_eq!(per_million(3e-06), 3.0);
        assert_eq!(per_million(1.25e-07), 0.125);
        assert_eq!(per_million(2.8e-08), 0.028);
        assert_eq!(tier_label(272_000), "272k");
        assert_eq!(tier_label(1500), "1500");
    }
}
