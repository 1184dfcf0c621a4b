//! The engine that applies the limits: one per model, outermost in the model's engine, so a
//! refused request reaches neither the rules nor any upstream.
//!
//! It reads the caller from the [`Identity`] the auth engine inserted and the request's record
//! from its extensions (whose completion settles the request; see [`crate::limiter`]). Without a
//! record, the admission is settled on its estimate when the answer ends (the stream included).
//! Admitted answers — errors from upstream included — carry the OpenAI-style `x-ratelimit-*`
//! headers of the tightest rpm and tpm limits that applied.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::Stream;
use octo_core::layer::Layer;
use octo_core::record::RequestRecord;
use octo_core::{ArcEngine, Engine, Error, EventStream, Request, Response, ResponseBody};
use octo_engines::auth::Identity;

use crate::limiter::{Limiter, SettleOnDrop, window_headers};

/// Applies the [`Limiter`]'s limits to requests for one model; see the [module docs](self).
pub struct LimitEngine {
    model: Arc<str>,
    limiter: Arc<Limiter>,
    inner: ArcEngine,
}

impl std::fmt::Debug for LimitEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitEngine")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl LimitEngine {
    /// Limits requests for `model` (the name clients send) through `limiter`.
    pub fn new(model: impl Into<Arc<str>>, limiter: Arc<Limiter>, inner: ArcEngine) -> Self {
        LimitEngine {
            model: model.into(),
            limiter,
            inner,
        }
    }
}

/// The [`Layer`] form of [`LimitEngine`].
#[derive(Debug, Clone)]
pub struct LimitLayer {
    model: Arc<str>,
    limiter: Arc<Limiter>,
}

impl LimitLayer {
    /// Limits the wrapped engine as `model`.
    pub fn new(model: impl Into<Arc<str>>, limiter: Arc<Limiter>) -> Self {
        LimitLayer {
            model: model.into(),
            limiter,
        }
    }
}

impl Layer for LimitLayer {
    fn layer(&self, inner: ArcEngine) -> ArcEngine {
        Arc::new(LimitEngine::new(
            self.model.clone(),
            self.limiter.clone(),
            inner,
        ))
    }
}

#[async_trait]
impl Engine for LimitEngine {
    async fn process(&self, req: Request) -> Result<Response, Error> {
        let record_id = req
            .extensions
            .get::<RequestRecord>()
            .map(|r| r.id().to_string());
        let identity = req.extensions.get::<Identity>();
        let caller = identity.map(|i| (&*i.org, &*i.user));
        let admission = {
            let body = req.body.to_bytes();
            self.limiter
                .admit(&self.model, caller, &body, record_id.as_deref())
                .await?
        };
        let Some(admission) = admission else {
            return self.inner.process(req).await;
        };
        let a = admission.admitted;
        let windows = [("requests", a.requests), ("tokens", a.tokens)];
        let mut resp = match self.inner.process(req).await {
            Ok(resp) => resp,
            // An admitted request that failed upstream counted too: its answer says what is left.
            Err(mut e) => {
                for (kind, w) in windows {
                    if let Some(w) = w {
                        for (name, value) in window_headers(kind, &w) {
                            e = e.with_header(name, value);
                        }
                    }
                }
                return Err(e);
            }
        };
        for (kind, w) in windows {
            if let Some(w) = w {
                for (name, value) in window_headers(kind, &w) {
                    resp.headers.insert(name, value);
                }
            }
        }
        if let Some(guard) = admission.guard
            && let ResponseBody::Stream(stream) = resp.body
        {
            resp.body = ResponseBody::Stream(EventStream::new(GuardedStream {
                inner: stream,
                guard: Some(guard),
            }));
        }
        Ok(resp)
    }
}

/// An event stream that settles its request when it ends or is dropped.
struct GuardedStream {
    inner: EventStream,
    guard: Option<SettleOnDrop>,
}

impl Stream for GuardedStream {
    type Item = <EventStream as Stream>::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(None) = item {
            self.guard = None;
        }
        item
    }
}
