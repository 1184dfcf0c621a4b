//! OctoLLM: an embeddable LLM gateway. This facade re-exports the workspace crates.
//!
//! - [`core`] (`octo-core`): the engine model, lazy bodies, streams, errors, the HTTP front.
//! - [`convert`] (`octo-convert`): sans-IO protocol conversion between the four chat protocols.
//! - [`engines`] (`octo-engines`): the upstream client and the middleware engines.

pub use octo_convert as convert;
pub use octo_core as core;
pub use octo_engines as engines;
