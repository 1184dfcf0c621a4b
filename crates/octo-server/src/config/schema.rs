//! The configuration file's types: every value typed as it is read.
//!
//! Durations (`30s`), headers, protocols, the HTTP version, expiry times and strategies are parsed
//! by serde while the file is deserialized, so a bad value fails with its key path and the code
//! that builds the gateway only sees typed values. Checks that involve more than one value (a
//! target naming a backend, `h2c` needing an `http://` URL) live in
//! [`validate`](super::validate). `docs/config.md` documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use octo_core::Protocol;
use octo_engines::endpoint::{HttpVersion, Transport};
use serde::Deserialize;

use super::de;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; `OCTOLLM_LISTEN` or `--listen` override it.
    #[serde(default = "default_listen", deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    /// Server limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Upstreams, by name.
    #[serde(default)]
    pub backends: BTreeMap<String, BackendConfig>,
    /// Models clients may name, by the name they send.
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    /// Organisations and their API keys.
    #[serde(default)]
    pub orgs: BTreeMap<String, OrgConfig>,
    /// Where the request log and statistics are kept (`off` keeps none).
    #[serde(default)]
    pub storage: Storage,
    /// The admin listener (admin API and `/metrics`).
    #[serde(default)]
    pub admin: Option<crate::admin::AdminConfig>,
    /// Traces (OTLP/HTTP).
    #[serde(default)]
    pub telemetry: octo_telemetry::TelemetryConfig,
    /// Price overrides, USD per million tokens, by exposed or upstream model name.
    #[serde(default)]
    pub prices: octo_prices::PricesConfig,
    /// An optional price list to sync from.
    #[serde(default)]
    pub price_sync: Option<octo_prices::PriceSyncConfig>,
    /// The response cache's store and lifetimes (used by models with `cache: true`).
    #[serde(default)]
    pub cache: Option<super::cache::CacheConfig>,
    /// A Redis shared by every instance for rate limits, budgets and the response cache's `redis`
    /// store (absent: each instance counts and caches alone).
    #[serde(default)]
    pub redis: Option<super::redis::RedisConfig>,
}

/// The `storage` setting: `off`, or where the request log and statistics live.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    /// No request log, no statistics (`storage: off`).
    Off,
    /// A database.
    On(StorageConfig),
}

impl Default for Storage {
    fn default() -> Self {
        Storage::On(StorageConfig::default())
    }
}

/// The `storage` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite://octollm.db` (default; relative paths are beside the config file),
    /// `postgres://…` or `mysql://…`.
    #[serde(default = "default_storage_url")]
    pub url: String,
    /// How long log rows are kept (`30d` default; `0` or `forever` keeps them).
    #[serde(default = "default_retention", deserialize_with = "de::retention")]
    pub retention: Duration,
    /// Keep each request's body and answer in the log, cut to this many bytes each: `false`
    /// (default, none), `true` (the first 64 KiB) or `{max_bytes: N}`.
    #[serde(default, deserialize_with = "de::log_bodies")]
    pub log_bodies: Option<usize>,
    /// Records the log writer holds while the database is unavailable (default 100,000);
    /// beyond it the newest are dropped and counted.
    #[serde(default = "default_storage_buffer")]
    pub buffer: u64,
    /// How long one batch write may take before it is abandoned and retried (default `10s`).
    #[serde(default = "default_write_timeout", deserialize_with = "de::duration")]
    pub write_timeout: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: default_storage_url(),
            retention: default_retention(),
            log_bodies: None,
            buffer: default_storage_buffer(),
            write_timeout: default_write_timeout(),
        }
    }
}

fn default_storage_buffer() -> u64 {
    octo_store::DEFAULT_BUFFER as u64
}

fn default_write_timeout() -> Duration {
    octo_store::DEFAULT_WRITE_TIMEOUT
}

fn default_storage_url() -> String {
    "sqlite://octollm.db".to_owned()
}

fn default_retention() -> Duration {
    Duration::from_secs(30 * 86_400)
}

impl<'de> Deserialize<'de> for Storage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Storage;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`off` or a map with `url` and `retention`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Storage, E> {
                match v {
                    "off" => Ok(Storage::Off),
                    other => Err(E::custom(format!(
                        "`{other}` is not a storage setting; write `storage: off` or `storage: {{url: sqlite://octollm.db}}`"
                    ))),
                }
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Storage, E> {
                // YAML 1.1 reads a bare `off` as `false`.
                if v {
                    Ok(Storage::default())
                } else {
                    Ok(Storage::Off)
                }
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Storage, E> {
                Ok(Storage::default())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Storage, A::Error> {
                StorageConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Storage::On)
            }
        }
        d.deserialize_any(V)
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// Server-wide limits and timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body, in bytes (413 above it).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Largest request head, in bytes.
    #[serde(default = "default_max_header")]
    pub max_header_bytes: usize,
    /// How long a client may take to send its request head.
    #[serde(default = "default_header_timeout", deserialize_with = "de::duration")]
    pub header_read_timeout: Duration,
    /// How long in-flight requests may finish after SIGTERM.
    #[serde(default = "default_drain", deserialize_with = "de::duration")]
    pub drain_timeout: Duration,
    /// Idle interval before a stream keep-alive.
    #[serde(default = "default_keep_alive", deserialize_with = "de::duration")]
    pub stream_keep_alive: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: default_max_body(),
            max_header_bytes: default_max_header(),
            header_read_timeout: default_header_timeout(),
            drain_timeout: default_drain(),
            stream_keep_alive: default_keep_alive(),
        }
    }
}

fn default_max_body() -> usize {
    32 * 1024 * 1024
}
fn default_max_header() -> usize {
    64 * 1024
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_drain() -> Duration {
    Duration::from_secs(30)
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(15)
}

/// One upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Host root, e.g. `https://api.openai.com`.
    pub base_url: String,
    /// The protocol(s) the upstream speaks (`protocol: openai_chat` or a list); the first is the
    /// one requests in other protocols are converted to. Never empty once validated.
    #[serde(default, deserialize_with = "de::protocols")]
    pub protocol: Vec<Protocol>,
    /// API keys, chosen per request; a key answered 401/403/429 cools down.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// A single API key (alternative to `api_keys`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Extra headers on every upstream request.
    #[serde(default, deserialize_with = "de::headers")]
    pub headers: HeaderMap,
    /// Path overrides per protocol.
    #[serde(default, deserialize_with = "de::protocol_paths")]
    pub paths: BTreeMap<Protocol, String>,
    /// Deadlines.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// Rewrites of the request sent to this backend.
    #[serde(default)]
    pub request_rewrites: Option<RewriteConfig>,
    /// Rewrites of this backend's non-streaming responses.
    #[serde(default)]
    pub response_rewrites: Option<RewriteConfig>,
    /// Rewrites of each event of this backend's streams.
    #[serde(default)]
    pub stream_chunk_rewrites: Option<RewriteConfig>,
    /// Circuit breaker per (backend, key, model).
    #[serde(default)]
    pub circuit_breaker: Option<BreakerConfig>,
    /// How long a key answered 401/403/429 rests (a 429's retry-after wins when given).
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub key_cooldown: Option<Duration>,
    /// How requests in other protocols are converted for this backend.
    #[serde(default)]
    pub conversion: Option<ConversionConfig>,
    /// The HTTP version spoken to the upstream: `auto` (default) or `h2c` (HTTP/2 without TLS,
    /// by prior knowledge, for a plain `http://` upstream that speaks it).
    #[serde(default, deserialize_with = "de::http_version")]
    pub http_version: HttpVersion,
    /// The HTTP client: `auto` (default: hyper-util's client for `http://` upstreams no proxy
    /// from the environment applies to, reqwest otherwise), `hyper` or `reqwest`.
    #[serde(default, deserialize_with = "de::transport")]
    pub transport: Transport,
    /// Ask an OpenAI Chat upstream for usage on every stream (`stream_options.include_usage`)
    /// and remove it from what clients that did not ask receive, so the request log has usage
    /// (default `true`; `false` for upstreams that refuse `stream_options`).
    #[serde(default = "yes")]
    pub stream_usage: bool,
    /// Read the upstream's model list on this interval (`GET /v1/models`, Gemini
    /// `/v1beta/models`); the last result is shown by the admin API. Off when absent.
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub models_sync_interval: Option<Duration>,
}

fn yes() -> bool {
    true
}

/// Conversion settings of a backend (used when a client speaks a protocol the backend does not).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversionConfig {
    /// `max_tokens` sent to an Anthropic backend when the client gave none (default 4096).
    #[serde(default)]
    pub default_max_tokens: Option<u32>,
    /// The output-limit field toward an OpenAI Chat backend (default `max_completion_tokens`).
    #[serde(default)]
    pub openai_max_tokens_field: Option<MaxTokensField>,
    /// Whether the client's reasoning controls reach this backend (default `pass`).
    #[serde(default)]
    pub reasoning: Option<ReasoningPolicy>,
    /// How an OpenAI Chat backend wants reasoning back in the history (default `auto`: from the
    /// upstream model's name).
    #[serde(default)]
    pub reasoning_dialect: Option<ReasoningDialectConfig>,
}

/// The reasoning dialect of an OpenAI-compatible backend (`docs/conversion.md`, "Reasoning from
/// OpenAI-compatible vendors").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningDialectConfig {
    /// From the upstream model's name: `deepseek…`, `kimi…`/`moonshot…`, else `litellm`.
    Auto,
    /// `reasoning_content` and LiteLLM's `thinking_blocks`.
    Litellm,
    /// `reasoning_content` on tool-call turns only (DeepSeek requires it there).
    Deepseek,
    /// `reasoning_content`, never empty on tool-call turns (Kimi / Moonshot).
    Kimi,
    /// `reasoning` (vLLM ≥ 0.9, Ollama, Groq).
    Vllm,
    /// `reasoning` and `reasoning_details` (OpenRouter).
    Openrouter,
    /// No reasoning in the history.
    None,
}

/// What a converted request does with the client's reasoning controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningPolicy {
    /// Map them to the backend's own controls.
    Pass,
    /// Send none (for upstream models that refuse them).
    Drop,
}

/// The output-limit field of OpenAI Chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    /// The deprecated `max_tokens`, for OpenAI-compatible servers that only know it.
    MaxTokens,
    /// `max_completion_tokens`, which OpenAI's current models require.
    MaxCompletionTokens,
}

/// Upstream deadlines as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// Connection establishment (default 5s).
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub connect: Option<Duration>,
    /// Until the response head (default 60s).
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub first_byte: Option<Duration>,
    /// Longest gap between body chunks (default 60s).
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub idle: Option<Duration>,
    /// Whole exchange (default 600s).
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub total: Option<Duration>,
}

/// `set_keys`, `set_keys_by_expr` and `remove_keys`, applied in the order remove, set, set-by-expr.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    /// Path → value, applied in the order written.
    #[serde(default, deserialize_with = "de::ordered_json_map")]
    pub set_keys: Vec<(String, serde_json::Value)>,
    /// Path → expression, in the order written; a result of `()` skips the key.
    #[serde(default, deserialize_with = "de::ordered_expr_map")]
    pub set_keys_by_expr: Vec<(String, String)>,
    /// Paths to delete.
    #[serde(default)]
    pub remove_keys: Vec<String>,
}

/// Circuit-breaker thresholds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (default 5; 0 disables the breaker).
    #[serde(default = "default_breaker_failures")]
    pub failures: u32,
    /// First cool-down (default 10s, as without a `circuit_breaker` section); doubles per trip.
    #[serde(
        default = "default_breaker_cooldown",
        deserialize_with = "de::duration"
    )]
    pub cooldown: Duration,
    /// Cap on the cool-down (default 5m).
    #[serde(
        default = "default_breaker_max_cooldown",
        deserialize_with = "de::duration"
    )]
    pub max_cooldown: Duration,
}

pub(crate) fn default_breaker_failures() -> u32 {
    5
}
pub(crate) fn default_breaker_cooldown() -> Duration {
    Duration::from_secs(10)
}
pub(crate) fn default_breaker_max_cooldown() -> Duration {
    Duration::from_secs(5 * 60)
}

/// Who may use a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessConfig {
    /// Anyone, with or without a key.
    #[default]
    Public,
    /// Any valid gateway key.
    Internal,
    /// Keys of orgs that list the model.
    Private,
}

/// How a model's targets are chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyConfig {
    /// nginx's smooth weighted round robin.
    #[default]
    WeightedRoundRobin,
    /// Plain rotation.
    RoundRobin,
    /// Random, proportional to weight.
    Random,
    /// Lowest `priority` first; the next on failure.
    Failover,
    /// Lowest moving-average time to first byte (power of two choices).
    LowestLatency,
}

/// A model clients can name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Who may use it.
    #[serde(default)]
    pub access: AccessConfig,
    /// How targets are chosen.
    #[serde(default)]
    pub strategy: StrategyConfig,
    /// Where requests go.
    pub targets: Vec<TargetConfig>,
    /// Attempt cap and deadline across targets.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Keep a client (key) on the target that last served it, for this long.
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub sticky: Option<Duration>,
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Concurrent requests (streams until they end) allowed for this model.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Requests, tokens and requests in flight allowed for this model, all callers together
    /// (see [`super::limits`]).
    #[serde(default)]
    pub rate_limit: Option<super::limits::RateLimit>,
    /// Serve repeated requests from the response cache (`cache` section).
    #[serde(default)]
    pub cache: bool,
    /// Check requests (and answers) with a moderation endpoint.
    #[serde(default)]
    pub moderation: Option<super::cache::ModerationConfig>,
}

/// One place a model is served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// A key of `backends`.
    pub backend: String,
    /// The model name the upstream expects (default: the exposed name).
    pub model: Option<String>,
    /// Share for weighted strategies (default 1; 0 = only when nothing else is left).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Order for `failover` (lower first; default 0).
    #[serde(default)]
    pub priority: u32,
}

fn default_weight() -> u32 {
    1
}

/// Retry budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included (default 3).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Time for all attempts together (default 60s).
    #[serde(default = "default_deadline", deserialize_with = "de::duration")]
    pub deadline: Duration,
    /// Longest `retry-after` (or back-off) waited for before another round (default 2s); a longer
    /// one is passed to the client with the error.
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub max_wait: Option<Duration>,
}

pub(crate) fn default_attempts() -> u32 {
    3
}
pub(crate) fn default_deadline() -> Duration {
    Duration::from_secs(60)
}

/// A rule: when `match` holds, do what it says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Shown in errors and logs.
    pub name: String,
    /// An expression; empty or absent matches every request.
    #[serde(rename = "match", default)]
    pub matcher: Option<String>,
    /// Refuse the request.
    #[serde(default)]
    pub deny: Option<DenyConfig>,
    /// Send it to these targets instead of the model's.
    #[serde(default)]
    pub route: Option<Vec<TargetConfig>>,
    /// Rewrite the request first.
    #[serde(default)]
    pub rewrite: Option<RewriteConfig>,
    /// Headers added to the upstream request.
    #[serde(default, deserialize_with = "de::headers")]
    pub set_headers: HeaderMap,
}

/// A deny action.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyConfig {
    /// HTTP status (default 400).
    #[serde(default)]
    pub status: Option<u16>,
    /// Message shown to the client.
    pub message: String,
}

/// An organisation of API key holders.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgConfig {
    /// Key name → key.
    #[serde(default)]
    pub api_keys: BTreeMap<String, KeySpec>,
    /// Models granted to this org (listing grants private models); may hold per-org rules.
    #[serde(default)]
    pub models: BTreeMap<String, Option<OrgModelConfig>>,
    /// Requests, tokens and requests in flight allowed for all the org's keys together (see
    /// [`super::limits`]).
    #[serde(default)]
    pub rate_limit: Option<super::limits::RateLimit>,
    /// Spend allowed per period for all the org's keys together.
    #[serde(default)]
    pub budget: Option<super::limits::Budget>,
}

/// A gateway API key: the key itself, or the key with limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum KeySpec {
    /// `"sk-..."` or `"sha256:<hex>"`.
    Key(String),
    /// The key with an expiry and an allow-list.
    Detailed(DetailedKey),
}

/// A key with limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailedKey {
    /// `"sk-..."` or `"sha256:<hex>"`.
    pub key: String,
    /// RFC 3339 time after which the key is refused.
    #[serde(default, deserialize_with = "de::opt_expiry")]
    pub expires: Option<SystemTime>,
    /// Models this key may use (default: all its org may use).
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Request, token and concurrency caps of this key (see [`super::limits`]).
    #[serde(default)]
    pub rate_limit: Option<super::limits::RateLimit>,
    /// Spend cap of this key per period (see [`super::limits`]).
    #[serde(default)]
    pub budget: Option<super::limits::Budget>,
}

/// Per-org settings of one model.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgModelConfig {
    /// Rules evaluated before the model's own.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

impl BackendConfig {
    /// All keys (`api_key` then `api_keys`).
    pub fn keys(&self) -> Vec<String> {
        self.api_key.iter().chain(&self.api_keys).cloned().collect()
    }
}
