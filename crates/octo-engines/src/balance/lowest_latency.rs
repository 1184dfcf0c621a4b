//! Lowest latency: send traffic where the first byte comes back soonest, measured on real requests.
//!
//! Each target keeps an exponentially weighted moving average (EWMA) of its time to first byte on
//! real requests (for a stream, to the first event when the set waits for it). A pick:
//!
//! 1. explores first: a candidate with no measurement yet is picked (at random among such);
//! 2. otherwise uses the **power of two choices**: two distinct candidates at random, the one with
//!    the lower average wins (ties: the earlier target). Unlike always taking the single fastest,
//!    this spreads load and cannot stampede one target, yet steers clearly away from slow ones.
//!
//! A retryable failure is recorded as a sample of at least [`LatencyConfig::failure_penalty`], so
//! a failing target is demoted at once (Octopus measured latency with hourly `HEAD` requests and
//! never demoted failing URLs between checks). Client errors and skips are not samples.
//!
//! Each target's average is a [`LatencyAverage`] cell. A target that carries one
//! ([`Target::with_latency`](super::Target::with_latency)) shares it: the server keeps one per
//! (backend, upstream model) across config changes, so a rebuilt model keeps what was learnt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use octo_core::Request;

use super::{AttemptOutcome, SplitMix64, Strategy};

/// Tuning for [`LowestLatency`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyConfig {
    /// The weight of a new sample, in `(0, 1]`. Default 0.3.
    pub alpha: f64,
    /// The smallest sample a retryable failure counts as. Default 5 s.
    pub failure_penalty: Duration,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig {
            alpha: 0.3,
            failure_penalty: Duration::from_secs(5),
        }
    }
}

/// One target's moving average of time to first byte, shareable between strategies (and kept
/// across config changes by whoever holds it).
///
/// ```
/// use std::time::Duration;
/// use octo_engines::balance::LatencyAverage;
/// let a = LatencyAverage::default();
/// assert_eq!(a.get(), None);
/// a.observe(Duration::from_millis(100), 0.3);
/// a.observe(Duration::from_millis(200), 0.3);
/// assert_eq!(a.get().unwrap().as_millis(), 130);
/// ```
#[derive(Debug, Default)]
pub struct LatencyAverage {
    /// Seconds; `None` until the first sample.
    secs: Mutex<Option<f64>>,
}

impl LatencyAverage {
    /// The average, once measured.
    pub fn get(&self) -> Option<Duration> {
        self.secs()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    }

    fn secs(&self) -> Option<f64> {
        *self.secs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Feeds one sample with weight `alpha` (in `(0, 1]`).
    pub fn observe(&self, sample: Duration, alpha: f64) {
        let s = sample.as_secs_f64();
        let mut slot = self.secs.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(match *slot {
            None => s,
            Some(old) => alpha * s + (1.0 - alpha) * old,
        });
    }
}

/// EWMA + power of two choices; see the [module docs](self).
#[derive(Debug)]
pub struct LowestLatency {
    averages: Vec<Arc<LatencyAverage>>,
    config: LatencyConfig,
    rng: SplitMix64,
}

impl LowestLatency {
    /// A balancer over `len` targets, none measured yet, choosing with a generator seeded by `seed`.
    pub fn new(len: usize, config: LatencyConfig, seed: u64) -> Self {
        Self::with_averages((0..len).map(|_| Arc::default()).collect(), config, seed)
    }

    /// A balancer over targets whose averages are `averages` (one per target, in order), shared
    /// with whoever else holds them.
    pub fn with_averages(
        averages: Vec<Arc<LatencyAverage>>,
        config: LatencyConfig,
        seed: u64,
    ) -> Self {
        let alpha = if config.alpha.is_finite() && config.alpha > 0.0 {
            config.alpha.min(1.0)
        } else {
            LatencyConfig::default().alpha
        };
        LowestLatency {
            averages,
            config: LatencyConfig { alpha, ..config },
            rng: SplitMix64::new(seed),
        }
    }

    /// The current average time to first byte of target `index`, once measured.
    pub fn average(&self, index: usize) -> Option<Duration> {
        self.averages.get(index)?.get()
    }

    /// Feeds one sample for `index` (what [`Strategy::record`] does for a success).
    pub fn observe(&self, index: usize, sample: Duration) {
        if let Some(a) = self.averages.get(index) {
            a.observe(sample, self.config.alpha);
        }
    }

    fn pick_index(&self, n: usize) -> usize {
        usize::try_from(self.rng.below(n as u64)).unwrap_or(0)
    }
}

impl Strategy for LowestLatency {
    fn pick(&self, candidates: &[usize], _req: &Request) -> Option<usize> {
        let avg = |i: usize| self.averages.get(i).and_then(|a| a.secs());
        let untried: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| avg(i).is_none())
            .collect();
        if !untried.is_empty() {
            return untried.get(self.pick_index(untried.len())).copied();
        }
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            n => {
                let a = self.pick_index(n);
                let mut b = self.pick_index(n - 1);
                if b >= a {
                    b += 1;
                }
                let (x, y) = (candidates[a.min(b)], candidates[a.max(b)]);
                let (ax, ay) = (avg(x).unwrap_or(0.0), avg(y).unwrap_or(0.0));
                Some(if ay < ax { y } else { x })
            }
        }
    }

    fn record(&self, _req: &Request, index: usize, outcome: AttemptOutcome, elapsed: Duration) {
        match outcome {
            AttemptOutcome::Success => self.observe(index, elapsed),
            AttemptOutcome::Failed => self.observe(index, elapsed.max(self.config.failure_penalty)),
            AttemptOutcome::Rejected | AttemptOutcome::Skipped => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::req;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn untried_targets_are_explored_first() {
        let l = LowestLatency::new(3, LatencyConfig::default(), 1);
        let r = req("m");
        l.observe(0, ms(10));
        l.observe(2, ms(10));
        for _ in 0..20 {
            assert_eq!(l.pick(&[0, 1, 2], &r), Some(1));
        }
        // An excluded untried target is not forced.
        assert_ne!(l.pick(&[0, 2], &r), Some(1));
    }

    #[test]
    fn power_of_two_choices_prefers_the_faster() {
        let l = LowestLatency::new(3, LatencyConfig::default(), 42);
        let r = req("m");
        l.observe(0, ms(100));
        l.observe(1, ms(400));
        l.observe(2, ms(900));
        let mut counts = [0usize; 3];
        for _ in 0..3_000 {
            counts[l.pick(&[0, 1, 2], &r).unwrap()] += 1;
        }
        // With two choices out of three, the fastest wins every pair it is in (2/3), the slowest
        // never wins; the middle one wins the pair without the fastest (1/3).
        assert_eq!(counts[2], 0, "{counts:?}");
        assert!(counts[0].abs_diff(2_000) < 150, "{counts:?}");
        assert!(counts[1].abs_diff(1_000) < 150, "{counts:?}");
    }

    #[test]
    fn ewma_moves_towards_new_samples_and_failures_demote() {
        let l = LowestLatency::new(2, LatencyConfig::default(), 7);
        let r = req("m");
        l.record(&r, 0, AttemptOutcome::Success, ms(100));
        assert_eq!(l.average(0), Some(ms(100)));
        l.record(&r, 0, AttemptOutcome::Success, ms(200));
        // 0.3 × 200 + 0.7 × 100
        assert_eq!(l.average(0).unwrap().as_millis(), 130);
        l.record(&r, 1, AttemptOutcome::Success, ms(50));
        assert_eq!(l.pick(&[0, 1], &r), Some(1));
        // A fast failure still counts as at least the penalty.
        l.record(&r, 1, AttemptOutcome::Failed, ms(1));
        assert!(l.average(1).unwrap() > Duration::from_secs(1));
        assert_eq!(l.pick(&[0, 1], &r), Some(0));
        // Client errors and skips are not samples.
        l.record(&r, 0, AttemptOutcome::Rejected, ms(1));
        l.record(&r, 0, AttemptOutcome::Skipped, ms(1));
        assert_eq!(l.average(0).unwrap().as_millis(), 130);
    }
}
