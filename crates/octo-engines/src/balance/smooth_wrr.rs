//! nginx's smooth weighted round robin.
//!
//! Each pick adds every candidate's weight to its *current weight*, takes the candidate with the
//! largest current weight (strictly above 0; ties go to the earlier target) and subtracts the
//! candidates' total weight from the winner. Over any window of `Σw` picks each target is chosen
//! exactly `w` times, and heavy targets are interleaved with light ones instead of bunched:
//! `{a:5, b:1, c:1}` gives `a a b a c a a`.
//!
//! Candidates excluded for a request (already tried, unavailable) neither gain nor lose current
//! weight on that pick, as in nginx's `ngx_http_upstream_get_peer`.

use std::sync::Mutex;

use octo_core::Request;

use super::{Strategy, effective_weights};

/// Smooth weighted round robin; see the [module docs](self).
#[derive(Debug)]
pub struct SmoothWeightedRoundRobin {
    weights: Vec<i64>,
    current: Mutex<Vec<i64>>,
}

impl SmoothWeightedRoundRobin {
    /// Starts every current weight at 0 (deterministic: the same weights always give the
    /// same sequence). All-zero weights count as equal; a zero weight next to non-zero ones is never
    /// picked.
    pub fn new(weights: &[u32]) -> Self {
        Self::with_initial(weights, &vec![0; weights.len()])
    }

    /// Starts from the given current weights (OctoLLM seeds them with `rand(0..=w)` so replicas
    /// do not move in lockstep). Missing entries start at 0.
    pub fn with_initial(weights: &[u32], initial: &[i64]) -> Self {
        let weights: Vec<i64> = effective_weights(weights)
            .into_iter()
            .map(i64::from)
            .collect();
        let current = (0..weights.len())
            .map(|i| initial.get(i).copied().unwrap_or(0))
            .collect();
        SmoothWeightedRoundRobin {
            weights,
            current: Mutex::new(current),
        }
    }

    /// Starts from current weights drawn from `0..=w` with a seeded generator.
    pub fn with_seed(weights: &[u32], seed: u64) -> Self {
        let rng = super::SplitMix64::new(seed);
        let initial: Vec<i64> = effective_weights(weights)
            .iter()
            .map(|&w| i64::try_from(rng.below(u64::from(w) + 1)).unwrap_or(0))
            .collect();
        Self::with_initial(weights, &initial)
    }
}

impl Strategy for SmoothWeightedRoundRobin {
    fn pick(&self, candidates: &[usize], _req: &Request) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for &i in candidates {
            let w = self.weights.get(i).copied().unwrap_or(0);
            if w == 0 {
                continue;
            }
            current[i] = current[i].saturating_add(w);
            total = total.saturating_add(w);
            if current[i] > 0 && best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        current[best] = current[best].saturating_sub(total);
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{names, req};

    fn run(s: &SmoothWeightedRoundRobin, candidates: &[usize], n: usize) -> String {
        let r = req("m");
        let seq: Vec<usize> = (0..n).map(|_| s.pick(candidates, &r).unwrap()).collect();
        names(&seq)
    }

    #[test]
    fn reproduces_octollm_sequences() {
        let s = SmoothWeightedRoundRobin::new(&[5, 1, 1]);
        assert_eq!(run(&s, &[0, 1, 2], 7), "aabacaa");
        // The cycle repeats.
        assert_eq!(run(&s, &[0, 1, 2], 7), "aabacaa");
        let s = SmoothWeightedRoundRobin::new(&[1, 1]);
        assert_eq!(run(&s, &[0, 1], 4), "abab");
    }

    #[test]
    fn zero_weight_is_never_picked_next_to_non_zero() {
        let s = SmoothWeightedRoundRobin::new(&[0, 2, 1]);
        let seq = run(&s, &[0, 1, 2], 30);
        assert!(!seq.contains('a'), "{seq}");
        assert_eq!(seq.matches('b').count(), 20);
        // Only drained targets left: nothing to pick.
        assert_eq!(s.pick(&[0], &req("m")), None);
    }

    #[test]
    fn all_zero_weights_mean_equal() {
        let s = SmoothWeightedRoundRobin::new(&[0, 0, 0]);
        assert_eq!(run(&s, &[0, 1, 2], 6), "abcabc");
    }

    #[test]
    fn excluded_candidates_keep_their_state() {
        let s = SmoothWeightedRoundRobin::new(&[1, 1]);
        // `a` was tried and failed: the retry pick goes to `b`.
        assert_eq!(run(&s, &[0, 1], 1), "a");
        assert_eq!(run(&s, &[1], 1), "b");
        // The retry pick on `b` alone subtracted only `b`'s weight: `b` stays ahead (-1, 1),
        // then the alternation resumes.
        assert_eq!(run(&s, &[0, 1], 4), "baba");
    }

    #[test]
    fn initial_weights_are_injectable() {
        let s = SmoothWeightedRoundRobin::with_initial(&[1, 1], &[0, 1]);
        assert_eq!(run(&s, &[0, 1], 3), "bab");
        // A seeded start stays a proportional schedule.
        let s = SmoothWeightedRoundRobin::with_seed(&[3, 1], 9);
        let seq = run(&s, &[0, 1], 40);
        assert!((29..=31).contains(&seq.matches('a').count()), "{seq}");
    }
}
