//! A circuit breaker: stop sending requests to something that keeps failing, and find out cheaply
//! when it is back.
//!
//! Without one, every request to a dead backend pays a connect error or a timeout before it fails
//! over. A [`CircuitBreaker`] guards one (backend, key, model) combination:
//!
//! - **Closed**: requests pass. Consecutive *health failures* are counted; a success resets the
//!   count. At [`BreakerConfig::failure_threshold`] the breaker opens.
//! - **Open**: requests are refused without being sent, for a cooldown that doubles with every trip
//!   in a row: `base_cooldown × 2^(trips − 1)`, capped at `max_cooldown`.
//! - **Half-open**: after the cooldown, exactly **one** request is let through as a probe; every
//!   other request is refused while it runs. A successful probe closes the breaker and forgets the
//!   trips; a failed probe opens it again with the next, longer cooldown. A probe that ends without
//!   a verdict (a client error, or the caller was cancelled) frees the probe slot so the next
//!   request probes instead.
//!
//! What counts as a health failure ([`is_health_failure`]): a retryable error — connect failure,
//! timeout, 408, 5xx — **except** 429 (the upstream is up and answering; rate limits are handled by
//! key cooldowns and `retry-after`) and 401/403 (the key is refused, which is the key pool's
//! business). Client errors (other 4xx) count neither way: they say nothing about the upstream's
//! health.
//!
//! Usage is permit-based, so the probe slot cannot leak: [`CircuitBreaker::try_acquire`] returns a
//! [`BreakerPermit`] or `None` (refused); the permit is then resolved with
//! [`BreakerPermit::record`] (or `success` / `failure`), and dropping it unresolved is neutral.
//! [`BreakerRegistry`] hands out one breaker per key, for the per-(key, model) breakers the key
//! pool keeps.
//!
//! Time is read from `tokio::time::Instant`, so tests drive cooldowns with a paused clock.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use octo_core::Error;
use tokio::time::Instant;

/// When a breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive health failures that open the breaker. `0` disables the breaker (it never
    /// opens). Default 5.
    pub failure_threshold: u32,
    /// The cooldown after the first trip. Default 10 s.
    pub base_cooldown: Duration,
    /// The longest cooldown, however many trips in a row. Default 5 min.
    pub max_cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            base_cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(300),
        }
    }
}

impl BreakerConfig {
    /// The cooldown after `trips` trips in a row (`trips ≥ 1`).
    pub fn cooldown(&self, trips: u32) -> Duration {
        let factor = 1u32 << trips.saturating_sub(1).min(31);
        self.base_cooldown
            .checked_mul(factor)
            .unwrap_or(self.max_cooldown)
            .min(self.max_cooldown)
    }
}

/// Whether `err` says the upstream is unhealthy (see the [module docs](self)).
pub fn is_health_failure(err: &Error) -> bool {
    err.is_retryable()
        && err.kind() != octo_core::ErrorKind::KeyRefused
        && !matches!(err.status().as_u16(), 401 | 403 | 429)
}

/// A breaker's state, for introspection and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests pass; `failures` consecutive health failures so far.
    Closed {
        /// Consecutive health failures counted so far.
        failures: u32,
    },
    /// Requests are refused for `remaining`.
    Open {
        /// Time left before a probe is allowed.
        remaining: Duration,
    },
    /// The cooldown is over; one probe may run (`probing` says whether it is running).
    HalfOpen {
        /// Whether the probe is in flight.
        probing: bool,
    },
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct State {
    phase: Phase,
    failures: u32,
    trips: u32,
}

/// One circuit breaker; see the [module docs](self).
///
/// ```
/// use std::sync::Arc;
/// use octo_engines::breaker::{BreakerConfig, CircuitBreaker};
///
/// let breaker = Arc::new(CircuitBreaker::new(BreakerConfig {
///     failure_threshold: 2,
///     ..BreakerConfig::default()
/// }));
/// breaker.try_acquire().unwrap().failure();
/// breaker.try_acquire().unwrap().failure();
/// assert!(breaker.try_acquire().is_none()); // open: refused without sending
/// ```
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("config", &self.config)
            .field("state", &self.state())
            .finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            config,
            state: Mutex::new(State {
                phase: Phase::Closed,
                failures: 0,
                trips: 0,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks to send one request: a permit, or `None` while open or while another request probes.
    ///
    /// The first call after the cooldown moves the breaker to half-open and returns the probe
    /// permit ([`BreakerPermit::is_probe`]).
    pub fn try_acquire(self: &Arc<Self>) -> Option<BreakerPermit> {
        let mut st = self.lock();
        let probe = match st.phase {
            Phase::Closed => false,
            Phase::Open { until } if Instant::now() < until => return None,
            Phase::Open { .. } | Phase::HalfOpen { probing: false } => {
                st.phase = Phase::HalfOpen { probing: true };
                true
            }
            Phase::HalfOpen { probing: true } => return None,
        };
        Some(BreakerPermit {
            breaker: Arc::clone(self),
            probe,
            done: false,
        })
    }

    /// Whether [`try_acquire`](Self::try_acquire) would give a permit now (no side effect).
    pub fn is_available(&self) -> bool {
        match self.lock().phase {
            Phase::Closed | Phase::HalfOpen { probing: false } => true,
            Phase::Open { until } => Instant::now() >= until,
            Phase::HalfOpen { probing: true } => false,
        }
    }

    /// How long until a request may pass: `None` when one may pass now, the remaining cooldown
    /// when open, and `Some(0)` while a probe is in flight (no estimate).
    pub fn retry_in(&self) -> Option<Duration> {
        match self.lock().phase {
            Phase::Closed | Phase::HalfOpen { probing: false } => None,
            Phase::Open { until } => {
                let now = Instant::now();
                (now < until).then(|| until - now)
            }
            Phase::HalfOpen { probing: true } => Some(Duration::ZERO),
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        let st = self.lock();
        match st.phase {
            Phase::Closed => BreakerState::Closed {
                failures: st.failures,
            },
            Phase::Open { until } => BreakerState::Open {
                remaining: until.saturating_duration_since(Instant::now()),
            },
            Phase::HalfOpen { probing } => BreakerState::HalfOpen { probing },
        }
    }

    /// Whether the breaker is closed with no failure counted (nothing worth remembering).
    fn is_pristine(&self) -> bool {
        let st = self.lock();
        matches!(st.phase, Phase::Closed) && st.failures == 0
    }

    fn on_success(&self, probe: bool) {
        let mut st = self.lock();
        match st.phase {
            Phase::Closed => st.failures = 0,
            Phase::HalfOpen { .. } if probe => {
                st.phase = Phase::Closed;
                st.failures = 0;
                st.trips = 0;
            }
            // A request let through before the breaker opened finished late: the probe decides.
            _ => {}
        }
    }

    fn on_failure(&self, probe: bool) {
        let mut st = self.lock();
        let threshold = self.config.failure_threshold;
        match st.phase {
            Phase::Closed if threshold > 0 => {
                st.failures = st.failures.saturating_add(1);
                if st.failures >= threshold {
                    self.trip(&mut st);
                }
            }
            Phase::HalfOpen { .. } if probe => self.trip(&mut st),
            _ => {}
        }
    }

    fn trip(&self, st: &mut State) {
        st.trips = st.trips.saturating_add(1);
        st.failures = 0;
        let cooldown = self.config.cooldown(st.trips);
        let now = Instant::now();
        let until = now.checked_add(cooldown).unwrap_or(now);
        st.phase = Phase::Open { until };
        tracing::debug!(trips = st.trips, ?cooldown, "circuit breaker opened");
    }

    fn on_neutral(&self, probe: bool) {
        if probe {
            let mut st = self.lock();
            if let Phase::HalfOpen { probing: true } = st.phase {
                st.phase = Phase::HalfOpen { probing: false };
            }
        }
    }
}

/// Leave to send one request through a [`CircuitBreaker`]; resolve it with the outcome.
///
/// Dropping it unresolved counts neither way (and frees the probe slot).
pub struct BreakerPermit {
    breaker: Arc<CircuitBreaker>,
    probe: bool,
    done: bool,
}

impl fmt::Debug for BreakerPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPermit")
            .field("probe", &self.probe)
            .finish()
    }
}

impl BreakerPermit {
    /// Whether this is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The request succeeded.
    pub fn success(mut self) {
        self.done = true;
        self.breaker.on_success(self.probe);
    }

    /// The request failed in a way that says the upstream is unhealthy.
    pub fn failure(mut self) {
        self.done = true;
        self.breaker.on_failure(self.probe);
    }

    /// Resolves with a result: `Ok` is a success, a [health failure](is_health_failure) a
    /// failure, anything else neutral.
    pub fn record<T>(self, result: Result<&T, &Error>) {
        match result {
            Ok(_) => self.success(),
            Err(e) if is_health_failure(e) => self.failure(),
            Err(_) => drop(self),
        }
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.on_neutral(self.probe);
        }
    }
}

/// Breakers by key, created on first use with one shared [`BreakerConfig`].
///
/// Memory stays bounded: once more than `4096` breakers exist, pristine ones (closed, nothing
/// counted) that nobody holds are forgotten.
pub struct BreakerRegistry<K> {
    config: BreakerConfig,
    map: Mutex<HashMap<K, Arc<CircuitBreaker>>>,
}

impl<K> fmt::Debug for BreakerRegistry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.map.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("BreakerRegistry")
            .field("config", &self.config)
            .field("breakers", &n)
            .finish()
    }
}

const REGISTRY_SOFT_CAP: usize = 4096;

impl<K: Hash + Eq> BreakerRegistry<K> {
    /// An empty registry.
    pub fn new(config: BreakerConfig) -> Self {
        BreakerRegistry {
            config,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The breaker for `key`, created closed if new.
    pub fn get(&self, key: K) -> Arc<CircuitBreaker> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= REGISTRY_SOFT_CAP && !map.contains_key(&key) {
            map.retain(|_, b| Arc::strong_count(b) > 1 || !b.is_pristine());
        }
        map.entry(key)
            .or_insert_with(|| Arc::new(CircuitBreaker::new(self.config)))
            .clone()
    }

    /// The breaker for a borrowed `key`, created closed if new; the key is copied only then (a
    /// lookup on the hot path allocates nothing).
    pub fn get_by<Q>(&self, key: &Q) -> Arc<CircuitBreaker>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        {
            let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = map.get(key) {
                return b.clone();
            }
        }
        self.get(key.to_owned())
    }

    /// The breaker for `key` if one exists.
    pub fn peek<Q>(&self, key: &Q) -> Option<Arc<CircuitBreaker>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).cloned()
    }

    /// The shared configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Every breaker's key and current state (for a health view).
    pub fn states(&self) -> Vec<(K, BreakerState)>
    where
        K: Clone,
    {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, b)| (k.clone(), b.state())).collect()
    }

    /// How many breakers are closed, open and half-open now (for metrics).
    pub fn count_states(&self) -> BreakerCounts {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut counts = BreakerCounts::default();
        for b in map.values() {
            match b.state() {
                BreakerState::Closed { .. } => counts.closed += 1,
                BreakerState::Open { .. } => counts.open += 1,
                BreakerState::HalfOpen { .. } => counts.half_open += 1,
            }
        }
        counts
    }
}

/// Breakers by state ([`BreakerRegistry::count_states`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BreakerCounts {
    /// Letting requests through.
    pub closed: usize,
    /// Refusing requests until their cooldown ends.
    pub open: usize,
    /// Letting one probe through.
    pub half_open: usize,
}

impl std::ops::AddAssign for BreakerCounts {
    fn add_assign(&mut self, o: Self) {
        self.closed += o.closed;
        self.open += o.open;
        self.half_open += o.half_open;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::StatusCode;
    use octo_core::UpstreamBody;

    #[test]
    fn borrowed_lookups_find_and_create_the_same_breakers() {
        let reg: BreakerRegistry<String> = BreakerRegistry::new(cfg());
        assert!(reg.peek("m").is_none());
        let a = reg.get_by("m");
        assert!(Arc::ptr_eq(&a, &reg.get("m".to_owned())));
        assert!(Arc::ptr_eq(&a, &reg.get_by("m")));
        assert!(Arc::ptr_eq(&a, &reg.peek("m").unwrap()));
        assert!(!Arc::ptr_eq(&a, &reg.get_by("n")));
    }

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            base_cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(35),
        }
    }

    fn fail(b: &Arc<CircuitBreaker>) {
        b.try_acquire().expect("permit").failure();
    }

    fn upstream(status: u16) -> Error {
        Error::upstream_status(
            StatusCode::from_u16(status).unwrap(),
            "x",
            UpstreamBody {
                protocol: None,
                body: Bytes::new(),
            },
            None,
        )
    }

    #[test]
    fn cooldown_doubles_and_caps() {
        let c = cfg();
        assert_eq!(c.cooldown(1), Duration::from_secs(10));
        assert_eq!(c.cooldown(2), Duration::from_secs(20));
        assert_eq!(c.cooldown(3), Duration::from_secs(35));
        assert_eq!(c.cooldown(200), Duration::from_secs(35));
    }

    #[test]
    fn classification() {
        assert!(is_health_failure(&Error::upstream("connect refused")));
        assert!(is_health_failure(&Error::timeout("slow")));
        assert!(is_health_failure(&upstream(503)));
        assert!(is_health_failure(&upstream(408)));
        assert!(!is_health_failure(&upstream(429)));
        assert!(!is_health_failure(&upstream(400)));
        assert!(!is_health_failure(&upstream(401).with_retryable(true)));
        assert!(!is_health_failure(&Error::rate_limited("busy", None)));
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_only() {
        let b = Arc::new(CircuitBreaker::new(cfg()));
        fail(&b);
        fail(&b);
        b.try_acquire().unwrap().success(); // resets the count
        fail(&b);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed { failures: 2 });
        // A client error is neutral.
        b.try_acquire().unwrap().record::<()>(Err(&upstream(400)));
        assert_eq!(b.state(), BreakerState::Closed { failures: 2 });
        fail(&b);
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        assert!(b.try_acquire().is_none());
        assert!(!b.is_available());
        assert_eq!(b.retry_in(), Some(Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_exactly_one_probe_through() {
        let b = Arc::new(CircuitBreaker::new(cfg()));
        for _ in 0..3 {
            fail(&b);
        }
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(b.try_acquire().is_none());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.is_available());
        let probe = b.try_acquire().expect("the probe");
        assert!(probe.is_probe());
        // Concurrent requests are refused while the probe runs.
        assert!(b.try_acquire().is_none());
        assert!(!b.is_available());
        assert_eq!(b.state(), BreakerState::HalfOpen { probing: true });
        probe.success();
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
        assert!(!b.try_acquire().unwrap().is_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probes_back_off_exponentially() {
        let b = Arc::new(CircuitBreaker::new(cfg()));
        for _ in 0..3 {
            fail(&b);
        }
        for expected in [20, 35, 35] {
            tokio::time::advance(b.retry_in().unwrap()).await;
            let probe = b.try_acquire().unwrap();
            assert!(probe.is_probe());
            probe.failure();
            assert_eq!(b.retry_in(), Some(Duration::from_secs(expected)));
        }
        // A successful probe forgets the trips: the next trip starts at the base again.
        tokio::time::advance(Duration::from_secs(35)).await;
        b.try_acquire().unwrap().success();
        for _ in 0..3 {
            fail(&b);
        }
        assert_eq!(b.retry_in(), Some(Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_frees_the_slot() {
        let b = Arc::new(CircuitBreaker::new(cfg()));
        for _ in 0..3 {
            fail(&b);
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = b.try_acquire().unwrap();
        drop(probe); // cancelled: no verdict
        let probe = b.try_acquire().expect("next request probes");
        assert!(probe.is_probe());
        // A client error on the probe is neutral too.
        probe.record::<()>(Err(&upstream(404)));
        assert_eq!(b.state(), BreakerState::HalfOpen { probing: false });
    }

    #[tokio::test(start_paused = true)]
    async fn late_results_of_pre_trip_requests_do_not_close_it() {
        let b = Arc::new(CircuitBreaker::new(cfg()));
        let early = b.try_acquire().unwrap();
        for _ in 0..3 {
            fail(&b);
        }
        early.success();
        assert!(matches!(b.state(), BreakerState::Open { .. }));
    }

    #[test]
    fn zero_threshold_never_opens() {
        let b = Arc::new(CircuitBreaker::new(BreakerConfig {
            failure_threshold: 0,
            ..cfg()
        }));
        for _ in 0..100 {
            fail(&b);
        }
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
    }

    #[test]
    fn registry_shares_breakers_per_key() {
        let r: BreakerRegistry<(usize, String)> = BreakerRegistry::new(cfg());
        let a = r.get((0, "m".into()));
        let b = r.get((0, "m".into()));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &r.get((1, "m".into()))));
        assert!(r.peek(&(2, "m".to_owned())).is_none());
    }
}
