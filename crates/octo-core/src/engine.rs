//! The [`Engine`] trait: one async function from [`Request`] to [`Response`].
//!
//! Everything in OctoLLM is an engine: the HTTP client that calls an upstream, and every middleware
//! around it (auth, rules, rewrite, balancing, conversion). A middleware holds its inner engine as an
//! [`ArcEngine`] and calls it; the standalone server builds such trees from YAML at run time, which is
//! why engines are trait objects rather than a generic stack.
//!
//! # Contract
//!
//! - `process` takes `&self`: an engine is shared by every in-flight request and must be
//!   `Send + Sync`. There is no readiness step (as in hyper 1.x's `Service`); backpressure is an
//!   engine's job (a concurrency limit answers 429 or waits).
//! - **Cancellation is drop.** When the client goes away, the front drops the future returned by
//!   `process`, or, for a streaming response, the [`EventStream`](crate::EventStream). Dropping must
//!   cancel the work: an upstream request in flight is aborted, a producer task is stopped. Engines
//!   must not spawn work that outlives the future or stream unless it is tied to it (see
//!   [`EventStream::channel`](crate::EventStream::channel)).
//! - A request is owned by the call. An engine that retries keeps its own copy
//!   ([`Request`] clones are cheap: bodies are reference counted) so no attempt sees another
//!   attempt's changes.
//! - Errors are values: return an [`Error`] with the right kind; the front renders it in the client's
//!   protocol. An engine never panics on bad input.
//!
//! # Ordering
//!
//! Nesting reads outside-in: in `Auth(Rule(Client))` the auth engine sees the request first and the
//! response last.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Error;
use crate::request::Request;
use crate::response::Response;

/// An async function from request to response; see the [module docs](self) for the contract.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Handles one request.
    async fn process(&self, req: Request) -> Result<Response, Error>;
}

/// A shared, type-erased engine: how engines hold their inner engines.
pub type ArcEngine = Arc<dyn Engine>;

/// The future [`Engine::process`] returns (what `#[async_trait]` makes of the `async fn`).
type Processing<'a> = Pin<Box<dyn Future<Output = Result<Response, Error>> + Send + 'a>>;

// The pointer impls hand back the inner engine's boxed future as it is. Written with
// `#[async_trait]` they would box a second future around it: one more allocation, and a copy
// of the request, at every `ArcEngine` of a request's path (`docs/performance.md`).
impl<E: Engine + ?Sized> Engine for Arc<E> {
    fn process<'a, 'b>(&'a self, req: Request) -> Processing<'b>
    where
        'a: 'b,
        Self: 'b,
    {
        (**self).process(req)
    }
}

impl<E: Engine + ?Sized> Engine for Box<E> {
    fn process<'a, 'b>(&'a self, req: Request) -> Processing<'b>
    where
        'a: 'b,
        Self: 'b,
    {
        (**self).process(req)
    }
}

/// An engine made from a closure; see [`engine_fn`].
#[derive(Clone)]
pub struct EngineFn<F> {
    f: F,
}

/// Makes an engine from an async closure.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use octo_core::{engine_fn, Protocol, Body, Engine, Request, Response};
///
/// let echo = engine_fn(|req: Request| async move { Ok(Response::json(200, req.body)) });
/// let req = Request::post(Protocol::OpenAiChat, "/v1/chat/completions", Body::from_static(b"{}"));
/// let resp = echo.process(req).await.unwrap();
/// assert_eq!(resp.status, 200);
/// # }
/// ```
pub fn engine_fn<F, Fut>(f: F) -> EngineFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response, Error>> + Send + 'static,
{
    EngineFn { f }
}

#[async_trait]
impl<F, Fut> Engine for EngineFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response, Error>> + Send + 'static,
{
    async fn process(&self, req: Request) -> Result<Response, Error> {
        (self.f)(req).await
    }
}

impl<F> std::fmt::Debug for EngineFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineFn")
    }
}
