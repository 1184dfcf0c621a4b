//! Sticky sessions: a client keeps the target that last served it, for a while.
//!
//! Prompt caches live on the upstream: a conversation that returns to the same backend (and key)
//! pays for its shared prefix once. [`Sticky`] wraps any strategy and remembers, per (client, model),
//! the target of the last **successful** attempt. While that memory is younger than the TTL and the
//! target is still a candidate, it is picked again; otherwise the inner strategy decides (and its
//! counters move as usual).
//!
//! - **The client** is the request's [`StickyKey`] extension — the gateway's auth engine inserts
//!   the caller's identity (`org/key`, plus `/<x-session-id>` when the client sent one) — else the
//!   `x-session-id` header ([`STICKY_HEADER`]), else the request is not sticky.
//! - **The model** is the one the request names (body `model`, or Gemini's path).
//! - Only a success writes the memory and restarts its TTL; reads do not extend it. A failure on
//!   the remembered target forgets it, so the retry and later requests move on.
//! - Expired entries are dropped lazily; the table is capped at 100 000 sessions (beyond that, new
//!   sessions are simply not remembered until old ones expire).
//!
//! # Shared by several instances
//!
//! Behind a load balancer, a client's next request may land on another gateway instance, whose
//! memory does not know the session. With a [`SessionStore`] ([`SharedSessions`], e.g. the
//! [`RedisSessions`](super::redis_sessions::RedisSessions) of the `redis` section) every instance
//! reads and writes the same memory: the [`TargetSet`](super::TargetSet) looks the session up
//! once per request before picking (bounded by the store's short timeout), and a success or a
//! failure updates it in the background (never on the request's path). The store keeps the
//! target's **index and name**, so instances with the same config agree on the target.
//!
//! A store that fails or is slow is not a reason to refuse or delay a request: the instance uses
//! its own memory (which it keeps as well), as it would without a store. The pin is a preference
//! (an upstream prompt cache), not a limit, so `redis.on_error` does not apply to it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use octo_core::Request;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{AttemptOutcome, Strategy};

/// The header read when the request has no [`StickyKey`].
pub const STICKY_HEADER: &str = "x-session-id";

const MAX_SESSIONS: usize = 100_000;

/// Sessions by (sticky key, model): the target index and when it last served the session.
/// Shared with the next graph's set by [`BalanceMemory`](super::BalanceMemory).
pub(crate) type SessionMap = Mutex<HashMap<(String, String), (usize, Instant)>>;

/// The client identity sessions stick by, as a request extension.
///
/// ```
/// use octo_core::{Protocol, Body, Request};
/// use octo_engines::balance::StickyKey;
///
/// let mut req = Request::post(Protocol::Anthropic, "/v1/messages", Body::from_static(b"{}"));
/// req.extensions.insert(StickyKey("acme/alice".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StickyKey(pub String);

impl StickyKey {
    /// The request's sticky key: its [`StickyKey`] extension, else its `x-session-id` header.
    pub fn of(req: &Request) -> Option<String> {
        if let Some(k) = req.extensions.get::<StickyKey>() {
            return Some(k.0.clone());
        }
        req.headers
            .get(STICKY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }
}

/// What a [`SessionStore`] knows of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remembered {
    /// The session is pinned to this value (written by [`SessionStore::put`]).
    Value(String),
    /// The store has no (unexpired) pin for the session.
    Nothing,
    /// The store failed, is slow or is resting after a failure: use the local memory.
    Unknown,
}

/// A memory of sticky sessions shared by several gateway instances; see the
/// [module docs](self#shared-by-several-instances).
///
/// `key` is an opaque, fixed-length key of the session (the balancer's scope, the model and the
/// client's sticky key, hashed); the value is opaque to the store.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// The session's pin, within the store's own short timeout; never an error for the caller.
    async fn get(&self, key: &str) -> Remembered;
    /// Pins the session to `value` for `ttl`, in the background (returns at once).
    fn put(&self, key: String, value: String, ttl: Duration);
    /// Forgets the session if it is still pinned to `value`, in the background.
    fn forget(&self, key: String, value: String);
}

/// A [`SessionStore`] as one balancer uses it: its scope (the model, say) and its targets' names.
#[derive(Debug)]
pub struct SharedSessions {
    store: Arc<dyn SessionStore>,
    scope: String,
    names: Vec<String>,
}

/// The target a [`SessionStore`] remembered for this request (a request extension the
/// [`TargetSet`](super::TargetSet) inserts before picking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SharedPin(pub(crate) usize);

impl SharedSessions {
    /// `store` as used by the balancer `scope` (the same on every instance: the model's name)
    /// over targets named `names` (in configuration order).
    pub fn new(store: Arc<dyn SessionStore>, scope: impl Into<String>, names: Vec<String>) -> Self {
        SharedSessions {
            store,
            scope: scope.into(),
            names,
        }
    }

    /// The store key of a session: SHA-256 of scope, model and client key (fixed length, whatever
    /// the client's `x-session-id`).
    fn key(&self, (client, model): &(String, String)) -> String {
        let mut h = Sha256::new();
        for part in [self.scope.as_str(), model.as_str(), client.as_str()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn value(&self, index: usize) -> String {
        format!(
            "{index}:{}",
            self.names.get(index).map_or("", String::as_str)
        )
    }

    /// The target a stored value names: its index when the name there matches, else the first
    /// target of that name (configs that differ in order), else none.
    fn resolve(&self, value: &str) -> Option<usize> {
        let (i, name) = value.split_once(':')?;
        if let Ok(i) = i.parse::<usize>()
            && self.names.get(i).is_some_and(|n| n == name)
        {
            return Some(i);
        }
        self.names.iter().position(|n| n == name)
    }

    /// Looks the request's session up in the store; `None` when the request is not sticky, the
    /// store has no pin, or it failed (the local memory decides then).
    pub(crate) async fn lookup(&self, req: &Request) -> Option<SharedPin> {
        let session = session_of(req)?;
        match self.store.get(&self.key(&session)).await {
            Remembered::Value(v) => self.resolve(&v).map(SharedPin),
            Remembered::Nothing | Remembered::Unknown => None,
        }
    }
}

/// Session stickiness around any strategy; see the [module docs](self).
#[derive(Debug)]
pub struct Sticky<S> {
    inner: S,
    ttl: Duration,
    sessions: Arc<SessionMap>,
    shared: Option<Arc<SharedSessions>>,
}

/// The session of a request: (sticky key, model), or `None` when it is not sticky.
fn session_of(req: &Request) -> Option<(String, String)> {
    let key = StickyKey::of(req)?;
    let model = req.peek().ok().and_then(|p| p.model).unwrap_or_default();
    Some((key, model))
}

impl<S: Strategy> Sticky<S> {
    /// Wraps `inner`, remembering each session's target for `ttl`.
    pub fn new(inner: S, ttl: Duration) -> Self {
        Sticky {
            inner,
            ttl,
            sessions: Arc::default(),
            shared: None,
        }
    }

    /// Wraps `inner` with the session table `sessions` (one kept from an earlier graph).
    pub(crate) fn with_sessions(inner: S, ttl: Duration, sessions: Arc<SessionMap>) -> Self {
        Sticky {
            inner,
            ttl,
            sessions,
            shared: None,
        }
    }

    /// Also remembers sessions in `shared` (read by the [`TargetSet`](super::TargetSet) before
    /// each pick, written here after each attempt).
    pub fn with_shared(mut self, shared: Arc<SharedSessions>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The wrapped strategy.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many sessions are remembered (expired ones included until swept).
    pub fn sessions(&self) -> usize {
        self.sessions.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn session(req: &Request) -> Option<(String, String)> {
        session_of(req)
    }
}

impl<S: Strategy> Strategy for Sticky<S> {
    fn pick(&self, candidates: &[usize], req: &Request) -> Option<usize> {
        // The shared memory first: another instance may have served the session since.
        if let Some(&SharedPin(i)) = req.extensions.get::<SharedPin>()
            && candidates.binary_search(&i).is_ok()
        {
            return Some(i);
        }
        if let Some(session) = Self::session(req) {
            let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&session) {
                Some(&(i, at))
                    if at.elapsed() < self.ttl && candidates.binary_search(&i).is_ok() =>
                {
                    return Some(i);
                }
                Some(&(_, at)) if at.elapsed() >= self.ttl => {
                    map.remove(&session);
                }
                _ => {}
            }
        }
        self.inner.pick(candidates, req)
    }

    fn record(&self, req: &Request, index: usize, outcome: AttemptOutcome, elapsed: Duration) {
        self.inner.record(req, index, outcome, elapsed);
        let Some(session) = Self::session(req) else {
            return;
        };
        if let Some(shared) = &self.shared {
            match outcome {
                AttemptOutcome::Success => {
                    shared
                        .store
                        .put(shared.key(&session), shared.value(index), self.ttl);
                }
                AttemptOutcome::Failed
                    if req.extensions.get::<SharedPin>() == Some(&SharedPin(index)) =>
                {
                    shared
                        .store
                        .forget(shared.key(&session), shared.value(index));
                }
                _ => {}
            }
        }
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            AttemptOutcome::Success => {
                if map.len() >= MAX_SESSIONS && !map.contains_key(&session) {
                    let ttl = self.ttl;
                    map.retain(|_, (_, at)| at.elapsed() < ttl);
                    if map.len() >= MAX_SESSIONS {
                        return;
                    }
                }
                map.insert(session, (index, Instant::now()));
            }
            AttemptOutcome::Failed => {
                if map.get(&session).is_some_and(|&(i, _)| i == index) {
                    map.remove(&session);
                }
            }
            AttemptOutcome::Rejected | AttemptOutcome::Skipped => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::RoundRobin;
    use crate::balance::test_support::req;

    fn with_key(model: &str, key: &str) -> Request {
        let mut r = req(model);
        r.extensions.insert(StickyKey(key.into()));
        r
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_keeps_its_target_until_the_ttl() {
        let s = Sticky::new(RoundRobin::new(3), Duration::from_secs(60));
        let alice = with_key("m", "alice");
        let first = s.pick(&[0, 1, 2], &alice).unwrap();
        s.record(&alice, first, AttemptOutcome::Success, Duration::ZERO);
        for _ in 0..5 {
            assert_eq!(s.pick(&[0, 1, 2], &alice), Some(first));
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        // 50 s since the success: reads did not extend it; 10 more and it has expired.
        tokio::time::advance(Duration::from_secs(10)).await;
        let next = s.pick(&[0, 1, 2], &alice).unwrap();
        assert_ne!(next, first);
        assert_eq!(s.sessions(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_are_per_key_and_model() {
        let s = Sticky::new(RoundRobin::new(3), Duration::from_secs(60));
        let a = with_key("m", "alice");
        s.record(&a, 2, AttemptOutcome::Success, Duration::ZERO);
        assert_eq!(s.pick(&[0, 1, 2], &a), Some(2));
        // Another model, another client, or no key at all: the inner rotation decides.
        assert_eq!(s.pick(&[0, 1, 2], &with_key("other", "alice")), Some(0));
        assert_eq!(s.pick(&[0, 1, 2], &with_key("m", "bob")), Some(1));
        assert_eq!(s.pick(&[0, 1, 2], &req("m")), Some(2));
        // The header works when there is no extension.
        let mut h = req("m");
        h.headers.insert(STICKY_HEADER, "alice".parse().unwrap());
        assert_eq!(s.pick(&[0, 1, 2], &h), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn failure_or_exclusion_moves_the_session() {
        let s = Sticky::new(RoundRobin::new(2), Duration::from_secs(60));
        let a = with_key("m", "alice");
        s.record(&a, 1, AttemptOutcome::Success, Duration::ZERO);
        // Excluded (already tried this request): the inner strategy picks among the rest.
        assert_eq!(s.pick(&[0], &a), Some(0));
        // A failure on the remembered target forgets it; a success elsewhere re-pins.
        s.record(&a, 1, AttemptOutcome::Failed, Duration::ZERO);
        assert_eq!(s.sessions(), 0);
        s.record(&a, 0, AttemptOutcome::Success, Duration::ZERO);
        assert_eq!(s.pick(&[0, 1], &a), Some(0));
        // A failure on another target leaves the memory alone.
        s.record(&a, 1, AttemptOutcome::Failed, Duration::ZERO);
        assert_eq!(s.pick(&[0, 1], &a), Some(0));
    }
}
