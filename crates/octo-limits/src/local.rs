//! The in-process store: every limit's state in this process's memory, sans IO (the caller passes
//! the time in), so its admission and reconciliation rules are unit-tested on a fake clock.
//!
//! It is the whole store of a single instance, and the fallback of an instance whose Redis is
//! down (`redis.on_error: allow`). [`crate::redis`] implements the same rules in Lua.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::gcra::Gcra;
use crate::policy::{Check, Limit};

/// A rate limit's state as the `x-ratelimit-*` headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Window {
    /// The limit (per minute).
    pub limit: u64,
    /// What is left now.
    pub remaining: u64,
    /// Milliseconds until it is whole again.
    pub reset_after_ms: f64,
}

/// An admitted request: the tightest request and token windows it passed (for the headers).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Admitted {
    /// The rpm limit with the least left, if any applied.
    pub requests: Option<Window>,
    /// The tpm limit with the least left, if any applied.
    pub tokens: Option<Window>,
}

impl Admitted {
    /// Keeps `w` when it has less left than the window kept so far.
    pub fn note(&mut self, requests: bool, w: Window) {
        let slot = if requests {
            &mut self.requests
        } else {
            &mut self.tokens
        };
        if slot.is_none_or(|s| w.remaining < s.remaining) {
            *slot = Some(w);
        }
    }
}

/// A refused request: which check refused it and what it found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refused {
    /// Index into the checks.
    pub index: usize,
    /// How long until the request could pass (infinite: never, a cost above the limit).
    pub retry_after_ms: f64,
    /// For rpm and tpm: the window.
    pub window: Option<Window>,
    /// For concurrency: requests in flight; for a budget: USD spent and reserved.
    pub used: f64,
}

/// A budget's spend in its current period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spend {
    /// Start of the period (Unix ms) this spend belongs to.
    pub period_start: i64,
    /// USD of finished requests.
    pub spent: f64,
    /// USD of the estimates of requests in flight.
    pub reserved: f64,
}

/// The state of one check, for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CheckState {
    /// rpm, tpm.
    Window(Window),
    /// Concurrency: requests in flight.
    InFlight {
        /// Requests holding a slot.
        in_flight: u64,
    },
    /// A budget.
    Spend(Spend),
}

/// Every limit's state in memory; see the [module docs](self).
#[derive(Debug, Default)]
pub struct LocalState {
    tats: HashMap<(bool, Arc<str>), f64>,
    in_flight: HashMap<Arc<str>, u64>,
    spend: HashMap<Arc<str>, Spend>,
}

fn gcra_of(limit: &Limit) -> Option<(bool, Gcra)> {
    match *limit {
        Limit::Rpm(n) => Some((true, Gcra::per_minute(n))),
        Limit::Tpm(n) => Some((false, Gcra::per_minute(n))),
        _ => None,
    }
}

impl LocalState {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn spend_mut(
        &mut self,
        id: &Arc<str>,
        period: crate::period::Period,
        now_ms: i64,
    ) -> &mut Spend {
        let start = period.bounds(now_ms).0;
        let s = self.spend.entry(id.clone()).or_default();
        if s.period_start != start {
            // The period turned: the budget starts afresh.
            *s = Spend {
                period_start: start,
                spent: 0.0,
                reserved: 0.0,
            };
        }
        s
    }

    /// Admits a request of `tokens` estimated tokens and `cost` estimated USD at `now_ms` when
    /// every check has room, and counts it in all of them; refuses without counting anything
    /// otherwise.
    ///
    /// # Errors
    /// The first check without room.
    pub fn admit(
        &mut self,
        now_ms: i64,
        checks: &[Check],
        tokens: u64,
        cost: f64,
    ) -> Result<Admitted, Refused> {
        let now = now_ms as f64;
        let mut tats = Vec::new();
        let mut admitted = Admitted::default();
        for (index, c) in checks.iter().enumerate() {
            match c.limit {
                Limit::Rpm(_) | Limit::Tpm(_) => {
                    let (requests, g) = gcra_of(&c.limit).expect("a rate");
                    let key = (requests, c.id.clone());
                    let d = g.check(
                        self.tats.get(&key).copied(),
                        now,
                        if requests { 1 } else { tokens },
                    );
                    let window = Window {
                        limit: g.limit(),
                        remaining: d.remaining,
                        reset_after_ms: d.reset_after_ms,
                    };
                    if !d.allowed {
                        return Err(Refused {
                            index,
                            retry_after_ms: d.retry_after_ms,
                            window: Some(window),
                            used: 0.0,
                        });
                    }
                    admitted.note(requests, window);
                    tats.push((key, d.tat));
                }
                Limit::Concurrency(n) => {
                    let cur = self.in_flight.get(&c.id).copied().unwrap_or(0);
                    if cur >= n {
                        return Err(Refused {
                            index,
                            retry_after_ms: 1_000.0,
                            window: None,
                            used: cur as f64,
                        });
                    }
                }
                Limit::Budget(b) => {
                    let s = *self.spend_mut(&c.id, b.period, now_ms);
                    let used = s.spent + s.reserved;
                    if used >= b.usd {
                        let end = b.period.bounds(now_ms).1;
                        return Err(Refused {
                            index,
                            retry_after_ms: (end - now_ms) as f64,
                            window: None,
                            used,
                        });
                    }
                }
            }
        }
        for (key, tat) in tats {
            self.tats.insert(key, tat);
        }
        for c in checks {
            match c.limit {
                Limit::Concurrency(_) => *self.in_flight.entry(c.id.clone()).or_default() += 1,
                Limit::Budget(b) => self.spend_mut(&c.id, b.period, now_ms).reserved += cost,
                _ => {}
            }
        }
        Ok(admitted)
    }

    /// Settles an admitted request once its real usage is known: its tokens replace the
    /// estimate in the tpm limits, its cost replaces the reserved estimate in the budgets, and it
    /// leaves the concurrency limits.
    pub fn settle(
        &mut self,
        now_ms: i64,
        checks: &[Check],
        estimated: (u64, f64),
        actual: (u64, f64),
    ) {
        let now = now_ms as f64;
        for c in checks {
            match c.limit {
                Limit::Tpm(_) => {
                    let (_, g) = gcra_of(&c.limit).expect("a rate");
                    let delta = i64::try_from(actual.0).unwrap_or(i64::MAX)
                        - i64::try_from(estimated.0).unwrap_or(i64::MAX);
                    let key = (false, c.id.clone());
                    let tat = self.tats.get(&key).copied().unwrap_or(now).max(now);
                    self.tats.insert(key, g.adjust(tat, now, delta));
                }
                Limit::Concurrency(_) => {
                    if let Some(n) = self.in_flight.get_mut(&c.id) {
                        *n = n.saturating_sub(1);
                    }
                }
                Limit::Budget(b) => {
                    let s = self.spend_mut(&c.id, b.period, now_ms);
                    s.reserved = (s.reserved - estimated.1).max(0.0);
                    s.spent += actual.1;
                }
                Limit::Rpm(_) => {}
            }
        }
    }

    /// Adds spend to the budgets among `checks` without a reservation (a request another store
    /// admitted), so this store knows the spend if it has to take over.
    pub fn add_spend(&mut self, now_ms: i64, checks: &[Check], cost: f64) {
        for c in checks {
            if let Limit::Budget(b) = c.limit {
                self.spend_mut(&c.id, b.period, now_ms).spent += cost;
            }
        }
    }

    /// Sets a budget's spend in the current period to what storage recorded (at startup), unless
    /// this store already counted more.
    pub fn seed(&mut self, now_ms: i64, check: &Check, spent: f64) {
        if let Limit::Budget(b) = check.limit {
            let s = self.spend_mut(&check.id, b.period, now_ms);
            s.spent = s.spent.max(spent);
        }
    }

    /// The current state of `check`.
    pub fn state(&mut self, now_ms: i64, check: &Check) -> CheckState {
        match check.limit {
            Limit::Rpm(_) | Limit::Tpm(_) => {
                let (requests, g) = gcra_of(&check.limit).expect("a rate");
                let now = now_ms as f64;
                let tat = self
                    .tats
                    .get(&(requests, check.id.clone()))
                    .copied()
                    .unwrap_or(now)
                    .max(now);
                CheckState::Window(Window {
                    limit: g.limit(),
                    remaining: g.remaining(tat, now),
                    reset_after_ms: tat - now,
                })
            }
            Limit::Concurrency(_) => CheckState::InFlight {
                in_flight: self.in_flight.get(&check.id).copied().unwrap_or(0),
            },
            Limit::Budget(b) => CheckState::Spend(*self.spend_mut(&check.id, b.period, now_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::period::Period;
    use crate::policy::{Budget, Policy, RateLimit, Rules};

    const T0: i64 = 1_796_196_600_000; // 2026-12-02T07:30:00Z

    fn checks(rate: RateLimit, budget: Option<Budget>) -> Vec<Check> {
        Policy::new()
            .key("acme", "ci", Rules { rate, budget })
            .checks("m", Some(("acme", "ci")))
    }

    #[test]
    fn every_limit_must_pass_and_a_refusal_counts_nothing() {
        let p = Policy::new()
            .model(
                "m",
                RateLimit {
                    rpm: Some(3),
                    ..RateLimit::default()
                },
            )
            .org(
                "acme",
                Rules {
                    rate: RateLimit {
                        rpm: Some(2),
                        ..RateLimit::default()
                    },
                    budget: None,
                },
            );
        let acme = p.checks("m", Some(("acme", "a")));
        let other = p.checks("m", Some(("other", "b")));
        let mut s = LocalState::new();
        assert!(s.admit(T0, &acme, 0, 0.0).is_ok());
        assert!(s.admit(T0, &acme, 0, 0.0).is_ok());
        let r = s.admit(T0, &acme, 0, 0.0).unwrap_err();
        assert_eq!(r.index, 1, "the org's limit refused");
        // The refusal did not use the model's third request: another org still gets it.
        let ok = s.admit(T0, &other, 0, 0.0).unwrap();
        assert_eq!(ok.requests.unwrap().remaining, 0);
        assert!(s.admit(T0, &other, 0, 0.0).is_err());
    }

    #[test]
    fn tpm_admits_on_the_estimate_and_reconciles_to_the_real_usage() {
        let c = checks(
            RateLimit {
                tpm: Some(1_000),
                ..RateLimit::default()
            },
            None,
        );
        let mut s = LocalState::new();
        // Two requests estimated at 400 fit; a third does not.
        s.admit(T0, &c, 400, 0.0).unwrap();
        s.admit(T0, &c, 400, 0.0).unwrap();
        assert_eq!(
            s.admit(T0, &c, 400, 0.0)
                .unwrap_err()
                .window
                .unwrap()
                .remaining,
            200
        );
        // Both used 100 tokens: 600 come back at once.
        s.settle(T0, &c, (400, 0.0), (100, 0.0));
        s.settle(T0, &c, (400, 0.0), (100, 0.0));
        let ok = s.admit(T0, &c, 400, 0.0).unwrap();
        assert_eq!(ok.tokens.unwrap().remaining, 400);
        // One that used far more than estimated is charged in full: the next must wait.
        s.settle(T0, &c, (400, 0.0), (1_200, 0.0));
        let r = s.admit(T0, &c, 100, 0.0).unwrap_err();
        assert_eq!(r.window.unwrap().remaining, 0);
        // ... for as long as those tokens take to refill (1000 per minute).
        assert!(
            (r.retry_after_ms - 30_000.0).abs() < 1.0,
            "{}",
            r.retry_after_ms
        );
        assert!(s.admit(T0 + 30_000, &c, 100, 0.0).is_ok());
    }

    #[test]
    fn concurrency_counts_until_settled() {
        let c = checks(
            RateLimit {
                concurrency: Some(2),
                ..RateLimit::default()
            },
            None,
        );
        let mut s = LocalState::new();
        s.admit(T0, &c, 0, 0.0).unwrap();
        s.admit(T0, &c, 0, 0.0).unwrap();
        let r = s.admit(T0 + 600_000, &c, 0, 0.0).unwrap_err();
        assert_eq!(r.used, 2.0);
        s.settle(T0, &c, (0, 0.0), (0, 0.0));
        s.admit(T0, &c, 0, 0.0).unwrap();
    }

    #[test]
    fn budgets_reserve_in_flight_estimates_and_reset_with_the_period() {
        let c = checks(
            RateLimit::default(),
            Some(Budget {
                usd: 1.0,
                period: Period::Day,
            }),
        );
        let mut s = LocalState::new();
        // Ten concurrent requests estimated at 0.3 each: only four are admitted (0, 0.3, 0.6,
        // 0.9 reserved before each), so the overrun is bounded by what is in flight.
        let admitted = (0..10).filter(|_| s.admit(T0, &c, 0, 0.3).is_ok()).count();
        assert_eq!(admitted, 4);
        // They cost less than estimated: room again.
        for _ in 0..4 {
            s.settle(T0, &c, (0, 0.3), (0, 0.1));
        }
        let CheckState::Spend(spend) = s.state(T0, &c[0]) else {
            panic!("a budget")
        };
        assert!((spend.spent - 0.4).abs() < 1e-9 && spend.reserved.abs() < 1e-9);
        s.admit(T0, &c, 0, 0.3).unwrap();
        s.settle(T0, &c, (0, 0.3), (0, 0.7));
        // Spent 1.1 ≥ 1.0: refused until midnight UTC.
        let r = s.admit(T0, &c, 0, 0.0).unwrap_err();
        assert!((r.used - 1.1).abs() < 1e-9);
        let midnight = 1_796_256_000_000; // 2026-12-03T00:00:00Z
        assert_eq!(r.retry_after_ms, (midnight - T0) as f64);
        assert!(s.admit(midnight - 1, &c, 0, 0.0).is_err());
        assert!(s.admit(midnight, &c, 0, 0.0).is_ok());
    }

    #[test]
    fn seeded_spend_counts_and_spend_from_elsewhere_adds() {
        let c = checks(
            RateLimit::default(),
            Some(Budget {
                usd: 2.0,
                period: Period::Month,
            }),
        );
        let mut s = LocalState::new();
        s.seed(T0, &c[0], 1.5);
        s.add_spend(T0, &c, 0.5);
        assert!(s.admit(T0, &c, 0, 0.0).is_err());
    }
}
