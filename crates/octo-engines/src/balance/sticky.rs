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

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use octo_core::Request;
use tokio::time::Instant;

use super::{AttemptOutcome, Strategy};

/// The header read when the request has no [`StickyKey`].
pub const STICKY_HEADER: &str = "x-session-id";

const MAX_SESSIONS: usize = 100_000;

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

/// Session stickiness around any strategy; see the [module docs](self).
#[derive(Debug)]
pub struct Sticky<S> {
    inner: S,
    ttl: Duration,
    sessions: Mutex<HashMap<(String, String), (usize, Instant)>>,
}

impl<S: Strategy> Sticky<S> {
    /// Wraps `inner`, remembering each session's target for `ttl`.
    pub fn new(inner: S, ttl: Duration) -> Self {
        Sticky {
            inner,
            ttl,
            sessions: Mutex::new(HashMap::new()),
        }
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
        let key = StickyKey::of(req)?;
        let model = req.peek().ok().and_then(|p| p.model).unwrap_or_default();
        Some((key, model))
    }
}

impl<S: Strategy> Strategy for Sticky<S> {
    fn pick(&self, candidates: &[usize], req: &Request) -> Option<usize> {
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
