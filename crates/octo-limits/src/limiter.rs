//! The process-wide limiter: admits requests against the [`Policy`], reconciles them when their
//! record completes, and chooses the store — Redis when configured and answering, else this
//! process's memory.
//!
//! ```text
//! LimitEngine ──admit(model, caller, body)──▶ Limiter ──▶ RedisStore (one Lua round trip)
//!                                               │            └─ failed/slow: on_error allow → LocalState
//!                                               │                            on_error deny  → 503
//!                                               └─ no Redis ─▶ LocalState
//! record completes ──Observer──▶ Limiter::settle ──▶ LocalState, or the settle queue, carried
//!                                                    by the next admission's round trip (or
//!                                                    sent alone after SETTLE_AFTER)
//! ```
//!
//! A request is admitted on an [estimate](crate::estimate) of its tokens and of their cost, which
//! is *reserved* in its budgets while it runs. When its record completes, the estimate is
//! replaced by the real usage and cost: the record's usage when the upstream reported one; the
//! estimate itself when the upstream answered but no usage came (a stream the client cut, a
//! backend without stream usage); nothing when no answer came or it was an error, or the answer
//! came from the response cache.
//!
//! Redis failures are bounded: every call has the configured timeout, and after a failure Redis is
//! not asked again for [`RETRY_REDIS_AFTER`] (requests use the fallback meanwhile), so a dead
//! Redis costs one timeout per second, not one per request.
//!
//! A client over a limit does not cost a round trip per refused request: when Redis refuses a
//! request on a limit that nothing but time can reopen (an rpm limit: no settlement gives a
//! request back; a budget whose *finished* requests alone spent it: closed until the period
//! turns), the refusal is remembered until the instant Redis said it reopens (counted from
//! before the call was sent, so never later than Redis's own answer), and requests that would
//! meet that limit are refused here with the same answer. A tpm, concurrency or reserved-budget
//! refusal is not remembered: a settlement can reopen those sooner. A new policy (a reload, a
//! key changed through the admin API) forgets every remembered refusal.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use octo_core::record::{Observer, Record};
use octo_core::{Error, ErrorKind};

use crate::estimate::{Estimate, estimate};
use crate::local::{Admitted, CheckState, LocalState, Refused, Window};
use crate::period::rfc3339;
use crate::policy::{Check, Limit, Policy};
use crate::redis::{LEASE, RedisStore, Settlement};

/// After a Redis failure, requests use the fallback for this long before Redis is tried again.
pub const RETRY_REDIS_AFTER: Duration = Duration::from_secs(1);
/// Settlements waiting for Redis; beyond this they are dropped and counted.
const SETTLE_QUEUE: usize = 65_536;
/// Settlements one admission carries at most (they run before it, on its path).
const CARRY: usize = 16;
/// How long a settlement waits for an admission to carry it before it is sent alone: long enough
/// for the next request of a busy instance, short enough that the reconciliation (tpm, budgets,
/// a concurrency slot) is prompt.
pub const SETTLE_AFTER: Duration = Duration::from_millis(2);

/// What to do when Redis fails or is slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Fall back to this instance's own limits (default).
    #[default]
    Allow,
    /// Refuse with 503.
    Deny,
}

/// The shared store's settings.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://host:port/db`.
    pub url: String,
    /// What to do when Redis fails.
    pub on_error: OnError,
    /// How long one call may take.
    pub timeout: Duration,
    /// Prepended to every key (default `octollm:`).
    pub prefix: String,
}

/// Prices an estimate for a model: USD, or `None` when the model has no price.
pub type CostFn = dyn Fn(&str, &Estimate) -> Option<f64> + Send + Sync;

/// Where a request was admitted.
#[derive(Debug, Clone)]
enum Via {
    Local,
    Redis { periods: Vec<i64> },
}

/// An admitted request, until it is settled.
#[derive(Debug)]
struct Ticket {
    checks: Arc<[Check]>,
    estimated: (u64, f64),
    via: Via,
    member: String,
}

/// Scopes with remembered refusals at most (refusals beyond it take their round trip).
const CLOSED_MAX: usize = 4_096;

/// A limit Redis refused on, closed until `until` whatever other requests do; see the
/// [module docs](self).
#[derive(Debug, Clone, Copy)]
struct Closed {
    limit: Limit,
    until: Instant,
    /// When the rate window is whole again (rpm), for the `x-ratelimit-*` headers.
    whole_at: Instant,
    /// A budget's used USD when it refused.
    used: f64,
}

/// The remembered refusals of one scope: its rpm limit's and its budget's (the only limits
/// remembered).
#[derive(Debug, Default)]
struct ClosedScope {
    rpm: Option<Closed>,
    budget: Option<Closed>,
}

impl ClosedScope {
    fn slot(&mut self, limit: &Limit) -> Option<&mut Option<Closed>> {
        match limit {
            Limit::Rpm(_) => Some(&mut self.rpm),
            Limit::Budget(_) => Some(&mut self.budget),
            _ => None,
        }
    }
}

/// The remembered refusals, by scope id (one lookup per check of a request, whatever the number
/// of clients over their limits).
#[derive(Debug, Default)]
struct ClosedSet {
    /// Whether `scopes` may hold anything (read without the lock on every admission).
    any: AtomicBool,
    scopes: Mutex<HashMap<Arc<str>, ClosedScope>>,
}

impl ClosedSet {
    /// The refusal of the first of `checks` still closed at `now` (expired ones are dropped on
    /// the way).
    fn refusal(&self, checks: &[Check], now: Instant) -> Option<Refused> {
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        let mut scopes = lock(&self.scopes);
        for (index, check) in checks.iter().enumerate() {
            let Some(slot) = scopes
                .get_mut(&*check.id)
                .and_then(|s| s.slot(&check.limit))
            else {
                continue;
            };
            let Some(c) = *slot else { continue };
            if c.until <= now || c.limit != check.limit {
                *slot = None;
                continue;
            }
            let ms = |at: Instant| at.saturating_duration_since(now).as_secs_f64() * 1_000.0;
            let window = match check.limit {
                Limit::Rpm(n) => {
                    let reset = ms(c.whole_at);
                    Some(Window {
                        limit: n,
                        remaining: crate::gcra::Gcra::per_minute(n).remaining(reset, 0.0),
                        reset_after_ms: reset,
                    })
                }
                _ => None,
            };
            return Some(Refused {
                index,
                retry_after_ms: ms(c.until),
                window,
                used: c.used,
            });
        }
        None
    }

    /// Remembers that `check` refused until `sent + holds_ms`.
    fn remember(&self, check: &Check, refused: &Refused, sent: Instant, holds_ms: f64) {
        let at = |ms: f64| sent + Duration::from_secs_f64(ms.max(0.0) / 1_000.0);
        let closed = Closed {
            limit: check.limit,
            until: at(holds_ms),
            whole_at: at(refused.window.map_or(0.0, |w| w.reset_after_ms)),
            used: refused.used,
        };
        let mut scopes = lock(&self.scopes);
        if scopes.len() >= CLOSED_MAX && !scopes.contains_key(&*check.id) {
            let now = Instant::now();
            scopes.retain(|_, s| {
                for slot in [&mut s.rpm, &mut s.budget] {
                    if slot.is_some_and(|c| c.until <= now) {
                        *slot = None;
                    }
                }
                s.rpm.is_some() || s.budget.is_some()
            });
            if scopes.len() >= CLOSED_MAX {
                return;
            }
        }
        if let Some(slot) = scopes
            .entry(check.id.clone())
            .or_default()
            .slot(&check.limit)
        {
            *slot = Some(closed);
            self.any.store(true, Ordering::Relaxed);
        }
    }

    fn clear(&self) {
        lock(&self.scopes).clear();
        self.any.store(false, Ordering::Relaxed);
    }
}

/// Counters for the metrics.
#[derive(Debug, Default)]
struct Counters {
    redis_errors: AtomicU64,
    fallback: AtomicBool,
    settle_dropped: AtomicU64,
    refused: [AtomicU64; 4],
    refused_remembered: AtomicU64,
}

struct Shared {
    store: RedisStore,
    on_error: OnError,
    down_until: Mutex<Option<Instant>>,
    /// Settlements waiting for a round trip (an admission's, else the settle task's).
    queue: Mutex<Vec<Settlement>>,
    /// Wakes the settle task when the queue stops being empty.
    queued: Arc<tokio::sync::Notify>,
    /// Refusals that hold until a known instant.
    closed: ClosedSet,
}

impl Shared {
    /// Up to `max` queued settlements, oldest first.
    fn take(&self, max: usize) -> Vec<Settlement> {
        let mut q = lock(&self.queue);
        if q.len() <= max {
            std::mem::take(&mut *q)
        } else {
            q.drain(..max).collect()
        }
    }
}

/// The limiter; see the [module docs](self).
pub struct Limiter {
    policy: RwLock<Arc<Policy>>,
    cost: RwLock<Option<Arc<CostFn>>>,
    local: Mutex<LocalState>,
    shared: Option<Shared>,
    pending: Mutex<HashMap<String, Ticket>>,
    counters: Counters,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("redis", &self.shared.as_ref().map(|s| &s.store))
            .finish_non_exhaustive()
    }
}

/// An admitted request, as the engine sees it.
#[derive(Debug)]
pub struct Admission {
    /// The tightest windows it passed, for the `x-ratelimit-*` headers.
    pub admitted: Admitted,
    /// Settles the request when dropped, for requests without a record to settle them.
    pub guard: Option<SettleOnDrop>,
}

/// Settles a request on its estimate when dropped (a request served without a record: an
/// embedder calling engines directly).
pub struct SettleOnDrop {
    limiter: Arc<Limiter>,
    id: String,
}

impl std::fmt::Debug for SettleOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettleOnDrop")
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for SettleOnDrop {
    fn drop(&mut self) {
        let ticket = self.limiter.take(&self.id);
        if let Some(t) = ticket {
            let est = t.estimated;
            self.limiter.settle(t, est);
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static MEMBERS: AtomicU64 = AtomicU64::new(0);

impl Limiter {
    /// A limiter with no limits yet ([`Limiter::set_policy`]), on Redis when `redis` is given.
    /// With Redis, starts the settlement and lease-renewal tasks (must run inside a tokio
    /// runtime).
    ///
    /// # Errors
    /// The Redis URL is not valid.
    pub fn new(redis: Option<&RedisSettings>) -> Result<Arc<Limiter>, String> {
        let mut shared = None;
        if let Some(r) = redis {
            let store = RedisStore::new(&r.url, r.timeout, &r.prefix)?;
            shared = Some(Shared {
                store,
                on_error: r.on_error,
                down_until: Mutex::new(None),
                queue: Mutex::new(Vec::new()),
                queued: Arc::new(tokio::sync::Notify::new()),
                closed: ClosedSet::default(),
            });
        }
        let limiter = Arc::new(Limiter {
            policy: RwLock::new(Arc::new(Policy::new())),
            cost: RwLock::new(None),
            local: Mutex::new(LocalState::new()),
            shared,
            pending: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            tasks: Mutex::new(Vec::new()),
        });
        if let Some(shared) = &limiter.shared {
            let weak = Arc::downgrade(&limiter);
            let settle = tokio::spawn(settle_worker(weak.clone(), shared.queued.clone()));
            let renew = tokio::spawn(renew_worker(weak));
            lock(&limiter.tasks).extend([settle, renew]);
        }
        Ok(limiter)
    }

    /// Replaces the limits (a config reload); counters are kept, remembered refusals are not
    /// (a limit may have been raised).
    pub fn set_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
        if let Some(shared) = &self.shared {
            shared.closed.clear();
        }
    }

    /// The current limits.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets how estimates are priced (for budgets).
    pub fn set_cost(&self, cost: Arc<CostFn>) {
        *self.cost.write().unwrap_or_else(|e| e.into_inner()) = Some(cost);
    }

    /// Whether a Redis store is configured.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Redis calls that failed or timed out.
    pub fn redis_errors(&self) -> u64 {
        self.counters.redis_errors.load(Ordering::Relaxed)
    }

    /// Whether requests are using this instance's own limits because Redis failed.
    pub fn in_fallback(&self) -> bool {
        self.counters.fallback.load(Ordering::Relaxed)
    }

    /// Refusals per limit: rpm, tpm, concurrency, budget.
    pub fn refused(&self) -> [(&'static str, u64); 4] {
        let c = &self.counters.refused;
        [
            ("rpm", c[0].load(Ordering::Relaxed)),
            ("tpm", c[1].load(Ordering::Relaxed)),
            ("concurrency", c[2].load(Ordering::Relaxed)),
            ("budget", c[3].load(Ordering::Relaxed)),
        ]
    }

    /// Refusals answered from a remembered Redis refusal, without a round trip (see the
    /// [module docs](self)); also counted in [`Self::refused`].
    pub fn refused_remembered(&self) -> u64 {
        self.counters.refused_remembered.load(Ordering::Relaxed)
    }

    /// Settlements dropped because Redis could not take them.
    pub fn settle_dropped(&self) -> u64 {
        self.counters.settle_dropped.load(Ordering::Relaxed)
    }

    /// Requests admitted and not yet settled.
    pub fn in_flight(&self) -> usize {
        lock(&self.pending).len()
    }

    fn take(&self, id: &str) -> Option<Ticket> {
        lock(&self.pending).remove(id)
    }

    /// Whether Redis should be asked now (configured, and not failed within the last
    /// [`RETRY_REDIS_AFTER`]).
    fn redis_usable(&self) -> Option<&Shared> {
        let shared = self.shared.as_ref()?;
        let down = *lock(&shared.down_until);
        match down {
            Some(until) if Instant::now() < until => None,
            _ => Some(shared),
        }
    }

    fn redis_failed(&self, shared: &Shared, error: &str) {
        self.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
        *lock(&shared.down_until) = Some(Instant::now() + RETRY_REDIS_AFTER);
        if !self.counters.fallback.swap(true, Ordering::Relaxed) {
            match shared.on_error {
                OnError::Allow => tracing::warn!(
                    %error,
                    "redis unavailable: rate limits and budgets fall back to this instance's own counts (redis.on_error: allow)"
                ),
                OnError::Deny => tracing::warn!(
                    %error,
                    "redis unavailable: limited requests are refused with 503 (redis.on_error: deny)"
                ),
            }
        }
    }

    fn redis_ok(self: &Arc<Self>, shared: &Shared) {
        if self.counters.fallback.swap(false, Ordering::Relaxed) {
            tracing::info!("redis is back: rate limits and budgets are shared again");
            *lock(&shared.down_until) = None;
            // A restarted Redis lost the budgets' spend: bring back what this instance knows
            // (storage's spend at startup plus its own since); seeding never lowers a count.
            let me = self.clone();
            tokio::spawn(async move { me.reseed_redis().await });
        }
    }

    /// Admits a request to `model` from `caller` (org, key) with body `body`, or refuses it with
    /// a 429 (or a 503 when Redis fails and `on_error` is `deny`) in the client's shape.
    /// `record_id` is the id of the request's record, whose completion settles it; without one
    /// the returned guard settles it on the estimate when dropped. `Ok(None)`: no limit applies.
    ///
    /// # Errors
    /// The refusal, ready to render.
    pub async fn admit(
        self: &Arc<Self>,
        model: &str,
        caller: Option<(&str, &str)>,
        body: &[u8],
        record_id: Option<&str>,
    ) -> Result<Option<Admission>, Error> {
        let policy = self.policy();
        if policy.is_empty() {
            return Ok(None);
        }
        let checks = policy.checks(model, caller);
        if checks.is_empty() {
            return Ok(None);
        }
        let needs_tokens = checks
            .iter()
            .any(|c| matches!(c.limit, Limit::Tpm(_) | Limit::Budget(_)));
        let est = if needs_tokens {
            estimate(body)
        } else {
            Estimate::default()
        };
        let cost = if checks.iter().any(|c| matches!(c.limit, Limit::Budget(_))) {
            let f = self.cost.read().unwrap_or_else(|e| e.into_inner()).clone();
            f.and_then(|f| f(model, &est)).unwrap_or(0.0)
        } else {
            0.0
        };
        let tokens = est.total();
        let member = match record_id {
            Some(id) => id.to_owned(),
            None => format!("anon-{}", MEMBERS.fetch_add(1, Ordering::Relaxed)),
        };
        let now = now_ms();
        let sent = Instant::now();
        // Redis's own verdict while it holds: no round trip, and no fresh local burst while Redis
        // is unusable either.
        let remembered = self
            .shared
            .as_ref()
            .and_then(|s| s.closed.refusal(&checks, sent));
        let (outcome, via) = match (remembered, self.redis_usable()) {
            (Some(refused), _) => {
                self.counters
                    .refused_remembered
                    .fetch_add(1, Ordering::Relaxed);
                (Err(refused), Via::Local)
            }
            (None, Some(shared)) => {
                // The settlements of requests finished since ride along (one round trip). The
                // call is handed to the connection on its first poll (when connected), so a
                // request cancelled while it waits (its client left) does not lose them.
                let carried = shared.take(CARRY);
                match shared
                    .store
                    .admit_reply(&member, &checks, tokens, cost, now, &carried)
                    .await
                {
                    Ok(reply) => {
                        self.redis_ok(shared);
                        if let (Err(refused), Some(holds)) = (&reply.outcome, reply.holds_ms)
                            && let Some(check) = checks.get(refused.index)
                        {
                            shared.closed.remember(check, refused, sent, holds);
                        }
                        (
                            reply.outcome,
                            Via::Redis {
                                periods: reply.periods,
                            },
                        )
                    }
                    Err(e) => {
                        // Not retried, as in the settle task: they may have been applied.
                        self.counters
                            .settle_dropped
                            .fetch_add(carried.len() as u64, Ordering::Relaxed);
                        self.redis_failed(shared, &e.0);
                        self.fallback(shared, now, &checks, tokens, cost)?
                    }
                }
            }
            (None, None) => match &self.shared {
                Some(shared) => self.fallback(shared, now, &checks, tokens, cost)?,
                None => (
                    lock(&self.local).admit(now, &checks, tokens, cost),
                    Via::Local,
                ),
            },
        };
        let admitted = match outcome {
            Ok(a) => a,
            Err(refused) => {
                let c = &checks[refused.index];
                let slot = match c.limit {
                    Limit::Rpm(_) => 0,
                    Limit::Tpm(_) => 1,
                    Limit::Concurrency(_) => 2,
                    Limit::Budget(_) => 3,
                };
                self.counters.refused[slot].fetch_add(1, Ordering::Relaxed);
                return Err(refusal(c, &refused, tokens, now));
            }
        };
        let ticket = Ticket {
            checks: checks.into(),
            estimated: (tokens, cost),
            via,
            member: member.clone(),
        };
        lock(&self.pending).insert(member.clone(), ticket);
        let guard = match record_id {
            Some(_) => None,
            None => Some(SettleOnDrop {
                limiter: self.clone(),
                id: member,
            }),
        };
        Ok(Some(Admission { admitted, guard }))
    }

    /// The local store's answer while Redis is unusable, or the 503 of `on_error: deny`.
    fn fallback(
        &self,
        shared: &Shared,
        now: i64,
        checks: &[Check],
        tokens: u64,
        cost: f64,
    ) -> Result<(Result<Admitted, Refused>, Via), Error> {
        match shared.on_error {
            OnError::Allow => Ok((
                lock(&self.local).admit(now, checks, tokens, cost),
                Via::Local,
            )),
            OnError::Deny => Err(Error::new(
                ErrorKind::Upstream,
                "rate limits cannot be checked: the shared limit store (Redis) is unavailable, and `redis.on_error` is `deny`; try again shortly",
            )
            .with_status(http::StatusCode::SERVICE_UNAVAILABLE)
            .with_code("limits_unavailable")
            .with_header(http::header::RETRY_AFTER, HeaderValue::from(1))),
        }
    }

    /// Settles the request whose record completed (the [`Observer`] calls this).
    pub fn complete(&self, record: &Record) {
        let Some(ticket) = self.take(&record.id) else {
            return;
        };
        let actual = actual_usage(record, ticket.estimated);
        self.settle(ticket, actual);
    }

    fn settle(&self, ticket: Ticket, actual: (u64, f64)) {
        let now = now_ms();
        match ticket.via {
            Via::Local => lock(&self.local).settle(now, &ticket.checks, ticket.estimated, actual),
            Via::Redis { periods } => {
                lock(&self.local).add_spend(now, &ticket.checks, actual.1);
                let Some(shared) = &self.shared else { return };
                // rpm alone has nothing to reconcile.
                if ticket
                    .checks
                    .iter()
                    .all(|c| matches!(c.limit, Limit::Rpm(_)))
                {
                    return;
                }
                let s = Settlement {
                    checks: ticket.checks,
                    member: ticket.member,
                    periods,
                    estimated: ticket.estimated,
                    actual,
                };
                let mut q = lock(&shared.queue);
                if q.len() >= SETTLE_QUEUE {
                    self.counters.settle_dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                q.push(s);
                if q.len() == 1 {
                    shared.queued.notify_one();
                }
            }
        }
    }

    /// Brings a budget's spend in the current period up to `spent` (from the request log at
    /// startup), here and, when shared, in Redis (where it only ever raises the count).
    pub async fn seed(&self, check: &Check, spent: f64) {
        let now = now_ms();
        lock(&self.local).seed(now, check, spent);
        if let (Some(shared), Limit::Budget(b)) = (&self.shared, check.limit) {
            let start = b.period.bounds(now).0;
            if let Err(e) = shared.store.seed(check, b.period, start, spent).await {
                tracing::warn!(error = %e, budget = %check.scope, "could not seed the budget's spend in redis");
            }
        }
    }

    async fn reseed_redis(&self) {
        let Some(shared) = &self.shared else { return };
        let now = now_ms();
        for check in self.policy().all_checks() {
            let Limit::Budget(b) = check.limit else {
                continue;
            };
            let spent = match lock(&self.local).state(now, &check) {
                CheckState::Spend(s) if s.spent > 0.0 => s.spent,
                _ => continue,
            };
            let start = b.period.bounds(now).0;
            if shared
                .store
                .seed(&check, b.period, start, spent)
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// The state of every limit: from Redis when shared and answering, else local.
    pub async fn states(&self) -> (Vec<(Check, CheckState)>, &'static str) {
        let checks = self.policy().all_checks();
        let now = now_ms();
        if let Some(shared) = self.redis_usable()
            && let Ok(states) = shared.store.states(&checks, now).await
        {
            return (checks.into_iter().zip(states).collect(), "redis");
        }
        let mut local = lock(&self.local);
        let states = checks
            .iter()
            .map(|c| local.state(now, c))
            .collect::<Vec<_>>();
        (checks.into_iter().zip(states).collect(), "local")
    }

    /// Leases of the requests admitted through Redis that hold a concurrency slot.
    fn leases(&self) -> Vec<(String, String)> {
        let Some(shared) = &self.shared else {
            return Vec::new();
        };
        let pending = lock(&self.pending);
        let mut out = Vec::new();
        for t in pending.values() {
            if let Via::Redis { periods } = &t.via {
                for (c, start) in t.checks.iter().zip(periods) {
                    if let Limit::Concurrency(_) = c.limit {
                        out.push((shared.store.key(c, *start), t.member.clone()));
                    }
                }
            }
        }
        out
    }

    /// Stops the background tasks.
    pub fn shutdown(&self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

impl Observer for Limiter {
    fn on_complete(&self, record: &Arc<Record>) {
        self.complete(record);
    }
}

/// What a finished request really used (tokens, USD); see the [module docs](self).
fn actual_usage(record: &Record, estimated: (u64, f64)) -> (u64, f64) {
    if record.cache_hit {
        return (0, 0.0);
    }
    if let Some(u) = record.usage {
        return (
            u.total_input_tokens() + u.output_tokens,
            record.cost_usd.unwrap_or(0.0),
        );
    }
    let answered = record.ttfb_ms.is_some();
    if !answered || (record.status >= 400 && record.status != octo_core::record::CLIENT_CLOSED) {
        return (0, 0.0);
    }
    estimated
}

/// A duration as OpenAI's `x-ratelimit-reset-*` headers write it: `250ms`, `12s`, `1m30s`.
pub fn reset_text(ms: f64) -> String {
    let mut buf = [0u8; 48];
    let n = write_reset(ms, &mut buf);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Writes [`reset_text`] into `buf` (no allocation: every admitted answer carries one or two);
/// returns its length.
fn write_reset(ms: f64, buf: &mut [u8; 48]) -> usize {
    fn digits(mut v: u64, buf: &mut [u8], at: usize) -> usize {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let d = &tmp[i..];
        buf[at..at + d.len()].copy_from_slice(d);
        at + d.len()
    }
    let ms = ms.max(0.0).ceil() as u64;
    let mut n = 0;
    if ms < 1_000 {
        n = digits(ms, buf, n);
        buf[n..n + 2].copy_from_slice(b"ms");
        return n + 2;
    }
    let secs = ms.div_ceil(1_000);
    if secs >= 60 {
        n = digits(secs / 60, buf, n);
        buf[n] = b'm';
        n += 1;
    }
    n = digits(if secs >= 60 { secs % 60 } else { secs }, buf, n);
    buf[n] = b's';
    n + 1
}

/// The `x-ratelimit-*` headers of a window: `requests` or `tokens` (static names: every admitted
/// answer carries them, so no name is formatted or parsed per request).
pub fn window_headers(kind: &str, w: &Window) -> [(http::HeaderName, HeaderValue); 3] {
    use http::HeaderName;
    let mut buf = [0u8; 48];
    let n = write_reset(w.reset_after_ms, &mut buf);
    let reset = HeaderValue::from_bytes(&buf[..n]).unwrap_or(HeaderValue::from_static("0s"));
    let [limit, remaining, reset_name] = if kind == "tokens" {
        [
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ]
    } else {
        [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ]
    };
    [
        (HeaderName::from_static(limit), HeaderValue::from(w.limit)),
        (
            HeaderName::from_static(remaining),
            HeaderValue::from(w.remaining),
        ),
        (HeaderName::from_static(reset_name), reset),
    ]
}

fn with_window(mut e: Error, kind: &str, w: &Window) -> Error {
    for (name, value) in window_headers(kind, w) {
        e = e.with_header(name, value);
    }
    e
}

/// `retry-after-ms`, which OpenAI's and Anthropic's SDKs read before `retry-after` (whole
/// seconds, rounded up): a client of a 1,000 rpm limit can come back in 60 ms, not 1 s.
fn with_retry_ms(e: Error, ms: f64) -> Error {
    if !(ms.is_finite() && ms > 0.0) {
        return e;
    }
    e.with_header(
        http::HeaderName::from_static("retry-after-ms"),
        HeaderValue::from(ms.ceil() as u64),
    )
}

fn secs_text(ms: f64) -> String {
    format!("{}s", (ms.max(0.0) / 1_000.0).ceil() as u64)
}

/// The refusal of `check` as the client sees it.
fn refusal(check: &Check, r: &Refused, tokens: u64, now: i64) -> Error {
    let scope = &check.scope;
    let retry =
        |ms: f64| (ms.is_finite() && ms > 0.0).then(|| Duration::from_millis(ms.ceil() as u64));
    match check.limit {
        Limit::Rpm(n) => {
            let e = Error::rate_limited(
                format!(
                    "rate limit reached for {scope}: {n} requests per minute (rpm); try again in {}",
                    secs_text(r.retry_after_ms)
                ),
                retry(r.retry_after_ms).or(Some(Duration::from_secs(1))),
            )
            .with_code("rate_limit_exceeded");
            let e = with_retry_ms(e, r.retry_after_ms);
            match &r.window {
                Some(w) => with_window(e, "requests", w),
                None => e,
            }
        }
        Limit::Tpm(n) => {
            let e = if r.retry_after_ms.is_infinite() {
                Error::rate_limited(
                    format!(
                        "request too large for {scope}: it is estimated at {tokens} tokens (prompt and max output), more than its {n} tokens per minute (tpm) allow; lower the prompt or max_tokens"
                    ),
                    None,
                )
                .with_retryable(false)
            } else {
                Error::rate_limited(
                    format!(
                        "rate limit reached for {scope}: {n} tokens per minute (tpm), and this request is estimated at {tokens} tokens; try again in {}",
                        secs_text(r.retry_after_ms)
                    ),
                    retry(r.retry_after_ms),
                )
            }
            .with_code("rate_limit_exceeded");
            let e = with_retry_ms(e, r.retry_after_ms);
            match &r.window {
                Some(w) => with_window(e, "tokens", w),
                None => e,
            }
        }
        Limit::Concurrency(n) => with_retry_ms(
            Error::rate_limited(
                format!(
                    "concurrency limit reached for {scope}: {n} requests already in flight (concurrency); try again when one finishes"
                ),
                Some(Duration::from_secs(1)),
            )
            .with_code("concurrency_limit_exceeded"),
            1_000.0,
        ),
        Limit::Budget(b) => {
            let end = b.period.bounds(now).1;
            Error::rate_limited(
                format!(
                    "budget exhausted for {scope}: ${:.4} of ${} per {} spent (UTC periods); it resets at {}",
                    r.used,
                    b.usd,
                    b.period.name(),
                    rfc3339(end)
                ),
                retry((end - now) as f64),
            )
            .with_code(octo_core::error::INSUFFICIENT_QUOTA)
            .with_retryable(false)
        }
    }
}

/// Sends the settlements no admission carried within [`SETTLE_AFTER`], many per round trip.
async fn settle_worker(limiter: std::sync::Weak<Limiter>, queued: Arc<tokio::sync::Notify>) {
    loop {
        // Notified each time the queue stops being empty (a permit is kept if this task is busy).
        queued.notified().await;
        tokio::time::sleep(SETTLE_AFTER).await;
        let Some(l) = limiter.upgrade() else { return };
        let Some(shared) = &l.shared else { return };
        let batch = shared.take(SETTLE_QUEUE);
        if batch.is_empty() {
            continue;
        }
        if let Err(e) = shared.store.settle(&batch).await {
            // Not retried: a timed-out call may have been applied, and applying it twice would
            // charge twice. The reservations stay (conservative) and the leases expire.
            l.counters
                .settle_dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            l.redis_failed(shared, &e.0);
        }
    }
}

/// Renews the concurrency leases of requests in flight, every third of a lease.
async fn renew_worker(limiter: std::sync::Weak<Limiter>) {
    let mut tick = tokio::time::interval(LEASE / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(l) = limiter.upgrade() else { return };
        let leases = l.leases();
        if let Some(shared) = &l.shared
            && let Err(e) = shared.store.renew(&leases).await
        {
            tracing::debug!(error = %e, "concurrency leases not renewed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_refusal_holds_until_its_instant_and_only_for_its_limit() {
        use crate::policy::{RateLimit, Rules};
        let rpm = |n| RateLimit {
            rpm: Some(n),
            ..RateLimit::default()
        };
        let p = Policy::new().model("m", rpm(2)).key(
            "acme",
            "ci",
            Rules {
                rate: rpm(5),
                budget: None,
            },
        );
        let checks = p.checks("m", Some(("acme", "ci")));
        let set = ClosedSet::default();
        let t0 = Instant::now();
        assert!(set.refusal(&checks, t0).is_none());
        let refused = Refused {
            index: 1,
            retry_after_ms: 100.0,
            window: Some(Window {
                limit: 5,
                remaining: 0,
                reset_after_ms: 60_000.0,
            }),
            used: 0.0,
        };
        set.remember(&checks[1], &refused, t0, 100.0);
        let r = set
            .refusal(&checks, t0 + Duration::from_millis(40))
            .unwrap();
        assert_eq!(
            r.index, 1,
            "the key's limit, found after the model's open one"
        );
        assert!((r.retry_after_ms - 60.0).abs() < 1e-6, "{r:?}");
        let w = r.window.unwrap();
        assert_eq!((w.limit, w.remaining), (5, 0));
        // At the instant it reopens, it is gone.
        assert!(
            set.refusal(&checks, t0 + Duration::from_millis(100))
                .is_none()
        );
        assert!(set.refusal(&checks, t0).is_none(), "dropped once expired");
        // The same scope with another limit (a changed policy) is not refused by it.
        set.remember(&checks[1], &refused, t0, 100.0);
        let other = Policy::new().key(
            "acme",
            "ci",
            Rules {
                rate: rpm(6),
                budget: None,
            },
        );
        assert!(
            set.refusal(&other.checks("m", Some(("acme", "ci"))), t0)
                .is_none()
        );
        set.remember(&checks[1], &refused, t0, 100.0);
        set.clear();
        assert!(set.refusal(&checks, t0).is_none());
    }

    #[test]
    fn reset_texts_look_like_openais() {
        assert_eq!(reset_text(0.0), "0ms");
        assert_eq!(reset_text(250.2), "251ms");
        assert_eq!(reset_text(12_000.0), "12s");
        assert_eq!(reset_text(12_001.0), "13s");
        assert_eq!(reset_text(90_000.0), "1m30s");
        assert_eq!(reset_text(59_000.0), "59s");
        assert_eq!(reset_text(60_000.0), "1m0s");
        assert_eq!(reset_text(999.5), "1s");
        assert_eq!(reset_text(-3.0), "0ms");
        assert!(reset_text(f64::INFINITY).ends_with('s'));
    }
}
