//! Weighted random: each pick chooses a candidate with probability proportional to its weight.
//!
//! This is real proportional sampling: with weights 1:3 the heavier target is chosen 75% of the
//! time (Octopus's "weighted" mode sorted by `rand × w` and gave it about 83%). Excluded targets
//! are left out and the remaining weights renormalised, so a retry is again proportional among
//! what is left. The generator is a seeded [`SplitMix64`], so tests can pin
//! every pick.

use octo_core::Request;

use super::{SplitMix64, Strategy, effective_weights};

/// Weighted random choice; see the [module docs](self).
#[derive(Debug)]
pub struct WeightedRandom {
    weights: Vec<u64>,
    rng: SplitMix64,
}

impl WeightedRandom {
    /// Random choice over `weights` (all-zero = equal; zero next to non-zero = never), drawing
    /// from a generator seeded with `seed`.
    pub fn new(weights: &[u32], seed: u64) -> Self {
        WeightedRandom {
            weights: effective_weights(weights)
                .into_iter()
                .map(u64::from)
                .collect(),
            rng: SplitMix64::new(seed),
        }
    }
}

impl Strategy for WeightedRandom {
    fn pick(&self, candidates: &[usize], _req: &Request) -> Option<usize> {
        let weight = |i: usize| self.weights.get(i).copied().unwrap_or(0);
        let total: u64 = candidates.iter().map(|&i| weight(i)).sum();
        if total == 0 {
            return None;
        }
        let mut r = self.rng.below(total);
        for &i in candidates {
            let w = weight(i);
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::req;

    fn counts(s: &WeightedRandom, candidates: &[usize], n: usize) -> Vec<usize> {
        let r = req("m");
        let mut counts = vec![0; 4];
        for _ in 0..n {
            counts[s.pick(candidates, &r).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn distribution_is_proportional_to_weight() {
        let s = WeightedRandom::new(&[1, 3, 6], 0x5eed);
        let c = counts(&s, &[0, 1, 2], 100_000);
        // Expected 10%, 30%, 60%; binomial sd ≤ 160 draws, so ±1000 is over 6 sigma.
        for (got, want) in c.iter().zip([10_000, 30_000, 60_000]) {
            assert!(got.abs_diff(want) < 1_000, "{c:?}");
        }
    }

    #[test]
    fn exclusions_renormalise_and_zero_is_never_picked() {
        let s = WeightedRandom::new(&[1, 3, 0], 1);
        let c = counts(&s, &[0, 2], 1_000);
        assert_eq!(c[..3], [1_000, 0, 0]);
        assert_eq!(s.pick(&[2], &req("m")), None);
        let s = WeightedRandom::new(&[0, 0], 1);
        let c = counts(&s, &[0, 1], 10_000);
        assert!(c[0].abs_diff(5_000) < 300, "{c:?}");
    }

    #[test]
    fn same_seed_same_picks() {
        let r = req("m");
        let (a, b) = (
            WeightedRandom::new(&[1, 1, 1], 3),
            WeightedRandom::new(&[1, 1, 1], 3),
        );
        for _ in 0..100 {
            assert_eq!(a.pick(&[0, 1, 2], &r), b.pick(&[0, 1, 2], &r));
        }
    }
}
