//! Reading an upstream's model list: on demand (`POST /api/v1/backends/{name}/models/sync`) and,
//! for backends with `models_sync_interval`, on that interval. The last result per backend is kept
//! in memory ([`SyncBook`]) for the admin API and the panel.
//!
//! OpenAI and Anthropic list at `GET /v1/models` (`data[].id`; Anthropic with `x-api-key` and
//! `anthropic-version`), Gemini at `GET /v1beta/models` (`models[].name`, without `models/`). The
//! backend's first key and configured headers are sent; nothing is followed on a redirect.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use octo_core::Protocol;
use serde_json::Value;

use super::objects::mask;
use crate::config::BackendConfig;

/// How long reading a list may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// One sync's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Synced {
    /// When it ran.
    pub at: SystemTime,
    /// The URL read.
    pub url: String,
    /// The upstream's model ids, or why they could not be read (keys masked).
    pub result: Result<Vec<String>, String>,
}

/// The last sync of each backend.
#[derive(Debug, Default)]
pub struct SyncBook {
    last: Mutex<HashMap<String, Synced>>,
}

impl SyncBook {
    /// The last sync of `backend`.
    pub fn get(&self, backend: &str) -> Option<Synced> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(backend)
            .cloned()
    }

    /// Notes a sync of `backend`.
    pub fn put(&self, backend: &str, synced: Synced) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(backend.to_owned(), synced);
    }

    /// Forgets backends not in `keep`.
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keep(k));
    }
}

/// `text` with every key of `config` masked.
pub fn redact(text: &str, config: &BackendConfig) -> String {
    let mut out = text.to_owned();
    for k in config.keys() {
        if k.len() >= 4 {
            out = out.replace(&k, &mask(&k));
        }
    }
    out
}

/// The upstream's model ids from a list answer: OpenAI and Anthropic `data[].id`, Gemini
/// `models[].name` without its `models/` prefix.
pub fn model_ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v
        .get("data")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(a) = v.get("models").and_then(Value::as_array) {
        ids.extend(a.iter().filter_map(|m| {
            m.get("name")
                .and_then(Value::as_str)
                .map(|n| n.strip_prefix("models/").unwrap_or(n).to_owned())
        }));
    }
    ids
}

/// Reads backend `name`'s model list.
pub async fn fetch(name: &str, config: &BackendConfig) -> Synced {
    let protocol = config
        .protocol
        .first()
        .copied()
        .unwrap_or(Protocol::OpenAiChat);
    let base = config.base_url.trim_end_matches('/');
    let url = match protocol {
        Protocol::Gemini => format!("{base}/v1beta/models"),
        _ => format!("{base}/v1/models"),
    };
    let result = read(name, &url, protocol, config)
        .await
        .map_err(|e| redact(&e, config));
    Synced {
        at: SystemTime::now(),
        url,
        result,
    }
}

async fn read(
    name: &str,
    url: &str,
    protocol: Protocol,
    config: &BackendConfig,
) -> Result<Vec<String>, String> {
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let mut req = client.get(url).headers(config.headers.clone());
    if let Some(key) = config.keys().first() {
        req = match protocol {
            Protocol::Anthropic => req.header("x-api-key", key),
            Protocol::Gemini => req.header("x-goog-api-key", key),
            _ => req.bearer_auth(key),
        };
    }
    if protocol == Protocol::Anthropic {
        req = req.header("anthropic-version", "2023-06-01");
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("backend `{name}`: cannot read {url}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        let head: String = text.chars().take(500).collect();
        return Err(format!("backend `{name}`: {url} answered {status}: {head}"));
    }
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| format!("backend `{name}`: {url} did not answer a model list: {e}"))?;
    Ok(model_ids(&v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn model_ids_read_every_list_shape() {
        let openai = json!({"object": "list", "data": [{"id": "gpt-4o"}, {"id": "o3"}]});
        assert_eq!(model_ids(&openai), ["gpt-4o", "o3"]);
        let anthropic = json!({"data": [{"id": "claude-x", "type": "model"}], "has_more": false});
        assert_eq!(model_ids(&anthropic), ["claude-x"]);
        let gemini = json!({"models": [{"name": "models/gemini-2.5-flash"}]});
        assert_eq!(model_ids(&gemini), ["gemini-2.5-flash"]);
    }
}
