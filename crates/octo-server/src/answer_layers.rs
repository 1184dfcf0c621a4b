//! The response cache and moderation of a model, built from its config: the store the cache
//! keeps its entries in (kept across reloads), each model's [`CacheLayer`] and
//! [`ModerationLayer`], and the metrics that count what they did.
//!
//! Both sit in front of the model's targets (and each rule's own `route`), inside the model's
//! concurrency limit and rules: a rule that denies is answered before the cache is looked up, a
//! rule's rewrite is in the body the key is made of, and a cache hit needs no moderation (the
//! stored answer was checked when it was stored):
//!
//! ```text
//! ConcurrencyLimit? ─▶ RulesEngine? ─▶ CacheEngine? ─▶ ModerationEngine? ─▶ TargetSet
//! ```

use std::sync::{Arc, Mutex, OnceLock};

use octo_core::BuildError;
use octo_engines::cache::{CacheLayer, CacheResult, CacheStore, MemoryStore, RedisStore};
use octo_engines::moderation::{ModerationLayer, Moderator, OnError, Outcome};
use octo_telemetry::metrics::{Exposition, MetricKind};
use sha2::{Digest, Sha256};

use crate::config::{
    CacheConfig, CacheStoreKind, Config, ModelConfig, ModerationOn, ModerationOnError, RedisConfig,
};

/// The store and the settings it was made with, kept for the process's lifetime so a reload that
/// leaves `cache` (and `redis`) alone keeps every entry of the memory store and the Redis
/// connection.
type Kept = Mutex<Option<((CacheConfig, Option<RedisConfig>), Arc<dyn CacheStore>)>>;

fn kept() -> &'static Kept {
    static K: OnceLock<Kept> = OnceLock::new();
    K.get_or_init(Kept::default)
}

/// The store for `config`: the one already made when its settings are the same (the TTL aside),
/// else a new one.
fn store(
    config: &CacheConfig,
    redis: Option<&RedisConfig>,
) -> Result<Arc<dyn CacheStore>, BuildError> {
    let redis = match config.store {
        CacheStoreKind::Memory => None,
        CacheStoreKind::Redis => Some(redis.cloned().ok_or_else(|| {
            BuildError::invalid("`redis` needs a `redis` section").at("cache.store")
        })?),
    };
    let settings = (
        CacheConfig {
            ttl: std::time::Duration::ZERO,
            ..config.clone()
        },
        redis,
    );
    let mut kept = kept().lock().unwrap_or_else(|e| e.into_inner());
    if let Some((s, store)) = kept.as_ref()
        && *s == settings
    {
        return Ok(store.clone());
    }
    let store: Arc<dyn CacheStore> = match &settings.1 {
        None => Arc::new(MemoryStore::new(config.max_bytes)),
        Some(r) => Arc::new(
            RedisStore::new(&r.url, &r.key_prefix, r.timeout, config.max_bytes)
                .map_err(|e| e.at("redis.url"))?,
        ),
    };
    *kept = Some((settings, store.clone()));
    Ok(store)
}

/// A fingerprint of the model's settings: entries written under other settings are not read.
fn fingerprint(name: &str, m: &ModelConfig) -> String {
    let digest = Sha256::digest(format!("{name}\n{m:?}").as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache layer of model `name`, when it has `cache: true`.
///
/// # Errors
/// When the store cannot be made (a `redis` store without a usable `redis.url`).
pub(crate) fn cache_layer(
    name: &str,
    m: &ModelConfig,
    config: &Config,
) -> Result<Option<CacheLayer>, BuildError> {
    if !m.cache {
        return Ok(None);
    }
    let settings = config.cache.clone().unwrap_or_default();
    let store = store(&settings, config.redis.as_ref())?;
    Ok(Some(
        CacheLayer::new(name, store, settings.ttl).with_scope(fingerprint(name, m)),
    ))
}

/// The moderation layer of model `name`, when it has a `moderation` section.
///
/// # Errors
/// When the moderation URL built from the backend is not usable.
pub(crate) fn moderation_layer(
    name: &str,
    m: &ModelConfig,
    config: &Config,
) -> Result<Option<ModerationLayer>, BuildError> {
    let Some(md) = &m.moderation else {
        return Ok(None);
    };
    let at = format!("models.{name}.moderation");
    let backend = config.backends.get(&md.backend).ok_or_else(|| {
        BuildError::invalid(format!("unknown backend `{}`", md.backend)).at(format!("{at}.backend"))
    })?;
    let url = format!("{}{}", backend.base_url.trim_end_matches('/'), md.path);
    let moderator = Moderator::new(
        url,
        backend.keys().into_iter().next(),
        &md.model,
        md.timeout,
    )
    .map_err(|e| e.at(format!("{at}.backend")))?
    .with_headers(backend.headers.clone());
    let mut layer = ModerationLayer::new(name, moderator).on_error(match md.on_error {
        ModerationOnError::Allow => OnError::Allow,
        ModerationOnError::Deny => OnError::Deny,
    });
    if md.on == ModerationOn::InputAndOutput {
        layer = layer.with_output(md.window);
    }
    Ok(Some(layer))
}

/// `octollm_cache_requests_total{model,result}` and `octollm_moderation_total{model,outcome}`:
/// what the caches and moderation of every model did since the process started.
pub fn collect(out: &mut Exposition) {
    let caches = octo_engines::cache::snapshot();
    if !caches.is_empty() {
        let mut family = out.family(
            "octollm_cache_requests_total",
            "Response cache lookups per model: hit, miss (sent upstream) or bypass (not looked up).",
            MetricKind::Counter,
        );
        for (model, c) in &caches {
            for r in CacheResult::ALL {
                family.sample_u64(&[("model", model), ("result", r.as_str())], c.get(r));
            }
        }
    }
    let moderations = octo_engines::moderation::snapshot();
    if !moderations.is_empty() {
        let mut family = out.family(
            "octollm_moderation_total",
            "Moderated requests per model by outcome.",
            MetricKind::Counter,
        );
        for (model, c) in &moderations {
            for o in Outcome::ALL {
                family.sample_u64(&[("model", model), ("outcome", o.as_str())], c.get(o));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_survives_a_reload_with_the_same_settings() {
        let a = CacheConfig::default();
        let s1 = store(&a, None).unwrap();
        let s2 = store(
            &CacheConfig {
                ttl: std::time::Duration::from_secs(5),
                ..a.clone()
            },
            None,
        )
        .unwrap();
        assert!(Arc::ptr_eq(&s1, &s2), "a new ttl keeps the entries");
        let s3 = store(
            &CacheConfig {
                max_bytes: a.max_bytes * 2,
                ..a.clone()
            },
            None,
        )
        .unwrap();
        assert!(!Arc::ptr_eq(&s1, &s3));
        let redis = CacheConfig {
            store: CacheStoreKind::Redis,
            ..a
        };
        assert!(store(&redis, None).is_err(), "redis needs its section");
    }
}
