//! Adapters both ways between [`Engine`] and `tower::Service`, so tower middleware can wrap
//! engines (feature `tower`).
//!
//! - [`EngineService`] is an engine seen as a `Service<Request, Response = Response, Error =
//!   Error>`: always ready (an engine has no readiness step), each call a clone of an `Arc`.
//! - [`ServiceEngine`] is such a service (usually an [`EngineService`] under tower middleware) seen
//!   as an engine: each request waits for the service to be ready, then calls it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use octo_core::tower::{EngineService, ServiceEngine};
//! use octo_core::{engine_fn, ArcEngine, Body, Engine, Protocol, Request, Response};
//!
//! let upstream: ArcEngine =
//!     Arc::new(engine_fn(|req: Request| async move { Ok(Response::json(200, req.body)) }));
//! // Any tower middleware fits here, e.g. `ServiceBuilder::new().concurrency_limit(8)
//! // .service(EngineService::new(upstream))`.
//! let service = EngineService::new(upstream);
//! let engine = ServiceEngine::new(service);
//! let req = Request::post(Protocol::OpenAiChat, "/v1/chat/completions", Body::from_static(b"{}"));
//! assert_eq!(engine.process(req).await.unwrap().status, 200);
//! # }
//! ```
//!
//! # Errors
//!
//! A middleware's own errors (tower's `Elapsed`, `Overloaded`) are not [`Error`]s. Map them
//! with tower's `map_err` to the [`Error`] the client should see (a timeout, a 429); any error
//! that is still not an [`Error`] when it reaches [`ServiceEngine`] becomes a 500 whose message
//! names it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use async_trait::async_trait;
use tower_service::Service;

use crate::engine::{ArcEngine, Engine};
use crate::error::{BoxError, Error};
use crate::request::Request;
use crate::response::Response;

/// An [`Engine`] as a `tower::Service`; see the [module docs](self).
#[derive(Clone)]
pub struct EngineService {
    engine: ArcEngine,
}

impl EngineService {
    /// The service calling `engine`.
    pub fn new(engine: ArcEngine) -> Self {
        EngineService { engine }
    }
}

impl fmt::Debug for EngineService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EngineService")
    }
}

impl Service<Request> for EngineService {
    type Response = Response;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let engine = self.engine.clone();
        Box::pin(async move { engine.process(req).await })
    }
}

/// A `tower::Service` as an [`Engine`]; see the [module docs](self).
///
/// The engine keeps the service as a template and clones it for each request (tower services are
/// cheap to clone and share their state, a concurrency limit's semaphore for instance), so
/// requests do not wait on each other except as the middleware decides.
pub struct ServiceEngine<S> {
    service: Mutex<S>,
}

impl<S> ServiceEngine<S> {
    /// The engine calling `service`.
    pub fn new(service: S) -> Self {
        ServiceEngine {
            service: Mutex::new(service),
        }
    }
}

impl<S> fmt::Debug for ServiceEngine<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceEngine")
    }
}

/// An error of the service, as an [`Error`]: itself when it is one, else a 500 naming it.
fn into_error(e: impl Into<BoxError>) -> Error {
    match e.into().downcast::<Error>() {
        Ok(e) => *e,
        Err(other) => Error::internal(format!("middleware error: {other}")).with_source(other),
    }
}

#[async_trait]
impl<S> Engine for ServiceEngine<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    async fn process(&self, req: Request) -> Result<Response, Error> {
        let mut service = self
            .service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        std::future::poll_fn(|cx| service.poll_ready(cx))
            .await
            .map_err(into_error)?;
        service.call(req).await.map_err(into_error)
    }
}
