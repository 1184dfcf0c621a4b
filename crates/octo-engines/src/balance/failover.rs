//! Failover by priority: always the best-ranked target still allowed.
//!
//! Rank: lowest `priority` number first; among equal priorities the **higher weight** first; then
//! the earlier position in the list. The order is fixed at construction, so a retry that excludes
//! the failed target gets the next one in rank. A drained target (weight 0 next to non-zero
//! weights) is never picked.

use octo_core::Request;

use super::{Strategy, effective_weights};

/// Priority failover; see the [module docs](self).
#[derive(Debug)]
pub struct Failover {
    /// Target indices, best first (drained targets left out).
    order: Vec<usize>,
}

impl Failover {
    /// The order for targets with these priorities and weights (same length).
    pub fn new(priorities: &[i32], weights: &[u32]) -> Self {
        let weights = effective_weights(weights);
        let mut order: Vec<usize> = (0..priorities.len())
            .filter(|&i| weights.get(i).copied().unwrap_or(1) > 0)
            .collect();
        order.sort_by_key(|&i| {
            (
                priorities[i],
                std::cmp::Reverse(weights.get(i).copied().unwrap_or(1)),
                i,
            )
        });
        Failover { order }
    }

    /// Target indices in failover order.
    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

impl Strategy for Failover {
    fn pick(&self, candidates: &[usize], _req: &Request) -> Option<usize> {
        self.order
            .iter()
            .copied()
            .find(|i| candidates.binary_search(i).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::req;

    #[test]
    fn ranks_by_priority_then_weight_then_order() {
        let f = Failover::new(&[1, 0, 1, 0, 2], &[1, 1, 5, 1, 0]);
        // 1 and 3 (priority 0, equal weight: list order), 2 (priority 1, heavier), 0; 4 drained.
        assert_eq!(f.order(), &[1, 3, 2, 0]);
        let r = req("m");
        assert_eq!(f.pick(&[0, 1, 2, 3, 4], &r), Some(1));
        assert_eq!(f.pick(&[0, 2, 3, 4], &r), Some(3));
        assert_eq!(f.pick(&[0, 2, 4], &r), Some(2));
        assert_eq!(f.pick(&[4], &r), None);
    }
}
