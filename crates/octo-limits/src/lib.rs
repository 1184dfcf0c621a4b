//! Rate limits and budgets for OctoLLM: `rate_limit: {rpm, tpm, concurrency}` on models, orgs and
//! keys, `budget: {usd, period}` on orgs and keys, enforced by one instance in memory or by every
//! instance together through Redis.
//!
//! | module | what |
//! |---|---|
//! | [`gcra`] | the rate arithmetic (GCRA), sans IO |
//! | [`period`] | UTC budget periods (day, week, month), sans IO |
//! | [`estimate`] | the token estimate a request is admitted on |
//! | [`policy`] | which limits apply to a request |
//! | [`local`] | the in-process store (sans IO; the single instance's store and Redis's fallback) |
//! | [`redis`] | the shared store: one Lua round trip per admission, pipelined settlements |
//! | [`limiter`] | admission, reconciliation from the request record, Redis failure handling |
//! | [`engine`] | the engine each model's requests pass first |
//!
//! See `docs/limits.md` for the behaviour as users see it.

pub mod engine;
pub mod estimate;
pub mod gcra;
pub mod limiter;
pub mod local;
pub mod period;
pub mod policy;
pub mod redis;

pub use engine::{LimitEngine, LimitLayer};
pub use limiter::{Limiter, OnError, RedisSettings};
pub use policy::{Budget, Policy, RateLimit, Rules};
