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

use octo_core::ApiFormat;
use serde::Deserialize;
use serde_yaml_ng::Value;

pub(crate) use duration::parse_duration;
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
    /// API keys, used in turn.
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

/// A model clients can name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Where requests go, tried in order when one fails with a retryable error.
    pub targets: Vec<TargetConfig>,
}

/// One place a model is served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// A key of `backends`.
    pub backend: String,
    /// The model name the upstream expects (default: the exposed name).
    pub model: Option<String>,
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
    pub fn protocols(&self) -> Result<Vec<ApiFormat>, String> {
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
            .map(|n| match n.parse::<ApiFormat>() {
                Ok(f) if ApiFormat::CHAT_PROTOCOLS.contains(&f) => Ok(f),
                _ => Err(format!(
                    "unknown protocol `{n}`; use openai_chat, openai_responses, anthropic or gemini"
                )),
            })
            .collect()
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
            match proto.parse::<ApiFormat>() {
                Ok(f) if protocols.contains(&f) => {}
                _ => p.push((
                    format!("backends.{name}.paths.{proto}"),
                    format!(
                        "`{proto}` is not one of this backend's protocols ({})",
                        octo_core::format_list(&protocols)
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
    }
    for (model, m) in &c.models {
        if m.targets.is_empty() {
            p.push((
                format!("models.{model}.targets"),
                "list at least one target: `- {backend: NAME}`".into(),
            ));
        }
        for (i, t) in m.targets.iter().enumerate() {
            if !c.backends.contains_key(&t.backend) {
                let known: Vec<&str> = c.backends.keys().map(String::as_str).collect();
                p.push((
                    format!("models.{model}.targets[{i}].backend"),
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
    p
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

    #[test]
    fn yaml_syntax_errors_have_a_location() {
        let e = err("backends: [\n");
        assert!(e.contains("not valid YAML"), "{e}");
        assert!(e.contains("line"), "{e}");
    }
}
