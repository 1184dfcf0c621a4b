//! OctoLLM: an embeddable LLM gateway. This facade re-exports the workspace crates.
//!
//! - [`core`] (`octo-core`): the engine model, lazy bodies, streams, errors, the HTTP front.
//! - [`engines`] (`octo-engines`): the upstream client and the middleware engines.

pub use octo_core as core;
pub use octo_engines as engines;
