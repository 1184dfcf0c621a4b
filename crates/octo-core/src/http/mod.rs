//! The HTTP front: hyper 1.x serving, routing to engines, and writing streams.
//!
//! - [`Router`]: protocol routes → engines; bad input becomes protocol-shaped errors.
//! - [`serve`]: the accept loop with graceful shutdown.
//! - [`SseBody`]: one frame per event, keep-alives, in-band stream errors.

mod router;
mod serve;
mod sse_body;

pub use router::{
    ClientAddr, DEFAULT_MAX_BODY_BYTES, FrontBody, REQUEST_ID_HEADER, Router, default_path,
    error_response, strip_hop_by_hop,
};
pub use serve::{ServeConfig, SharedRouter, serve, shutdown_signal};
pub use sse_body::{SseBody, StreamEncoding};
