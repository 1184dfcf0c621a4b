//! The response cache and moderation keys: the top-level `cache` section, and `models.M.cache`
//! / `models.M.moderation` (see `docs/limits.md` for what they do, `docs/config.md` for every
//! key).

use std::time::Duration;

use serde::Deserialize;

use super::de;
use super::schema::Config;

/// `cache: {store, ttl, max_bytes}`: where and for how long the models with `cache: true` keep
/// answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// `memory` (default; this instance only) or `redis` (shared by every instance on the same
    /// Redis).
    #[serde(default)]
    pub store: CacheStoreKind,
    /// How long an entry is served (default 1h).
    #[serde(default = "default_ttl", deserialize_with = "de::duration")]
    pub ttl: Duration,
    /// The memory store's bound, in bytes (default 64 MiB); least recently used entries go
    /// first. Also the largest entry stored, in either store.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            store: CacheStoreKind::default(),
            ttl: default_ttl(),
            max_bytes: default_max_bytes(),
        }
    }
}

fn default_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn default_max_bytes() -> usize {
    64 * 1024 * 1024
}

/// Where cache entries live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStoreKind {
    /// In this process.
    #[default]
    Memory,
    /// In Redis (`redis.url`), shared by every instance.
    Redis,
}

/// `models.M.moderation`: check the model's requests (and answers) with a moderation endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModerationConfig {
    /// The backend whose `base_url` serves `POST /v1/moderations` (its first key and its
    /// `headers` are sent).
    pub backend: String,
    /// The moderation model (default `omni-moderation-latest`).
    #[serde(default = "default_moderation_model")]
    pub model: String,
    /// What is checked: `input` (default) or `input_and_output`.
    #[serde(default)]
    pub on: ModerationOn,
    /// A failing moderation endpoint: `deny` (default; 503) or `allow`.
    #[serde(default)]
    pub on_error: ModerationOnError,
    /// How long one moderation call may take (default 10s).
    #[serde(
        default = "default_moderation_timeout",
        deserialize_with = "de::duration"
    )]
    pub timeout: Duration,
    /// Stream output is checked each time this many new characters have arrived, and at the end
    /// (default 500).
    #[serde(default = "default_window")]
    pub window: usize,
    /// The moderation path on the backend (default `/v1/moderations`).
    #[serde(default = "default_moderation_path")]
    pub path: String,
}

fn default_moderation_model() -> String {
    "omni-moderation-latest".to_owned()
}

fn default_moderation_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_window() -> usize {
    octo_engines::moderation::DEFAULT_WINDOW
}

fn default_moderation_path() -> String {
    "/v1/moderations".to_owned()
}

/// What moderation checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModerationOn {
    /// The request's text, before it is sent.
    #[default]
    Input,
    /// The request's text and the answer (streams in windows).
    InputAndOutput,
}

/// What a failing moderation endpoint means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModerationOnError {
    /// Let the text through (and log a warning).
    Allow,
    /// Refuse the request with 503 `moderation_unavailable`.
    #[default]
    Deny,
}

/// Cross-field checks of the cache and moderation keys.
pub(crate) fn validate(c: &Config, p: &mut Vec<(String, String)>) {
    let cache = c.cache.clone().unwrap_or_default();
    if cache.max_bytes < 1024 {
        p.push((
            "cache.max_bytes".into(),
            format!(
                "{} bytes cannot hold an answer; give at least 1024 (e.g. 67108864 for 64 MiB)",
                cache.max_bytes
            ),
        ));
    }
    if cache.ttl.is_zero() {
        p.push((
            "cache.ttl".into(),
            "must be longer than 0s; set `cache: false` on the models instead".into(),
        ));
    }
    if cache.store == CacheStoreKind::Redis && c.redis.is_none() {
        p.push((
            "cache.store".into(),
            "`redis` needs a `redis` section: add `redis: {url: \"redis://127.0.0.1:6379/0\"}`, or use `store: memory`".into(),
        ));
    }
    if let Some(r) = &c.redis
        && let Err(e) = octo_engines::cache::RedisStore::check_url(&r.url)
    {
        p.push(("redis.url".into(), e.message().to_owned()));
    }
    for (name, m) in &c.models {
        let Some(md) = &m.moderation else {
            continue;
        };
        let at = |k: &str| format!("models.{name}.moderation.{k}");
        if !c.backends.contains_key(&md.backend) {
            let known: Vec<&str> = c.backends.keys().map(String::as_str).collect();
            p.push((
                at("backend"),
                format!(
                    "unknown backend `{}`; defined backends: {}",
                    md.backend,
                    known.join(", ")
                ),
            ));
        }
        if md.window == 0 {
            p.push((at("window"), "must be at least 1 character".into()));
        }
        if !md.path.starts_with('/') {
            p.push((at("path"), format!("`{}` must start with `/`", md.path)));
        }
        if md.timeout.is_zero() {
            p.push((at("timeout"), "must be longer than 0s".into()));
        }
        if md.model.trim().is_empty() {
            p.push((
                at("model"),
                "empty; write e.g. `omni-moderation-latest`".into(),
            ));
        }
    }
}
