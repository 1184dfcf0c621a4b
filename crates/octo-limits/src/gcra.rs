//! The generic cell rate algorithm (GCRA), sans IO: the arithmetic of one rate limit, with the
//! clock passed in, so the same rules run in process ([`crate::local`]), in Redis's Lua
//! ([`crate::redis`] mirrors these functions line for line) and in the tests on a fake clock.
//!
//! A limit of `limit` units per `period` (60 000 ms for rpm and tpm) keeps one number per key: the
//! *theoretical arrival time* (TAT), the instant at which the bucket would be full again. Each
//! unit moves it `period / limit` later; a request of `cost` units is admitted when, after adding
//! its cost, the TAT is at most one `period` ahead of now. So:
//!
//! - **burst**: an idle key admits `limit` units at once (a whole minute's worth);
//! - **refill**: capacity comes back continuously, one unit every `period / limit` — not all at
//!   once at a window edge, so there is no doubled burst around a fixed window's boundary;
//! - **reconciliation**: a cost known only afterwards moves the TAT by the difference
//!   ([`Gcra::adjust`]): later for more tokens than estimated, earlier (never before now) for
//!   fewer.
//!
//! ```
//! use octo_limits::gcra::Gcra;
//!
//! let rpm = Gcra::per_minute(5);
//! let mut tat = None;
//! for _ in 0..5 {
//!     let d = rpm.check(tat, 0.0, 1);
//!     assert!(d.allowed);
//!     tat = Some(d.tat);
//! }
//! let refused = rpm.check(tat, 0.0, 1);
//! assert!(!refused.allowed);
//! assert_eq!(refused.retry_after_ms, 12_000.0); // one request every 12 s comes back
//! assert!(rpm.check(tat, 12_000.0, 1).allowed);
//! ```

/// One limit: `limit` units per `period_ms` milliseconds, with a burst of `limit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gcra {
    limit: u64,
    period_ms: f64,
}

/// The outcome of [`Gcra::check`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Whether the cost fits now.
    pub allowed: bool,
    /// The TAT to store when allowed (unchanged otherwise).
    pub tat: f64,
    /// Units still available after this request (0 when refused).
    pub remaining: u64,
    /// When refused: how long until this cost would fit (never, for a cost above the limit:
    /// `f64::INFINITY`). 0 when allowed.
    pub retry_after_ms: f64,
    /// How long until the bucket is full again (the `x-ratelimit-reset-*` headers).
    pub reset_after_ms: f64,
}

impl Gcra {
    /// `limit` units per `period_ms` (at least 1 unit).
    pub fn new(limit: u64, period_ms: f64) -> Self {
        Gcra {
            limit: limit.max(1),
            period_ms: period_ms.max(1.0),
        }
    }

    /// `limit` units per minute (rpm, tpm).
    pub fn per_minute(limit: u64) -> Self {
        Self::new(limit, 60_000.0)
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Milliseconds one unit holds the bucket.
    pub fn interval_ms(&self) -> f64 {
        self.period_ms / self.limit as f64
    }

    /// Whether `cost` units fit at `now_ms`, given the stored TAT (`None`: a fresh key).
    pub fn check(&self, tat: Option<f64>, now_ms: f64, cost: u64) -> Decision {
        let interval = self.interval_ms();
        let base = tat.unwrap_or(now_ms).max(now_ms);
        let new_tat = base + cost as f64 * interval;
        let allow_at = new_tat - self.period_ms;
        if cost > self.limit {
            return Decision {
                allowed: false,
                tat: base,
                remaining: self.remaining(base, now_ms),
                retry_after_ms: f64::INFINITY,
                reset_after_ms: base - now_ms,
            };
        }
        // A tolerance of a microsecond absorbs float rounding at the exact boundary.
        if allow_at > now_ms + 1e-3 {
            return Decision {
                allowed: false,
                tat: base,
                remaining: self.remaining(base, now_ms),
                retry_after_ms: allow_at - now_ms,
                reset_after_ms: base - now_ms,
            };
        }
        Decision {
            allowed: true,
            tat: new_tat,
            remaining: self.remaining(new_tat, now_ms),
            retry_after_ms: 0.0,
            reset_after_ms: new_tat - now_ms,
        }
    }

    /// Units available at `now_ms` for a key whose TAT is `tat`.
    pub fn remaining(&self, tat: f64, now_ms: f64) -> u64 {
        let free = self.period_ms - (tat - now_ms).max(0.0);
        // Round to the nearest microsecond before flooring, against float dust.
        let units = ((free / self.interval_ms()) * 1e6).round() / 1e6;
        (units.floor().max(0.0) as u64).min(self.limit)
    }

    /// The TAT after a reconciliation of `delta` units (actual minus estimated cost): later for a
    /// positive delta, earlier for a negative one, but never before `now_ms` (a bucket cannot be
    /// more than full).
    pub fn adjust(&self, tat: f64, now_ms: f64, delta: i64) -> f64 {
        (tat + delta as f64 * self.interval_ms()).max(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admits `cost` at `now` and stores the TAT; returns whether it was admitted.
    fn take(g: &Gcra, tat: &mut Option<f64>, now: f64, cost: u64) -> bool {
        let d = g.check(*tat, now, cost);
        if d.allowed {
            *tat = Some(d.tat);
        }
        d.allowed
    }

    #[test]
    fn a_fresh_key_admits_a_full_burst_then_refuses() {
        let g = Gcra::per_minute(60);
        let mut tat = None;
        for i in 0..60 {
            let d = g.check(tat, 1_000.0, 1);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 59 - i);
            tat = Some(d.tat);
        }
        let d = g.check(tat, 1_000.0, 1);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after_ms, 1_000.0);
        assert_eq!(d.reset_after_ms, 60_000.0);
    }

    #[test]
    fn capacity_refills_continuously_not_at_a_window_edge() {
        let g = Gcra::per_minute(6); // one every 10 s
        let mut tat = None;
        for _ in 0..6 {
            assert!(take(&g, &mut tat, 0.0, 1));
        }
        assert!(!take(&g, &mut tat, 9_999.0, 1));
        assert!(take(&g, &mut tat, 10_000.0, 1));
        assert!(!take(&g, &mut tat, 10_000.0, 1));
        // After 25 s more, two have come back (not six: no window reset).
        assert!(take(&g, &mut tat, 35_000.0, 1));
        assert!(take(&g, &mut tat, 35_000.0, 1));
        assert!(!take(&g, &mut tat, 35_000.0, 1));
        // A full idle period refills the whole burst, and no more.
        let later = 35_000.0 + 60_000.0;
        assert_eq!(g.remaining(tat.unwrap(), later), 6);
        assert_eq!(g.remaining(tat.unwrap(), later + 600_000.0), 6);
    }

    #[test]
    fn weighted_costs_and_costs_over_the_limit() {
        let g = Gcra::per_minute(1_000); // tpm
        let mut tat = None;
        assert!(take(&g, &mut tat, 0.0, 700));
        let d = g.check(tat, 0.0, 400);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 300);
        assert!((d.retry_after_ms - 6_000.0).abs() < 1e-6);
        assert!(take(&g, &mut tat, 0.0, 300));
        // A single request larger than the whole limit can never fit.
        let d = g.check(None, 0.0, 1_001);
        assert!(!d.allowed);
        assert!(d.retry_after_ms.is_infinite());
        assert_eq!(d.remaining, 1_000);
    }

    #[test]
    fn reconciliation_charges_the_difference_both_ways() {
        let g = Gcra::per_minute(1_000);
        let mut tat = None;
        // Admitted on an estimate of 500 tokens; the answer used 800.
        assert!(take(&g, &mut tat, 0.0, 500));
        tat = Some(g.adjust(tat.unwrap(), 0.0, 300));
        assert_eq!(g.remaining(tat.unwrap(), 0.0), 200);
        // Another estimated at 200 fits exactly, and used 50: 150 come back.
        assert!(take(&g, &mut tat, 0.0, 200));
        tat = Some(g.adjust(tat.unwrap(), 0.0, -150));
        assert_eq!(g.remaining(tat.unwrap(), 0.0), 150);
        // A refund never makes the bucket more than full.
        let t = g.adjust(tat.unwrap(), 60_000.0, -10_000);
        assert_eq!(t, 60_000.0);
        assert_eq!(g.remaining(t, 60_000.0), 1_000);
    }

    #[test]
    fn over_time_admitted_units_match_the_rate() {
        // Requests every 100 ms for 10 minutes against 120 rpm: the first minute's burst plus
        // two per second after it.
        let g = Gcra::per_minute(120);
        let mut tat = None;
        let mut admitted = 0;
        let mut now = 0.0;
        while now < 600_000.0 {
            if take(&g, &mut tat, now, 1) {
                admitted += 1;
            }
            now += 100.0;
        }
        assert_eq!(admitted, 120 + 2 * 600 - 1);
    }
}
