//! One way to wrap an engine in middleware: [`Layer`], and [`EngineBuilder`] to stack layers.
//!
//! A middleware engine holds its inner engine. Its [`Layer`] is the middleware *without* the inner
//! engine: the settings, validated and compiled once, waiting for something to wrap. This is the
//! shape of tower's `Layer` and `ServiceBuilder`, specialised to [`ArcEngine`] because the server
//! assembles its graph at run time from configuration.
//!
//! # Order
//!
//! [`EngineBuilder`] lists layers **outermost first**, as tower's `ServiceBuilder` does: in
//!
//! ```text
//! EngineBuilder::new().layer(auth).layer(rules).engine(endpoint)
//! ```
//!
//! a request meets `auth`, then `rules`, then `endpoint`; the response travels back the other way.
//! It builds `auth.layer(rules.layer(endpoint))`.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use octo_core::layer::{EngineBuilder, layer_fn};
//! use octo_core::{engine_fn, ArcEngine, Body, Engine, Error, Protocol, Request, Response};
//!
//! // A layer that refuses streaming requests.
//! let no_stream = layer_fn(|inner: ArcEngine| -> ArcEngine {
//!     Arc::new(engine_fn(move |req: Request| {
//!         let inner = inner.clone();
//!         async move {
//!             if req.peek()?.stream {
//!                 return Err(Error::forbidden("streaming is not allowed"));
//!             }
//!             inner.process(req).await
//!         }
//!     }))
//! });
//! let upstream: ArcEngine =
//!     Arc::new(engine_fn(|req: Request| async move { Ok(Response::json(200, req.body)) }));
//! let engine = EngineBuilder::new().layer(no_stream).engine(upstream);
//!
//! let req = Request::post(Protocol::OpenAiChat, "/v1/chat/completions",
//!     Body::from_static(br#"{"model":"m","stream":true}"#));
//! assert_eq!(engine.process(req).await.unwrap_err().status(), 403);
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use crate::engine::ArcEngine;

/// Wraps an engine in a middleware engine; see the [module docs](self).
///
/// Building a layer is where configuration is checked (a constructor returning
/// [`BuildError`](crate::BuildError)); [`Layer::layer`] itself cannot fail.
pub trait Layer: Send + Sync {
    /// The middleware around `inner`.
    fn layer(&self, inner: ArcEngine) -> ArcEngine;
}

impl<L: Layer + ?Sized> Layer for Arc<L> {
    fn layer(&self, inner: ArcEngine) -> ArcEngine {
        (**self).layer(inner)
    }
}

impl<L: Layer + ?Sized> Layer for Box<L> {
    fn layer(&self, inner: ArcEngine) -> ArcEngine {
        (**self).layer(inner)
    }
}

/// `None` wraps nothing: the inner engine is returned as it is.
impl<L: Layer> Layer for Option<L> {
    fn layer(&self, inner: ArcEngine) -> ArcEngine {
        match self {
            Some(l) => l.layer(inner),
            None => inner,
        }
    }
}

/// A layer made from a closure; see [`layer_fn`].
#[derive(Clone)]
pub struct LayerFn<F> {
    f: F,
}

/// Makes a layer from a function of the inner engine.
pub fn layer_fn<F>(f: F) -> LayerFn<F>
where
    F: Fn(ArcEngine) -> ArcEngine + Send + Sync,
{
    LayerFn { f }
}

impl<F> Layer for LayerFn<F>
where
    F: Fn(ArcEngine) -> ArcEngine + Send + Sync,
{
    fn layer(&self, inner: ArcEngine) -> ArcEngine {
        (self.f)(inner)
    }
}

impl<F> fmt::Debug for LayerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LayerFn")
    }
}

/// A stack of layers, outermost first; see the [module docs](self) for the order.
///
/// An `EngineBuilder` is itself a [`Layer`], so stacks nest.
#[derive(Clone, Default)]
pub struct EngineBuilder {
    layers: Vec<Arc<dyn Layer>>,
}

impl EngineBuilder {
    /// An empty stack (wraps nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `layer` inside the layers added so far.
    pub fn layer(mut self, layer: impl Layer + 'static) -> Self {
        self.layers.push(Arc::new(layer));
        self
    }

    /// Adds `layer` when it is `Some` (a configured, optional middleware).
    pub fn option_layer(self, layer: Option<impl Layer + 'static>) -> Self {
        match layer {
            Some(l) => self.layer(l),
            None => self,
        }
    }

    /// The number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the stack has no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Wraps `inner` in every layer: the first added is the outermost.
    pub fn engine(&self, inner: ArcEngine) -> ArcEngine {
        self.layers
            .iter()
            .rev()
            .fold(inner, |engine, layer| layer.layer(engine))
    }
}

impl Layer for EngineBuilder {
    fn layer(&self, inner: ArcEngine) -> ArcEngine {
        self.engine(inner)
    }
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("layers", &self.layers.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{Body, Engine, Protocol, Request, Response, engine_fn};

    /// A layer that appends `name` to a shared trail when a request passes it.
    fn mark(name: &'static str, trail: Arc<Mutex<Vec<&'static str>>>) -> impl Layer {
        layer_fn(move |inner: ArcEngine| -> ArcEngine {
            let trail = trail.clone();
            Arc::new(engine_fn(move |req: Request| {
                trail.lock().unwrap().push(name);
                let inner = inner.clone();
                async move { inner.process(req).await }
            }))
        })
    }

    #[tokio::test]
    async fn the_first_layer_added_sees_the_request_first() {
        let trail = Arc::new(Mutex::new(Vec::new()));
        let end: ArcEngine = Arc::new(engine_fn(|_req: Request| async {
            Ok(Response::json(200, Body::from_static(b"{}")))
        }));
        let inner_stack = EngineBuilder::new().layer(mark("c", trail.clone()));
        let engine = EngineBuilder::new()
            .layer(mark("a", trail.clone()))
            .option_layer(None::<LayerFn<fn(ArcEngine) -> ArcEngine>>)
            .layer(mark("b", trail.clone()))
            .layer(inner_stack)
            .engine(end);
        let req = Request::post(Protocol::OpenAiChat, "/", Body::from_static(b"{}"));
        engine.process(req).await.unwrap();
        assert_eq!(*trail.lock().unwrap(), ["a", "b", "c"]);
    }
}
