//! Moderation outcomes per model, for `octollm_moderation_total{model,outcome}`.
//!
//! One outcome per moderated request, the most decisive of its checks (a stream is checked once
//! per window): `flagged_input` / `flagged_output` (refused), `error_denied` (the moderation
//! endpoint failed and `on_error: deny` refused the request), `error_allowed` (it failed and
//! `on_error: allow` let the request through), else `allowed`. A request whose client leaves
//! first is counted with what was decided by then. The counters are process-wide (see
//! [`crate::cache::counters`] for why) and bounded by the configured models.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// How a moderated request ended, from least to most decisive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Every check passed.
    Allowed = 0,
    /// A check failed and `on_error: allow` let the request through.
    ErrorAllowed = 1,
    /// A check failed and `on_error: deny` refused the request.
    ErrorDenied = 2,
    /// The request's text was flagged; it never reached the upstream.
    FlaggedInput = 3,
    /// The answer was flagged and withheld (or its stream ended with an error).
    FlaggedOutput = 4,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 5] = [
        Outcome::Allowed,
        Outcome::ErrorAllowed,
        Outcome::ErrorDenied,
        Outcome::FlaggedInput,
        Outcome::FlaggedOutput,
    ];

    /// The `outcome` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::ErrorAllowed => "error_allowed",
            Outcome::ErrorDenied => "error_denied",
            Outcome::FlaggedInput => "flagged_input",
            Outcome::FlaggedOutput => "flagged_output",
        }
    }
}

/// One model's outcome counters.
#[derive(Debug, Default)]
pub struct ModerationCounters([AtomicU64; 5]);

impl ModerationCounters {
    /// The count of `outcome` so far.
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.0[outcome as usize].load(Ordering::Relaxed)
    }

    fn count(&self, outcome: Outcome) {
        self.0[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The outcome of one request so far; counted once, when dropped.
#[derive(Debug)]
pub(crate) struct Tally {
    counters: Arc<ModerationCounters>,
    outcome: AtomicU8,
}

impl Tally {
    pub(crate) fn new(counters: Arc<ModerationCounters>) -> Self {
        Tally {
            counters,
            outcome: AtomicU8::new(Outcome::Allowed as u8),
        }
    }

    /// Raises the outcome to `o` if it is more decisive.
    pub(crate) fn raise(&self, o: Outcome) {
        self.outcome.fetch_max(o as u8, Ordering::Relaxed);
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        let n = self.outcome.load(Ordering::Relaxed);
        let o = Outcome::ALL
            .into_iter()
            .find(|o| *o as u8 == n)
            .unwrap_or(Outcome::Allowed);
        self.counters.count(o);
    }
}

type Registry = Mutex<BTreeMap<String, Arc<ModerationCounters>>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::default)
}

/// The process-wide counters of `model` (created on first use).
pub fn counters(model: &str) -> Arc<ModerationCounters> {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(model.to_owned())
        .or_default()
        .clone()
}

/// Every model's counters, by name (for the metrics endpoint).
pub fn snapshot() -> Vec<(String, Arc<ModerationCounters>)> {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_decisive_outcome_is_counted_once() {
        let c = Arc::new(ModerationCounters::default());
        {
            let t = Tally::new(c.clone());
            t.raise(Outcome::ErrorAllowed);
            t.raise(Outcome::FlaggedOutput);
            t.raise(Outcome::Allowed);
        }
        drop(Tally::new(c.clone()));
        assert_eq!(c.get(Outcome::FlaggedOutput), 1);
        assert_eq!(c.get(Outcome::Allowed), 1);
        assert_eq!(c.get(Outcome::ErrorAllowed), 0);
    }
}
