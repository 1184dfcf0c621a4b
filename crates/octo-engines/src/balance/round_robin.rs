//! Plain round robin: each target in turn, weights ignored.
//!
//! The counter belongs to the balancer, and the server builds one balancer per model, so rotation
//! is fair per model (Octopus shared one global counter across all groups, which made each
//! group's rotation only approximately fair). A pick starts at `counter mod n` in the full target
//! list and walks forward to the first allowed candidate, so excluding a tried target moves the
//! retry to the next one in list order.

use std::sync::atomic::{AtomicUsize, Ordering};

use octo_core::Request;

use super::Strategy;

/// Round robin over a fixed number of targets; see the [module docs](self).
#[derive(Debug)]
pub struct RoundRobin {
    len: usize,
    next: AtomicUsize,
}

impl RoundRobin {
    /// A rotation over `len` targets, starting at the first.
    pub fn new(len: usize) -> Self {
        RoundRobin {
            len,
            next: AtomicUsize::new(0),
        }
    }
}

impl Strategy for RoundRobin {
    fn pick(&self, candidates: &[usize], _req: &Request) -> Option<usize> {
        let first = *candidates.first()?;
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.len.max(1);
        // `candidates` is ascending: the first at or after `start`, else wrap to the first.
        let pos = candidates.partition_point(|&c| c < start);
        Some(candidates.get(pos).copied().unwrap_or(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{names, req};

    #[test]
    fn rotates_and_skips_excluded() {
        let rr = RoundRobin::new(3);
        let r = req("m");
        let seq: Vec<usize> = (0..6).map(|_| rr.pick(&[0, 1, 2], &r).unwrap()).collect();
        assert_eq!(names(&seq), "abcabc");
        // Counter at 0 again; `a` excluded → `b`; counter at 1, `b` excluded → `c`.
        assert_eq!(rr.pick(&[1, 2], &r), Some(1));
        assert_eq!(rr.pick(&[0, 2], &r), Some(2));
        // Counter at 2, only `a` and `b` allowed → wraps to `a`.
        assert_eq!(rr.pick(&[0, 1], &r), Some(0));
        assert_eq!(rr.pick(&[], &r), None);
    }

    #[test]
    fn counters_are_per_balancer() {
        let (x, y) = (RoundRobin::new(2), RoundRobin::new(2));
        let r = req("m");
        assert_eq!(x.pick(&[0, 1], &r), Some(0));
        assert_eq!(x.pick(&[0, 1], &r), Some(1));
        assert_eq!(y.pick(&[0, 1], &r), Some(0));
    }
}
