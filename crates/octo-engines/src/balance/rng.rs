//! A tiny, seedable, lock-free pseudo-random generator for the balancers.
//!
//! Balancing needs cheap, reasonably uniform numbers, not cryptographic ones, and tests need a seed
//! that makes every pick reproducible. SplitMix64 (Steele, Lea and Flood, 2014; the generator Java's
//! `SplittableRandom` uses and the recommended seeder of the xoshiro family) is ten lines, passes
//! BigCrush, and its state is a plain counter, so one `AtomicU64::fetch_add` makes it safe to share
//! between threads without a lock. That is why the crate does not depend on `rand`.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64: a seedable generator that can be shared (`&self`) between threads.
///
/// With one caller the sequence is fully determined by the seed; with concurrent callers each
/// number is still drawn exactly once, only the interleaving varies.
///
/// ```
/// use octo_engines::balance::SplitMix64;
///
/// let a = SplitMix64::new(42);
/// let b = SplitMix64::new(42);
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!(a.below(10) < 10);
/// ```
#[derive(Debug)]
pub struct SplitMix64 {
    state: AtomicU64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 {
            state: AtomicU64::new(seed),
        }
    }

    /// A generator seeded from the process's random hasher keys and the clock: different in
    /// every process and every call, for production use.
    pub fn from_entropy() -> Self {
        Self::new(entropy_seed())
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0), by Lemire's multiply-shift: no division, and a bias
    /// below 2^-32 for the small `n` a balancer uses.
    pub fn below(&self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A float in `[0, 1)` with 53 random bits.
    pub fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A seed that differs between processes and between calls: std's randomly keyed hasher (seeded
/// from the OS once per process, then incremented per `RandomState`) mixed with the clock.
pub fn entropy_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(since.as_nanos());
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_splitmix64_sequence() {
        // Reference values for seed 1234567 (from the public-domain C implementation).
        let r = SplitMix64::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(r.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn below_and_f64_stay_in_range() {
        let r = SplitMix64::new(7);
        for _ in 0..10_000 {
            assert!(r.below(3) < 3);
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn entropy_seeds_differ() {
        assert_ne!(entropy_seed(), entropy_seed());
    }
}
