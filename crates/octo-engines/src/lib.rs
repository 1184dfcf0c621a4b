//! # octo-engines
//!
//! Engines that nest around each other and end at an upstream:
//!
//! - [`client::HttpEndpoint`]: calls an upstream LLM API over a pooled reqwest client, with
//!   connect, first-byte, idle and total timeouts, the auth header each protocol expects, and no
//!   client credential ever forwarded.
//! - [`auth::AuthEngine`]: checks the client's gateway key (constant time), enforces per-model
//!   access (`public | internal | private`), key expiry and allowed models, and records the
//!   caller's [`auth::Identity`] for later engines.
//! - [`rules::RulesEngine`]: first-match rules written in evalexpr ([`expr`] describes the
//!   language and the variables an expression reads), whose actions deny, route, rewrite and set
//!   upstream headers.
//! - [`rewrite::RewriteEngine`]: `remove_keys`, `set_keys` and `set_keys_by_expr` on the request,
//!   the non-stream response and each stream event.
//! - [`add_header::UpstreamHeaders`]: the request extension through which engines ask the
//!   endpoint for extra upstream headers.
//!
//! Every engine is built from plain Rust values and fails at construction, with a [`BuildError`]
//! naming what is wrong, rather than at request time. Balancers, retries and protocol conversion
//! build on the same [`octo_core::Engine`] trait.

pub mod add_header;
pub mod auth;
mod build_error;
pub mod client;
pub mod expr;
pub mod rewrite;
pub mod rules;

pub use build_error::BuildError;
