//! Several API keys for one backend: which key a request uses, and which keys rest.
//!
//! A [`KeyPool`] holds a backend's keys (as ready-made auth headers for each protocol the backend
//! speaks — the key strings themselves are not kept) and, per (key, model), a
//! [`CircuitBreaker`]. For each request [`HttpEndpoint`](super::HttpEndpoint):
//!
//! 1. [`acquire`](KeyPool::acquire)s a key: round robin over the keys, skipping those cooling down,
//!    those whose breaker for the request's model is open (the key is chosen **after** filtering
//!    out tripped keys — Octopus chose first and skipped the whole channel, issue #245), and those
//!    already tried for this request;
//! 2. sends, then [`finish`](KeyPool::finish)es the lease with the result. A key answered **401,
//!    403 or 429** cools down — for the 429's `retry-after` when given (capped at an hour), else
//!    [`KeyPoolConfig::cooldown`] — and the endpoint tries the next key before giving up on the
//!    backend (Octopus recorded every failure as status 0, so its 429 cooldown never triggered,
//!    issues #180 and #245);
//! 3. when no key is left, the request fails with a retryable error that names the backend and
//!    how long until a key is free: 429 when keys are cooling down, 503 when breakers are open.
//!
//! Cooling is a rotation device: a pool with a single key never cools it (there is nothing to
//! rotate to, and the upstream's own 429 — passed through to the client — says more than ours
//! would). A backend without keys has one keyless slot, so breakers work the same way.
//!
//! Keys never appear in errors, logs or `Debug` output: keys are referred to by position
//! (`key #2`), and the auth header values are marked sensitive.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use octo_core::{BuildError, Error, ErrorKind, Protocol, UpstreamBody};
use tokio::time::Instant;

use super::headers::auth_headers;
use crate::breaker::{BreakerConfig, BreakerPermit, BreakerRegistry, CircuitBreaker};

/// The longest a single `retry-after` may cool a key.
const MAX_COOLDOWN: Duration = Duration::from_secs(3600);

/// How a [`KeyPool`] rests keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPoolConfig {
    /// How long a key rests after a 401 or 403, or a 429 without `retry-after`. Default 60 s.
    pub cooldown: Duration,
    /// Breakers per (key, model); `None` disables them. Default: [`BreakerConfig::default`].
    pub breaker: Option<BreakerConfig>,
}

impl Default for KeyPoolConfig {
    fn default() -> Self {
        KeyPoolConfig {
            cooldown: Duration::from_secs(60),
            breaker: Some(BreakerConfig::default()),
        }
    }
}

struct Slot {
    /// Auth headers for each protocol (sensitive values).
    auth: HeaderMap,
    cooling_until: Mutex<Option<Instant>>,
    stats: Mutex<SlotStats>,
}

/// What a key's recent calls looked like (for the health view, never for routing).
#[derive(Default)]
struct SlotStats {
    /// Model → moving average of the upstream's answer time, seconds.
    latency: std::collections::HashMap<String, f64>,
    /// The last errors, oldest first.
    errors: std::collections::VecDeque<KeyError>,
}

/// How many recent errors each key keeps.
pub const RECENT_ERRORS: usize = 5;

/// The weight of a new sample in a key's latency average.
const KEY_LATENCY_ALPHA: f64 = 0.3;

/// One failed call of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// When it failed.
    pub at: std::time::SystemTime,
    /// The upstream model asked for.
    pub model: String,
    /// The status the gateway saw (the upstream's, or 502/504 for connect failures and
    /// timeouts).
    pub status: u16,
    /// The error message (the gateway's own words; never a key).
    pub message: String,
}

/// One key's state, as the health view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyHealth {
    /// The key's position in the backend's list, from 0 (a keyless backend has one slot).
    pub index: usize,
    /// How long the key still rests after a 401, 403 or 429.
    pub cooling_for: Option<Duration>,
    /// Per model used: the breaker's state and the latency average.
    pub models: Vec<ModelHealth>,
    /// The last errors, newest first.
    pub recent_errors: Vec<KeyError>,
}

/// One (key, model)'s state.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelHealth {
    /// The upstream model.
    pub model: String,
    /// Its breaker, when breakers are on and the pair was used.
    pub breaker: Option<crate::breaker::BreakerState>,
    /// The moving average of the upstream's answer time (the head of a stream, the whole body
    /// otherwise).
    pub latency: Option<Duration>,
}

impl Slot {
    fn cooling_for(&self, now: Instant) -> Option<Duration> {
        let until = (*self.cooling_until.lock().unwrap_or_else(|e| e.into_inner()))?;
        (now < until).then(|| until - now)
    }
}

/// A backend's API keys; see the [module docs](self).
pub struct KeyPool {
    backend: String,
    slots: Vec<Slot>,
    keyed: bool,
    next: AtomicUsize,
    config: KeyPoolConfig,
    /// One registry per slot, by model: looked up with the request's `&str`, so the hot path
    /// builds no `(index, String)` key.
    breakers: Option<Vec<BreakerRegistry<String>>>,
}

impl fmt::Debug for KeyPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPool")
            .field("backend", &self.backend)
            .field("keys", &format_args!("{} redacted", self.len()))
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The key chosen for one upstream call; hand it back with [`KeyPool::finish`].
#[derive(Debug)]
pub struct KeyLease {
    index: usize,
    permit: Option<BreakerPermit>,
}

impl KeyLease {
    /// The key's position in the backend's list (what logs may show instead of the key).
    pub fn index(&self) -> usize {
        self.index
    }
}

impl KeyPool {
    /// A pool of `keys` for `backend`, with auth headers for each of `formats`.
    ///
    /// # Errors
    /// When a key contains characters not allowed in an HTTP header (the key is not shown).
    pub fn new(
        backend: impl Into<String>,
        keys: &[String],
        formats: &[Protocol],
        config: KeyPoolConfig,
    ) -> Result<Self, BuildError> {
        let backend = backend.into();
        let mut slots = Vec::with_capacity(keys.len().max(1));
        for (i, key) in keys.iter().enumerate() {
            let mut auth = HeaderMap::new();
            for &format in formats {
                auth_headers(format, key, &mut auth).map_err(|()| {
                    BuildError::invalid(format!(
                        "backend `{backend}`: API key #{} contains characters not allowed in an HTTP header",
                        i + 1
                    ))
                })?;
            }
            slots.push(Slot {
                auth,
                cooling_until: Mutex::new(None),
                stats: Mutex::default(),
            });
        }
        let keyed = !slots.is_empty();
        if !keyed {
            slots.push(Slot {
                auth: HeaderMap::new(),
                cooling_until: Mutex::new(None),
                stats: Mutex::default(),
            });
        }
        let breakers = config
            .breaker
            .map(|b| slots.iter().map(|_| BreakerRegistry::new(b)).collect());
        Ok(KeyPool {
            backend,
            slots,
            keyed,
            next: AtomicUsize::new(0),
            breakers,
            config,
        })
    }

    /// The number of keys (0 for a keyless backend).
    pub fn len(&self) -> usize {
        if self.keyed { self.slots.len() } else { 0 }
    }

    /// Whether the backend has no keys.
    pub fn is_empty(&self) -> bool {
        !self.keyed
    }

    /// The configuration.
    pub fn config(&self) -> &KeyPoolConfig {
        &self.config
    }

    /// The breaker of key `index` for `model`, if breakers are enabled.
    pub fn breaker(&self, index: usize, model: &str) -> Option<Arc<CircuitBreaker>> {
        self.breakers
            .as_ref()
            .and_then(|r| r.get(index))
            .map(|r| r.get_by(model))
    }

    /// The breakers of every key and model, by state (empty when breakers are off).
    pub fn breaker_counts(&self) -> crate::breaker::BreakerCounts {
        let mut total = crate::breaker::BreakerCounts::default();
        for r in self.breakers.iter().flatten() {
            total += r.count_states();
        }
        total
    }

    /// How long key `index` still rests, if it does.
    pub fn cooling_for(&self, index: usize) -> Option<Duration> {
        self.slots.get(index)?.cooling_for(Instant::now())
    }

    fn breaker_available(&self, index: usize, model: &str) -> bool {
        // Look up without creating: a key never used for this model is available.
        let Some(reg) = self.breakers.as_ref().and_then(|r| r.get(index)) else {
            return true;
        };
        reg.peek(model).is_none_or(|b| b.is_available())
    }

    /// Whether some key could take a request for `model` now (no side effect).
    pub fn is_available(&self, model: &str) -> bool {
        let now = Instant::now();
        (0..self.slots.len())
            .any(|i| self.slots[i].cooling_for(now).is_none() && self.breaker_available(i, model))
    }

    /// When no key is usable for `model`: the time until the first one is (its rest and its
    /// breaker's cooldown both over), if known. `None` when a key is usable now.
    pub fn available_in(&self, model: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut soonest: Option<Duration> = None;
        for (i, slot) in self.slots.iter().enumerate() {
            let cool = slot.cooling_for(now).unwrap_or_default();
            let breaker = self
                .breakers
                .as_ref()
                .and_then(|r| r.get(i))
                .and_then(|r| r.peek(model))
                .and_then(|b| (!b.is_available()).then(|| b.retry_in().unwrap_or_default()))
                .unwrap_or_default();
            if cool.is_zero() && breaker.is_zero() && self.breaker_available(i, model) {
                return None;
            }
            let wait = cool.max(breaker);
            soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
        }
        soonest.filter(|d| !d.is_zero())
    }

    /// Chooses a key for a request for `model`, skipping `exclude` (keys already tried).
    ///
    /// # Errors
    /// A retryable error naming the backend (never a key) when every key is excluded, cooling
    /// down or behind an open breaker: 429 with the time until the first key is free when keys
    /// are cooling, else 503.
    pub fn acquire(&self, model: &str, exclude: &[usize]) -> Result<KeyLease, Error> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = Instant::now();
        let mut soonest_cool: Option<Duration> = None;
        let mut soonest_breaker: Option<Duration> = None;
        for off in 0..n {
            let i = (start + off) % n;
            if exclude.contains(&i) {
                continue;
            }
            if let Some(left) = self.slots[i].cooling_for(now) {
                soonest_cool = Some(soonest_cool.map_or(left, |s| s.min(left)));
                continue;
            }
            let permit = match self.breakers.as_ref().and_then(|r| r.get(i)) {
                Some(reg) => {
                    let breaker = reg.get_by(model);
                    match breaker.try_acquire() {
                        Some(p) => Some(p),
                        None => {
                            let left = breaker.retry_in().unwrap_or_default();
                            soonest_breaker = Some(soonest_breaker.map_or(left, |s| s.min(left)));
                            continue;
                        }
                    }
                }
                None => None,
            };
            return Ok(KeyLease { index: i, permit });
        }
        Err(self.exhausted(soonest_cool, soonest_breaker))
    }

    fn exhausted(&self, cool: Option<Duration>, breaker: Option<Duration>) -> Error {
        let backend = &self.backend;
        let what = if self.keyed {
            format!("all {} API keys of backend `{backend}`", self.len())
        } else {
            format!("backend `{backend}`")
        };
        match (cool, breaker) {
            (Some(c), _) => {
                let wait = breaker.map_or(c, |b| b.min(c));
                Error::rate_limited(
                    format!(
                        "{what}: every key is resting after rate-limit or auth errors or has an open circuit; the next is free in {}s",
                        ceil_secs(wait)
                    ),
                    Some(wait),
                )
            }
            (None, Some(b)) => Error::upstream_status(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{what}: the circuit is open after repeated failures; the next probe is in {}s",
                    ceil_secs(b)
                ),
                UpstreamBody {
                    protocol: None,
                    body: Bytes::new(),
                },
                (!b.is_zero()).then_some(b),
            ),
            (None, None) => Error::upstream(format!("{what}: no key left to try")),
        }
    }

    /// Notes how a call of key `index` for `model` went, for [`health`](Self::health): its
    /// answer time on success, the error otherwise.
    pub fn note<T>(
        &self,
        index: usize,
        model: &str,
        elapsed: Duration,
        result: Result<&T, &Error>,
    ) {
        let Some(slot) = self.slots.get(index) else {
            return;
        };
        let mut stats = slot.stats.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(_) => {
                let s = elapsed.as_secs_f64();
                match stats.latency.get_mut(model) {
                    Some(avg) => *avg = KEY_LATENCY_ALPHA * s + (1.0 - KEY_LATENCY_ALPHA) * *avg,
                    None => {
                        stats.latency.insert(model.to_owned(), s);
                    }
                }
            }
            Err(e) => {
                if stats.errors.len() >= RECENT_ERRORS {
                    stats.errors.pop_front();
                }
                stats.errors.push_back(KeyError {
                    at: std::time::SystemTime::now(),
                    model: model.to_owned(),
                    status: e.status().as_u16(),
                    message: e.message().to_owned(),
                });
            }
        }
    }

    /// Every key's cooldown, breakers, latency averages and recent errors.
    pub fn health(&self) -> Vec<KeyHealth> {
        let now = Instant::now();
        self.slots
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                let stats = slot.stats.lock().unwrap_or_else(|e| e.into_inner());
                let mut models: std::collections::BTreeMap<String, ModelHealth> = stats
                    .latency
                    .iter()
                    .map(|(m, s)| {
                        (
                            m.clone(),
                            ModelHealth {
                                model: m.clone(),
                                breaker: None,
                                latency: Duration::try_from_secs_f64(*s).ok(),
                            },
                        )
                    })
                    .collect();
                for (m, state) in self
                    .breakers
                    .as_ref()
                    .and_then(|r| r.get(i))
                    .map(|r| r.states())
                    .unwrap_or_default()
                {
                    models
                        .entry(m.clone())
                        .or_insert_with(|| ModelHealth {
                            model: m,
                            breaker: None,
                            latency: None,
                        })
                        .breaker = Some(state);
                }
                KeyHealth {
                    index: i,
                    cooling_for: slot.cooling_for(now),
                    models: models.into_values().collect(),
                    recent_errors: stats.errors.iter().rev().cloned().collect(),
                }
            })
            .collect()
    }

    /// The auth headers of the lease's key (all protocols; pick the one that applies).
    pub fn auth(&self, lease: &KeyLease) -> &HeaderMap {
        &self.slots[lease.index].auth
    }

    /// Records how the call with `lease` went; returns whether another key should be tried.
    ///
    /// - success → the breaker notes a success;
    /// - a [refused key](octo_core::ErrorKind::KeyRefused) (or an upstream 401 / 403) or an
    ///   upstream 429 → the key cools down (multi-key pools only) and, if
    ///   another key exists, `true`;
    /// - other errors → the breaker counts [health failures](crate::breaker::is_health_failure).
    pub fn finish<T>(&self, lease: KeyLease, result: Result<&T, &Error>) -> bool {
        let KeyLease { index, permit } = lease;
        if let Some(p) = permit {
            p.record(result);
        }
        let Err(e) = result else {
            return false;
        };
        let status = e.status().as_u16();
        let refused = e.kind() == ErrorKind::KeyRefused
            || (e.upstream_body().is_some() && matches!(status, 401 | 403));
        let limited = e.upstream_body().is_some() && status == 429;
        if !refused && !limited {
            return false;
        }
        if self.slots.len() < 2 {
            return false;
        }
        let rest = match (status, e.retry_after()) {
            (429, Some(after)) => after.min(MAX_COOLDOWN),
            _ => self.config.cooldown,
        };
        let now = Instant::now();
        if let Some(until) = now.checked_add(rest) {
            *self.slots[index]
                .cooling_until
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(until);
        }
        tracing::warn!(
            backend = %self.backend,
            key = index + 1,
            reason = if refused { "key refused (401/403)" } else { "rate-limited (429)" },
            cooldown = ?rest,
            "API key refused or rate-limited; resting it and trying the next key"
        );
        true
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerState;

    fn pool(keys: &[&str], config: KeyPoolConfig) -> KeyPool {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        KeyPool::new(
            "oa",
            &keys,
            &[Protocol::OpenAiChat, Protocol::Anthropic],
            config,
        )
        .unwrap()
    }

    fn upstream(status: u16, retry_after: Option<Duration>) -> Error {
        Error::upstream_status(
            StatusCode::from_u16(status).unwrap(),
            format!("backend `oa` answered {status}"),
            UpstreamBody {
                protocol: None,
                body: Bytes::new(),
            },
            retry_after,
        )
    }

    fn bearer(p: &KeyPool, l: &KeyLease) -> String {
        p.auth(l)["authorization"].to_str().unwrap().to_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn rotates_round_robin() {
        let p = pool(&["k1", "k2", "k3"], KeyPoolConfig::default());
        let mut seen = Vec::new();
        for _ in 0..6 {
            let l = p.acquire("m", &[]).unwrap();
            seen.push(bearer(&p, &l));
            assert!(!p.finish::<()>(l, Ok(&())));
        }
        assert_eq!(
            seen,
            [
                "Bearer k1",
                "Bearer k2",
                "Bearer k3",
                "Bearer k1",
                "Bearer k2",
                "Bearer k3"
            ]
        );
        // Both protocols' headers are ready.
        let l = p.acquire("m", &[]).unwrap();
        assert_eq!(p.auth(&l)["x-api-key"], "k1");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_rests_the_key_for_its_retry_after_and_the_next_key_is_used() {
        let p = pool(&["k1", "k2"], KeyPoolConfig::default());
        let l = p.acquire("m", &[]).unwrap();
        assert_eq!(l.index(), 0);
        let e = upstream(429, Some(Duration::from_secs(7)));
        assert!(p.finish::<()>(l, Err(&e)));
        assert_eq!(p.cooling_for(0), Some(Duration::from_secs(7)));
        // The retry for this request excludes k1; so do later requests while it rests.
        for _ in 0..3 {
            let l = p.acquire("m", &[]).unwrap();
            assert_eq!(bearer(&p, &l), "Bearer k2");
            p.finish::<()>(l, Ok(&()));
        }
        tokio::time::advance(Duration::from_secs(7)).await;
        let seen: Vec<usize> = (0..2)
            .map(|_| p.acquire("m", &[]).unwrap().index())
            .collect();
        assert!(seen.contains(&0), "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn auth_errors_rest_the_key_for_the_default_cooldown() {
        let p = pool(
            &["k1", "k2"],
            KeyPoolConfig {
                cooldown: Duration::from_secs(30),
                ..KeyPoolConfig::default()
            },
        );
        for status in [401, 403] {
            let l = p.acquire("m", &[]).unwrap();
            let i = l.index();
            assert!(p.finish::<()>(l, Err(&upstream(status, None))));
            assert_eq!(p.cooling_for(i), Some(Duration::from_secs(30)));
        }
        // Other errors do not rest keys; neither does a gateway-made 429.
        tokio::time::advance(Duration::from_secs(30)).await;
        let l = p.acquire("m", &[]).unwrap();
        assert!(!p.finish::<()>(l, Err(&upstream(500, None))));
        let l = p.acquire("m", &[]).unwrap();
        assert!(!p.finish::<()>(l, Err(&Error::rate_limited("local", None))));
        assert_eq!((p.cooling_for(0), p.cooling_for(1)), (None, None));
    }

    #[tokio::test(start_paused = true)]
    async fn all_keys_resting_is_a_retryable_429_naming_the_backend_only() {
        let p = pool(&["sk-one", "sk-two"], KeyPoolConfig::default());
        let l = p.acquire("m", &[]).unwrap();
        p.finish::<()>(l, Err(&upstream(429, Some(Duration::from_millis(2500)))));
        let l = p.acquire("m", &[0]).unwrap();
        p.finish::<()>(l, Err(&upstream(429, Some(Duration::from_secs(9)))));
        assert!(!p.is_available("m"));
        assert_eq!(p.available_in("m"), Some(Duration::from_millis(2500)));
        let e = p.acquire("m", &[]).unwrap_err();
        assert_eq!(e.status(), 429);
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_millis(2500)));
        assert!(e.message().contains("backend `oa`"), "{}", e.message());
        assert!(e.message().contains("free in 3s"), "{}", e.message());
        for text in [e.message().to_owned(), format!("{e:?}"), format!("{p:?}")] {
            assert!(!text.contains("sk-"), "{text}");
        }
        let body = e.render(Protocol::OpenAiChat).body;
        assert!(!String::from_utf8_lossy(&body).contains("sk-"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_key_or_no_key_never_rests() {
        let p = pool(&["k1"], KeyPoolConfig::default());
        let l = p.acquire("m", &[]).unwrap();
        assert!(!p.finish::<()>(l, Err(&upstream(429, Some(Duration::from_secs(5))))));
        assert!(p.acquire("m", &[]).is_ok());
        let p = pool(&[], KeyPoolConfig::default());
        assert!(p.is_empty());
        let l = p.acquire("m", &[]).unwrap();
        assert!(p.auth(&l).is_empty());
        assert!(!p.finish::<()>(l, Err(&upstream(401, None))));
    }

    #[tokio::test(start_paused = true)]
    async fn breakers_are_per_key_and_model_and_tripped_keys_are_skipped() {
        let cfg = KeyPoolConfig {
            breaker: Some(BreakerConfig {
                failure_threshold: 2,
                base_cooldown: Duration::from_secs(10),
                max_cooldown: Duration::from_secs(60),
            }),
            ..KeyPoolConfig::default()
        };
        let p = pool(&["k1", "k2"], cfg);
        // Trip k1 for model "m" only.
        for _ in 0..2 {
            let l = p.acquire("m", &[1]).unwrap();
            assert_eq!(l.index(), 0);
            assert!(!p.finish::<()>(l, Err(&upstream(502, None))));
        }
        assert!(matches!(
            p.breaker(0, "m").unwrap().state(),
            BreakerState::Open { .. }
        ));
        // "m" now always gets k2; another model still uses k1.
        for _ in 0..4 {
            assert_eq!(p.acquire("m", &[]).unwrap().index(), 1);
        }
        let other: Vec<usize> = (0..2)
            .map(|_| p.acquire("other", &[]).unwrap().index())
            .collect();
        assert!(other.contains(&0));
        // Both keys tripped for "m": a 503 naming the backend, with the wait.
        for _ in 0..2 {
            let l = p.acquire("m", &[0]).unwrap();
            p.finish::<()>(l, Err(&upstream(500, None)));
        }
        assert!(!p.is_available("m"));
        assert!(p.is_available("other"));
        let e = p.acquire("m", &[]).unwrap_err();
        assert_eq!(e.status(), 503);
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(10)));
        // After the cooldown exactly one request probes each key.
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = p.acquire("m", &[]).unwrap();
        let probe2 = p.acquire("m", &[]).unwrap();
        assert_ne!(probe.index(), probe2.index());
        assert!(p.acquire("m", &[]).is_err());
        p.finish::<()>(probe, Ok(&()));
        assert!(p.acquire("m", &[]).is_ok());
        drop(probe2);
    }

    #[test]
    fn bad_keys_are_refused_without_showing_them() {
        let e = KeyPool::new(
            "oa",
            &["good".to_owned(), "sk-bad\nkey".to_owned()],
            &[Protocol::OpenAiChat],
            KeyPoolConfig::default(),
        )
        .unwrap_err();
        assert!(e.message().contains("key #2"), "{}", e.message());
        assert!(!e.message().contains("sk-bad"));
    }
}
