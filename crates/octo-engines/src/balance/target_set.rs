//! The engine behind one model: [`TargetSet`], balancing, retrying and failing over across its
//! targets.
//!
//! A [`TargetSet`] holds a list of [`Target`]s, a [`Strategy`] that picks among them, and a
//! [`RetryPolicy`]. Only retryable errors are retried, each attempt gets its own copy of the
//! request, waits are bounded, and a deadline caps the whole request.
//!
//! # One request
//!
//! 1. The body is serialised once; every attempt gets its own `req.clone()` (cheap: the bytes are
//!    shared), renamed to the target's upstream model. No attempt sees another's changes.
//! 2. The strategy picks among the *candidates*: targets not drained (weight 0), not tried yet in
//!    this round, and available (the
//!    endpoint has a usable key whose breaker admits a request). Unavailable targets are recorded as
//!    [`Skipped`](AttemptOutcome::Skipped) and cost no attempt.
//! 3. The outcome decides:
//!    - **success** → returned; a streaming response is returned once its **first event** arrived
//!      (with [`RetryPolicy::wait_first_event`], the default), so a stream that dies before
//!      producing anything — an error, an in-band error event first, or an empty stream — still
//!      fails over. Once an event is handed on, bytes may reach the client and there is **never**
//!      a retry.
//!    - **non-retryable error** (other 4xx, a deny, a bad request) → returned at once, untouched.
//!    - **retryable error** (connect, timeout, 408, 429, 5xx; see [`Error::is_retryable`]) → the
//!      next candidate is tried **at once**. A target that answered 401 or 403 (the gateway's own
//!      key was refused) is not tried again for this request.
//! 4. When every candidate of the round has been tried, a new round may start, after a wait: the
//!    smallest `retry-after` any target of the round sent, else [`RetryPolicy::backoff`]. So a
//!    `retry-after` is honoured by waiting only when there is nowhere else to go; otherwise the
//!    next target is taken at once. A wait longer than [`RetryPolicy::max_wait`] is not started:
//!    the error and its `retry-after` go back to the client.
//! 5. Limits: at most [`RetryPolicy::max_attempts`] attempts, and no attempt or wait **starts**
//!    after [`RetryPolicy::deadline`] (measured from the start of the request); a wait that would
//!    not end before the deadline is not started. An attempt in flight is bounded by the target's own
//!    timeouts (connect, first byte, idle, total), not cut by the deadline, so a long generation is
//!    never killed half-way. When the limits are reached the last error is returned as is (status,
//!    body and `retry-after` intact for pass-through). When no target could be tried at all, the
//!    answer is a retryable 503 naming the model, with a `retry-after` when the targets know when
//!    they will be available again ([`Availability::available_in`]).
//!
//! # Attempt records
//!
//! Each attempt (and skip) is appended to the request's [`Attempts`] extension — created if the
//! caller did not insert one — and the same [`Attempts`] is put in the response's extensions.
//! `Attempts` is an `Arc`, so a caller that inserts it before calling can read it on the error path
//! too, and nested sets append to the same list.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use octo_core::{
    BuildError, BuildErrorKind, Engine, Error, Event, EventStream, Request, Response, ResponseBody,
    UpstreamBody,
};
use tokio::time::Instant;

use super::sticky::SharedSessions;
use super::{
    Availability, BalanceMemory, SessionStore, Sticky, Strategy, StrategyKind, Target,
    effective_weights, entropy_seed,
};
use crate::retry::{AttemptOutcome, AttemptRecord, Attempts, RetryPolicy};

/// Builds a [`TargetSet`]; see [`TargetSet::builder`].
pub struct TargetSetBuilder {
    name: String,
    targets: Vec<Target>,
    kind: StrategyKind,
    custom: Option<Box<dyn Strategy>>,
    sticky: Option<Duration>,
    sessions: Option<std::sync::Arc<dyn SessionStore>>,
    policy: RetryPolicy,
    seed: Option<u64>,
    memory: Option<(std::sync::Arc<BalanceMemory>, String)>,
}

impl fmt::Debug for TargetSetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetSetBuilder")
            .field("name", &self.name)
            .field("targets", &self.targets)
            .field("kind", &self.kind)
            .field("sticky", &self.sticky)
            .field("sessions", &self.sessions)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl TargetSetBuilder {
    /// Uses a built-in strategy (default: smooth weighted round robin).
    pub fn strategy(mut self, kind: StrategyKind) -> Self {
        self.kind = kind;
        self.custom = None;
        self
    }

    /// Uses a custom strategy, built for these targets' indices.
    pub fn custom_strategy(mut self, strategy: Box<dyn Strategy>) -> Self {
        self.custom = Some(strategy);
        self
    }

    /// Makes sessions sticky for `ttl` (see [`Sticky`]).
    pub fn sticky(mut self, ttl: Duration) -> Self {
        self.sticky = Some(ttl);
        self
    }

    /// Keeps sticky sessions (when [`sticky`](Self::sticky) is set) in `store` too, shared with
    /// every other instance using it, under this set's name; see
    /// [`sticky`](super::sticky#shared-by-several-instances).
    pub fn session_store(mut self, store: std::sync::Arc<dyn SessionStore>) -> Self {
        self.sessions = Some(store);
        self
    }

    /// Sets the retry policy (default [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Seeds the random choices of `random` and `lowest_latency` (default: from entropy).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Takes over the balancing state (strategy counters, sticky sessions) `memory` kept for
    /// `scope` from an earlier set, and keeps this one's there; see
    /// [`BalanceMemory`]. Not with a custom strategy.
    pub fn remember(
        mut self,
        memory: std::sync::Arc<BalanceMemory>,
        scope: impl Into<String>,
    ) -> Self {
        self.memory = Some((memory, scope.into()));
        self
    }

    /// Builds the set.
    ///
    /// # Errors
    /// A [`BuildErrorKind::Missing`] error for an empty target list.
    pub fn build(self) -> Result<TargetSet, BuildError> {
        if self.targets.is_empty() {
            return Err(BuildError::new(
                BuildErrorKind::Missing,
                format!(
                    "model `{}` has no targets: list at least one target",
                    self.name
                ),
            ));
        }
        let weights: Vec<u32> = self.targets.iter().map(|t| t.weight).collect();
        let eligible: Vec<bool> = effective_weights(&weights)
            .into_iter()
            .map(|w| w > 0)
            .collect();
        let seed = self.seed.unwrap_or_else(entropy_seed);
        let (inner, sessions): (Box<dyn Strategy>, _) = match (self.custom, &self.memory) {
            (Some(s), _) => (s, None),
            (None, Some((memory, scope))) => {
                let (s, sessions) = memory.carry(scope, &self.targets, self.kind, || {
                    self.kind.build(&self.targets, seed)
                });
                (Box::new(s), Some(sessions))
            }
            (None, None) => (self.kind.build(&self.targets, seed), None),
        };
        let mut shared = None;
        let strategy: Box<dyn Strategy> = match self.sticky {
            Some(ttl) if !ttl.is_zero() => {
                let mut sticky = match sessions {
                    Some(sessions) => Sticky::with_sessions(inner, ttl, sessions),
                    None => Sticky::new(inner, ttl),
                };
                if let Some(store) = self.sessions {
                    let names = self.targets.iter().map(|t| t.name.clone()).collect();
                    let s = std::sync::Arc::new(SharedSessions::new(store, &self.name, names));
                    sticky = sticky.with_shared(s.clone());
                    shared = Some(s);
                }
                Box::new(sticky)
            }
            _ => inner,
        };
        Ok(TargetSet {
            name: self.name,
            targets: self.targets,
            eligible,
            strategy,
            shared,
            policy: self.policy,
        })
    }
}

/// The balancing, retrying, failing-over engine for one model; see the [module docs](self).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use octo_core::{engine_fn, Protocol, Body, Engine, Error, Request, Response};
/// use octo_engines::balance::{StrategyKind, Target, TargetSet};
/// use octo_engines::retry::{Attempts, RetryPolicy};
///
/// let down = Arc::new(engine_fn(|_req| async { Err(Error::upstream("connection refused")) }));
/// let up = Arc::new(engine_fn(|_req| async { Ok(Response::json(200, Body::from_static(b"{}"))) }));
/// let set = TargetSet::builder("gpt", vec![Target::new("a", down), Target::new("b", up)])
///     .strategy(StrategyKind::Failover)
///     .retry(RetryPolicy::new(3, std::time::Duration::from_secs(10)))
///     .build()
///     .unwrap();
/// let req = Request::post(Protocol::OpenAiChat, "/v1/chat/completions",
///     Body::from_static(br#"{"model":"gpt"}"#));
/// let resp = set.process(req).await.unwrap();
/// let attempts = resp.extensions.get::<Attempts>().unwrap().snapshot();
/// assert_eq!(attempts.iter().map(|a| a.target.as_str()).collect::<Vec<_>>(), ["a", "b"]);
/// # }
/// ```
pub struct TargetSet {
    name: String,
    targets: Vec<Target>,
    /// Not drained (weight 0 next to non-zero weights).
    eligible: Vec<bool>,
    strategy: Box<dyn Strategy>,
    /// The shared sticky sessions, looked up before the first pick.
    shared: Option<std::sync::Arc<SharedSessions>>,
    policy: RetryPolicy,
}

impl fmt::Debug for TargetSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetSet")
            .field("name", &self.name)
            .field("targets", &self.targets)
            .field("strategy", &self.strategy)
            .field("policy", &self.policy)
            .finish()
    }
}

impl TargetSet {
    /// Starts a set named `name` (the model, used in messages) over `targets`.
    pub fn builder(name: impl Into<String>, targets: Vec<Target>) -> TargetSetBuilder {
        TargetSetBuilder {
            name: name.into(),
            targets,
            kind: StrategyKind::default(),
            custom: None,
            sticky: None,
            sessions: None,
            policy: RetryPolicy::default(),
            seed: None,
            memory: None,
        }
    }

    /// The set's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The targets, in configuration order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The strategy (wrapped in [`Sticky`] when configured).
    pub fn strategy(&self) -> &dyn Strategy {
        self.strategy.as_ref()
    }

    fn no_target_error(&self, retry_after: Option<Duration>) -> Error {
        Error::upstream_status(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "model `{}`: none of its {} target(s) is available right now (circuit open or every API key cooling down); try again shortly",
                self.name,
                self.targets.len()
            ),
            UpstreamBody {
                protocol: None,
                body: Bytes::new(),
            },
            retry_after,
        )
    }
}

impl Availability for TargetSet {
    fn is_available(&self, model: Option<&str>) -> bool {
        self.targets
            .iter()
            .zip(&self.eligible)
            .any(|(t, &ok)| ok && t.is_available(model))
    }

    fn available_in(&self, model: Option<&str>) -> Option<Duration> {
        self.targets
            .iter()
            .zip(&self.eligible)
            .filter(|(_, ok)| **ok)
            .filter_map(|(t, _)| t.available_in(model))
            .min()
    }
}

/// The per-request bookkeeping of [`TargetSet::process`].
struct Round {
    tried: Marks,
    banned: Marks,
    attempted: bool,
    retry_after: Option<Duration>,
}

/// One flag per target: bits of a word for up to 64 targets (no allocation per request), a
/// vector beyond.
enum Marks {
    Word(u64),
    Many(Vec<bool>),
}

impl Marks {
    fn new(n: usize) -> Self {
        if n <= 64 {
            Marks::Word(0)
        } else {
            Marks::Many(vec![false; n])
        }
    }

    fn get(&self, i: usize) -> bool {
        match self {
            Marks::Word(w) => i < 64 && w >> i & 1 == 1,
            Marks::Many(v) => v.get(i).copied().unwrap_or(false),
        }
    }

    fn set(&mut self, i: usize) {
        match self {
            Marks::Word(w) => *w |= 1u64.checked_shl(i as u32).unwrap_or(0),
            Marks::Many(v) => {
                if let Some(b) = v.get_mut(i) {
                    *b = true;
                }
            }
        }
    }

    fn clear(&mut self) {
        match self {
            Marks::Word(w) => *w = 0,
            Marks::Many(v) => v.fill(false),
        }
    }
}

#[async_trait]
impl Engine for TargetSet {
    async fn process(&self, mut req: Request) -> Result<Response, Error> {
        let start = Instant::now();
        let deadline = start.checked_add(self.policy.deadline).unwrap_or(start);
        let max_attempts = self.policy.max_attempts.max(1);
        // Serialise once: every attempt replays the same bytes.
        let _ = req.body.bytes();
        let attempts = match req.extensions.get::<Attempts>() {
            Some(a) => a.clone(),
            None => {
                let a = Attempts::default();
                req.extensions.insert(a.clone());
                a
            }
        };
        // A session another instance served since lands on the same target (bounded by the
        // store's own timeout; a failure leaves the choice to this instance's memory).
        if let Some(shared) = &self.shared
            && let Some(pin) = shared.lookup(&req).await
        {
            req.extensions.insert(pin);
        }
        let mut request_model: Option<Option<&str>> = None;
        let n = self.targets.len();
        let mut round = Round {
            tried: Marks::new(n),
            banned: Marks::new(n),
            attempted: false,
            retry_after: None,
        };
        let mut made = 0u32;
        let mut last_err: Option<Error> = None;
        // The soonest a skipped target said it would be available again.
        let mut soonest: Option<Duration> = None;

        loop {
            if made >= max_attempts || (made > 0 && Instant::now() >= deadline) {
                break;
            }
            // Candidates: eligible, not tried this round, not banned, available.
            let mut candidates = Vec::with_capacity(n);
            for (i, t) in self.targets.iter().enumerate() {
                if !self.eligible[i] || round.tried.get(i) || round.banned.get(i) {
                    continue;
                }
                let model = match &t.model {
                    Some(m) => Some(m.as_str()),
                    None => *request_model
                        .get_or_insert_with(|| req.peek_ref().ok().and_then(|p| p.model)),
                };
                if t.is_available(model) {
                    candidates.push(i);
                } else {
                    round.tried.set(i);
                    attempts.push(skip_record(t));
                    record_skip(&req, t);
                    if let Some(d) = t.available_in(model) {
                        soonest = Some(soonest.map_or(d, |s| s.min(d)));
                    }
                }
            }
            if candidates.is_empty() {
                if !round.attempted {
                    break;
                }
                let wait = round.retry_after.unwrap_or(self.policy.backoff);
                let now = Instant::now();
                if wait > self.policy.max_wait
                    || now.checked_add(wait).is_none_or(|end| end >= deadline)
                {
                    break;
                }
                tracing::debug!(model = %self.name, ?wait, "every target tried; waiting before the next round");
                tokio::time::sleep(wait).await;
                round.tried.clear();
                round.attempted = false;
                round.retry_after = None;
                continue;
            }
            let Some(idx) = self
                .strategy
                .pick(&candidates, &req)
                .filter(|i| candidates.contains(i))
            else {
                break;
            };
            round.tried.set(idx);
            let target = &self.targets[idx];
            made += 1;
            round.attempted = true;
            let mut attempt = req.clone();
            if let Some(m) = &target.model {
                attempt.set_model(m)?;
            }
            let t0 = Instant::now();
            let mut result = target.engine.process(attempt).await;
            if self.policy.wait_first_event {
                result = match result {
                    Ok(resp) => first_event(resp, &target.name, req.protocol).await,
                    Err(e) => Err(e),
                };
            }
            let elapsed = t0.elapsed();
            let outcome = match &result {
                Ok(_) => AttemptOutcome::Success,
                Err(e) if e.is_retryable() => AttemptOutcome::Failed,
                Err(_) => AttemptOutcome::Rejected,
            };
            self.strategy.record(&req, idx, outcome, elapsed);
            if let Some(latency) = &target.latency {
                latency.record(outcome, elapsed);
            }
            attempts.push(AttemptRecord {
                target: target.name.clone(),
                model: target.model.clone(),
                outcome,
                status: Some(match &result {
                    Ok(r) => r.status,
                    Err(e) => e.status(),
                }),
                elapsed,
                error: result.as_ref().err().map(|e| e.message().to_owned()),
            });
            match result {
                Ok(mut resp) => {
                    resp.extensions.insert(attempts.clone());
                    return Ok(resp);
                }
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => {
                    tracing::warn!(
                        model = %self.name,
                        target = %target.name,
                        status = e.status().as_u16(),
                        error = %e,
                        attempt = made,
                        "attempt failed"
                    );
                    if e.kind() == octo_core::ErrorKind::KeyRefused
                        || matches!(e.status().as_u16(), 401 | 403)
                    {
                        round.banned.set(idx);
                    }
                    if let Some(after) = e.retry_after() {
                        round.retry_after = Some(round.retry_after.map_or(after, |r| r.min(after)));
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| self.no_target_error(soonest)))
    }
}

/// Notes a target skipped as unavailable in the request's record.
fn record_skip(req: &Request, t: &Target) {
    if let Some(record) = req.extensions.get::<octo_core::record::RequestRecord>() {
        record.push_attempt(octo_core::record::Attempt {
            backend: t.name.clone(),
            key: None,
            status: None,
            offset_ms: record.elapsed_ms(),
            duration_ms: 0,
            error: Some("skipped: every key is resting or its circuit breaker is open".into()),
            span_id: None,
        });
    }
}

fn skip_record(t: &Target) -> AttemptRecord {
    AttemptRecord {
        target: t.name.clone(),
        model: t.model.clone(),
        outcome: AttemptOutcome::Skipped,
        status: None,
        elapsed: Duration::ZERO,
        error: None,
    }
}

/// Waits for a stream's first event; an error, an in-band error event or an empty stream is a
/// (retryable, for the latter two) failure. Full responses pass unchanged.
async fn first_event(
    resp: Response,
    target: &str,
    format: octo_core::Protocol,
) -> Result<Response, Error> {
    let Response {
        status,
        headers,
        extensions,
        body,
    } = resp;
    let mut stream = match body {
        ResponseBody::Stream(s) => s,
        body @ ResponseBody::Full(_) => {
            return Ok(Response {
                status,
                headers,
                extensions,
                body,
            });
        }
    };
    let first = match stream.next().await {
        Some(Ok(ev)) => ev,
        Some(Err(e)) => return Err(e),
        None => {
            return Err(Error::upstream(format!(
                "target `{target}` ended its stream before the first event"
            )));
        }
    };
    if is_error_event(&first) {
        return Err(Error::upstream_status(
            StatusCode::BAD_GATEWAY,
            format!("target `{target}` sent an error event before any content"),
            UpstreamBody {
                protocol: Some(format),
                body: first.data_body().to_bytes(),
            },
            None,
        ));
    }
    let rest = futures::stream::once(async move { Ok::<Event, Error>(first) }).chain(stream);
    Ok(Response {
        status,
        headers,
        extensions,
        body: ResponseBody::Stream(EventStream::new(rest)),
    })
}

/// An in-band error: an `error` / `response.failed` event (Anthropic, Responses), or unnamed data
/// whose JSON starts with an `error` member (OpenAI Chat, Gemini).
fn is_error_event(ev: &Event) -> bool {
    if matches!(ev.name(), Some("error" | "response.failed")) {
        return true;
    }
    if ev.name().is_some() {
        return false;
    }
    let data = ev.data_body().to_bytes();
    let trimmed = data.trim_ascii_start();
    trimmed
        .strip_prefix(b"{")
        .map(<[u8]>::trim_ascii_start)
        .is_some_and(|rest| rest.starts_with(b"\"error\""))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::balance::test_support::req;
    use crate::breaker::{BreakerConfig, CircuitBreaker};
    use octo_core::{ArcEngine, Body, engine_fn};

    /// A scripted engine: answers from a list of results in turn (then repeats the last one),
    /// counting calls and recording the model each call asked for.
    struct Script {
        calls: AtomicUsize,
        answers: Vec<Answer>,
        models: Mutex<Vec<String>>,
    }

    #[derive(Clone)]
    enum Answer {
        Ok,
        Status(u16, Option<Duration>),
        Refused,
        Stream(Vec<Result<&'static str, u16>>),
        NamedFirst(&'static str),
    }

    impl Script {
        fn new(answers: Vec<Answer>) -> Arc<Self> {
            Arc::new(Script {
                calls: AtomicUsize::new(0),
                answers,
                models: Mutex::new(Vec::new()),
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn status_err(s: u16, retry_after: Option<Duration>) -> Error {
        Error::upstream_status(
            StatusCode::from_u16(s).unwrap(),
            format!("answered {s}"),
            UpstreamBody {
                protocol: None,
                body: Bytes::new(),
            },
            retry_after,
        )
    }

    #[async_trait]
    impl Engine for Script {
        async fn process(&self, req: Request) -> Result<Response, Error> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(m) = req.peek()?.model {
                self.models.lock().unwrap().push(m);
            }
            let answer = self.answers[n.min(self.answers.len() - 1)].clone();
            match answer {
                Answer::Ok => Ok(Response::json(200, Body::from_static(b"{\"ok\":true}"))),
                Answer::Status(s, ra) => Err(status_err(s, ra)),
                Answer::Refused => Err(Error::upstream("connection refused")),
                Answer::Stream(items) => {
                    let items: Vec<Result<Event, Error>> = items
                        .into_iter()
                        .map(|i| match i {
                            Ok(d) => Ok(Event::data(Bytes::from_static(d.as_bytes()))),
                            Err(s) => Err(status_err(s, None)),
                        })
                        .collect();
                    Ok(Response::stream(EventStream::new(futures::stream::iter(
                        items,
                    ))))
                }
                Answer::NamedFirst(name) => Ok(Response::stream(EventStream::iter([
                    Event::named(name, Bytes::from_static(b"{\"type\":\"x\"}")),
                    Event::named("message_stop", Bytes::from_static(b"{}")),
                ]))),
            }
        }
    }

    #[test]
    fn marks_hold_one_flag_per_target_inline_or_in_a_vector() {
        for n in [1, 64, 65, 200] {
            let mut m = Marks::new(n);
            assert!(matches!(m, Marks::Word(_)) == (n <= 64));
            for i in (0..n).step_by(3) {
                m.set(i);
            }
            for i in 0..n {
                assert_eq!(m.get(i), i % 3 == 0, "{n}: {i}");
            }
            assert!(!m.get(n + 70));
            m.clear();
            assert!((0..n).all(|i| !m.get(i)));
        }
    }

    fn target(name: &str, s: &Arc<Script>) -> Target {
        let e: ArcEngine = s.clone();
        Target::new(name, e)
    }

    fn set(targets: Vec<Target>, kind: StrategyKind, policy: RetryPolicy) -> TargetSet {
        TargetSet::builder("m", targets)
            .strategy(kind)
            .retry(policy)
            .seed(1)
            .build()
            .unwrap()
    }

    fn names(resp_or_attempts: &Attempts) -> Vec<(String, AttemptOutcome)> {
        resp_or_attempts
            .snapshot()
            .into_iter()
            .map(|a| (a.target, a.outcome))
            .collect()
    }

    fn tracked(r: &mut Request) -> Attempts {
        let a = Attempts::default();
        r.extensions.insert(a.clone());
        a
    }

    use AttemptOutcome::{Failed, Rejected, Success};

    fn pairs(v: &[(&str, AttemptOutcome)]) -> Vec<(String, AttemptOutcome)> {
        v.iter().map(|(n, o)| ((*n).to_owned(), *o)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn fails_over_on_retryable_errors_and_records_attempts() {
        let a = Script::new(vec![Answer::Refused]);
        let b = Script::new(vec![Answer::Status(503, None)]);
        let c = Script::new(vec![Answer::Ok]);
        let s = set(
            vec![target("a", &a), target("b", &b), target("c", &c)],
            StrategyKind::Failover,
            RetryPolicy::new(5, Duration::from_secs(30)),
        );
        let resp = s.process(req("m")).await.unwrap();
        assert_eq!(resp.status, 200);
        let attempts = resp.extensions.get::<Attempts>().unwrap();
        assert_eq!(
            names(attempts),
            pairs(&[("a", Failed), ("b", Failed), ("c", Success)])
        );
        let recs = attempts.snapshot();
        assert_eq!(recs[1].status, Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(recs[0].error.as_deref(), Some("connection refused"));
        assert_eq!(recs[2].error, None);
    }

    #[tokio::test(start_paused = true)]
    async fn client_errors_are_returned_without_retry() {
        let a = Script::new(vec![Answer::Status(400, None)]);
        let b = Script::new(vec![Answer::Ok]);
        let s = set(
            vec![target("a", &a), target("b", &b)],
            StrategyKind::Failover,
            RetryPolicy::default(),
        );
        let mut r = req("m");
        let attempts = tracked(&mut r);
        let e = s.process(r).await.unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(b.calls(), 0);
        assert_eq!(names(&attempts), pairs(&[("a", Rejected)]));
    }

    #[tokio::test(start_paused = true)]
    async fn attempt_cap_stops_and_returns_the_last_error() {
        let a = Script::new(vec![Answer::Status(500, None)]);
        let b = Script::new(vec![Answer::Status(502, None)]);
        let s = set(
            vec![target("a", &a), target("b", &b)],
            StrategyKind::RoundRobin,
            RetryPolicy::new(5, Duration::from_secs(30)),
        );
        let started = Instant::now();
        let e = s.process(req("m")).await.unwrap_err();
        // a, b, (wait), a, b, (wait), a: the last error is a's.
        assert_eq!((a.calls(), b.calls()), (3, 2));
        assert_eq!(e.status(), 500);
        // Two waits of the default backoff between the three rounds.
        assert_eq!(started.elapsed(), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_stops_new_attempts_but_not_the_one_in_flight() {
        struct Slow;
        #[async_trait]
        impl Engine for Slow {
            async fn process(&self, _req: Request) -> Result<Response, Error> {
                tokio::time::sleep(Duration::from_secs(4)).await;
                Err(Error::timeout("slow"))
            }
        }
        let s = TargetSet::builder("m", vec![Target::new("slow", Arc::new(Slow))])
            .retry(RetryPolicy {
                max_attempts: 100,
                deadline: Duration::from_secs(7),
                backoff: Duration::from_secs(1),
                max_wait: Duration::from_secs(2),
                wait_first_event: true,
            })
            .build()
            .unwrap();
        let mut r = req("m");
        let attempts = tracked(&mut r);
        let started = Instant::now();
        let e = s.process(r).await.unwrap_err();
        assert_eq!(e.status(), 504);
        // Attempt 1 runs 0–4 s; a 1 s wait; attempt 2 starts at 5 s (before the 7 s deadline) and
        // is not cut by it: it fails at 9 s. No third attempt starts after the deadline.
        assert_eq!(attempts.len(), 2);
        assert_eq!(started.elapsed(), Duration::from_secs(9));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_waited_for_only_when_no_other_target_is_left() {
        let a = Script::new(vec![
            Answer::Status(429, Some(Duration::from_secs(2))),
            Answer::Ok,
        ]);
        let b = Script::new(vec![Answer::Status(429, Some(Duration::from_secs(3)))]);
        let s = set(
            vec![target("a", &a), target("b", &b)],
            StrategyKind::Failover,
            RetryPolicy::new(3, Duration::from_secs(30)),
        );
        let started = Instant::now();
        let resp = s.process(req("m")).await.unwrap();
        assert_eq!(resp.status, 200);
        // a (429, 2 s) → b at once (429, 3 s) → wait the smaller retry-after → a again.
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!((a.calls(), b.calls()), (2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_retry_after_goes_back_to_the_client_at_once() {
        let a = Script::new(vec![Answer::Status(429, Some(Duration::from_secs(7)))]);
        let s = set(
            vec![target("a", &a)],
            StrategyKind::WeightedRoundRobin,
            RetryPolicy::new(3, Duration::from_secs(60)),
        );
        let started = Instant::now();
        let e = s.process(req("m")).await.unwrap_err();
        assert_eq!(e.status(), 429);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(a.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_beyond_the_deadline_ends_the_request_at_once() {
        let a = Script::new(vec![Answer::Status(429, Some(Duration::from_secs(60)))]);
        let s = set(
            vec![target("a", &a)],
            StrategyKind::WeightedRoundRobin,
            RetryPolicy::new(3, Duration::from_secs(30)),
        );
        let started = Instant::now();
        let e = s.process(req("m")).await.unwrap_err();
        assert_eq!(e.status(), 429);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(60)));
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(a.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn each_attempt_gets_a_fresh_copy_renamed_for_its_target() {
        struct Mutating(Arc<Mutex<Vec<Bytes>>>);
        #[async_trait]
        impl Engine for Mutating {
            async fn process(&self, mut req: Request) -> Result<Response, Error> {
                self.0.lock().unwrap().push(req.body.bytes());
                // Change the copy: the next attempt must not see this.
                req.body.json_mut()?["poison"] = true.into();
                req.headers.insert("x-poison", "1".parse().unwrap());
                Err(Error::upstream("down"))
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ok = Script::new(vec![Answer::Ok]);
        let s = set(
            vec![
                Target::new("a", Arc::new(Mutating(seen.clone()))).with_model("up-a"),
                target("b", &ok).with_model("up-b"),
            ],
            StrategyKind::Failover,
            RetryPolicy::default(),
        );
        let mut r = req("m");
        r.body = Body::from_json(serde_json::json!({"model": "m", "messages": []}));
        s.process(r).await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(&seen[0][..], br#"{"messages":[],"model":"up-a"}"#);
        assert_eq!(*ok.models.lock().unwrap(), ["up-b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_failing_before_its_first_event_fails_over() {
        let a = Script::new(vec![Answer::Stream(vec![Err(502)])]);
        let b = Script::new(vec![Answer::Stream(vec![])]);
        let c = Script::new(vec![Answer::NamedFirst("error")]);
        let d = Script::new(vec![Answer::Stream(vec![Ok("1"), Err(500)])]);
        let s = set(
            vec![
                target("a", &a),
                target("b", &b),
                target("c", &c),
                target("d", &d),
            ],
            StrategyKind::Failover,
            RetryPolicy::new(10, Duration::from_secs(30)),
        );
        let mut r = req("m");
        let attempts = tracked(&mut r);
        let resp = s.process(r).await.unwrap();
        assert_eq!(
            names(&attempts),
            pairs(&[("a", Failed), ("b", Failed), ("c", Failed), ("d", Success)])
        );
        // d's first event reached the caller: its later failure is the caller's, never retried.
        let ResponseBody::Stream(mut st) = resp.body else {
            panic!("a stream")
        };
        assert_eq!(
            &st.next().await.unwrap().unwrap().data_body().to_bytes()[..],
            b"1"
        );
        assert_eq!(st.next().await.unwrap().unwrap_err().status(), 500);
        assert!(st.next().await.is_none());
        assert_eq!(d.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn without_waiting_for_the_first_event_streams_commit_on_their_head() {
        let a = Script::new(vec![Answer::Stream(vec![Err(502)])]);
        let b = Script::new(vec![Answer::Ok]);
        let s = set(
            vec![target("a", &a), target("b", &b)],
            StrategyKind::Failover,
            RetryPolicy {
                wait_first_event: false,
                ..RetryPolicy::default()
            },
        );
        let resp = s.process(req("m")).await.unwrap();
        assert!(resp.is_stream());
        assert_eq!(b.calls(), 0);
    }

    #[test]
    fn in_band_error_events_are_recognised() {
        assert!(is_error_event(&Event::named(
            "error",
            Bytes::from_static(b"{}")
        )));
        assert!(is_error_event(&Event::named(
            "response.failed",
            Bytes::from_static(b"{}")
        )));
        assert!(is_error_event(&Event::data(Bytes::from_static(
            b" { \"error\": {\"message\":\"x\"}}"
        ))));
        assert!(!is_error_event(&Event::data(Bytes::from_static(
            b"{\"choices\":[],\"error\":null}"
        ))));
        assert!(!is_error_event(&Event::named(
            "message_start",
            Bytes::from_static(b"{\"error\":1}")
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_available_is_a_503_naming_the_model() {
        let a = Script::new(vec![Answer::Ok]);
        let breaker = Arc::new(CircuitBreaker::new(BreakerConfig {
            failure_threshold: 1,
            ..BreakerConfig::default()
        }));
        breaker.try_acquire().unwrap().failure();
        let s = set(
            vec![target("a", &a).with_availability(breaker)],
            StrategyKind::RoundRobin,
            RetryPolicy::default(),
        );
        assert!(!s.is_available(None));
        assert_eq!(s.available_in(None), Some(Duration::from_secs(10)));
        let e = s.process(req("m")).await.unwrap_err();
        assert_eq!(e.status(), 503);
        assert!(e.is_retryable());
        // The wait until the breaker lets a probe through becomes the retry-after.
        assert_eq!(e.retry_after(), Some(Duration::from_secs(10)));
        assert!(e.message().contains("model `m`"), "{}", e.message());
        assert_eq!(a.calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn refused_keys_are_not_retried_within_a_request() {
        let a = Script::new(vec![Answer::Status(401, None)]);
        let b = Script::new(vec![Answer::Status(503, None)]);
        let s = set(
            vec![
                Target::new("a", {
                    let e: ArcEngine = Arc::new(engine_fn({
                        let a = a.clone();
                        move |r| {
                            let a = a.clone();
                            async move { a.process(r).await.map_err(|e| e.with_retryable(true)) }
                        }
                    }));
                    e
                }),
                target("b", &b),
            ],
            StrategyKind::Failover,
            RetryPolicy::new(4, Duration::from_secs(30)),
        );
        let e = s.process(req("m")).await.unwrap_err();
        assert_eq!(e.status(), 503);
        assert_eq!((a.calls(), b.calls()), (1, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn drained_targets_are_never_used() {
        let a = Script::new(vec![Answer::Ok]);
        let b = Script::new(vec![Answer::Ok]);
        let s = set(
            vec![
                target("a", &a).with_weight(0),
                target("b", &b).with_weight(1),
            ],
            StrategyKind::RoundRobin,
            RetryPolicy::default(),
        );
        for _ in 0..4 {
            s.process(req("m")).await.unwrap();
        }
        assert_eq!((a.calls(), b.calls()), (0, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn weighted_round_robin_spreads_requests_in_octollm_order() {
        let scripts: Vec<Arc<Script>> = (0..3).map(|_| Script::new(vec![Answer::Ok])).collect();
        let s = set(
            vec![
                target("a", &scripts[0]).with_weight(5),
                target("b", &scripts[1]).with_weight(1),
                target("c", &scripts[2]).with_weight(1),
            ],
            StrategyKind::WeightedRoundRobin,
            RetryPolicy::default(),
        );
        let mut order = String::new();
        for _ in 0..7 {
            let resp = s.process(req("m")).await.unwrap();
            order.push_str(&resp.extensions.get::<Attempts>().unwrap().snapshot()[0].target);
        }
        assert_eq!(order, "aabacaa");
    }

    #[tokio::test(start_paused = true)]
    async fn lowest_latency_learns_from_real_time_to_first_byte() {
        fn delayed(ms: u64) -> ArcEngine {
            Arc::new(engine_fn(move |_r| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Response::json(200, Body::from_static(b"{}")))
            }))
        }
        let s = set(
            vec![
                Target::new("slow", delayed(500)),
                Target::new("fast", delayed(20)),
                Target::new("mid", delayed(100)),
            ],
            StrategyKind::LowestLatency,
            RetryPolicy::default(),
        );
        let mut counts = std::collections::HashMap::<String, usize>::new();
        for _ in 0..300 {
            let resp = s.process(req("m")).await.unwrap();
            let t = resp.extensions.get::<Attempts>().unwrap().snapshot()[0]
                .target
                .clone();
            *counts.entry(t).or_default() += 1;
        }
        // Each explored once; then the slow one never wins a pair.
        assert_eq!(counts.get("slow"), Some(&1), "{counts:?}");
        assert!(counts["fast"] > counts["mid"], "{counts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn sticky_sessions_pin_a_client_to_its_target() {
        let scripts: Vec<Arc<Script>> = (0..3).map(|_| Script::new(vec![Answer::Ok])).collect();
        let s = TargetSet::builder(
            "m",
            scripts
                .iter()
                .enumerate()
                .map(|(i, sc)| target(&i.to_string(), sc))
                .collect(),
        )
        .strategy(StrategyKind::RoundRobin)
        .sticky(Duration::from_secs(300))
        .build()
        .unwrap();
        let mut r = req("m");
        r.extensions
            .insert(crate::balance::StickyKey("alice".into()));
        for _ in 0..5 {
            s.process(r.clone()).await.unwrap();
        }
        assert_eq!(scripts[0].calls(), 5);
        // Others still rotate.
        s.process(req("m")).await.unwrap();
        s.process(req("m")).await.unwrap();
        assert_eq!((scripts[1].calls(), scripts[2].calls()), (1, 1));
    }

    /// A [`SessionStore`] in memory, shared by two "instances" (two sets) in one test; `down`
    /// makes it answer [`Remembered::Unknown`] and drop writes, as a failing Redis does.
    #[derive(Debug, Default)]
    struct MemSessions {
        map: Mutex<std::collections::HashMap<String, String>>,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl SessionStore for MemSessions {
        async fn get(&self, key: &str) -> crate::balance::Remembered {
            if self.down.load(Ordering::SeqCst) {
                return crate::balance::Remembered::Unknown;
            }
            match self.map.lock().unwrap().get(key) {
                Some(v) => crate::balance::Remembered::Value(v.clone()),
                None => crate::balance::Remembered::Nothing,
            }
        }
        fn put(&self, key: String, value: String, _ttl: Duration) {
            if !self.down.load(Ordering::SeqCst) {
                self.map.lock().unwrap().insert(key, value);
            }
        }
        fn forget(&self, key: String, value: String) {
            let mut map = self.map.lock().unwrap();
            if map.get(&key) == Some(&value) {
                map.remove(&key);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sticky_sessions_are_shared_through_a_session_store() {
        let store = Arc::new(MemSessions::default());
        let instance = |answers: Vec<Vec<Answer>>| {
            let scripts: Vec<Arc<Script>> = answers.into_iter().map(Script::new).collect();
            let set = TargetSet::builder(
                "m",
                scripts
                    .iter()
                    .enumerate()
                    .map(|(i, sc)| target(&format!("t{i}"), sc))
                    .collect(),
            )
            .strategy(StrategyKind::RoundRobin)
            .sticky(Duration::from_secs(300))
            .session_store(store.clone())
            .build()
            .unwrap();
            (set, scripts)
        };
        let ok = || vec![Answer::Ok];
        let (one, one_scripts) = instance(vec![ok(), ok(), ok()]);
        let (two, two_scripts) = instance(vec![ok(), vec![Answer::Refused, Answer::Ok], ok()]);
        let session = |key: &str| {
            let mut r = req("m");
            r.extensions.insert(crate::balance::StickyKey(key.into()));
            r
        };
        // On the first instance: `warm` is pinned to t0, `alice` to t1 (round robin).
        one.process(session("warm")).await.unwrap();
        one.process(session("alice")).await.unwrap();
        assert_eq!(store.map.lock().unwrap().len(), 2);
        // The second instance, whose own rotation would start at t0, serves alice on t1 too.
        // Its first attempt there fails: the shared pin is forgotten and alice moves on (to t0,
        // this instance's rotation), pinned there for both instances.
        two.process(session("alice")).await.unwrap();
        assert_eq!(two_scripts[1].calls(), 1, "alice went to her pinned target");
        assert_eq!(two_scripts[0].calls(), 1, "and failed over to another");
        for _ in 0..3 {
            two.process(session("alice")).await.unwrap();
        }
        assert_eq!(two_scripts[0].calls(), 4);
        // The first instance follows the move, though its own memory still says t1.
        one.process(session("alice")).await.unwrap();
        assert_eq!(one_scripts[0].calls(), 2);
        let (three, three_scripts) = instance(vec![ok(), ok(), ok()]);
        three.process(session("warm")).await.unwrap();
        three.process(session("alice")).await.unwrap();
        assert_eq!(
            three_scripts.iter().map(|s| s.calls()).collect::<Vec<_>>(),
            [2, 0, 0],
            "a third instance reads both pins"
        );
        // The store fails: each instance keeps using its own memory of the session.
        store.down.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            three.process(session("alice")).await.unwrap();
        }
        assert_eq!(three_scripts[0].calls(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn distribution_of_each_strategy_over_two_targets() {
        for (kind, want_a) in [
            (StrategyKind::WeightedRoundRobin, 750),
            (StrategyKind::Random, 750),
            (StrategyKind::RoundRobin, 500),
            (StrategyKind::Failover, 1000),
        ] {
            let a = Script::new(vec![Answer::Ok]);
            let b = Script::new(vec![Answer::Ok]);
            let s = set(
                vec![
                    target("a", &a).with_weight(3),
                    target("b", &b).with_weight(1),
                ],
                kind,
                RetryPolicy::default(),
            );
            for _ in 0..1000 {
                s.process(req("m")).await.unwrap();
            }
            assert!(
                a.calls().abs_diff(want_a) <= 40,
                "{kind}: a got {}",
                a.calls()
            );
            assert_eq!(a.calls() + b.calls(), 1000);
        }
    }
}
