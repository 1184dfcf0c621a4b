//! The shared store: every limit's state in one Redis, so that every gateway instance using it
//! enforces the same limits together.
//!
//! - **Admission** is one round trip: one Lua script (`lua/admit.lua`, sent once and then called
//!   by its SHA with `EVALSHA`) checks every limit that applies to the request and, only when all
//!   pass, counts it in all of them — atomically, so two instances can never both take the last
//!   slot. Rates follow [`crate::gcra`]'s rules, with Redis's own clock (`TIME`), so instances
//!   with skewed clocks agree.
//! - **Reconciliation** rides along: the same script first applies the settlements of requests
//!   finished since the last call (their real usage replacing the estimate, their concurrency
//!   slots freed), so a busy instance pays no round trip of its own for them; the limiter sends
//!   what no admission carried within a few milliseconds (see [`crate::limiter`]). A settlement is
//!   applied whether the admission it rides with passes or not.
//! - **Concurrency** is a sorted set per scope: one member per request in flight, scored by its
//!   lease's expiry. Leases are renewed while the request runs (`lua/renew.lua`), so the slot of
//!   an instance that dies mid-request frees itself after [`LEASE`] instead of leaking.
//! - **Budgets** are a hash per scope and period (`spent`, `reserved`), keyed by the period's
//!   start, expiring a day after the period ends. Seeding (`lua/seed.lua`) only ever raises
//!   `spent`.
//!
//! Keys: `{prefix}rpm:{scope}`, `{prefix}tpm:{scope}`, `{prefix}conc:{scope}`,
//! `{prefix}budget:{scope}:{period start ms}`, with scopes `model:NAME`, `org:NAME`,
//! `key:ORG/KEY`. One admission touches keys of several scopes, so the store needs a single
//! Redis (or a primary with replicas), not a Redis Cluster.
//!
//! Every call is bounded by the configured timeout; what to do when Redis fails is the
//! limiter's decision, not this module's.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script, Value};

use crate::local::{Admitted, CheckState, Refused, Spend, Window};
use crate::period::Period;
use crate::policy::{Check, Limit};

/// How long a concurrency slot is held without renewal.
pub const LEASE: Duration = Duration::from_secs(60);
/// Settlements applied by one script call at most (Redis runs one script at a time: a long one
/// delays every other client).
pub const SETTLE_CHUNK: usize = 128;

/// A Redis failure or timeout.
#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        StoreError(e.to_string())
    }
}

/// One request to settle: its checks, its member id, and what it was estimated at and used.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// The checks it was admitted on.
    pub checks: std::sync::Arc<[Check]>,
    /// Its member id in the concurrency sets.
    pub member: String,
    /// Start of the budget periods it reserved in (Unix ms, per check; 0 for others).
    pub periods: Vec<i64>,
    /// Estimated (tokens, USD).
    pub estimated: (u64, f64),
    /// Actual (tokens, USD).
    pub actual: (u64, f64),
}

/// The Redis store; see the [module docs](self).
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    admit: std::sync::Arc<Script>,
    renew: std::sync::Arc<Script>,
    seed: std::sync::Arc<Script>,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn fmt_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "0".into()
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Double(d) => Some(d.to_string()),
        _ => None,
    }
}

fn num(v: Option<&Value>) -> f64 {
    v.and_then(text)
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0)
}

impl RedisStore {
    /// A store on `url` (`redis://host:port/db`, `rediss://` for TLS is not built in), connecting
    /// lazily and reconnecting by itself; every call gives up after `timeout`.
    ///
    /// # Errors
    /// The URL is not a Redis URL.
    pub fn new(url: &str, timeout: Duration, prefix: &str) -> Result<RedisStore, String> {
        let client = redis::Client::open(url).map_err(|e| format!("`{url}`: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("`{url}`: {e}"))?;
        Ok(RedisStore {
            conn,
            admit: std::sync::Arc::new(Script::new(include_str!("lua/admit.lua"))),
            renew: std::sync::Arc::new(Script::new(include_str!("lua/renew.lua"))),
            seed: std::sync::Arc::new(Script::new(include_str!("lua/seed.lua"))),
            prefix: prefix.to_owned(),
            timeout,
        })
    }

    /// The key of `check` (a budget's for the period starting at `period_start`).
    pub fn key(&self, check: &Check, period_start: i64) -> String {
        match check.limit {
            Limit::Rpm(_) => format!("{}rpm:{}", self.prefix, check.id),
            Limit::Tpm(_) => format!("{}tpm:{}", self.prefix, check.id),
            Limit::Concurrency(_) => format!("{}conc:{}", self.prefix, check.id),
            Limit::Budget(_) => format!("{}budget:{}:{period_start}", self.prefix, check.id),
        }
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(StoreError::from),
            Err(_) => Err(StoreError(format!(
                "Redis did not answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Adds the keys and arguments of `batch`'s settlements to `inv` (after its admission
    /// checks); rpm checks need none.
    fn carry(&self, inv: &mut redis::ScriptInvocation<'_>, batch: &[Settlement]) {
        for s in batch {
            for (c, start) in s.checks.iter().zip(&s.periods) {
                match c.limit {
                    Limit::Tpm(n) => inv
                        .arg(&s.member)
                        .arg("t")
                        .arg(n)
                        .arg(s.estimated.0)
                        .arg(s.actual.0),
                    Limit::Concurrency(n) => inv.arg(&s.member).arg("c").arg(n).arg(0).arg(0),
                    Limit::Budget(b) => inv
                        .arg(&s.member)
                        .arg("b")
                        .arg(fmt_f64(b.usd))
                        .arg(fmt_f64(s.estimated.1))
                        .arg(fmt_f64(s.actual.1)),
                    Limit::Rpm(_) => continue,
                };
                inv.key(self.key(c, *start));
            }
        }
    }

    /// Admits a request (see [`crate::local::LocalState::admit`] for the rules) in one round
    /// trip, applying the settlements `carried` first (whatever the admission's outcome);
    /// `now_ms` (this instance's clock) only picks the budget periods. Returns the budget period
    /// starts used, for the settlement.
    ///
    /// # Errors
    /// Redis failed or did not answer in time (the carried settlements may or may not have been
    /// applied).
    pub async fn admit(
        &self,
        member: &str,
        checks: &[Check],
        tokens: u64,
        cost: f64,
        now_ms: i64,
        carried: &[Settlement],
    ) -> Result<(Result<Admitted, Refused>, Vec<i64>), StoreError> {
        let mut inv = self.admit.prepare_invoke();
        inv.arg(member)
            .arg(LEASE.as_millis() as u64)
            .arg(checks.len());
        let mut periods = Vec::with_capacity(checks.len());
        for c in checks {
            let (start, end) = match c.limit {
                Limit::Budget(b) => b.period.bounds(now_ms),
                _ => (0, 0),
            };
            periods.push(start);
            inv.key(self.key(c, start));
            match c.limit {
                Limit::Rpm(n) => inv.arg("g").arg(n).arg(1u64).arg(0),
                Limit::Tpm(n) => inv.arg("g").arg(n).arg(tokens).arg(0),
                Limit::Concurrency(n) => inv.arg("c").arg(n).arg(0).arg(0),
                Limit::Budget(b) => inv.arg("b").arg(fmt_f64(b.usd)).arg(fmt_f64(cost)).arg(end),
            };
        }
        self.carry(&mut inv, carried);
        let mut conn = self.conn.clone();
        let reply: Vec<Value> = self.bounded(inv.invoke_async(&mut conn)).await?;
        let ok = num(reply.first()) == 1.0;
        if !ok {
            let index = (num(reply.get(1)) as usize).saturating_sub(1);
            let Some(c) = checks.get(index) else {
                return Err(StoreError("unexpected answer from the admit script".into()));
            };
            let retry = num(reply.get(2));
            let value = num(reply.get(3));
            let refused = match c.limit {
                Limit::Rpm(n) | Limit::Tpm(n) => {
                    let cost = if matches!(c.limit, Limit::Rpm(_)) {
                        1
                    } else {
                        tokens
                    };
                    let g = crate::gcra::Gcra::per_minute(n);
                    Refused {
                        index,
                        retry_after_ms: if cost > n {
                            f64::INFINITY
                        } else {
                            retry.max(0.0)
                        },
                        window: Some(Window {
                            limit: n,
                            remaining: g.remaining(value, 0.0),
                            reset_after_ms: value,
                        }),
                        used: 0.0,
                    }
                }
                Limit::Concurrency(_) => Refused {
                    index,
                    retry_after_ms: 1_000.0,
                    window: None,
                    used: value,
                },
                Limit::Budget(b) => Refused {
                    index,
                    retry_after_ms: (b.period.bounds(now_ms).1 - now_ms) as f64,
                    window: None,
                    used: value,
                },
            };
            return Ok((Err(refused), periods));
        }
        let mut admitted = Admitted::default();
        for (i, c) in checks.iter().enumerate() {
            if let Limit::Rpm(n) | Limit::Tpm(n) = c.limit {
                let reset = num(reply.get(2 + i));
                let g = crate::gcra::Gcra::per_minute(n);
                admitted.note(
                    matches!(c.limit, Limit::Rpm(_)),
                    Window {
                        limit: n,
                        remaining: g.remaining(reset, 0.0),
                        reset_after_ms: reset,
                    },
                );
            }
        }
        Ok((Ok(admitted), periods))
    }

    /// Settles requests no admission carried: one script call (the admission script admitting
    /// nothing) per [`SETTLE_CHUNK`] of them.
    ///
    /// # Errors
    /// Redis failed or did not answer in time (nothing is known to be applied).
    pub async fn settle(&self, batch: &[Settlement]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        for chunk in batch.chunks(SETTLE_CHUNK) {
            let mut inv = self.admit.prepare_invoke();
            inv.arg("").arg(LEASE.as_millis() as u64).arg(0);
            self.carry(&mut inv, chunk);
            self.bounded(inv.invoke_async::<Value>(&mut conn)).await?;
        }
        Ok(())
    }

    /// Renews the concurrency leases of requests still in flight: `(key, member)` pairs.
    ///
    /// # Errors
    /// Redis failed or did not answer in time.
    pub async fn renew(&self, leases: &[(String, String)]) -> Result<(), StoreError> {
        if leases.is_empty() {
            return Ok(());
        }
        let mut inv = self.renew.prepare_invoke();
        inv.arg(LEASE.as_millis() as u64);
        for (key, member) in leases {
            inv.key(key).arg(member);
        }
        let mut conn = self.conn.clone();
        self.bounded(inv.invoke_async::<Value>(&mut conn)).await?;
        Ok(())
    }

    /// Raises a budget's `spent` in the period starting at `period_start` to `spent` unless Redis
    /// already counted more (storage's spend at startup; an instance's own after Redis lost its
    /// data).
    ///
    /// # Errors
    /// Redis failed or did not answer in time.
    pub async fn seed(
        &self,
        check: &Check,
        period: Period,
        period_start: i64,
        spent: f64,
    ) -> Result<(), StoreError> {
        let key = self.key(check, period_start);
        let end = period.bounds(period_start).1;
        let mut inv = self.seed.prepare_invoke();
        inv.key(key).arg(fmt_f64(spent)).arg(end + 86_400_000);
        let mut conn = self.conn.clone();
        self.bounded(inv.invoke_async::<Value>(&mut conn)).await?;
        Ok(())
    }

    /// The state of each check, read in one pipelined round trip.
    ///
    /// # Errors
    /// Redis failed or did not answer in time.
    pub async fn states(
        &self,
        checks: &[Check],
        now_ms: i64,
    ) -> Result<Vec<CheckState>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("TIME");
        let mut starts = Vec::new();
        for c in checks {
            let start = match c.limit {
                Limit::Budget(b) => b.period.bounds(now_ms).0,
                _ => 0,
            };
            starts.push(start);
            let key = self.key(c, start);
            match c.limit {
                Limit::Rpm(_) | Limit::Tpm(_) => {
                    pipe.cmd("GET").arg(key);
                }
                Limit::Concurrency(_) => {
                    // Members whose lease ran out are not in flight any more.
                    pipe.cmd("ZCOUNT")
                        .arg(key)
                        .arg(format!("({now_ms}"))
                        .arg("+inf");
                }
                Limit::Budget(_) => {
                    pipe.cmd("HMGET").arg(key).arg("spent").arg("reserved");
                }
            }
        }
        let mut conn = self.conn.clone();
        let reply: Vec<Value> = self.bounded(pipe.query_async(&mut conn)).await?;
        let now = match reply.first() {
            Some(Value::Array(t)) => num(t.first()) * 1000.0 + num(t.get(1)) / 1000.0,
            _ => now_ms as f64,
        };
        let mut out = Vec::new();
        for (i, c) in checks.iter().enumerate() {
            let v = reply.get(i + 1);
            out.push(match c.limit {
                Limit::Rpm(n) | Limit::Tpm(n) => {
                    let tat = v.and_then(text).and_then(|s| s.parse::<f64>().ok());
                    let tat = tat.unwrap_or(now).max(now);
                    let g = crate::gcra::Gcra::per_minute(n);
                    CheckState::Window(Window {
                        limit: n,
                        remaining: g.remaining(tat, now),
                        reset_after_ms: tat - now,
                    })
                }
                Limit::Concurrency(_) => CheckState::InFlight {
                    in_flight: num(v) as u64,
                },
                Limit::Budget(_) => {
                    let (spent, reserved) = match v {
                        Some(Value::Array(a)) => (num(a.first()), num(a.get(1))),
                        _ => (0.0, 0.0),
                    };
                    CheckState::Spend(Spend {
                        period_start: starts[i],
                        spent,
                        reserved,
                    })
                }
            });
        }
        Ok(out)
    }
}
