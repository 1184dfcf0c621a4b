//! # octo-core
//!
//! The minimal core of OctoLLM, an LLM gateway: everything an engine needs and nothing more. No HTTP
//! client and no configuration live here; those are in `octo-engines` and `octo-server`.
//!
//! - [`Engine`]: one async `process(Request) -> Result<Response, Error>`; engines nest by holding
//!   [`ArcEngine`]s. Read its docs for the cancellation contract.
//! - [`Body`]: a lazily parsed JSON body: bytes until someone asks, parsed once, re-serialised only
//!   when changed. [`Body::peek`] reads `model`/`stream` without building a tree.
//! - [`Response`]: a full [`Body`] or an [`EventStream`] of [`Event`]s, each keeping its raw frame.
//! - [`sse`]: an SSE decoder that survives any chunking, and protocol-aware keep-alives.
//! - [`Error`]: kind, status, retryability and retry-after, rendered in the client's protocol.
//! - `http` (the default `http` feature): the hyper 1.x front — routes for the four protocols,
//!   limits, graceful shutdown. With `default-features = false` the crate is the engine model
//!   alone and pulls in neither hyper nor hyper-util.
//! - [`overhead`]: the gateway's own time per request (total − upstream wait), as a histogram.
//! - [`layer`]: [`Layer`](layer::Layer) and [`EngineBuilder`](layer::EngineBuilder), one way to
//!   wrap engines in middleware (outermost first, as tower's `ServiceBuilder`); with the `tower`
//!   feature, `tower` adapts engines to and from `tower::Service`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use octo_core::{engine_fn, Protocol, ArcEngine, Body, Engine, Error, Request, Response};
//!
//! // A terminal engine answering every chat request.
//! let upstream: ArcEngine = Arc::new(engine_fn(|_req: Request| async {
//!     Ok(Response::json(200, Body::from_static(br#"{"choices":[]}"#)))
//! }));
//!
//! // A middleware: refuse streaming, otherwise pass the request on.
//! struct NoStream(ArcEngine);
//! #[async_trait::async_trait]
//! impl Engine for NoStream {
//!     async fn process(&self, req: Request) -> Result<Response, Error> {
//!         if req.peek()?.stream {
//!             return Err(Error::forbidden("streaming is not allowed"));
//!         }
//!         self.0.process(req).await
//!     }
//! }
//!
//! let engine = NoStream(upstream);
//! let req = Request::post(Protocol::OpenAiChat, "/v1/chat/completions",
//!     Body::from_static(br#"{"model":"m","stream":true}"#));
//! assert_eq!(engine.process(req).await.unwrap_err().status(), 403);
//! # }
//! ```

pub mod body;
pub mod build_error;
pub mod engine;
pub mod error;
pub mod event;
#[cfg(feature = "http")]
pub mod http;
pub mod layer;
pub mod overhead;
pub mod protocol;
pub mod record;
pub mod request;
pub mod response;
pub mod sse;
#[cfg(feature = "tower")]
pub mod tower;
pub mod usage;

pub use body::{Body, Peek};
pub use build_error::{BuildError, BuildErrorKind};
pub use engine::{ArcEngine, Engine, EngineFn, engine_fn};
pub use error::{BoxError, Error, ErrorKind, RenderedError, UpstreamBody};
pub use event::{Event, EventSender, EventStream, StreamClosed};
pub use protocol::{ErrorFamily, Protocol, protocol_list};
pub use request::{ClientAddr, PeekRef, Request, RouteParams};
pub use response::{Response, ResponseBody};
