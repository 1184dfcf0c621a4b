//! Load balancing: which of a model's targets serves the next request.
//!
//! A model is served by a list of [`Target`]s (a name, a weight, a priority, an engine — usually an
//! [`HttpEndpoint`](crate::endpoint::HttpEndpoint) — optionally an upstream model name and an
//! [`Availability`] check). A [`Strategy`] picks one target among the *candidates* still allowed
//! for a request; [`TargetSet`] calls it repeatedly, excluding targets already tried, until one
//! accepts, so every strategy doubles as the failover order, and retries within the
//! [`RetryPolicy`](crate::retry::RetryPolicy).
//!
//! This module depends on no upstream client: [`Availability`] is the seam through which one (the
//! [`client`](crate::endpoint) module's `HttpEndpoint`) reports whether it can take a request.
//!
//! | strategy | type | picks |
//! |---|---|---|
//! | `weighted_round_robin` | [`SmoothWeightedRoundRobin`] | nginx's smooth WRR: `{a:5,b:1,c:1}` → `a a b a c a a` |
//! | `round_robin` | [`RoundRobin`] | each target in turn, ignoring weights; one counter per balancer |
//! | `random` | [`WeightedRandom`] | at random, with probability proportional to weight |
//! | `failover` | [`Failover`] | lowest priority number first; ties: higher weight, then list order |
//! | `lowest_latency` | [`LowestLatency`] | power of two choices on the EWMA of time to first byte |
//!
//! [`Sticky`] wraps any of them: a client (its [`StickyKey`], else its `x-session-id` header) keeps
//! the target that last served it that model, for a TTL; with a [`SessionStore`] (e.g.
//! [`RedisSessions`]) that memory is shared by every gateway instance using the store.
//!
//! # Weights
//!
//! Weights are `u32`, so a negative weight cannot be expressed. A weight of `0` next to non-zero weights *drains* a target:
//! no strategy picks it (not even as a fallback). When **all** weights are `0`, every target
//! weighs the same. [`effective_weights`] applies both rules.
//!
//! # Strategy state
//!
//! A strategy is built once per target list (the server builds one per model) and shared by every
//! request: its counters and statistics are per model, never global. A [`BalanceMemory`] carries
//! it, and the sticky sessions, over to the set of the next graph the server builds.

pub mod failover;
pub mod lowest_latency;
pub mod memory;
pub mod random;
pub mod redis_sessions;
pub mod rng;
pub mod round_robin;
pub mod smooth_wrr;
pub mod sticky;
pub mod target_set;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use octo_core::{ArcEngine, BuildError, BuildErrorKind, Request};

use crate::breaker::CircuitBreaker;
pub use crate::retry::AttemptOutcome;

pub use failover::Failover;
pub use lowest_latency::{LatencyAverage, LatencyConfig, LowestLatency};
pub use memory::BalanceMemory;
pub use random::WeightedRandom;
pub use redis_sessions::RedisSessions;
pub use rng::{SplitMix64, entropy_seed};
pub use round_robin::RoundRobin;
pub use smooth_wrr::SmoothWeightedRoundRobin;
pub use sticky::{Remembered, STICKY_HEADER, SessionStore, SharedSessions, Sticky, StickyKey};
pub use target_set::{TargetSet, TargetSetBuilder};

/// Whether something behind a target can take a request right now, without sending one.
///
/// [`HttpEndpoint`](crate::endpoint::HttpEndpoint) implements it (some API key is neither cooling
/// down nor behind an open breaker for the model), and so do [`TargetSet`] (some target is
/// available), so nested sets skip exhausted branches, and
/// [`CircuitBreaker`].
pub trait Availability: Send + Sync {
    /// Whether a request for `model` (the upstream model name, when known) could be tried now.
    fn is_available(&self, model: Option<&str>) -> bool;

    /// When not available: how long until it may be, if known (becomes the `retry-after` of the
    /// 503 a [`TargetSet`] answers when no target is available).
    fn available_in(&self, model: Option<&str>) -> Option<Duration> {
        let _ = model;
        None
    }
}

impl Availability for CircuitBreaker {
    fn is_available(&self, _model: Option<&str>) -> bool {
        CircuitBreaker::is_available(self)
    }

    fn available_in(&self, _model: Option<&str>) -> Option<Duration> {
        self.retry_in().filter(|d| !d.is_zero())
    }
}

/// One place a model is served.
///
/// ```
/// use std::sync::Arc;
/// use octo_core::{engine_fn, Body, Response};
/// use octo_engines::balance::Target;
///
/// let engine = Arc::new(engine_fn(|_req| async { Ok(Response::json(200, Body::from_static(b"{}"))) }));
/// let t = Target::new("oa", engine).with_weight(5).with_priority(1).with_model("gpt-4o-mini");
/// assert_eq!((t.weight, t.priority), (5, 1));
/// ```
#[derive(Clone)]
pub struct Target {
    /// The target's name (usually the backend's), used in attempt records, logs and errors.
    pub name: String,
    /// The relative share of traffic; see the [module docs](self) for `0`.
    pub weight: u32,
    /// The failover rank: lower numbers are tried first by [`Failover`].
    pub priority: i32,
    /// The model name the upstream expects; each attempt's copy of the request is renamed to it.
    /// `None` leaves the request's model as it is.
    pub model: Option<String>,
    /// What serves the request.
    pub engine: ArcEngine,
    /// A cheap "could this take a request now" check, consulted before each attempt.
    pub availability: Option<Arc<dyn Availability>>,
    /// The target's latency average, when shared with its owner (the server keeps one per
    /// backend and upstream model across config changes): the [`TargetSet`] feeds it on every
    /// attempt, whatever the strategy, and `lowest_latency` reads it. `None`: `lowest_latency`
    /// keeps its own.
    pub latency: Option<Arc<LatencyAverage>>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("weight", &self.weight)
            .field("priority", &self.priority)
            .field("model", &self.model)
            .field("availability", &self.availability.is_some())
            .finish_non_exhaustive()
    }
}

impl Target {
    /// A target with weight 1, priority 0, no model override, no availability check.
    pub fn new(name: impl Into<String>, engine: ArcEngine) -> Self {
        Target {
            name: name.into(),
            weight: 1,
            priority: 0,
            model: None,
            engine,
            availability: None,
            latency: None,
        }
    }

    /// A target whose engine is also its own availability check (an
    /// [`HttpEndpoint`](crate::endpoint::HttpEndpoint), a nested [`TargetSet`]).
    /// `Target::from(Arc<HttpEndpoint>)` does this with the backend's name.
    pub fn available<E: octo_core::Engine + Availability>(
        name: impl Into<String>,
        engine: Arc<E>,
    ) -> Self {
        let availability: Arc<dyn Availability> = engine.clone();
        Target::new(name, engine).with_availability(availability)
    }

    /// Sets the weight.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the priority (lower first under [`Failover`]).
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the upstream model name.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Shares `latency` as this target's average under `lowest_latency`.
    pub fn with_latency(mut self, latency: Arc<LatencyAverage>) -> Self {
        self.latency = Some(latency);
        self
    }

    /// Adds an availability check.
    pub fn with_availability(mut self, availability: Arc<dyn Availability>) -> Self {
        self.availability = Some(availability);
        self
    }

    /// Whether the target may be tried now: its availability check (asked about `model`, or the
    /// target's own model) passes, or it has none.
    pub fn is_available(&self, model: Option<&str>) -> bool {
        let model = self.model.as_deref().or(model);
        self.availability
            .as_ref()
            .is_none_or(|a| a.is_available(model))
    }

    /// When unavailable: the availability check's known wait.
    pub fn available_in(&self, model: Option<&str>) -> Option<Duration> {
        let model = self.model.as_deref().or(model);
        self.availability
            .as_ref()
            .and_then(|a| a.available_in(model))
    }
}

/// Picks a target for a request. Built once per target list and shared by all requests.
///
/// The indices are positions in the target list the strategy was built for.
pub trait Strategy: Send + Sync + fmt::Debug {
    /// Picks one of `candidates` (ascending indices, never empty, drained targets already removed),
    /// or `None` to give up.
    fn pick(&self, candidates: &[usize], req: &Request) -> Option<usize>;

    /// Learns how an attempt on `index` ended; `elapsed` is the time to the first byte for a
    /// success (to the first event for a stream), the time to the error otherwise.
    fn record(&self, req: &Request, index: usize, outcome: AttemptOutcome, elapsed: Duration) {
        let _ = (req, index, outcome, elapsed);
    }
}

impl<S: Strategy + ?Sized> Strategy for Box<S> {
    fn pick(&self, candidates: &[usize], req: &Request) -> Option<usize> {
        (**self).pick(candidates, req)
    }
    fn record(&self, req: &Request, index: usize, outcome: AttemptOutcome, elapsed: Duration) {
        (**self).record(req, index, outcome, elapsed)
    }
}

impl<S: Strategy + ?Sized> Strategy for Arc<S> {
    fn pick(&self, candidates: &[usize], req: &Request) -> Option<usize> {
        (**self).pick(candidates, req)
    }
    fn record(&self, req: &Request, index: usize, outcome: AttemptOutcome, elapsed: Duration) {
        (**self).record(req, index, outcome, elapsed)
    }
}

/// The built-in strategies, by their configuration names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StrategyKind {
    /// `weighted_round_robin`: [`SmoothWeightedRoundRobin`] (the default).
    #[default]
    WeightedRoundRobin,
    /// `round_robin`: [`RoundRobin`].
    RoundRobin,
    /// `random`: [`WeightedRandom`].
    Random,
    /// `failover`: [`Failover`].
    Failover,
    /// `lowest_latency`: [`LowestLatency`] with default settings.
    LowestLatency,
}

impl StrategyKind {
    /// Every kind, in documentation order.
    pub const ALL: [StrategyKind; 5] = [
        StrategyKind::WeightedRoundRobin,
        StrategyKind::RoundRobin,
        StrategyKind::Random,
        StrategyKind::Failover,
        StrategyKind::LowestLatency,
    ];

    /// The configuration name (`weighted_round_robin`, `round_robin`, `random`, `failover`,
    /// `lowest_latency`).
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::WeightedRoundRobin => "weighted_round_robin",
            StrategyKind::RoundRobin => "round_robin",
            StrategyKind::Random => "random",
            StrategyKind::Failover => "failover",
            StrategyKind::LowestLatency => "lowest_latency",
        }
    }

    /// Builds the strategy for `targets`. `seed` drives the random choices of `random` and
    /// `lowest_latency` (use [`entropy_seed`] in production). Smooth WRR always starts from
    /// current weights of 0, so its sequence depends on the weights alone.
    pub fn build(self, targets: &[Target], seed: u64) -> Box<dyn Strategy> {
        let weights: Vec<u32> = targets.iter().map(|t| t.weight).collect();
        match self {
            StrategyKind::WeightedRoundRobin => Box::new(SmoothWeightedRoundRobin::new(&weights)),
            StrategyKind::RoundRobin => Box::new(RoundRobin::new(targets.len())),
            StrategyKind::Random => Box::new(WeightedRandom::new(&weights, seed)),
            StrategyKind::Failover => {
                let priorities: Vec<i32> = targets.iter().map(|t| t.priority).collect();
                Box::new(Failover::new(&priorities, &weights))
            }
            StrategyKind::LowestLatency => Box::new(LowestLatency::fed(
                targets
                    .iter()
                    .map(|t| t.latency.clone().unwrap_or_default())
                    .collect(),
                // A shared average is fed by the target set.
                targets.iter().map(|t| t.latency.is_none()).collect(),
                LatencyConfig::default(),
                seed,
            )),
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StrategyKind {
    type Err = BuildError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StrategyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                BuildError::new(
                    BuildErrorKind::Invalid,
                    format!(
                        "unknown strategy `{s}`; use one of {}",
                        StrategyKind::ALL.map(StrategyKind::as_str).join(", ")
                    ),
                )
            })
    }
}

/// The weights strategies use: all-zero becomes all-one; otherwise unchanged (zero = drained).
///
/// ```
/// use octo_engines::balance::effective_weights;
/// assert_eq!(effective_weights(&[0, 0]), vec![1, 1]);
/// assert_eq!(effective_weights(&[0, 3]), vec![0, 3]);
/// ```
pub fn effective_weights(weights: &[u32]) -> Vec<u32> {
    if weights.iter().all(|&w| w == 0) {
        vec![1; weights.len()]
    } else {
        weights.to_vec()
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use octo_core::{Protocol, Request};

    /// A chat request for `model`.
    pub(crate) fn req(model: &str) -> Request {
        let body = format!(r#"{{"model":"{model}","messages":[]}}"#);
        octo_test::request_with_body(Protocol::OpenAiChat, model, false, body)
    }

    /// Names for indices, for readable sequence assertions.
    pub(crate) fn names(seq: &[usize]) -> String {
        seq.iter()
            .map(|&i| char::from(b'a' + u8::try_from(i).unwrap()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_names_round_trip() {
        for k in StrategyKind::ALL {
            assert_eq!(k.as_str().parse::<StrategyKind>(), Ok(k));
        }
        let e = "wrr".parse::<StrategyKind>().unwrap_err().to_string();
        assert!(e.contains("weighted_round_robin, round_robin"), "{e}");
    }
}
