//! Balancer state that outlives the graph it was built in.
//!
//! The server rebuilds its whole engine graph when the config changes — a reload, but also a key
//! or a model created through the admin API. Without this module every [`TargetSet`] would start
//! afresh: sticky sessions forgotten (a conversation moved off the upstream holding its prompt
//! cache), round-robin rotations back at the first target, smooth-WRR current weights zeroed; and
//! a model's `max_concurrency` would count zero requests in flight while the old graph's streams
//! are still running, admitting up to twice the limit.
//!
//! A [`BalanceMemory`] (the server keeps one for the process, beside its backend registry) holds
//! that state by *scope* — the set's key path in the config, such as `models.gpt.targets` — and a
//! set built with [`TargetSetBuilder::remember`](super::TargetSetBuilder::remember) takes it over:
//!
//! - the **same targets** (backend name, upstream model, weight and priority, in order) and the
//!   same strategy: the strategy itself (counters, current weights, random state) and the session
//!   table are shared with the previous graph, so requests still in flight on the old graph and
//!   new ones on the new graph count together;
//! - **different targets**: a fresh strategy, and a new session table holding the old sessions
//!   whose target (backend name and upstream model) is still in the list, at its new position;
//!   sessions on a removed target are dropped.
//!
//! [`BalanceMemory::slots`] does the same for a concurrency limit's slots: the requests in flight
//! stay counted, and a changed limit applies to them (see [`Slots::resize`]).
//!
//! State for a scope that is gone (a model deleted through the admin API, a rule removed) is
//! dropped by [`BalanceMemory::sweep`], which the server calls once a graph is in force: it keeps
//! the scopes that graph (and any build since the last sweep) asked for, so a gateway whose models
//! come and go does not accumulate the session tables of models it no longer has.
//!
//! [`TargetSet`]: super::TargetSet

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::sticky::SessionMap;
use super::{Strategy, StrategyKind, Target};
use crate::limit::Slots;

/// What identifies a target for carrying state over: backend name, upstream model, weight,
/// priority.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TargetId {
    name: String,
    model: Option<String>,
    weight: u32,
    priority: i32,
}

impl TargetId {
    fn of(t: &Target) -> Self {
        TargetId {
            name: t.name.clone(),
            model: t.model.clone(),
            weight: t.weight,
            priority: t.priority,
        }
    }

    /// The same backend and upstream model (weights may differ).
    fn same_place(&self, other: &TargetId) -> bool {
        self.name == other.name && self.model == other.model
    }
}

/// One set's state.
struct Kept {
    targets: Vec<TargetId>,
    kind: StrategyKind,
    strategy: Arc<dyn Strategy>,
    sessions: Arc<SessionMap>,
}

/// Balancer state by scope, kept across graph rebuilds; see the [module docs](self).
#[derive(Default)]
pub struct BalanceMemory {
    sets: Mutex<HashMap<String, Kept>>,
    slots: Mutex<HashMap<String, Arc<Slots>>>,
    /// Scopes asked for since the last [`sweep`](Self::sweep).
    touched: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for BalanceMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sets = self.sets.lock().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("BalanceMemory")
            .field("sets", &sets)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BalanceMemory {
    /// An empty memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The strategy and session table for the set `scope` over `targets` with `kind`: the kept
    /// ones when the targets and kind are the same, else `build()`'s strategy and the kept
    /// sessions moved to the new positions of their targets; see the [module docs](self).
    pub(crate) fn carry(
        &self,
        scope: &str,
        targets: &[Target],
        kind: StrategyKind,
        build: impl FnOnce() -> Box<dyn Strategy>,
    ) -> (Arc<dyn Strategy>, Arc<SessionMap>) {
        let ids: Vec<TargetId> = targets.iter().map(TargetId::of).collect();
        self.touch(scope);
        let mut sets = lock(&self.sets);
        if let Some(k) = sets.get(scope)
            && k.kind == kind
            && k.targets == ids
        {
            return (k.strategy.clone(), k.sessions.clone());
        }
        let sessions = Arc::new(SessionMap::default());
        if let Some(k) = sets.get(scope) {
            let old = lock(&k.sessions);
            let mut new = lock(&sessions);
            for (session, &(i, at)) in old.iter() {
                let Some(was) = k.targets.get(i) else {
                    continue;
                };
                if let Some(j) = ids.iter().position(|t| t.same_place(was)) {
                    new.insert(session.clone(), (j, at));
                }
            }
        }
        let strategy: Arc<dyn Strategy> = Arc::from(build());
        sets.insert(
            scope.to_owned(),
            Kept {
                targets: ids,
                kind,
                strategy: strategy.clone(),
                sessions: sessions.clone(),
            },
        );
        (strategy, sessions)
    }

    /// The slots of the concurrency limit `scope`, now limited to `max`: the kept ones (their
    /// requests in flight still counted) resized to `max`, else new ones.
    pub fn slots(&self, scope: &str, max: usize) -> Arc<Slots> {
        self.touch(scope);
        let mut slots = lock(&self.slots);
        match slots.get(scope) {
            Some(s) => {
                s.resize(max);
                s.clone()
            }
            None => {
                let s = Slots::new(max);
                slots.insert(scope.to_owned(), s.clone());
                s
            }
        }
    }

    fn touch(&self, scope: &str) {
        let mut touched = lock(&self.touched);
        if !touched.contains(scope) {
            touched.insert(scope.to_owned());
        }
    }

    /// Drops the state of every scope not asked for since the last sweep. Call it once the graph
    /// just built is in force: the scopes of models and rules that are gone are forgotten, while
    /// a graph still serving keeps its own references to what it uses.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use octo_engines::balance::BalanceMemory;
    ///
    /// let memory = BalanceMemory::new();
    /// // The graph put in force asked for its scopes while it was built…
    /// let slots = memory.slots("models.m.max_concurrency", 4);
    /// memory.sweep(); // …so they are kept.
    /// // The next graph has no model `m`: nothing asked for its scope, and the sweep drops it.
    /// memory.sweep();
    /// assert!(!Arc::ptr_eq(&slots, &memory.slots("models.m.max_concurrency", 4)));
    /// ```
    pub fn sweep(&self) {
        let touched = std::mem::take(&mut *lock(&self.touched));
        lock(&self.sets).retain(|scope, _| touched.contains(scope));
        lock(&self.slots).retain(|scope, _| touched.contains(scope));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::req;
    use octo_core::{Body, Response, engine_fn};

    fn targets(list: &[(&str, &str)]) -> Vec<Target> {
        let engine: octo_core::ArcEngine = Arc::new(engine_fn(|_r| async {
            Ok(Response::json(200, Body::from_static(b"{}")))
        }));
        list.iter()
            .map(|(name, model)| Target::new(*name, engine.clone()).with_model(*model))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_targets_share_state_and_changed_ones_keep_their_sessions() {
        let m = BalanceMemory::new();
        let kind = StrategyKind::RoundRobin;
        let ab = targets(&[("a", "x"), ("b", "y")]);
        let (s1, sessions1) = m.carry("models.m.targets", &ab, kind, || kind.build(&ab, 1));
        assert_eq!(s1.pick(&[0, 1], &req("m")), Some(0));
        let now = tokio::time::Instant::now();
        lock(&sessions1).insert(("alice".into(), "m".into()), (1, now));
        lock(&sessions1).insert(("bob".into(), "m".into()), (0, now));
        // Same targets: the same rotation (at 1) and table.
        let (s2, sessions2) = m.carry("models.m.targets", &ab, kind, || unreachable!());
        assert!(Arc::ptr_eq(&sessions1, &sessions2));
        assert_eq!(s2.pick(&[0, 1], &req("m")), Some(1));
        // Another scope is another balancer.
        let (_, other) = m.carry("models.n.targets", &ab, kind, || kind.build(&ab, 1));
        assert!(lock(&other).is_empty());
        // `a` removed, `c` added after `b`: alice's pin on b moves to b's new index, bob's on
        // a is dropped.
        let cb = targets(&[("b", "y"), ("c", "z")]);
        let (_, sessions3) = m.carry("models.m.targets", &cb, kind, || kind.build(&cb, 1));
        let table = lock(&sessions3);
        assert_eq!(table.len(), 1);
        assert_eq!(table[&("alice".to_owned(), "m".to_owned())], (0, now));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_forgets_the_scopes_the_last_graph_did_not_ask_for() {
        let m = BalanceMemory::new();
        let kind = StrategyKind::RoundRobin;
        let ab = targets(&[("a", "x"), ("b", "y")]);
        let (_, kept) = m.carry("models.kept.targets", &ab, kind, || kind.build(&ab, 1));
        let (_, gone) = m.carry("models.gone.targets", &ab, kind, || kind.build(&ab, 1));
        m.sweep();
        // The next graph has only `kept`.
        let (_, again) = m.carry("models.kept.targets", &ab, kind, || unreachable!());
        assert!(Arc::ptr_eq(&kept, &again));
        m.sweep();
        assert_eq!(lock(&m.sets).len(), 1);
        let (_, fresh) = m.carry("models.gone.targets", &ab, kind, || kind.build(&ab, 1));
        assert!(!Arc::ptr_eq(&gone, &fresh));
    }
}
