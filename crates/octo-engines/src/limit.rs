//! A concurrency limit whose permit lives as long as the response — stream included.
//!
//! tower's `ConcurrencyLimit` keeps its permit in the response *future*, so for a streaming LLM
//! answer the slot is freed when the headers arrive, while the expensive part (minutes of tokens)
//! is still running. [`ConcurrencyLimit`] follows tower's `TrackCompletion` pattern instead: the
//! permit is moved into the response's [`EventStream`], and released when the stream ends or is
//! dropped (client gone). A full (non-stream) response is already complete when returned, so its
//! permit is released then; an error releases it at once.
//!
//! Over the limit, [`OverLimit`] decides: answer 429 at once (`Error::rate_limited`, retryable, so
//! a [`TargetSet`](crate::balance::TargetSet) fails over to another target), or queue for up to a
//! timeout and answer 429 if no slot frees up. Waiting is cancelled with the request.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use octo_core::layer::Layer;
use octo_core::{ArcEngine, Engine, Error, EventStream, Request, Response, ResponseBody};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What to do when every slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    /// Answer 429 at once.
    Reject,
    /// Wait up to this long for a slot, then answer 429.
    Queue(Duration),
}

/// At most `max` requests in flight through `inner`; see the [module docs](self).
pub struct ConcurrencyLimit {
    name: String,
    inner: ArcEngine,
    max: usize,
    semaphore: Arc<Semaphore>,
    over_limit: OverLimit,
}

impl std::fmt::Debug for ConcurrencyLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurrencyLimit")
            .field("name", &self.name)
            .field("max", &self.max)
            .field("in_flight", &self.in_flight())
            .field("over_limit", &self.over_limit)
            .finish_non_exhaustive()
    }
}

impl ConcurrencyLimit {
    /// Limits `inner` to `max` requests in flight (`0` refuses everything); `name` (a backend or
    /// model) appears in the 429 message.
    pub fn new(
        name: impl Into<String>,
        inner: ArcEngine,
        max: usize,
        over_limit: OverLimit,
    ) -> Self {
        let max = max.min(Semaphore::MAX_PERMITS);
        ConcurrencyLimit {
            name: name.into(),
            inner,
            max,
            semaphore: Arc::new(Semaphore::new(max)),
            over_limit,
        }
    }

    /// Requests currently holding a slot (streams count until they end).
    pub fn in_flight(&self) -> usize {
        self.max - self.semaphore.available_permits()
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    fn over(&self) -> Error {
        Error::rate_limited(
            format!(
                "`{}` already has {} requests in flight (its concurrency limit); try again shortly",
                self.name, self.max
            ),
            None,
        )
        .with_code("concurrency_limit_exceeded")
    }
}

/// The [`Layer`] form of [`ConcurrencyLimit`]: each engine it wraps gets its own limit of `max`.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    name: String,
    max: usize,
    over_limit: OverLimit,
}

impl ConcurrencyLimitLayer {
    /// At most `max` requests in flight through each wrapped engine; `name` appears in the 429.
    pub fn new(name: impl Into<String>, max: usize, over_limit: OverLimit) -> Self {
        ConcurrencyLimitLayer {
            name: name.into(),
            max,
            over_limit,
        }
    }
}

impl Layer for ConcurrencyLimitLayer {
    fn layer(&self, inner: ArcEngine) -> ArcEngine {
        Arc::new(ConcurrencyLimit::new(
            self.name.clone(),
            inner,
            self.max,
            self.over_limit,
        ))
    }
}

#[async_trait]
impl Engine for ConcurrencyLimit {
    async fn process(&self, req: Request) -> Result<Response, Error> {
        let permit = match self.over_limit {
            OverLimit::Reject => self
                .semaphore
                .clone()
                .try_acquire_owned()
                .map_err(|_| self.over())?,
            OverLimit::Queue(wait) => {
                match tokio::time::timeout(wait, self.semaphore.clone().acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => return Err(self.over()),
                }
            }
        };
        let mut resp = self.inner.process(req).await?;
        if let ResponseBody::Stream(stream) = resp.body {
            resp.body = ResponseBody::Stream(EventStream::new(PermitStream {
                inner: stream,
                permit: Some(permit),
            }));
        }
        Ok(resp)
    }
}

/// An event stream that holds a permit until it ends or is dropped.
struct PermitStream {
    inner: EventStream,
    permit: Option<OwnedSemaphorePermit>,
}

impl Stream for PermitStream {
    type Item = <EventStream as Stream>::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(None) = item {
            self.permit = None;
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use octo_core::{Body, Event, Protocol, engine_fn};
    use tokio::sync::mpsc;

    fn req() -> Request {
        octo_test::request_with_body(Protocol::OpenAiChat, "m", false, "{}")
    }

    /// Streams whose events are fed through a channel the test holds.
    fn streaming() -> (
        ArcEngine,
        mpsc::UnboundedReceiver<mpsc::Sender<Result<Event, Error>>>,
    ) {
        let (senders_tx, senders_rx) = mpsc::unbounded_channel();
        let engine = Arc::new(engine_fn(move |_r| {
            let senders_tx = senders_tx.clone();
            async move {
                let (tx, rx) = mpsc::channel(4);
                let _ = senders_tx.send(tx);
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                Ok(Response::stream(EventStream::new(stream)))
            }
        }));
        (engine, senders_rx)
    }

    #[tokio::test]
    async fn the_permit_is_held_until_the_stream_ends() {
        let (engine, mut senders) = streaming();
        let limit = ConcurrencyLimit::new("oa", engine, 1, OverLimit::Reject);
        let resp = limit.process(req()).await.unwrap();
        let tx = senders.recv().await.unwrap();
        assert_eq!(limit.in_flight(), 1);
        // The head is back but the stream is running: a second request is refused.
        let e = limit.process(req()).await.unwrap_err();
        assert_eq!(e.status(), 429);
        assert!(e.is_retryable());
        assert!(e.message().contains("`oa`"));
        let ResponseBody::Stream(mut stream) = resp.body else {
            panic!("a stream")
        };
        tx.send(Ok(Event::data(bytes::Bytes::from_static(b"1"))))
            .await
            .unwrap();
        assert!(stream.next().await.is_some());
        assert_eq!(limit.in_flight(), 1);
        drop(tx);
        assert!(stream.next().await.is_none());
        // Ended: released before the stream itself is dropped.
        assert_eq!(limit.in_flight(), 0);
        assert!(limit.process(req()).await.is_ok());
    }

    #[tokio::test]
    async fn dropping_the_stream_releases_the_permit() {
        let (engine, _senders) = streaming();
        let limit = ConcurrencyLimit::new("oa", engine, 1, OverLimit::Reject);
        let resp = limit.process(req()).await.unwrap();
        assert_eq!(limit.in_flight(), 1);
        drop(resp); // the client went away
        assert_eq!(limit.in_flight(), 0);
    }

    #[tokio::test]
    async fn full_responses_and_errors_release_at_once() {
        let ok = Arc::new(engine_fn(|_r| async {
            Ok(Response::json(200, Body::from_static(b"{}")))
        }));
        let limit = ConcurrencyLimit::new("oa", ok, 1, OverLimit::Reject);
        for _ in 0..3 {
            limit.process(req()).await.unwrap();
        }
        let bad = Arc::new(engine_fn(|_r| async { Err(Error::upstream("down")) }));
        let limit = ConcurrencyLimit::new("oa", bad, 1, OverLimit::Reject);
        for _ in 0..3 {
            assert_eq!(limit.process(req()).await.unwrap_err().status(), 502);
        }
        assert_eq!(limit.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn queued_requests_wait_for_a_slot_or_time_out() {
        let (engine, mut senders) = streaming();
        let limit = Arc::new(ConcurrencyLimit::new(
            "oa",
            engine,
            1,
            OverLimit::Queue(Duration::from_secs(5)),
        ));
        let first = limit.process(req()).await.unwrap();
        let _tx = senders.recv().await.unwrap();
        // Nobody frees the slot: after 5 s the queued request gets a 429.
        let started = tokio::time::Instant::now();
        assert_eq!(limit.process(req()).await.unwrap_err().status(), 429);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // A queued request gets the slot as soon as the first stream is dropped.
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.process(req()).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        drop(first);
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn zero_refuses_everything() {
        let ok = Arc::new(engine_fn(|_r| async {
            Ok(Response::json(200, Body::from_static(b"{}")))
        }));
        let limit = ConcurrencyLimit::new("oa", ok, 0, OverLimit::Reject);
        assert_eq!(limit.process(req()).await.unwrap_err().status(), 429);
    }
}
