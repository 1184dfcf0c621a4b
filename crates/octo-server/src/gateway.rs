//! Turns a validated [`Config`] into the engine graph and the HTTP router.
//!
//! The graph, outermost first:
//!
//! ```text
//! Router ─▶ AuthEngine (when `orgs` are configured) ─▶ ModelRouter (model name → model engine)
//! model engine: ConcurrencyLimit? ─▶ RulesEngine? (org rules, then the model's) ─▶ TargetSet
//! TargetSet (strategy, retries, sticky) ─▶ Target per backend: BackendEngine
//! BackendEngine: passthrough, or ConvertEngine to the backend's first protocol ─▶ RewriteEngine? ─▶ HttpEndpoint
//! ```
//!
//! Anthropic `count_tokens` and Gemini `countTokens` go to a [`TokenCounter`] (behind the same
//! `AuthEngine`) that knows each model's targets and their backends' `HttpEndpoint`s.
//!
//! A rule's `route` is its own `TargetSet` (weighted round robin over the listed targets, with the
//! model's retry policy). Backend rewrites run on the request as sent to that backend.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use octo_core::http::{Router, ServeConfig};
use octo_core::{ArcEngine, Protocol};
use octo_engines::auth::{
    Access, AuthConfig, AuthEngine, Authenticator, KeyConfig, OrgConfig, parse_expiry,
};
use octo_engines::balance::{StrategyKind, Target, TargetSet};
use octo_engines::breaker::BreakerConfig as EngineBreakerConfig;
use octo_engines::client::{EndpointConfig, HttpEndpoint, KeyPoolConfig};
use octo_engines::convert::{ConvertOptions, OpenAiMaxTokens, ReasoningMode};
use octo_engines::limit::{ConcurrencyLimit, OverLimit};
use octo_engines::retry::RetryPolicy;
use octo_engines::rewrite::{
    RewriteConfig as EngineRewrite, RewriteEngine, RewritePolicy, RewritesConfig,
};
use octo_engines::rules::{Action, Forward, Rule, RulesEngine};

use crate::backend::BackendEngine;
use crate::config::{
    AccessConfig, Config, ConfigError, KeySpec, MaxTokensField, ModelConfig, ReasoningPolicy,
    RewriteConfig, RuleConfig, StrategyConfig, TargetConfig, parse_duration, timeouts,
};
use crate::count_tokens::{CountUpstream, TokenCounter};
use crate::model_router::ModelRouter;
use crate::models_list::ModelList;

/// Everything `octollm-server` needs to serve a config.
#[derive(Debug)]
pub struct Gateway {
    /// Routes and engines.
    pub router: Router,
    /// Server timeouts and limits.
    pub serve: ServeConfig,
}

type Problem = (String, String);

/// One backend, built once and shared by every model that targets it.
struct BuiltBackend {
    endpoint: Arc<HttpEndpoint>,
    engine: ArcEngine,
    protocols: Vec<Protocol>,
}

/// Builds the gateway for `config` (already validated by [`crate::config::parse`]).
///
/// # Errors
/// A [`ConfigError`] (labelled with `source`) when an engine refuses its settings, for example
/// an expression that does not compile.
pub fn build(config: &Config, source: &str) -> Result<Gateway, ConfigError> {
    let fail = |problems: Vec<Problem>| ConfigError {
        source: source.to_owned(),
        problems,
    };
    let one = |path: String, msg: String| fail(vec![(path, msg)]);

    let mut backends: BTreeMap<&str, BuiltBackend> = BTreeMap::new();
    for (name, b) in &config.backends {
        backends.insert(name, build_backend(name, b).map_err(|(p, m)| one(p, m))?);
    }

    let mut models: BTreeMap<String, ArcEngine> = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, m) in &config.models {
        match build_model(name, m, config, &backends) {
            Ok(engine) => {
                models.insert(name.clone(), engine);
            }
            Err(mut p) => problems.append(&mut p),
        }
    }
    if !problems.is_empty() {
        return Err(fail(problems));
    }
    let names: Vec<String> = models.keys().cloned().collect();
    let mut engine: ArcEngine = Arc::new(ModelRouter::new(models));
    let mut authenticator = None;
    if !config.orgs.is_empty() {
        let auth = Arc::new(
            Authenticator::new(auth_config(config).map_err(|(p, m)| one(p, m))?)
                .map_err(|e| one("orgs".into(), e.message().to_owned()))?,
        );
        engine = Arc::new(AuthEngine::new(auth.clone(), engine));
        authenticator = Some(auth);
    }
    let counter: ArcEngine = Arc::new(token_counter(config, &backends));
    let counter: ArcEngine = match &authenticator {
        Some(auth) => Arc::new(AuthEngine::new(auth.clone(), counter)),
        None => counter,
    };
    let list: ArcEngine = Arc::new(ModelList::new(names, authenticator));

    let duration =
        |key: &str, v: &str| parse_duration(v).map_err(|m| one(format!("limits.{key}"), m));
    let keep_alive = duration("stream_keep_alive", &config.limits.stream_keep_alive)?;
    let mut router = Router::new()
        .health_routes()
        .overhead_route()
        .max_body_bytes(config.limits.max_body_bytes)
        .keep_alive(Some(keep_alive));
    router = router
        .engine_at(
            "/v1/messages/count_tokens",
            Protocol::Anthropic,
            counter.clone(),
        )
        .gemini_count_tokens(counter);
    for format in Protocol::CHAT_PROTOCOLS {
        router = router.engine(format, engine.clone());
    }
    for path in ["/v1/models", "/v1beta/models"] {
        router = router
            .engine_for(Method::GET, path, Protocol::ModelList, list.clone())
            .engine_model_id(
                Method::GET,
                &format!("{path}/"),
                Protocol::ModelList,
                list.clone(),
            );
    }
    let serve = ServeConfig {
        header_read_timeout: duration("header_read_timeout", &config.limits.header_read_timeout)?,
        drain_timeout: duration("drain_timeout", &config.limits.drain_timeout)?,
        max_header_bytes: config.limits.max_header_bytes,
    };
    Ok(Gateway { router, serve })
}

fn build_backend(name: &str, b: &crate::config::BackendConfig) -> Result<BuiltBackend, Problem> {
    let at = |k: &str| format!("backends.{name}.{k}");
    let protocols = b.protocols().map_err(|m| (at("protocol"), m))?;
    let mut ep = EndpointConfig::new(name, b.base_url.clone(), protocols[0]);
    ep.protocols = protocols.clone();
    ep.api_keys = b.keys();
    ep.timeouts = timeouts(&b.timeouts).map_err(|(k, m)| (at(&format!("timeouts.{k}")), m))?;
    ep.http_version = b.http_version().map_err(|m| (at("http_version"), m))?;
    for (h, v) in &b.headers {
        let (Ok(h), Ok(v)) = (
            HeaderName::from_bytes(h.as_bytes()),
            HeaderValue::from_str(v),
        ) else {
            return Err((at(&format!("headers.{h}")), "not a valid header".into()));
        };
        ep.headers.insert(h, v);
    }
    for (proto, path) in &b.paths {
        if let Ok(f) = proto.parse::<Protocol>() {
            ep.paths.insert(f, path.clone());
        }
    }
    let mut pool = KeyPoolConfig::default();
    if let Some(cd) = &b.key_cooldown {
        pool.cooldown = parse_duration(cd).map_err(|m| (at("key_cooldown"), m))?;
    }
    if let Some(br) = &b.circuit_breaker {
        pool.breaker = Some(EngineBreakerConfig {
            failure_threshold: br.failures,
            base_cooldown: parse_duration(&br.cooldown)
                .map_err(|m| (at("circuit_breaker.cooldown"), m))?,
            max_cooldown: parse_duration(&br.max_cooldown)
                .map_err(|m| (at("circuit_breaker.max_cooldown"), m))?,
        });
    }
    ep.key_pool = pool;
    let endpoint = Arc::new(
        HttpEndpoint::new(ep).map_err(|e| (format!("backends.{name}"), e.message().to_owned()))?,
    );
    let rewrites = RewritesConfig {
        request: engine_rewrite(b.request_rewrites.as_ref()),
        response: engine_rewrite(b.response_rewrites.as_ref()),
        stream: engine_rewrite(b.stream_chunk_rewrites.as_ref()),
    };
    // Compile each part alone first so an error names its own key.
    for (key, part) in [
        ("request_rewrites", &rewrites.request),
        ("response_rewrites", &rewrites.response),
        ("stream_chunk_rewrites", &rewrites.stream),
    ] {
        RewritePolicy::new(part.clone()).map_err(|e| (at(key), e.message().to_owned()))?;
    }
    let inner: ArcEngine = if rewrites.is_empty() {
        endpoint.clone()
    } else {
        Arc::new(
            RewriteEngine::new(rewrites, endpoint.clone())
                .map_err(|e| (format!("backends.{name}"), e.message().to_owned()))?,
        )
    };
    let mut options = ConvertOptions::default();
    if let Some(c) = &b.conversion {
        if let Some(n) = c.default_max_tokens {
            options = options.with_default_max_tokens(n);
        }
        if let Some(field) = c.openai_max_tokens_field {
            options = options.with_openai_max_tokens_field(match field {
                MaxTokensField::MaxTokens => OpenAiMaxTokens::MaxTokens,
                MaxTokensField::MaxCompletionTokens => OpenAiMaxTokens::MaxCompletionTokens,
            });
        }
        if let Some(policy) = c.reasoning {
            options = options.with_reasoning(match policy {
                ReasoningPolicy::Pass => ReasoningMode::Pass,
                ReasoningPolicy::Drop => ReasoningMode::Drop,
            });
        }
    }
    let engine: ArcEngine = Arc::new(BackendEngine::new(name, protocols.clone(), inner, options));
    Ok(BuiltBackend {
        endpoint,
        engine,
        protocols,
    })
}

/// The token counter: each model with its targets in failover order (lowest priority first,
/// then list order), reached through the backend's HTTP client.
fn token_counter(config: &Config, backends: &BTreeMap<&str, BuiltBackend>) -> TokenCounter {
    let mut counter = TokenCounter::default();
    for (name, m) in &config.models {
        let mut targets: Vec<&TargetConfig> = m.targets.iter().collect();
        targets.sort_by_key(|t| t.priority);
        let upstreams = targets
            .into_iter()
            .filter_map(|t| {
                let b = backends.get(t.backend.as_str())?;
                Some(CountUpstream {
                    backend: t.backend.clone(),
                    model: t.model.clone().unwrap_or_else(|| name.clone()),
                    protocols: b.protocols.clone(),
                    engine: b.endpoint.clone(),
                    availability: Some(b.endpoint.clone()),
                })
            })
            .collect();
        counter = counter.with_model(name.clone(), upstreams);
    }
    counter
}

fn engine_rewrite(rw: Option<&RewriteConfig>) -> EngineRewrite {
    let Some(rw) = rw else {
        return EngineRewrite::default();
    };
    let mut out = EngineRewrite::default();
    for path in &rw.remove_keys {
        out = out.remove(path.clone());
    }
    for (k, v) in &rw.set_keys {
        if let Some(k) = k.as_str() {
            let json = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
            out = out.set(k, json);
        }
    }
    for (k, v) in &rw.set_keys_by_expr {
        if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
            out = out.set_expr(k, v);
        }
    }
    out
}

fn strategy_kind(s: StrategyConfig) -> StrategyKind {
    match s {
        StrategyConfig::WeightedRoundRobin => StrategyKind::WeightedRoundRobin,
        StrategyConfig::RoundRobin => StrategyKind::RoundRobin,
        StrategyConfig::Random => StrategyKind::Random,
        StrategyConfig::Failover => StrategyKind::Failover,
        StrategyConfig::LowestLatency => StrategyKind::LowestLatency,
    }
}

/// The model's retry policy (values were validated when the config was parsed).
fn retry_policy(m: &ModelConfig) -> RetryPolicy {
    let mut policy = RetryPolicy::new(3, Duration::from_secs(60));
    if let Some(r) = &m.retry {
        policy.max_attempts = r.max_attempts;
        policy.deadline = parse_duration(&r.deadline).unwrap_or(policy.deadline);
        if let Some(w) = r.max_wait.as_deref().and_then(|w| parse_duration(w).ok()) {
            policy.max_wait = w;
        }
    }
    policy
}

fn target_set(
    path: &str,
    model: &str,
    targets: &[TargetConfig],
    strategy: StrategyKind,
    policy: RetryPolicy,
    sticky: Option<Duration>,
    backends: &BTreeMap<&str, BuiltBackend>,
) -> Result<ArcEngine, Vec<Problem>> {
    let mut built = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let Some(b) = backends.get(t.backend.as_str()) else {
            return Err(vec![(
                format!("{path}[{i}].backend"),
                format!("unknown backend `{}`", t.backend),
            )]);
        };
        built.push(
            Target::new(t.backend.clone(), b.engine.clone())
                .with_availability(b.endpoint.clone())
                .with_model(t.model.clone().unwrap_or_else(|| model.to_owned()))
                .with_weight(t.weight)
                .with_priority(i32::try_from(t.priority).unwrap_or(i32::MAX)),
        );
    }
    let mut builder = TargetSet::builder(model, built)
        .strategy(strategy)
        .retry(policy);
    if let Some(ttl) = sticky {
        builder = builder.sticky(ttl);
    }
    builder
        .build()
        .map(|set| Arc::new(set) as ArcEngine)
        .map_err(|e| vec![(path.to_owned(), e.to_string())])
}

fn build_model(
    name: &str,
    m: &ModelConfig,
    config: &Config,
    backends: &BTreeMap<&str, BuiltBackend>,
) -> Result<ArcEngine, Vec<Problem>> {
    let at = |k: &str| format!("models.{name}.{k}");
    let policy = retry_policy(m);
    let sticky = match &m.sticky {
        Some(s) => Some(parse_duration(s).map_err(|e| vec![(at("sticky"), e)])?),
        None => None,
    };
    let mut engine = target_set(
        &at("targets"),
        name,
        &m.targets,
        strategy_kind(m.strategy),
        policy,
        sticky,
        backends,
    )?;

    // Org rules first (each applies to its org only), then the model's own rules.
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for (org, o) in &config.orgs {
        if let Some(Some(per_org)) = o.models.get(name) {
            for (i, r) in per_org.rules.iter().enumerate() {
                let path = format!("orgs.{org}.models.{name}.rules[{i}]");
                match build_rule(&path, name, r, policy, backends) {
                    Ok(rule) => rules.push((path, rule.for_org(org.clone()))),
                    Err(mut p) => problems.append(&mut p),
                }
            }
        }
    }
    for (i, r) in m.rules.iter().enumerate() {
        let path = at(&format!("rules[{i}]"));
        match build_rule(&path, name, r, policy, backends) {
            Ok(rule) => rules.push((path, rule)),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if !rules.is_empty() {
        // Compile each rule alone first so an error names the rule's own key path.
        for (path, rule) in &rules {
            if let Err(e) = RulesEngine::new(vec![rule.clone()], engine.clone()) {
                // Blame `match` when it is the expression that does not compile, else the rule
                // (its rewrite expressions or headers).
                let matcher_fails = !rule.expr.trim().is_empty()
                    && octo_engines::expr::Expr::new(&rule.expr).is_err();
                let at = if matcher_fails {
                    format!("{path}.match")
                } else {
                    path.clone()
                };
                problems.push((at, e.message().to_owned()));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let rules: Vec<Rule> = rules.into_iter().map(|(_, r)| r).collect();
        engine = Arc::new(
            RulesEngine::new(rules, engine)
                .map_err(|e| vec![(at("rules"), e.message().to_owned())])?,
        );
    }
    if let Some(max) = m.max_concurrency {
        engine = Arc::new(ConcurrencyLimit::new(name, engine, max, OverLimit::Reject));
    }
    Ok(engine)
}

fn build_rule(
    path: &str,
    model: &str,
    r: &RuleConfig,
    policy: RetryPolicy,
    backends: &BTreeMap<&str, BuiltBackend>,
) -> Result<Rule, Vec<Problem>> {
    let expr = r.matcher.clone().unwrap_or_default();
    if let Some(d) = &r.deny {
        return Ok(Rule::new(
            r.name.clone(),
            expr,
            Action::deny(d.status.unwrap_or(400), d.message.clone()),
        ));
    }
    let route = match &r.route {
        Some(targets) => Some(target_set(
            &format!("{path}.route"),
            model,
            targets,
            StrategyKind::WeightedRoundRobin,
            policy,
            None,
            backends,
        )?),
        None => None,
    };
    let mut headers = HeaderMap::new();
    for (h, v) in &r.set_headers {
        if let (Ok(h), Ok(v)) = (
            HeaderName::from_bytes(h.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(h, v);
        }
    }
    let forward = Forward {
        route,
        rewrite: RewritesConfig {
            request: engine_rewrite(r.rewrite.as_ref()),
            ..RewritesConfig::default()
        },
        set_headers: headers,
    };
    Ok(Rule::new(r.name.clone(), expr, Action::Forward(forward)))
}

fn auth_config(c: &Config) -> Result<AuthConfig, Problem> {
    let mut orgs = Vec::new();
    for (org_name, o) in &c.orgs {
        let mut org = OrgConfig::new(org_name.clone());
        for (key_name, spec) in &o.api_keys {
            let key = match spec {
                KeySpec::Key(k) => KeyConfig::new(key_name.clone(), k.clone()),
                KeySpec::Detailed(d) => {
                    let mut k = KeyConfig::new(key_name.clone(), d.key.clone());
                    if let Some(exp) = &d.expires {
                        let at = parse_expiry(exp).map_err(|m| {
                            (format!("orgs.{org_name}.api_keys.{key_name}.expires"), m)
                        })?;
                        k = k.expires_at(at);
                    }
                    if let Some(models) = &d.models {
                        k = k.allowed_models(models.iter().cloned());
                    }
                    k
                }
            };
            org = org.key(key);
        }
        for model in o.models.keys() {
            org = org.model(model.clone());
        }
        orgs.push(org);
    }
    let model_access: HashMap<String, Access> = c
        .models
        .iter()
        .map(|(name, m)| {
            let access = match m.access {
                AccessConfig::Public => Access::Public,
                AccessConfig::Internal => Access::Internal,
                AccessConfig::Private => Access::Private,
            };
            (name.clone(), access)
        })
        .collect();
    Ok(AuthConfig {
        orgs,
        model_access,
        // Unknown models reach the router's 404, which names the configured ones.
        default_access: Access::Public,
    })
}
