//! Turns a validated [`Config`] into the engine graph and the HTTP router.
//!
//! The graph, outermost first:
//!
//! ```text
//! Router ─▶ AuthEngine (when `orgs` are configured) ─▶ ModelRouter (model name → model engine)
//! model engine: LimitEngine? (rate limits, budgets) ─▶ ConcurrencyLimit? ─▶ RulesEngine? (org rules,
//!               then the model's) ─▶ CacheEngine? ─▶ ModerationEngine? ─▶ TargetSet (a rule's
//!               route gets the same cache and moderation)
//! TargetSet (strategy, retries, sticky — its sessions in Redis with `redis`) ─▶ Target per backend: BackendEngine
//! BackendEngine: passthrough, or ConvertEngine to the backend's first protocol ─▶ RewriteEngine? ─▶ HttpEndpoint
//! ```
//!
//! `GET /v1/responses/{id}`, `GET /v1/responses/{id}/input_items` and `DELETE /v1/responses/{id}`
//! go to a [`ResponsesApi`] over the same [`ResponseState`] the backends store answers in.
//!
//! Anthropic `count_tokens` and Gemini `countTokens` go to a [`TokenCounter`] (behind the same
//! `AuthEngine`) that knows each model's targets and their backends' `HttpEndpoint`s.
//!
//! A rule's `route` is its own `TargetSet` (weighted round robin over the listed targets, with the
//! model's retry policy). Backend rewrites run on the request as sent to that backend.
//!
//! The builder takes typed values only (the config was parsed and validated by
//! [`crate::config`]); middleware is stacked with [`EngineBuilder`] layers, outermost first. What
//! can still fail here is what only an engine can check (an expression that does not compile), and
//! it fails with the key path where it was written.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use octo_core::http::{Router, ServeConfig};
use octo_core::layer::EngineBuilder;
use octo_core::{ArcEngine, BuildError, BuildErrorKind, Protocol};
use octo_engines::auth::{Access, AuthConfig, AuthLayer, Authenticator, KeyConfig, OrgConfig};
use octo_engines::balance::{
    BalanceMemory, RedisSessions, SessionStore, StrategyKind, Target, TargetSet,
};
use octo_engines::breaker::BreakerConfig as EngineBreakerConfig;
use octo_engines::convert::{ConvertOptions, OpenAiMaxTokens, ReasoningDialect, ReasoningMode};
use octo_engines::endpoint::{EndpointConfig, HttpEndpoint, KeyPoolConfig, Timeouts};
use octo_engines::limit::{ConcurrencyLimitLayer, OverLimit};
use octo_engines::responses::{ResponseState, ResponsesApi};
use octo_engines::retry::RetryPolicy;
use octo_engines::rewrite::{
    RewriteConfig as EngineRewrite, RewriteLayer, RewritePolicy, RewritesConfig,
};
use octo_engines::rules::{Action, Forward, Rule, RulesLayer};

use crate::answer_layers;
use crate::backend::BackendEngine;
use crate::config::{
    AccessConfig, BackendConfig, Config, ConfigError, KeySpec, MaxTokensField, ModelConfig,
    ReasoningDialectConfig, ReasoningPolicy, RedisConfig, RewriteConfig, RuleConfig,
    StrategyConfig, TargetConfig, TimeoutsConfig, schema,
};
use crate::count_tokens::{CountUpstream, TokenCounter};
use crate::model_router::ModelRouter;
use crate::models_list::ModelList;
use crate::registry::{BackendEntry, BackendRegistry, Backends};

/// Everything `octollm-server` needs to serve a config.
#[derive(Debug)]
pub struct Gateway {
    /// Routes and engines.
    pub router: Router,
    /// Server timeouts and limits.
    pub serve: ServeConfig,
    /// Each backend's upstream client, by name (for its key and breaker states).
    pub endpoints: Vec<(String, Arc<HttpEndpoint>)>,
    /// The backends this graph uses, to [`commit`](BackendRegistry::commit) to the registry
    /// once the graph is in force.
    pub backends: Backends,
    /// The rate limits and budgets of the config, to hand to the process's limiter when this
    /// graph is swapped in (see [`build_limited`]).
    pub policy: octo_limits::Policy,
}

/// One backend, built once and shared by every model that targets it.
type BuiltBackend = Arc<BackendEntry>;

/// Builds the gateway for `config` (already validated by [`crate::config::parse`]), every
/// backend new.
///
/// # Errors
/// A [`ConfigError`] (labelled with `source`) when an engine refuses its settings, for example
/// an expression that does not compile; each problem names its key path.
pub fn build(config: &Config, source: &str) -> Result<Gateway, ConfigError> {
    build_with(config, source, &BackendRegistry::default())
}

/// Builds the gateway for `config`, taking from `registry` every backend whose settings did not
/// change (their connection pools, key cooldowns, breakers and latency averages carry over).
///
/// # Errors
/// As [`build`].
pub fn build_with(
    config: &Config,
    source: &str,
    registry: &BackendRegistry,
) -> Result<Gateway, ConfigError> {
    build_limited(config, source, registry, None)
}

/// As [`build_with`], with `limiter` enforcing the config's rate limits and budgets (the
/// process's limiter, whose counts outlive every rebuild; the caller gives it
/// [`Gateway::policy`] when the graph is swapped in). Without one, a graph with limits gets a
/// limiter of its own, counting in memory.
///
/// # Errors
/// As [`build`].
pub fn build_limited(
    config: &Config,
    source: &str,
    registry: &BackendRegistry,
    limiter: Option<Arc<octo_limits::Limiter>>,
) -> Result<Gateway, ConfigError> {
    let policy = crate::limits::policy(config);
    let limiter = match (policy.is_empty(), limiter) {
        (true, _) => None,
        (false, Some(l)) => Some(l),
        (false, None) => {
            let l = octo_limits::Limiter::new(None).map_err(|m| ConfigError {
                source: source.to_owned(),
                problems: vec![("redis".into(), m)],
            })?;
            l.set_policy(policy.clone());
            Some(l)
        }
    };
    let fail = |errors: Vec<BuildError>| ConfigError {
        source: source.to_owned(),
        problems: errors
            .into_iter()
            .map(|e| (e.path().unwrap_or("").to_owned(), e.message().to_owned()))
            .collect(),
    };

    let mut backends: BTreeMap<&str, BuiltBackend> = BTreeMap::new();
    for (name, b) in &config.backends {
        let built = registry
            .resolve(name, b, || build_backend(name, b, registry.responses()))
            .map_err(|e| fail(vec![e]))?;
        backends.insert(name, built);
    }

    let mut models: BTreeMap<String, ArcEngine> = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, m) in &config.models {
        match build_model(
            name,
            m,
            config,
            &backends,
            limiter.as_ref(),
            registry.balance(),
        ) {
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
    let authenticator = if config.orgs.is_empty() {
        None
    } else {
        Some(Arc::new(
            Authenticator::new(auth_config(config)).map_err(|e| fail(vec![e.at("orgs")]))?,
        ))
    };
    let auth = EngineBuilder::new().option_layer(authenticator.clone().map(AuthLayer::new));
    let engine = auth.engine(Arc::new(ModelRouter::new(models)));
    let counter = auth.engine(Arc::new(token_counter(config, &backends)));
    let stored: ArcEngine = Arc::new(ResponsesApi::new(
        registry.responses().clone(),
        authenticator.clone(),
    ));
    let list: ArcEngine = Arc::new(ModelList::new(names, authenticator));

    let limits = &config.limits;
    let mut router = Router::new()
        .health_routes()
        .overhead_route()
        .max_body_bytes(limits.max_body_bytes)
        .keep_alive(Some(limits.stream_keep_alive));
    router = router
        .engine_at_unrecorded(
            "/v1/messages/count_tokens",
            Protocol::Anthropic,
            counter.clone(),
        )
        .gemini_count_tokens(counter);
    for protocol in Protocol::CHAT_PROTOCOLS {
        router = router.engine(protocol, engine.clone());
    }
    for protocol in [Protocol::OpenAiEmbeddings, Protocol::GeminiEmbeddings] {
        router = router.engine(protocol, engine.clone());
    }
    for method in [Method::GET, Method::DELETE] {
        router = router.engine_model_id(
            method,
            ResponsesApi::PREFIX,
            Protocol::OpenAiResponses,
            stored.clone(),
        );
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
    if let Some(l) = &limiter {
        router = router.observe(l.clone());
    }
    let serve = ServeConfig {
        header_read_timeout: limits.header_read_timeout,
        drain_timeout: limits.drain_timeout,
        max_header_bytes: limits.max_header_bytes,
    };
    let endpoints = backends
        .iter()
        .map(|(name, b)| ((*name).to_owned(), b.endpoint.clone()))
        .collect();
    let backends = backends
        .into_iter()
        .map(|(name, b)| (name.to_owned(), b))
        .collect();
    Ok(Gateway {
        router,
        serve,
        endpoints,
        policy,
        backends,
    })
}

/// The upstream deadlines, with the endpoint's defaults for those not written.
fn timeouts(t: &TimeoutsConfig) -> Timeouts {
    let d = Timeouts::default();
    Timeouts {
        connect: t.connect.unwrap_or(d.connect),
        first_byte: t.first_byte.unwrap_or(d.first_byte),
        idle: t.idle.unwrap_or(d.idle),
        total: t.total.unwrap_or(d.total),
    }
}

fn build_backend(
    name: &str,
    b: &BackendConfig,
    responses: &ResponseState,
) -> Result<(Arc<HttpEndpoint>, ArcEngine, Vec<Protocol>), BuildError> {
    let at = |k: &str| format!("backends.{name}.{k}");
    let protocols = b.protocol.clone();
    let Some(&first) = protocols.first() else {
        return Err(
            BuildError::new(BuildErrorKind::Missing, "list at least one protocol")
                .at(at("protocol")),
        );
    };
    let mut ep = EndpointConfig::new(name, b.base_url.clone(), first);
    ep.protocols = protocols.clone();
    // The embeddings API of the backend's provider comes with it (`POST /v1/embeddings`,
    // Gemini's `embedContent`).
    if let Some(e) = crate::backend::embeddings_protocol(&protocols)
        && !ep.protocols.contains(&e)
    {
        ep.protocols.push(e);
    }
    ep.api_keys = b.keys();
    ep.timeouts = timeouts(&b.timeouts);
    ep.http_version = b.http_version;
    ep.transport = b.transport;
    ep.stream_usage = b.stream_usage;
    ep.headers = b.headers.clone();
    ep.paths = b.paths.iter().map(|(p, path)| (*p, path.clone())).collect();
    let mut pool = KeyPoolConfig::default();
    if let Some(cooldown) = b.key_cooldown {
        pool.cooldown = cooldown;
    }
    if let Some(br) = &b.circuit_breaker {
        pool.breaker = Some(EngineBreakerConfig {
            failure_threshold: br.failures,
            base_cooldown: br.cooldown,
            max_cooldown: br.max_cooldown,
        });
    }
    ep.key_pool = pool;
    let endpoint = Arc::new(HttpEndpoint::new(ep).map_err(|e| e.at(format!("backends.{name}")))?);
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
        RewritePolicy::new(part.clone()).map_err(|e| e.at(at(key)))?;
    }
    let rewrite = if rewrites.is_empty() {
        None
    } else {
        Some(RewriteLayer::new(rewrites).map_err(|e| e.at(format!("backends.{name}")))?)
    };
    let inner = EngineBuilder::new()
        .option_layer(rewrite)
        .engine(endpoint.clone());
    let options = b
        .conversion
        .as_ref()
        .map_or_else(ConvertOptions::default, convert_options);
    let engine: ArcEngine = Arc::new(
        BackendEngine::new(name, protocols.clone(), inner, options)
            .embeddings_via(endpoint.clone())
            .with_responses(responses.clone()),
    );
    Ok((endpoint, engine, protocols))
}

fn convert_options(c: &crate::config::ConversionConfig) -> ConvertOptions {
    let mut options = ConvertOptions::default();
    if let Some(n) = c.default_max_tokens {
        options = options.with_default_max_tokens(n);
    }
    if let Some(field) = c.openai_max_tokens_field {
        options = options.with_openai_max_tokens_field(match field {
            MaxTokensField::MaxTokens => OpenAiMaxTokens::MaxTokens,
            MaxTokensField::MaxCompletionTokens => OpenAiMaxTokens::MaxCompletionTokens,
        });
    }
    if let Some(dialect) = c.reasoning_dialect {
        options = options.with_reasoning_dialect(match dialect {
            ReasoningDialectConfig::Auto => ReasoningDialect::Auto,
            ReasoningDialectConfig::Litellm => ReasoningDialect::LiteLlm,
            ReasoningDialectConfig::Deepseek => ReasoningDialect::DeepSeek,
            ReasoningDialectConfig::Kimi => ReasoningDialect::Kimi,
            ReasoningDialectConfig::Vllm => ReasoningDialect::Vllm,
            ReasoningDialectConfig::Openrouter => ReasoningDialect::OpenRouter,
            ReasoningDialectConfig::None => ReasoningDialect::None,
        });
    }
    if let Some(policy) = c.reasoning {
        options = options.with_reasoning(match policy {
            ReasoningPolicy::Pass => ReasoningMode::Pass,
            ReasoningPolicy::Drop => ReasoningMode::Drop,
        });
    }
    options
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
        out = out.set(k, v.clone());
    }
    for (k, v) in &rw.set_keys_by_expr {
        out = out.set_expr(k, v);
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

/// The model's retry policy: `retry` as written, the schema's defaults without it.
fn retry_policy(m: &ModelConfig) -> RetryPolicy {
    let mut policy = RetryPolicy::new(schema::default_attempts(), schema::default_deadline());
    if let Some(r) = &m.retry {
        policy.max_attempts = r.max_attempts;
        policy.deadline = r.deadline;
        if let Some(w) = r.max_wait {
            policy.max_wait = w;
        }
    }
    policy
}

// One set's whole build context: grouping it in a struct would only rename the arguments.
#[allow(clippy::too_many_arguments)]
fn target_set(
    path: &str,
    model: &str,
    targets: &[TargetConfig],
    strategy: StrategyKind,
    policy: RetryPolicy,
    sticky: Option<(Duration, Option<Arc<dyn SessionStore>>)>,
    backends: &BTreeMap<&str, BuiltBackend>,
    memory: &Arc<BalanceMemory>,
) -> Result<ArcEngine, BuildError> {
    let mut built = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let Some(b) = backends.get(t.backend.as_str()) else {
            return Err(
                BuildError::invalid(format!("unknown backend `{}`", t.backend))
                    .at(format!("{path}[{i}].backend")),
            );
        };
        let upstream_model = t.model.clone().unwrap_or_else(|| model.to_owned());
        built.push(
            Target::new(t.backend.clone(), b.engine.clone())
                .with_availability(b.endpoint.clone())
                .with_latency(b.latency(&upstream_model))
                .with_model(upstream_model)
                .with_weight(t.weight)
                .with_priority(i32::try_from(t.priority).unwrap_or(i32::MAX)),
        );
    }
    // Counters and sticky sessions carry over from the previous graph (keyed by this path).
    let mut builder = TargetSet::builder(model, built)
        .strategy(strategy)
        .retry(policy)
        .remember(memory.clone(), path);
    if let Some((ttl, sessions)) = sticky {
        builder = builder.sticky(ttl);
        if let Some(store) = sessions {
            builder = builder.session_store(store);
        }
    }
    builder
        .build()
        .map(|set| Arc::new(set) as ArcEngine)
        .map_err(|e| e.at(path))
}

/// The sticky sessions' store for the `redis` section: made once and kept while the section is
/// the same (a reload keeps the connection), shared by every sticky model.
fn session_store(redis: &RedisConfig) -> Result<Arc<dyn SessionStore>, BuildError> {
    type Kept = std::sync::Mutex<Option<(RedisConfig, Arc<dyn SessionStore>)>>;
    static KEPT: std::sync::OnceLock<Kept> = std::sync::OnceLock::new();
    let mut kept = KEPT
        .get_or_init(Kept::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((r, store)) = kept.as_ref()
        && r == redis
    {
        return Ok(store.clone());
    }
    let store: Arc<dyn SessionStore> = Arc::new(
        RedisSessions::new(&redis.url, &redis.key_prefix, redis.timeout)
            .map_err(|e| e.at("redis.url"))?,
    );
    *kept = Some((redis.clone(), store.clone()));
    Ok(store)
}

fn build_model(
    name: &str,
    m: &ModelConfig,
    config: &Config,
    backends: &BTreeMap<&str, BuiltBackend>,
    limiter: Option<&Arc<octo_limits::Limiter>>,
    memory: &Arc<BalanceMemory>,
) -> Result<ArcEngine, Vec<BuildError>> {
    let at = |k: &str| format!("models.{name}.{k}");
    let policy = retry_policy(m);
    // The response cache and moderation, in front of the model's targets and each rule's route.
    let guard = EngineBuilder::new()
        .option_layer(answer_layers::cache_layer(name, m, config).map_err(|e| vec![e])?)
        .option_layer(answer_layers::moderation_layer(name, m, config).map_err(|e| vec![e])?);
    let wrap = |engine: ArcEngine| guard.engine(engine);
    let targets = wrap(
        target_set(
            &at("targets"),
            name,
            &m.targets,
            strategy_kind(m.strategy),
            policy,
            match m.sticky {
                Some(ttl) => Some((
                    ttl,
                    config
                        .redis
                        .as_ref()
                        .map(session_store)
                        .transpose()
                        .map_err(|e| vec![e])?,
                )),
                None => None,
            },
            backends,
            memory,
        )
        .map_err(|e| vec![e])?,
    );

    // Org rules first (each applies to its org only), then the model's own rules.
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for (org, o) in &config.orgs {
        if let Some(Some(per_org)) = o.models.get(name) {
            for (i, r) in per_org.rules.iter().enumerate() {
                let path = format!("orgs.{org}.models.{name}.rules[{i}]");
                match build_rule(&path, name, r, policy, backends, memory, &wrap) {
                    Ok(rule) => rules.push((path, rule.for_org(org.clone()))),
                    Err(e) => problems.push(e),
                }
            }
        }
    }
    for (i, r) in m.rules.iter().enumerate() {
        let path = at(&format!("rules[{i}]"));
        match build_rule(&path, name, r, policy, backends, memory, &wrap) {
            Ok(rule) => rules.push((path, rule)),
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let rules_layer = if rules.is_empty() {
        None
    } else {
        // Compile each rule alone first so an error names the rule's own key path.
        for (path, rule) in &rules {
            if let Err(e) = RulesLayer::new(vec![rule.clone()]) {
                // Blame `match` when it is the expression that does not compile, else the rule
                // (its rewrite expressions or headers).
                let matcher_fails = !rule.expr.trim().is_empty()
                    && octo_engines::expr::Expr::new(&rule.expr).is_err();
                problems.push(e.at(if matcher_fails {
                    format!("{path}.match")
                } else {
                    path.clone()
                }));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let rules: Vec<Rule> = rules.into_iter().map(|(_, r)| r).collect();
        Some(RulesLayer::new(rules).map_err(|e| vec![e.at(at("rules"))])?)
    };
    // Requests in flight on the previous graph stay counted.
    let limit = m.max_concurrency.map(|max| {
        ConcurrencyLimitLayer::new(name, max, OverLimit::Reject)
            .with_slots(memory.slots(&at("max_concurrency"), max))
    });
    // Rate limits and budgets first: a refused request reaches neither rules nor upstreams.
    let rate_limits = limiter.map(|l| octo_limits::LimitLayer::new(name, l.clone()));
    Ok(EngineBuilder::new()
        .option_layer(rate_limits)
        .option_layer(limit)
        .option_layer(rules_layer)
        .engine(targets))
}

fn build_rule(
    path: &str,
    model: &str,
    r: &RuleConfig,
    policy: RetryPolicy,
    backends: &BTreeMap<&str, BuiltBackend>,
    memory: &Arc<BalanceMemory>,
    wrap: &dyn Fn(ArcEngine) -> ArcEngine,
) -> Result<Rule, BuildError> {
    let expr = r.matcher.clone().unwrap_or_default();
    if let Some(d) = &r.deny {
        return Ok(Rule::new(
            r.name.clone(),
            expr,
            Action::deny(d.status.unwrap_or(400), d.message.clone()),
        ));
    }
    let route = match &r.route {
        Some(targets) => Some(wrap(target_set(
            &format!("{path}.route"),
            model,
            targets,
            StrategyKind::WeightedRoundRobin,
            policy,
            None,
            backends,
            memory,
        )?)),
        None => None,
    };
    let forward = Forward {
        route,
        rewrite: RewritesConfig {
            request: engine_rewrite(r.rewrite.as_ref()),
            ..RewritesConfig::default()
        },
        set_headers: r.set_headers.clone(),
    };
    Ok(Rule::new(r.name.clone(), expr, Action::Forward(forward)))
}

fn auth_config(c: &Config) -> AuthConfig {
    let mut orgs = Vec::new();
    for (org_name, o) in &c.orgs {
        let mut org = OrgConfig::new(org_name.clone());
        for (key_name, spec) in &o.api_keys {
            let key = match spec {
                KeySpec::Key(k) => KeyConfig::new(key_name.clone(), k.clone()),
                KeySpec::Detailed(d) => {
                    let mut k = KeyConfig::new(key_name.clone(), d.key.clone());
                    if let Some(at) = d.expires {
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
    AuthConfig {
        orgs,
        model_access,
        // Unknown models reach the router's 404, which names the configured ones.
        default_access: Access::Public,
    }
}
