//! Turns a validated [`Config`] into the engine graph and the HTTP router.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use octo_core::http::{Router, ServeConfig};
use octo_core::{ApiFormat, ArcEngine};
use octo_engines::client::{EndpointConfig, HttpEndpoint};

use crate::config::{Config, ConfigError, parse_duration, timeouts};
use crate::model_router::{ModelRouter, Target};

/// Everything `octollm-server` needs to serve a config.
#[derive(Debug)]
pub struct Gateway {
    /// Routes and engines.
    pub router: Router,
    /// Server timeouts and limits.
    pub serve: ServeConfig,
}

/// Builds the gateway for `config` (already validated by [`crate::config::parse`]).
///
/// # Errors
/// A [`ConfigError`] if a backend cannot be built (labelled with `source`).
pub fn build(config: &Config, source: &str) -> Result<Gateway, ConfigError> {
    let fail = |path: String, msg: String| ConfigError {
        source: source.to_owned(),
        problems: vec![(path, msg)],
    };
    let pending = not_yet_wired(config);
    if !pending.is_empty() {
        return Err(ConfigError {
            source: source.to_owned(),
            problems: pending,
        });
    }
    let mut endpoints: BTreeMap<&str, Arc<HttpEndpoint>> = BTreeMap::new();
    for (name, b) in &config.backends {
        let protocols = b
            .protocols()
            .map_err(|m| fail(format!("backends.{name}.protocol"), m))?;
        let mut ep = EndpointConfig::new(name.clone(), b.base_url.clone(), protocols[0]);
        ep.protocols = protocols;
        ep.api_keys = b.keys();
        ep.timeouts = timeouts(&b.timeouts)
            .map_err(|(k, m)| fail(format!("backends.{name}.timeouts.{k}"), m))?;
        for (h, v) in &b.headers {
            let (Ok(h), Ok(v)) = (
                HeaderName::from_bytes(h.as_bytes()),
                HeaderValue::from_str(v),
            ) else {
                return Err(fail(
                    format!("backends.{name}.headers.{h}"),
                    "not a valid header".into(),
                ));
            };
            ep.headers.insert(h, v);
        }
        for (proto, path) in &b.paths {
            if let Ok(f) = proto.parse::<ApiFormat>() {
                ep.paths.insert(f, path.clone());
            }
        }
        let endpoint = HttpEndpoint::new(ep)
            .map_err(|e| fail(format!("backends.{name}"), e.message().to_owned()))?;
        endpoints.insert(name, Arc::new(endpoint));
    }
    let mut models = BTreeMap::new();
    for (name, m) in &config.models {
        let targets = m
            .targets
            .iter()
            .filter_map(|t| {
                Some(Target {
                    backend: t.backend.clone(),
                    upstream_model: t.model.clone().unwrap_or_else(|| name.clone()),
                    endpoint: endpoints.get(t.backend.as_str())?.clone(),
                })
            })
            .collect();
        models.insert(name.clone(), targets);
    }
    let engine: ArcEngine = Arc::new(ModelRouter::new(models));
    let duration =
        |key: &str, v: &str| parse_duration(v).map_err(|m| fail(format!("limits.{key}"), m));
    let keep_alive = duration("stream_keep_alive", &config.limits.stream_keep_alive)?;
    let mut router = Router::new()
        .health_routes()
        .max_body_bytes(config.limits.max_body_bytes)
        .keep_alive(Some(keep_alive));
    for format in ApiFormat::CHAT_PROTOCOLS {
        router = router.engine(format, engine.clone());
    }
    let serve = ServeConfig {
        header_read_timeout: duration("header_read_timeout", &config.limits.header_read_timeout)?,
        drain_timeout: duration("drain_timeout", &config.limits.drain_timeout)?,
        max_header_bytes: config.limits.max_header_bytes,
    };
    Ok(Gateway { router, serve })
}

/// Keys the schema accepts but this build does not act on yet: refused rather than ignored.
fn not_yet_wired(c: &Config) -> Vec<(String, String)> {
    let mut p = Vec::new();
    let mut refuse = |path: String| {
        p.push((
            path,
            "is not supported by this build yet; remove it".to_owned(),
        ));
    };
    for (name, b) in &c.backends {
        let at = |k: &str| format!("backends.{name}.{k}");
        if b.request_rewrites.is_some() {
            refuse(at("request_rewrites"));
        }
        if b.response_rewrites.is_some() {
            refuse(at("response_rewrites"));
        }
        if b.stream_chunk_rewrites.is_some() {
            refuse(at("stream_chunk_rewrites"));
        }
        if b.circuit_breaker.is_some() {
            refuse(at("circuit_breaker"));
        }
        if b.key_cooldown.is_some() {
            refuse(at("key_cooldown"));
        }
    }
    for (name, m) in &c.models {
        let at = |k: &str| format!("models.{name}.{k}");
        if m.access != crate::config::AccessConfig::Public {
            refuse(at("access"));
        }
        if m.strategy != crate::config::StrategyConfig::WeightedRoundRobin {
            refuse(at("strategy"));
        }
        if m.retry.is_some() {
            refuse(at("retry"));
        }
        if m.sticky.is_some() {
            refuse(at("sticky"));
        }
        if !m.rules.is_empty() {
            refuse(at("rules"));
        }
        if m.max_concurrency.is_some() {
            refuse(at("max_concurrency"));
        }
        if m.targets.iter().any(|t| t.weight != 1 || t.priority != 0) {
            refuse(at("targets[].weight/priority"));
        }
    }
    if !c.orgs.is_empty() {
        refuse("orgs".to_owned());
    }
    p
}
