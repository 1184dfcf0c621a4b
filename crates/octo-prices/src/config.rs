//! The config file's price keys, as serde types the server's schema embeds:
//!
//! ```yaml
//! prices:                      # overrides, by exposed or upstream model name; win over everything
//!   my-model: {input: 0.5, output: 1.5}
//!   claude-sonnet-4-5: {input: 3, output: 15, cache_read: 0.3, cache_write: 3.75}
//! price_sync:                  # optional; off when absent
//!   url: https://example.com/model_prices_and_context_window.json
//!   interval: 24h              # default 24h, at least 1m
//!   timeout: 30s               # default 30s
//! ```
//!
//! Prices are USD per million tokens. [`PricesConfig::validate`] and [`PriceSyncConfig::settings`]
//! report problems as `(key path, message)` pairs, the shape the server's config validation uses.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;

use crate::table::Rates;

/// The `prices:` map: model name → price.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct PricesConfig(pub BTreeMap<String, PriceOverride>);

/// One model's configured price, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    /// Uncached input.
    pub input: f64,
    /// Output, reasoning included.
    pub output: f64,
    /// Input read from a prompt cache; absent: billed as input.
    #[serde(default)]
    pub cache_read: Option<f64>,
    /// Input written to a prompt cache; absent: billed as input.
    #[serde(default)]
    pub cache_write: Option<f64>,
}

impl PriceOverride {
    /// As table rates.
    pub fn rates(&self) -> Rates {
        Rates {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
        }
    }
}

impl PricesConfig {
    /// Problems, as `(key path, message)`: prices must be finite and not negative, and no two
    /// model names may differ only in case (they are matched case-insensitively).
    ///
    /// ```
    /// let c: octo_prices::PricesConfig =
    ///     serde_json::from_str(r#"{"m": {"input": -1, "output": 2}}"#).unwrap();
    /// assert_eq!(c.validate()[0].0, "prices.m.input");
    /// ```
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut seen: HashMap<String, &str> = HashMap::new();
        for (name, p) in &self.0 {
            if name.trim().is_empty() {
                problems.push((
                    "prices".to_owned(),
                    "a price needs a model name, not an empty key".to_owned(),
                ));
            }
            if let Some(first) = seen.insert(name.to_ascii_lowercase(), name) {
                problems.push((
                    format!("prices.{name}"),
                    format!("`{name}` and `{first}` differ only in case; model names are matched case-insensitively, keep one"),
                ));
            }
            let fields = [
                ("input", Some(p.input)),
                ("output", Some(p.output)),
                ("cache_read", p.cache_read),
                ("cache_write", p.cache_write),
            ];
            for (field, value) in fields {
                if let Some(v) = value
                    && !(v.is_finite() && v >= 0.0)
                {
                    problems.push((
                        format!("prices.{name}.{field}"),
                        format!("`{v}` is not a price; write USD per million tokens, a number ≥ 0 (e.g. `3` or `0.3`)"),
                    ));
                }
            }
        }
        problems
    }
}

/// `price_sync:`: fetch a price document from a URL on an interval.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSyncConfig {
    /// `http://`, `https://` or `file://` URL of a LiteLLM `model_prices_and_context_window.json`
    /// or an OctoLLM snapshot.
    pub url: String,
    /// Time between syncs (`24h`, `30m`); default 24h, at least 1 minute.
    #[serde(default)]
    pub interval: Option<String>,
    /// Deadline for one fetch, body included; default 30s.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// A validated [`PriceSyncConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSettings {
    /// Where to fetch from.
    pub url: String,
    /// Time between syncs.
    pub interval: Duration,
    /// Deadline for one fetch.
    pub timeout: Duration,
}

/// Default [`SyncSettings::interval`].
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Default [`SyncSettings::timeout`].
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const MIN_SYNC_INTERVAL: Duration = Duration::from_secs(60);

impl PriceSyncConfig {
    /// The settings, or problems as `(key path, message)`.
    ///
    /// ```
    /// let c: octo_prices::PriceSyncConfig =
    ///     serde_json::from_str(r#"{"url": "https://example.com/p.json", "interval": "6h"}"#).unwrap();
    /// let s = c.settings().unwrap();
    /// assert_eq!(s.interval.as_secs(), 6 * 3600);
    /// assert_eq!(s.timeout.as_secs(), 30);
    /// ```
    pub fn settings(&self) -> Result<SyncSettings, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let url = self.url.trim();
        if !["http://", "https://", "file://"]
            .iter()
            .any(|s| url.len() > s.len() && url[..s.len()].eq_ignore_ascii_case(s))
        {
            problems.push((
                "price_sync.url".to_owned(),
                format!("`{url}` is not an http://, https:// or file:// URL"),
            ));
        }
        let mut duration = |key: &str, v: &Option<String>, default: Duration, min: Duration| {
            let Some(text) = v else { return default };
            match humantime::parse_duration(text.trim()) {
                Ok(d) if d >= min => d,
                Ok(_) => {
                    problems.push((
                        format!("price_sync.{key}"),
                        format!(
                            "`{text}` is too short; use at least {}",
                            humantime::format_duration(min)
                        ),
                    ));
                    default
                }
                Err(e) => {
                    problems.push((
                        format!("price_sync.{key}"),
                        format!(
                            "`{text}` is not a duration ({e}); write e.g. `30s`, `30m` or `24h`"
                        ),
                    ));
                    default
                }
            }
        };
        let interval = duration(
            "interval",
            &self.interval,
            DEFAULT_SYNC_INTERVAL,
            MIN_SYNC_INTERVAL,
        );
        let timeout = duration(
            "timeout",
            &self.timeout,
            DEFAULT_SYNC_TIMEOUT,
            Duration::from_millis(1),
        );
        if problems.is_empty() {
            Ok(SyncSettings {
                url: url.to_owned(),
                interval,
                timeout,
            })
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        prices: PricesConfig,
        #[serde(default)]
        price_sync: Option<PriceSyncConfig>,
    }

    fn yaml(s: &str) -> Result<Doc, serde_yaml_ng::Error> {
        serde_yaml_ng::from_str(s)
    }

    #[test]
    fn yaml_prices_are_read_and_checked() {
        let d = yaml(
            "prices:\n  my-model: {input: 0.5, output: 1.5}\n  claude-x: {input: 3, output: 15, cache_read: 0.3, cache_write: 3.75}\n",
        )
        .unwrap();
        assert_eq!(d.prices.0["my-model"].rates().input, 0.5);
        assert_eq!(d.prices.0["claude-x"].cache_write, Some(3.75));
        assert!(d.prices.validate().is_empty());
        assert!(d.price_sync.is_none());
    }

    #[test]
    fn bad_prices_name_their_key_path() {
        let d = yaml(
            "prices:\n  a: {input: -1, output: .nan}\n  b: {input: 1, output: 1, cache_read: .inf}\n  B: {input: 1, output: 1}\n",
        )
        .unwrap();
        let paths: Vec<String> = d.prices.validate().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "prices.a.input",
                "prices.a.output",
                "prices.b",
                "prices.b.cache_read"
            ]
        );
        let unknown = yaml("prices:\n  a: {input: 1, output: 1, reasoning: 2}\n").unwrap_err();
        assert!(unknown.to_string().contains("reasoning"), "{unknown}");
        assert!(yaml("prices:\n  a: {input: 1}\n").is_err());
    }

    #[test]
    fn sync_settings_have_defaults_and_bounds() {
        let d = yaml("price_sync: {url: 'https://x.example/p.json'}\n").unwrap();
        let s = d.price_sync.unwrap().settings().unwrap();
        assert_eq!(s.interval, DEFAULT_SYNC_INTERVAL);
        assert_eq!(s.timeout, DEFAULT_SYNC_TIMEOUT);
        let bad = yaml("price_sync: {url: 'ftp://x', interval: 10s, timeout: soon}\n")
            .unwrap()
            .price_sync
            .unwrap()
            .settings()
            .unwrap_err();
        let paths: Vec<&str> = bad.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "price_sync.url",
                "price_sync.interval",
                "price_sync.timeout"
            ]
        );
        assert!(yaml("price_sync: {url: 'file:///p.json', every: 1h}\n").is_err());
    }
}
