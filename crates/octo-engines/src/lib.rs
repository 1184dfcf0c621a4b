//! # octo-engines
//!
//! Engines that nest around each other and end at an upstream. This release has the terminal one:
//!
//! - [`client::HttpEndpoint`]: calls an upstream LLM API over a pooled reqwest client, with
//!   connect, first-byte, idle and total timeouts, the auth header each protocol expects, and no
//!   client credential ever forwarded.
//!
//! Auth, rules, rewrite, balancers, retries and protocol conversion build on the same
//! [`octo_core::Engine`] trait.

pub mod client;
