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

use std::io::Write as _;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, RedisError, RedisWrite, Script, ServerErrorKind, ToRedisArgs, Value};

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

/// What one admission script call answered.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmitReply {
    /// Admitted (the windows for the headers), or refused.
    pub outcome: Result<Admitted, Refused>,
    /// Start of the budget periods used (Unix ms, per check; 0 for others), for the settlement.
    pub periods: Vec<i64>,
    /// When refused: how long (ms, from when Redis ran the script) the refusal holds whatever
    /// the other requests do — an rpm limit's wait (nothing but time frees it), or the rest of
    /// the period for a budget whose finished requests alone spent it. `None` when a settlement
    /// could reopen it sooner (tpm: a request that used fewer tokens than estimated gives them
    /// back; concurrency; a budget held by reservations).
    pub holds_ms: Option<f64>,
}

/// A storage key written straight into the command being built: no `String` per key per request.
struct Key<'a> {
    prefix: &'a str,
    check: &'a Check,
    period_start: i64,
}

impl Key<'_> {
    fn kind(&self) -> &'static str {
        match self.check.limit {
            Limit::Rpm(_) => "rpm:",
            Limit::Tpm(_) => "tpm:",
            Limit::Concurrency(_) => "conc:",
            Limit::Budget(_) => "budget:",
        }
    }
}

impl ToRedisArgs for Key<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut w = out.writer_for_next_arg();
        // Writing to the command's buffer cannot fail.
        let _ = w.write_all(self.prefix.as_bytes());
        let _ = w.write_all(self.kind().as_bytes());
        let _ = w.write_all(self.check.id.as_bytes());
        if let Limit::Budget(_) = self.check.limit {
            let _ = write!(w, ":{}", self.period_start);
        }
    }
}

/// `v` if finite, else 0 (USD arguments: Lua and `HINCRBYFLOAT` must read them).
fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// An integer reply (or a numeric string).
fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Int(i)) => *i,
        other => num(other) as i64,
    }
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
        let k = self.key_arg(check, period_start);
        let mut out = format!("{}{}{}", k.prefix, k.kind(), check.id);
        if let Limit::Budget(_) = check.limit {
            out.push_str(&format!(":{period_start}"));
        }
        out
    }

    fn key_arg<'a>(&'a self, check: &'a Check, period_start: i64) -> Key<'a> {
        Key {
            prefix: &self.prefix,
            check,
            period_start,
        }
    }

    /// Runs the admission script with `keys` and `args` already written into `cmd` (after
    /// `EVALSHA sha numkeys`); loads the script once when Redis does not know it (a restarted
    /// Redis, `SCRIPT FLUSH`).
    async fn eval_admit(&self, cmd: &Cmd) -> Result<Value, StoreError> {
        let mut conn = self.conn.clone();
        let call = async {
            match cmd.query_async::<Value>(&mut conn).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    self.admit.prepare_invoke().load_async(&mut conn).await?;
                    cmd.query_async::<Value>(&mut conn).await
                }
                other => other,
            }
        };
        self.bounded(call).await
    }

    /// `EVALSHA` of the admission script with the keys of `checks` (budgets' in `periods`) and of
    /// `batch`'s settlements, and the arguments of neither yet.
    fn admit_cmd(&self, checks: &[Check], periods: &[i64], batch: &[Settlement]) -> Cmd {
        let carried_keys: usize = batch
            .iter()
            .map(|s| {
                s.checks
                    .iter()
                    .filter(|c| !matches!(c.limit, Limit::Rpm(_)))
                    .count()
            })
            .sum();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.admit.get_hash())
            .arg(checks.len() + carried_keys);
        for (c, start) in checks.iter().zip(periods) {
            cmd.arg(self.key_arg(c, *start));
        }
        for s in batch {
            for (c, start) in s.checks.iter().zip(&s.periods) {
                if !matches!(c.limit, Limit::Rpm(_)) {
                    cmd.arg(self.key_arg(c, *start));
                }
            }
        }
        cmd
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

    /// Adds the arguments of `batch`'s settlements to `cmd` (after its admission checks'; the
    /// keys are [`Self::admit_cmd`]'s); rpm checks need none.
    fn carry(cmd: &mut Cmd, batch: &[Settlement]) {
        for s in batch {
            for c in s.checks.iter() {
                match c.limit {
                    Limit::Tpm(n) => cmd
                        .arg(&*s.member)
                        .arg("t")
                        .arg(n)
                        .arg(s.estimated.0)
                        .arg(s.actual.0),
                    Limit::Concurrency(n) => cmd.arg(&*s.member).arg("c").arg(n).arg(0).arg(0),
                    Limit::Budget(b) => cmd
                        .arg(&*s.member)
                        .arg("b")
                        .arg(finite(b.usd))
                        .arg(finite(s.estimated.1))
                        .arg(finite(s.actual.1)),
                    Limit::Rpm(_) => continue,
                };
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
        let r = self
            .admit_reply(member, checks, tokens, cost, now_ms, carried)
            .await?;
        Ok((r.outcome, r.periods))
    }

    /// [`Self::admit`], with how long a refusal holds (for a cache of refusals).
    ///
    /// # Errors
    /// As [`Self::admit`].
    pub async fn admit_reply(
        &self,
        member: &str,
        checks: &[Check],
        tokens: u64,
        cost: f64,
        now_ms: i64,
        carried: &[Settlement],
    ) -> Result<AdmitReply, StoreError> {
        let mut periods = Vec::with_capacity(checks.len());
        let mut ends = Vec::new();
        for c in checks {
            let (start, end) = match c.limit {
                Limit::Budget(b) => b.period.bounds(now_ms),
                _ => (0, 0),
            };
            periods.push(start);
            if let Limit::Budget(_) = c.limit {
                ends.push(end);
            }
        }
        let mut cmd = self.admit_cmd(checks, &periods, carried);
        cmd.arg(member)
            .arg(LEASE.as_millis() as u64)
            .arg(checks.len());
        let mut ends = ends.into_iter();
        for c in checks {
            match c.limit {
                Limit::Rpm(n) => cmd.arg("g").arg(n).arg(1u64).arg(0),
                Limit::Tpm(n) => cmd.arg("g").arg(n).arg(tokens).arg(0),
                Limit::Concurrency(n) => cmd.arg("c").arg(n).arg(0).arg(0),
                Limit::Budget(b) => cmd
                    .arg("b")
                    .arg(finite(b.usd))
                    .arg(finite(cost))
                    .arg(ends.next().unwrap_or(0)),
            };
        }
        Self::carry(&mut cmd, carried);
        let reply = match self.eval_admit(&cmd).await? {
            Value::Array(v) => v,
            other => {
                return Err(StoreError(format!(
                    "unexpected answer from the admit script: {other:?}"
                )));
            }
        };
        let us = |v: Option<&Value>| int(v) as f64 / 1000.0;
        if int(reply.first()) != 1 {
            let index = (int(reply.get(1)) as usize).saturating_sub(1);
            let Some(c) = checks.get(index) else {
                return Err(StoreError("unexpected answer from the admit script".into()));
            };
            let retry = int(reply.get(2));
            let (refused, holds_ms) = match c.limit {
                Limit::Rpm(n) | Limit::Tpm(n) => {
                    let value = us(reply.get(3));
                    let g = crate::gcra::Gcra::per_minute(n);
                    let retry_after_ms = if retry < 0 {
                        f64::INFINITY
                    } else {
                        retry as f64 / 1000.0
                    };
                    let refused = Refused {
                        index,
                        retry_after_ms,
                        window: Some(Window {
                            limit: n,
                            remaining: g.remaining(value, 0.0),
                            reset_after_ms: value,
                        }),
                        used: 0.0,
                    };
                    // Only time frees an rpm slot (no settlement gives requests back).
                    let holds = matches!(c.limit, Limit::Rpm(_)) && retry_after_ms.is_finite();
                    (refused, holds.then_some(retry_after_ms))
                }
                Limit::Concurrency(_) => (
                    Refused {
                        index,
                        retry_after_ms: 1_000.0,
                        window: None,
                        used: int(reply.get(3)) as f64,
                    },
                    None,
                ),
                Limit::Budget(b) => {
                    let left = (b.period.bounds(now_ms).1 - now_ms) as f64;
                    (
                        Refused {
                            index,
                            retry_after_ms: left,
                            window: None,
                            used: num(reply.get(3)),
                        },
                        (retry == 1).then_some(left),
                    )
                }
            };
            return Ok(AdmitReply {
                outcome: Err(refused),
                periods,
                holds_ms,
            });
        }
        let mut admitted = Admitted::default();
        for (i, c) in checks.iter().enumerate() {
            if let Limit::Rpm(n) | Limit::Tpm(n) = c.limit {
                let reset = us(reply.get(1 + i));
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
        Ok(AdmitReply {
            outcome: Ok(admitted),
            periods,
            holds_ms: None,
        })
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
        for chunk in batch.chunks(SETTLE_CHUNK) {
            let mut cmd = self.admit_cmd(&[], &[], chunk);
            cmd.arg("").arg(LEASE.as_millis() as u64).arg(0);
            Self::carry(&mut cmd, chunk);
            self.eval_admit(&cmd).await?;
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
        inv.key(key).arg(finite(spent)).arg(end + 86_400_000);
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
