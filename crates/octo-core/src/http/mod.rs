//! The HTTP front: hyper 1.x serving, routing to engines, and writing streams (the default `http`
//! feature; the engine model does not need it).
//!
//! - [`Router`]: protocol routes → engines; bad input becomes protocol-shaped errors.
//! - [`serve`]: the accept loop with graceful shutdown.
//! - [`SseBody`]: one frame per event, keep-alives, in-band stream errors.

mod router;
mod serve;
mod sse_body;

pub use crate::request::ClientAddr;
pub use router::{
    DEFAULT_MAX_BODY_BYTES, FrontBody, REQUEST_ID_HEADER, Router, default_path, error_response,
    strip_hop_by_hop,
};
pub use serve::{ServeConfig, SharedRouter, serve, shutdown_signal};
pub use sse_body::{SseBody, StreamEncoding};
