//! # octo-engines
//!
//! Engines that nest around each other and end at an upstream. Each is a small type usable from
//! Rust without the server:
//!
//! - [`endpoint::HttpEndpoint`]: calls an upstream LLM API over a pooled reqwest client, with
//!   connect, first-byte, idle and total timeouts, the auth header each protocol expects, no client
//!   credential ever forwarded, and a [`endpoint::KeyPool`] rotating several API keys.
//! - [`balance::TargetSet`]: one model's targets behind a [`balance::Strategy`] (smooth weighted
//!   round robin, round robin, weighted random, priority failover, lowest latency, optionally
//!   sticky), with classified retries within a [`retry::RetryPolicy`] (an attempt cap, a deadline)
//!   and per-attempt records.
//! - [`breaker::CircuitBreaker`]: opens after consecutive failures, backs off exponentially, lets
//!   one probe through.
//! - [`limit::ConcurrencyLimit`]: a permit held until the response stream ends.
//! - [`add_header::UpstreamHeaders`]: the request extension through which engines (a rule's
//!   `set_headers`) ask the endpoint for extra upstream headers.
//! - [`auth::AuthEngine`]: checks the client's gateway key (constant time), enforces per-model
//!   access (`public | internal | private`), key expiry and allowed models, and records the
//!   caller's [`auth::Identity`] for later engines.
//! - [`rules::RulesEngine`]: first-match rules written in evalexpr ([`expr`] describes the
//!   language and the variables an expression reads), whose actions deny, route, rewrite and set
//!   upstream headers.
//! - [`convert::ConvertEngine`]: serves a client of any of the four chat protocols from an upstream
//!   that speaks another, streaming included (the IO around the sans-IO `octo-convert` crate);
//!   [`usage::Usage`] (re-exported from `octo-convert`) is token usage normalised across protocols,
//!   for conversion and accounting.
//! - [`responses::ResponseState`] and [`responses::ResponsesApi`]: the Responses API's stored
//!   answers (`previous_response_id`, `GET`/`DELETE /v1/responses/{id}`) for upstreams that keep
//!   none, over a [`responses::ResponseStore`].
//! - [`rewrite::RewriteEngine`]: `remove_keys`, `set_keys` and `set_keys_by_expr` on the request,
//!   the non-stream response and each stream event.
//!
//! Engines are built from plain Rust values and fail at construction, with a [`BuildError`],
//! rather than at request time. The middleware among them also come as
//! [`Layer`](octo_core::layer::Layer)s, stacked with an
//! [`EngineBuilder`](octo_core::layer::EngineBuilder).
//!
//! A gateway for one model with two backends, in code:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use octo_core::Protocol;
//! use octo_engines::balance::{StrategyKind, Target, TargetSet};
//! use octo_engines::endpoint::{EndpointConfig, HttpEndpoint};
//! use octo_engines::retry::RetryPolicy;
//!
//! let a = HttpEndpoint::new(
//!     EndpointConfig::new("a", "https://api.openai.com", Protocol::OpenAiChat).api_key("sk-a"),
//! )?;
//! let b = HttpEndpoint::new(
//!     EndpointConfig::new("b", "https://openai.example.net", Protocol::OpenAiChat).api_key("sk-b"),
//! )?;
//! let model = TargetSet::builder("gpt-4o-mini", vec![
//!     Target::from(Arc::new(a)).with_weight(3).with_model("gpt-4o-mini"),
//!     Target::from(Arc::new(b)).with_weight(1).with_model("gpt-4o-mini-2024-07-18"),
//! ])
//! .strategy(StrategyKind::WeightedRoundRobin)
//! .retry(RetryPolicy::new(3, Duration::from_secs(30)))
//! .sticky(Duration::from_secs(300))
//! .build()?;
//! # let _ = model; Ok(()) }
//! ```

pub mod add_header;
pub mod auth;
pub mod balance;
pub mod breaker;
pub mod cache;
pub mod convert;
pub mod embeddings;
pub mod endpoint;
pub mod expr;
pub mod limit;
pub mod moderation;
pub mod responses;
pub mod retry;
pub mod rewrite;
pub mod rules;
pub use octo_core::usage;

pub use octo_core::{BuildError, BuildErrorKind};
