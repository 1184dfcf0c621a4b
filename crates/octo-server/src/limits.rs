//! Rate limits and budgets from the config: the [`Policy`] of a config, the process's
//! [`Limiter`] (on Redis when `redis` is set), how estimates are priced, the spend brought back
//! from the request log at startup, validation and metrics. The engine and the stores live in
//! `octo-limits`; `docs/limits.md` describes the behaviour.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use octo_core::Protocol;
use octo_core::record::Record;
use octo_core::usage::Usage;
use octo_limits::estimate::Estimate;
use octo_limits::limiter::CostFn;
use octo_limits::period::Period;
use octo_limits::policy::{Budget, Limit, RateLimit, Rules};
use octo_limits::{Limiter, OnError, Policy, RedisSettings};
use octo_prices::PriceBook;
use octo_store::Store;

use crate::config::limits::{
    Budget as BudgetConfig, Period as PeriodConfig, RateLimit as RateLimitConfig,
};
use crate::config::{Config, KeySpec, RedisOnError};

/// How long reading the current periods' spend from the request log may take at startup.
const SEED_TIMEOUT: Duration = Duration::from_secs(10);

fn rate(r: Option<&RateLimitConfig>) -> RateLimit {
    r.map_or_else(RateLimit::default, |r| RateLimit {
        rpm: r.rpm,
        tpm: r.tpm,
        concurrency: r.concurrency,
    })
}

fn budget(b: Option<&BudgetConfig>) -> Option<Budget> {
    b.map(|b| Budget {
        usd: b.usd,
        period: match b.period {
            PeriodConfig::Day => Period::Day,
            PeriodConfig::Week => Period::Week,
            PeriodConfig::Month => Period::Month,
        },
    })
}

/// The limits written in `config`.
pub fn policy(config: &Config) -> Policy {
    let mut p = Policy::new();
    for (name, m) in &config.models {
        p = p.model(name.clone(), rate(m.rate_limit.as_ref()));
    }
    for (org, o) in &config.orgs {
        p = p.org(
            org.clone(),
            Rules {
                rate: rate(o.rate_limit.as_ref()),
                budget: budget(o.budget.as_ref()),
            },
        );
        for (key, spec) in &o.api_keys {
            if let KeySpec::Detailed(d) = spec {
                p = p.key(
                    org.clone(),
                    key.clone(),
                    Rules {
                        rate: rate(d.rate_limit.as_ref()),
                        budget: budget(d.budget.as_ref()),
                    },
                );
            }
        }
    }
    p
}

/// The `redis` section as the limiter takes it.
pub fn redis_settings(config: &Config) -> Option<RedisSettings> {
    config.redis.as_ref().map(|r| RedisSettings {
        url: r.url.clone(),
        on_error: match r.on_error {
            RedisOnError::Allow => OnError::Allow,
            RedisOnError::Deny => OnError::Deny,
        },
        timeout: r.timeout,
        prefix: r.key_prefix.clone(),
    })
}

/// The process's limiter for `config` (must run inside the tokio runtime when `redis` is set).
///
/// # Errors
/// `(key path, message)` when the Redis URL is not valid.
pub fn start(config: &Config) -> Result<Arc<Limiter>, (String, String)> {
    let limiter =
        Limiter::new(redis_settings(config).as_ref()).map_err(|m| ("redis.url".to_owned(), m))?;
    limiter.set_policy(policy(config));
    Ok(limiter)
}

/// Prices an estimate as the request log will price the request: at the price of the exposed
/// model, else of the upstream model of the model's first target (by priority).
pub fn cost_fn(prices: Arc<PriceBook>, config: &Config) -> Arc<CostFn> {
    let upstream: std::collections::HashMap<String, (String, Option<Protocol>)> = config
        .models
        .iter()
        .filter_map(|(name, m)| {
            let t = m.targets.iter().min_by_key(|t| t.priority)?;
            let protocol = config
                .backends
                .get(&t.backend)
                .and_then(|b| b.protocol.first().copied());
            Some((
                name.clone(),
                (t.model.clone().unwrap_or_else(|| name.clone()), protocol),
            ))
        })
        .collect();
    Arc::new(move |model: &str, est: &Estimate| {
        let usage = Usage {
            input_tokens: est.input_tokens,
            output_tokens: est.output_tokens,
            ..Usage::default()
        };
        let (up, protocol) = upstream
            .get(model)
            .cloned()
            .unwrap_or((model.to_owned(), None));
        let record = estimate_record(model, up, protocol, usage);
        prices.price_for(&record).map(|p| p.cost(&usage))
    })
}

/// A record standing for a request about to be sent, to look its price up.
fn estimate_record(
    model: &str,
    upstream: String,
    protocol: Option<Protocol>,
    usage: Usage,
) -> Record {
    Record {
        id: String::new(),
        started_at: SystemTime::now(),
        duration_ms: 0,
        ttfb_ms: None,
        client_protocol: protocol.unwrap_or(Protocol::OpenAiChat),
        model: Some(model.to_owned()),
        org: None,
        user: None,
        rule: None,
        backend: None,
        upstream_protocol: protocol,
        upstream_model: Some(upstream),
        stream: false,
        status: 0,
        error: None,
        attempts: Vec::new(),
        usage: Some(usage),
        finish_reason: None,
        cost_usd: None,
        price: None,
        cache_hit: false,
        overhead_ns: 0,
        trace: None,
        bodies: None,
    }
}

/// Brings back the spend of every budget's current period from the request log (hour rollups,
/// which the UTC periods start on), so a restart does not forget spend; with Redis, it raises
/// the count there when Redis has less.
pub async fn seed(limiter: &Limiter, store: &Store) {
    let checks: Vec<_> = limiter
        .policy()
        .all_checks()
        .into_iter()
        .filter(|c| matches!(c.limit, Limit::Budget(_)))
        .collect();
    if checks.is_empty() {
        return;
    }
    let now = SystemTime::now();
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    for period in [Period::Day, Period::Week, Period::Month] {
        let of_period: Vec<_> = checks
            .iter()
            .filter(|c| matches!(c.limit, Limit::Budget(b) if b.period == period))
            .collect();
        if of_period.is_empty() {
            continue;
        }
        let start = period.bounds(now_ms).0;
        let since =
            SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(start).unwrap_or(0));
        let rows = match tokio::time::timeout(SEED_TIMEOUT, store.spend_since(since)).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::warn!(error = %e.message(), "budgets start without the spend recorded so far this {}", period.name());
                continue;
            }
            Err(_) => {
                tracing::warn!(
                    "budgets start without the spend recorded so far this {}: the database did not answer",
                    period.name()
                );
                continue;
            }
        };
        for c in of_period {
            let spent: f64 = match c.scope.kind {
                octo_limits::policy::ScopeKind::Org => rows
                    .iter()
                    .filter(|r| r.org == c.scope.name)
                    .map(|r| r.cost_usd)
                    .sum(),
                octo_limits::policy::ScopeKind::Key => rows
                    .iter()
                    .filter(|r| format!("{}/{}", r.org, r.user) == c.scope.name)
                    .map(|r| r.cost_usd)
                    .sum(),
                octo_limits::policy::ScopeKind::Model => continue,
            };
            if spent > 0.0 {
                limiter.seed(c, spent).await;
            }
        }
    }
}

/// Problems with the models' and orgs' limits and the `redis` section: `(key path, message)`.
pub(crate) fn validate(c: &Config, p: &mut Vec<(String, String)>) {
    let rate = |at: String, r: Option<&RateLimitConfig>, p: &mut Vec<(String, String)>| {
        if let Some(r) = r {
            p.extend(r.validate(&format!("{at}.rate_limit")));
        }
    };
    let budget = |at: String, b: Option<&BudgetConfig>, p: &mut Vec<(String, String)>| {
        if let Some(b) = b {
            p.extend(b.validate(&format!("{at}.budget")));
        }
    };
    for (name, m) in &c.models {
        rate(format!("models.{name}"), m.rate_limit.as_ref(), p);
    }
    for (org, o) in &c.orgs {
        rate(format!("orgs.{org}"), o.rate_limit.as_ref(), p);
        budget(format!("orgs.{org}"), o.budget.as_ref(), p);
        // Keys' limits are checked with the rest of the key (`config::validate`).
    }
    if let Some(r) = &c.redis {
        if !(r.url.starts_with("redis://")
            || r.url.starts_with("redis+unix://")
            || r.url.starts_with("unix://"))
        {
            p.push((
                "redis.url".into(),
                format!(
                    "`{}` is not a Redis URL; write e.g. `redis://127.0.0.1:6379/0`",
                    r.url
                ),
            ));
        }
        if r.timeout.is_zero() {
            p.push((
                "redis.timeout".into(),
                "must be more than 0 (e.g. `100ms`)".into(),
            ));
        }
    }
}

/// Exposes the limiter's counters on `/metrics`.
pub fn register_metrics(limiter: &Arc<Limiter>, metrics: &octo_telemetry::metrics::Metrics) {
    use octo_telemetry::metrics::MetricKind;
    let l = limiter.clone();
    metrics.register_fn(move |out| {
        out.family(
            "octollm_redis_errors_total",
            "Redis calls of the rate limiter that failed or timed out.",
            MetricKind::Counter,
        )
        .sample_u64(&[], l.redis_errors());
        out.family(
            "octollm_limits_fallback",
            "1 while rate limits and budgets use this instance's own counts because Redis failed.",
            MetricKind::Gauge,
        )
        .sample_u64(&[], u64::from(l.in_fallback()));
        let mut f = out.family(
            "octollm_limits_refused_total",
            "Requests refused by a rate limit or budget, by limit.",
            MetricKind::Counter,
        );
        for (limit, n) in l.refused() {
            f.sample_u64(&[("limit", limit)], n);
        }
        out.family(
            "octollm_limits_refused_remembered_total",
            "Refusals answered from a refusal Redis gave earlier that holds until a known instant (no round trip); also in octollm_limits_refused_total.",
            MetricKind::Counter,
        )
        .sample_u64(&[], l.refused_remembered());
        out.family(
            "octollm_limits_settlements_dropped_total",
            "Reconciliations with real usage that Redis could not take (their estimate stays counted).",
            MetricKind::Counter,
        )
        .sample_u64(&[], l.settle_dropped());
    });
}
