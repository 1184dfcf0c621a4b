//! The YAML configuration: schema, loading, `${ENV}` interpolation and validation.
//!
//! Loading is strict. Unknown keys, unknown backends, bad durations, bad URLs and missing
//! environment variables all fail at startup with the file, the key's path (`backends.oa.timeouts`)
//! and what to write instead. Nothing is silently ignored.
//!
//! The schema here is the subset this release implements; see `docs/config.md`.

mod duration;
mod interpolate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use octo_core::Protocol;
use octo_engines::client::HttpVersion;
use serde::Deserialize;
use serde_yaml_ng::Value;

pub use duration::parse_duration;
use interpolate::interpolate;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; `OCTOLLM_LISTEN` or `--listen` override it.
    #[serde(default = "default_listen")]
    pub listen: String,
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
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
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
    #[serde(default = "default_header_timeout")]
    pub header_read_timeout: String,
    /// How long in-flight requests may finish after SIGTERM.
    #[serde(default = "default_drain")]
    pub drain_timeout: String,
    /// Idle interval before a stream keep-alive.
    #[serde(default = "default_keep_alive")]
    pub stream_keep_alive: String,
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
fn default_header_timeout() -> String {
    "30s".to_owned()
}
fn default_drain() -> String {
    "30s".to_owned()
}
fn default_keep_alive() -> String {
    "15s".to_owned()
}

/// One protocol name or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `protocol: openai_chat`
    One(String),
    /// `protocol: [openai_chat, openai_responses]`
    Many(Vec<String>),
}

/// One upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Host root, e.g. `https://api.openai.com`.
    pub base_url: String,
    /// The protocol(s) the upstream speaks.
    pub protocol: OneOrMany,
    /// API keys, chosen per request; a key answered 401/403/429 cools down.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// A single API key (alternative to `api_keys`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Extra headers on every upstream request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Path overrides per protocol.
    #[serde(default)]
    pub paths: BTreeMap<String, String>,
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
    #[serde(default)]
    pub key_cooldown: Option<String>,
    /// How requests in other protocols are converted for this backend.
    #[serde(default)]
    pub conversion: Option<ConversionConfig>,
    /// The HTTP version spoken to the upstream: `auto` (default) or `h2c` (HTTP/2 without TLS,
    /// by prior knowledge, for a plain `http://` upstream that speaks it).
    #[serde(default)]
    pub http_version: Option<String>,
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
    pub connect: Option<String>,
    /// Until the response head (default 60s).
    pub first_byte: Option<String>,
    /// Longest gap between body chunks (default 60s).
    pub idle: Option<String>,
    /// Whole exchange (default 600s).
    pub total: Option<String>,
}

/// `set_keys`, `set_keys_by_expr` and `remove_keys`, applied in the order remove, set, set-by-expr.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    /// Path → value, applied in the order written.
    #[serde(default)]
    pub set_keys: serde_yaml_ng::Mapping,
    /// Path → expression; a result of `()` skips the key.
    #[serde(default)]
    pub set_keys_by_expr: serde_yaml_ng::Mapping,
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
    #[serde(default = "default_breaker_cooldown")]
    pub cooldown: String,
    /// Cap on the cool-down (default 5m).
    #[serde(default = "default_breaker_max_cooldown")]
    pub max_cooldown: String,
}

fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> String {
    "10s".to_owned()
}
fn default_breaker_max_cooldown() -> String {
    "5m".to_owned()
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
    #[serde(default)]
    pub sticky: Option<String>,
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Concurrent requests (streams until they end) allowed for this model.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
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
    #[serde(default = "default_deadline")]
    pub deadline: String,
    /// Longest `retry-after` (or back-off) waited for before another round (default 2s); a longer
    /// one is passed to the client with the error.
    #[serde(default)]
    pub max_wait: Option<String>,
}

fn default_attempts() -> u32 {
    3
}
fn default_deadline() -> String {
    "60s".to_owned()
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
    #[serde(default)]
    pub set_headers: BTreeMap<String, String>,
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
    #[serde(default)]
    pub expires: Option<String>,
    /// Models this key may use (default: all its org may use).
    #[serde(default)]
    pub models: Option<Vec<String>>,
}

/// Per-org settings of one model.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgModelConfig {
    /// Rules evaluated before the model's own.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// What went wrong loading a config: every problem found, each with its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or a label for an in-memory config).
    pub source: String,
    /// `(key path, message with the fix)` pairs.
    pub problems: Vec<(String, String)>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config {}:", self.source)?;
        for (path, msg) in &self.problems {
            if path.is_empty() {
                write!(f, "\n  - {msg}")?;
            } else {
                write!(f, "\n  - at `{path}`: {msg}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn one(source: &str, path: impl Into<String>, msg: impl Into<String>) -> Self {
        ConfigError {
            source: source.to_owned(),
            problems: vec![(path.into(), msg.into())],
        }
    }
}

/// Reads and validates the config at `path`, interpolating from the process environment.
///
/// # Errors
/// A [`ConfigError`] naming the file, the key path and the fix.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::one(
            &source,
            "",
            format!("cannot read the file: {e}; check the path given to --config"),
        )
    })?;
    parse(&text, &source, &|name| std::env::var(name).ok())
}

/// Parses and validates config `text` (labelled `source` in errors) with `env` for `${VAR}`.
///
/// # Errors
/// A [`ConfigError`] naming the source, the key path and the fix.
pub fn parse(
    text: &str,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut doc: Value = serde_yaml_ng::from_str(text)
        .map_err(|e| ConfigError::one(source, "", format!("not valid YAML: {e}")))?;
    if doc.is_null() {
        doc = Value::Mapping(Default::default());
    }
    let mut problems = Vec::new();
    interpolate_tree(&mut doc, &mut String::new(), env, &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError {
            source: source.to_owned(),
            problems,
        });
    }
    let config: Config = serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError::one(source, path, e.into_inner().to_string())
    })?;
    let problems = validate(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError {
            source: source.to_owned(),
            problems,
        })
    }
}

fn interpolate_tree(
    v: &mut Value,
    path: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<(String, String)>,
) {
    match v {
        Value::String(s) => match interpolate(s, env) {
            Ok(new) => *s = new,
            Err(msg) => problems.push((path.clone(), msg)),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate_tree(item, path, env, problems);
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (k, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                match k {
                    Value::String(s) => path.push_str(s),
                    other => path.push_str(&format!("{other:?}")),
                }
                interpolate_tree(item, path, env, problems);
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => interpolate_tree(&mut tagged.value, path, env, problems),
        _ => {}
    }
}

impl BackendConfig {
    /// The protocols, parsed.
    pub fn protocols(&self) -> Result<Vec<Protocol>, String> {
        let names: Vec<&String> = match &self.protocol {
            OneOrMany::One(p) => vec![p],
            OneOrMany::Many(list) => list.iter().collect(),
        };
        if names.is_empty() {
            return Err(
                "list at least one protocol: openai_chat, openai_responses, anthropic or gemini"
                    .into(),
            );
        }
        names
            .into_iter()
            .map(|n| match n.parse::<Protocol>() {
                Ok(f) if Protocol::CHAT_PROTOCOLS.contains(&f) => Ok(f),
                _ => Err(format!(
                    "unknown protocol `{n}`; use openai_chat, openai_responses, anthropic or gemini"
                )),
            })
            .collect()
    }

    /// The HTTP version setting, parsed (`auto` when absent).
    pub fn http_version(&self) -> Result<HttpVersion, String> {
        match self.http_version.as_deref() {
            None | Some("auto") => Ok(HttpVersion::Auto),
            Some("h2c") => {
                let scheme = self.base_url.parse::<http::Uri>().ok();
                if scheme.as_ref().and_then(http::Uri::scheme_str) == Some("http") {
                    Ok(HttpVersion::H2c)
                } else {
                    Err(format!(
                        "`h2c` is HTTP/2 without TLS and needs an `http://` base_url, not `{}`; an https:// upstream negotiates HTTP/2 by itself (ALPN): remove `http_version`",
                        self.base_url
                    ))
                }
            }
            Some(other) => Err(format!(
                "unknown HTTP version setting `{other}`; use `h2c` (HTTP/2 without TLS, for an http:// upstream that speaks it) or `auto` (the default: HTTP/1.1 to http://, HTTP/2 by ALPN to https://)"
            )),
        }
    }

    /// All keys (`api_key` then `api_keys`).
    pub fn keys(&self) -> Vec<String> {
        self.api_key.iter().chain(&self.api_keys).cloned().collect()
    }
}

/// Parsed timeouts with defaults applied.
pub(crate) fn timeouts(
    t: &TimeoutsConfig,
) -> Result<octo_engines::client::Timeouts, (String, String)> {
    let d = octo_engines::client::Timeouts::default();
    let get = |name: &str, v: &Option<String>, default: Duration| match v {
        None => Ok(default),
        Some(s) => parse_duration(s).map_err(|m| (name.to_owned(), m)),
    };
    Ok(octo_engines::client::Timeouts {
        connect: get("connect", &t.connect, d.connect)?,
        first_byte: get("first_byte", &t.first_byte, d.first_byte)?,
        idle: get("idle", &t.idle, d.idle)?,
        total: get("total", &t.total, d.total)?,
    })
}

fn validate(c: &Config) -> Vec<(String, String)> {
    let mut p = Vec::new();
    if c.listen.parse::<SocketAddr>().is_err() {
        p.push((
            "listen".into(),
            format!(
                "`{}` is not an address; write e.g. `127.0.0.1:8080`",
                c.listen
            ),
        ));
    }
    for (key, value) in [
        ("header_read_timeout", &c.limits.header_read_timeout),
        ("drain_timeout", &c.limits.drain_timeout),
        ("stream_keep_alive", &c.limits.stream_keep_alive),
    ] {
        if let Err(m) = parse_duration(value) {
            p.push((format!("limits.{key}"), m));
        }
    }
    if c.limits.max_body_bytes == 0 {
        p.push(("limits.max_body_bytes".into(), "must be positive".into()));
    }
    for (name, b) in &c.backends {
        let at = |k: &str| format!("backends.{name}.{k}");
        let protocols = match b.protocols() {
            Ok(list) => list,
            Err(m) => {
                p.push((at("protocol"), m));
                Vec::new()
            }
        };
        match b.base_url.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                if u.path().len() > 1 {
                    p.push((at("base_url"), format!(
                        "`{}` has a path; give the host root (e.g. `https://api.openai.com`) and set per-protocol `paths` if the upstream needs another path",
                        b.base_url
                    )));
                }
            }
            _ => p.push((
                at("base_url"),
                format!(
                    "`{}` is not an http(s) URL; write e.g. `https://api.openai.com`",
                    b.base_url
                ),
            )),
        }
        if b.api_key.is_some() && !b.api_keys.is_empty() {
            p.push((
                at("api_key"),
                "set either `api_key` or `api_keys`, not both".into(),
            ));
        }
        for (i, k) in b.keys().iter().enumerate() {
            if k.is_empty() || http::HeaderValue::from_str(k).is_err() {
                p.push((
                    format!("backends.{name}.api_keys[{i}]"),
                    "empty, or contains characters not allowed in an HTTP header".into(),
                ));
            }
        }
        for (h, v) in &b.headers {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err()
                || http::HeaderValue::from_str(v).is_err()
            {
                p.push((
                    format!("backends.{name}.headers.{h}"),
                    "not a valid HTTP header name/value".into(),
                ));
            }
        }
        for (proto, path) in &b.paths {
            match proto.parse::<Protocol>() {
                Ok(f) if protocols.contains(&f) => {}
                _ => p.push((
                    format!("backends.{name}.paths.{proto}"),
                    format!(
                        "`{proto}` is not one of this backend's protocols ({})",
                        octo_core::protocol_list(&protocols)
                    ),
                )),
            }
            if !path.starts_with('/') {
                p.push((
                    format!("backends.{name}.paths.{proto}"),
                    format!("`{path}` must start with `/`"),
                ));
            }
        }
        if let Err((key, m)) = timeouts(&b.timeouts) {
            p.push((format!("backends.{name}.timeouts.{key}"), m));
        }
        if let Err(m) = b.http_version() {
            p.push((at("http_version"), m));
        }
    }
    for (name, b) in &c.backends {
        let at = |k: &str| format!("backends.{name}.{k}");
        if let Some(cd) = &b.key_cooldown {
            if let Err(m) = parse_duration(cd) {
                p.push((at("key_cooldown"), m));
            }
        }
        if let Some(br) = &b.circuit_breaker {
            for (k, v) in [
                ("cooldown", &br.cooldown),
                ("max_cooldown", &br.max_cooldown),
            ] {
                if let Err(m) = parse_duration(v) {
                    p.push((at(&format!("circuit_breaker.{k}")), m));
                }
            }
        }
        for (k, rw) in [
            ("request_rewrites", &b.request_rewrites),
            ("response_rewrites", &b.response_rewrites),
            ("stream_chunk_rewrites", &b.stream_chunk_rewrites),
        ] {
            if let Some(rw) = rw {
                validate_rewrite(&at(k), rw, &mut p);
            }
        }
    }
    for (model, m) in &c.models {
        let at = |k: &str| format!("models.{model}.{k}");
        if m.targets.is_empty() {
            p.push((
                at("targets"),
                "list at least one target: `- {backend: NAME}`".into(),
            ));
        }
        validate_targets(&at("targets"), &m.targets, c, &mut p);
        if let Some(r) = &m.retry {
            if r.max_attempts == 0 {
                p.push((
                    at("retry.max_attempts"),
                    "must be at least 1 (1 means no retry)".into(),
                ));
            }
            if let Err(e) = parse_duration(&r.deadline) {
                p.push((at("retry.deadline"), e));
            }
            if let Some(w) = &r.max_wait {
                if let Err(e) = parse_duration(w) {
                    p.push((at("retry.max_wait"), e));
                }
            }
        }
        if let Some(st) = &m.sticky {
            if let Err(e) = parse_duration(st) {
                p.push((at("sticky"), e));
            }
        }
        if m.access != AccessConfig::Public && c.orgs.is_empty() {
            // Without orgs there is no key a client could present, and no auth engine to check
            // one: the model would be unreachable (or, worse, open to anyone).
            p.push((
                at("access"),
                format!(
                    "`{}` needs gateway API keys, and no `orgs` are defined; add an org with `api_keys` (and, for `private`, list the model under its `models`), or make the model `public`",
                    match m.access {
                        AccessConfig::Internal => "internal",
                        _ => "private",
                    }
                ),
            ));
        }
        if m.max_concurrency == Some(0) {
            p.push((
                at("max_concurrency"),
                "must be at least 1; remove the key for no limit".into(),
            ));
        }
        validate_rules(&at("rules"), &m.rules, c, &mut p);
    }
    for (org, o) in &c.orgs {
        for (key_name, spec) in &o.api_keys {
            let key = match spec {
                KeySpec::Key(k) => k,
                KeySpec::Detailed(d) => {
                    for allowed in d.models.iter().flatten() {
                        if !c.models.contains_key(allowed) {
                            p.push((
                                format!("orgs.{org}.api_keys.{key_name}.models"),
                                format!("unknown model `{allowed}`; define it under `models`"),
                            ));
                        }
                    }
                    &d.key
                }
            };
            if key.trim().is_empty() {
                p.push((
                    format!("orgs.{org}.api_keys.{key_name}"),
                    "empty key".into(),
                ));
            }
        }
        for (model, per_org) in &o.models {
            if !c.models.contains_key(model) {
                p.push((
                    format!("orgs.{org}.models.{model}"),
                    format!("unknown model `{model}`; define it under `models` first"),
                ));
            }
            if let Some(per_org) = per_org {
                validate_rules(
                    &format!("orgs.{org}.models.{model}.rules"),
                    &per_org.rules,
                    c,
                    &mut p,
                );
            }
        }
    }
    p
}

fn validate_targets(at: &str, targets: &[TargetConfig], c: &Config, p: &mut Vec<(String, String)>) {
    for (i, t) in targets.iter().enumerate() {
        if !c.backends.contains_key(&t.backend) {
            let known: Vec<&str> = c.backends.keys().map(String::as_str).collect();
            p.push((
                format!("{at}[{i}].backend"),
                format!(
                    "unknown backend `{}`; defined backends: {}",
                    t.backend,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
}

fn validate_rules(at: &str, rules: &[RuleConfig], c: &Config, p: &mut Vec<(String, String)>) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in rules.iter().enumerate() {
        let here = format!("{at}[{i}]");
        if r.name.trim().is_empty() {
            p.push((format!("{here}.name"), "give the rule a name".into()));
        } else if !seen.insert(r.name.as_str()) {
            p.push((
                format!("{here}.name"),
                format!("duplicate rule name `{}`", r.name),
            ));
        }
        if r.deny.is_some()
            && (r.route.is_some() || r.rewrite.is_some() || !r.set_headers.is_empty())
        {
            p.push((
                here.clone(),
                "`deny` cannot be combined with `route`, `rewrite` or `set_headers`".into(),
            ));
        }
        if r.deny.is_none() && r.route.is_none() && r.rewrite.is_none() && r.set_headers.is_empty()
        {
            p.push((
                here.clone(),
                "the rule does nothing; give it `deny`, `route`, `rewrite` or `set_headers`".into(),
            ));
        }
        if let Some(d) = &r.deny {
            if let Some(status) = d.status {
                if !(400..=599).contains(&status) {
                    p.push((
                        format!("{here}.deny.status"),
                        format!("{status} is not an error status; use 400-599"),
                    ));
                }
            }
        }
        if let Some(route) = &r.route {
            if route.is_empty() {
                p.push((format!("{here}.route"), "list at least one target".into()));
            }
            validate_targets(&format!("{here}.route"), route, c, p);
        }
        if let Some(rw) = &r.rewrite {
            validate_rewrite(&format!("{here}.rewrite"), rw, p);
        }
        for (h, v) in &r.set_headers {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err()
                || http::HeaderValue::from_str(v).is_err()
            {
                p.push((
                    format!("{here}.set_headers.{h}"),
                    "not a valid HTTP header name/value".into(),
                ));
            }
        }
    }
}

fn validate_rewrite(at: &str, rw: &RewriteConfig, p: &mut Vec<(String, String)>) {
    for (k, _) in &rw.set_keys {
        if !k.is_string() {
            p.push((
                format!("{at}.set_keys"),
                format!("key {k:?} must be a string path like `a.b`"),
            ));
        }
    }
    for (k, v) in &rw.set_keys_by_expr {
        if !k.is_string() || !v.is_string() {
            p.push((
                format!("{at}.set_keys_by_expr"),
                format!("{k:?} must map a string path to an expression string"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "OPENAI_KEY").then(|| "sk-from-env".to_owned())
    }

    const GOOD: &str = r#"
listen: "127.0.0.1:0"
backends:
  oa:
    base_url: "http://127.0.0.1:9001"
    protocol: openai_chat
    api_keys: ["${OPENAI_KEY}"]
    headers: {X-Extra: "v"}
    paths: {openai_chat: "/v1/chat/completions"}
    timeouts: {connect: 5s, first_byte: 60s, idle: 60s, total: 600s}
models:
  gpt-4o-mini:
    targets:
      - {backend: oa, model: upstream-model-name}
"#;

    #[test]
    fn the_issue_example_loads() {
        let c = parse(GOOD, "good.yaml", &env).unwrap();
        assert_eq!(c.backends["oa"].keys(), vec!["sk-from-env"]);
        assert_eq!(
            c.models["gpt-4o-mini"].targets[0].model.as_deref(),
            Some("upstream-model-name")
        );
    }

    fn err(text: &str) -> String {
        parse(text, "bad.yaml", &env).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_name_their_path_and_the_choices() {
        let e = err(&GOOD.replace("first_byte: 60s", "first_bite: 60s"));
        assert!(e.contains("bad.yaml"), "{e}");
        assert!(e.contains("backends.oa.timeouts"), "{e}");
        assert!(e.contains("unknown field `first_bite`"), "{e}");
        assert!(e.contains("first_byte"), "{e}");
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let e = err(&GOOD
            .replace("backend: oa", "backend: ob")
            .replace("connect: 5s", "connect: 5 sec")
            .replace("protocol: openai_chat", "protocol: openai"));
        assert!(
            e.contains(
                "models.gpt-4o-mini.targets[0].backend`: unknown backend `ob`; defined backends: oa"
            ),
            "{e}"
        );
        assert!(e.contains("backends.oa.timeouts.connect"), "{e}");
        assert!(e.contains("unknown protocol `openai`"), "{e}");
    }

    #[test]
    fn missing_env_vars_fail_with_the_key_path() {
        let e = err(&GOOD.replace("${OPENAI_KEY}", "${MISSING_KEY}"));
        assert!(e.contains("backends.oa.api_keys[0]"), "{e}");
        assert!(e.contains("`MISSING_KEY` is not set"), "{e}");
    }

    #[test]
    fn base_url_with_a_path_is_refused() {
        let e = err(&GOOD.replace("http://127.0.0.1:9001", "http://127.0.0.1:9001/v1"));
        assert!(e.contains("backends.oa.base_url"), "{e}");
    }

    const FULL: &str = r#"
listen: "127.0.0.1:8080"
backends:
  oa:
    base_url: "http://127.0.0.1:9001"
    protocol: [openai_chat, openai_responses]
    api_keys: ["k1", "k2"]
    headers: {}
    paths: {}
    timeouts: {connect: 5s, first_byte: 60s, idle: 60s, total: 600s}
    request_rewrites: {set_keys: {b: 1, a: 2}, set_keys_by_expr: {}, remove_keys: []}
    response_rewrites: {}
    stream_chunk_rewrites: {}
    circuit_breaker: {failures: 3, cooldown: 10s, max_cooldown: 2m}
    key_cooldown: 30s
models:
  gpt-4o-mini:
    access: public
    strategy: weighted_round_robin
    targets:
      - {backend: oa, model: upstream-name, weight: 1, priority: 0}
    retry: {max_attempts: 3, deadline: 30s}
    sticky: 5m
    max_concurrency: 100
    rules:
      - name: no-stream
        match: "stream == true"
        deny: {status: 403, message: "streaming is not allowed"}
      - name: big
        match: "promptTextLen > 100000"
        route: [{backend: oa, model: big-model, weight: 1}]
  private-model:
    access: private
    targets: [{backend: oa}]
orgs:
  acme:
    api_keys:
      alice: "sk-acme-alice"
      bob: "sha256:0000000000000000000000000000000000000000000000000000000000000000"
      carol: {key: "sk-carol", expires: "2030-01-01T00:00:00Z", models: [gpt-4o-mini]}
    models:
      private-model: null
"#;

    #[test]
    fn the_full_schema_loads_and_keeps_rewrite_order() {
        let c = parse(FULL, "full.yaml", &env).unwrap();
        let m = &c.models["gpt-4o-mini"];
        assert_eq!(m.strategy, StrategyConfig::WeightedRoundRobin);
        assert_eq!(m.rules.len(), 2);
        assert_eq!(c.models["private-model"].access, AccessConfig::Private);
        assert!(c.orgs["acme"].models.contains_key("private-model"));
        let rw = c.backends["oa"].request_rewrites.as_ref().unwrap();
        let keys: Vec<_> = rw.set_keys.keys().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(keys, ["b", "a"]);
    }

    #[test]
    fn bad_rules_weights_and_references_fail_with_paths() {
        let e = err(&FULL.replace("weight: 1, priority: 0", "weight: -1, priority: 0"));
        assert!(e.contains("models.gpt-4o-mini.targets[0].weight"), "{e}");
        let e = err(&FULL.replace("status: 403", "status: 200").replace(
            "backend: oa, model: big-model",
            "backend: nope, model: big-model",
        ));
        assert!(e.contains("models.gpt-4o-mini.rules[0].deny.status"), "{e}");
        assert!(
            e.contains("models.gpt-4o-mini.rules[1].route[0].backend"),
            "{e}"
        );
        let e = err(&FULL.replace("strategy: weighted_round_robin", "strategy: fastest"));
        assert!(
            e.contains("models.gpt-4o-mini.strategy") && e.contains("lowest_latency"),
            "{e}"
        );
        let e = err(&FULL.replace("private-model: null", "ghost-model: null"));
        assert!(e.contains("orgs.acme.models.ghost-model"), "{e}");
        let e = err(&FULL.replace("sticky: 5m", "sticky: forever"));
        assert!(e.contains("models.gpt-4o-mini.sticky"), "{e}");
    }

    #[test]
    fn breaker_defaults_match_a_backend_without_the_section() {
        // `circuit_breaker: {failures: 3}` must not change the cooldowns a backend without the
        // section gets.
        let engine = octo_engines::breaker::BreakerConfig::default();
        assert_eq!(
            parse_duration(&default_breaker_cooldown()),
            Ok(engine.base_cooldown)
        );
        assert_eq!(
            parse_duration(&default_breaker_max_cooldown()),
            Ok(engine.max_cooldown)
        );
        assert_eq!(default_breaker_failures(), engine.failure_threshold);
    }

    #[test]
    fn non_public_models_need_orgs() {
        let internal = GOOD.replace("  gpt-4o-mini:\n", "  gpt-4o-mini:\n    access: internal\n");
        let e = err(&internal);
        assert!(e.contains("models.gpt-4o-mini.access"), "{e}");
        assert!(e.contains("no `orgs`"), "{e}");
        let with_org = format!("{internal}orgs:\n  acme: {{api_keys: {{a: sk-a}}}}\n");
        parse(&with_org, "ok.yaml", &env).unwrap();
    }

    #[test]
    fn conversion_reasoning_parses_and_bad_values_name_the_choices() {
        let with = |v: &str| {
            GOOD.replace(
                "    api_keys: [\"${OPENAI_KEY}\"]\n",
                &format!(
                    "    api_keys: [\"${{OPENAI_KEY}}\"]\n    conversion: {{reasoning: {v}}}\n"
                ),
            )
        };
        let c = parse(&with("drop"), "good.yaml", &env).unwrap();
        let conv = c.backends["oa"].conversion.as_ref().unwrap();
        assert_eq!(conv.reasoning, Some(ReasoningPolicy::Drop));
        let c = parse(&with("pass"), "good.yaml", &env).unwrap();
        let conv = c.backends["oa"].conversion.as_ref().unwrap();
        assert_eq!(conv.reasoning, Some(ReasoningPolicy::Pass));
        let c = parse(GOOD, "good.yaml", &env).unwrap();
        assert!(c.backends["oa"].conversion.is_none());
        let e = err(&with("strip"));
        assert!(e.contains("bad.yaml"), "{e}");
        assert!(e.contains("backends.oa.conversion.reasoning"), "{e}");
        assert!(e.contains("unknown variant `strip`"), "{e}");
        assert!(e.contains("`pass`") && e.contains("`drop`"), "{e}");
    }

    #[test]
    fn http_version_h2c_is_parsed_and_checked() {
        let c = parse(GOOD, "good.yaml", &env).unwrap();
        assert_eq!(c.backends["oa"].http_version(), Ok(HttpVersion::Auto));
        let h2c = GOOD.replace(
            "    protocol: openai_chat\n",
            "    protocol: openai_chat\n    http_version: h2c\n",
        );
        let c = parse(&h2c, "h2c.yaml", &env).unwrap();
        assert_eq!(c.backends["oa"].http_version(), Ok(HttpVersion::H2c));
        let auto = h2c.replace("http_version: h2c", "http_version: auto");
        let c = parse(&auto, "auto.yaml", &env).unwrap();
        assert_eq!(c.backends["oa"].http_version(), Ok(HttpVersion::Auto));

        let e = err(&h2c.replace("http_version: h2c", "http_version: h2"));
        assert!(e.contains("bad.yaml"), "{e}");
        assert!(e.contains("at `backends.oa.http_version`"), "{e}");
        assert!(e.contains("unknown HTTP version setting `h2`"), "{e}");
        assert!(e.contains("use `h2c`"), "{e}");

        let e = err(&h2c.replace("http://127.0.0.1:9001", "https://127.0.0.1:9001"));
        assert!(e.contains("at `backends.oa.http_version`"), "{e}");
        assert!(e.contains("needs an `http://` base_url"), "{e}");
        assert!(e.contains("remove `http_version`"), "{e}");
    }

    #[test]
    fn yaml_syntax_errors_have_a_location() {
        let e = err("backends: [\n");
        assert!(e.contains("not valid YAML"), "{e}");
        assert!(e.contains("line"), "{e}");
    }
}
