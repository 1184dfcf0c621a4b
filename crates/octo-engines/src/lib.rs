//! # octo-engines
//!
//! Engines that nest around each other and end at an upstream:
//!
//! - [`client::HttpEndpoint`]: calls an upstream LLM API over a pooled reqwest client, with
//!   connect, first-byte, idle and total timeouts, the auth header each protocol expects, and no
//!   client credential ever forwarded.
//! - [`convert::ConvertEngine`]: serves a client of any of the four chat protocols from an upstream
//!   that speaks another, streaming included.
//! - [`usage::Usage`]: token usage normalised across protocols, for conversion and accounting.
//!
//! Auth, rules, rewrite, balancers and retries build on the same [`octo_core::Engine`] trait.

pub mod client;
pub mod convert;
pub mod usage;
