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
//!
//! The slots are a [`Slots`], which a rebuilt graph's limit can take over
//! ([`ConcurrencyLimitLayer::with_slots`], kept by a
//! [`BalanceMemory`](crate::balance::BalanceMemory)): requests still running on the old graph stay
//! counted.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The slots of one concurrency limit; shared by the limits of successive graphs.
#[derive(Debug)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    max: AtomicUsize,
    /// Permits to forget as they come back (the limit was lowered below what was in flight).
    debt: AtomicUsize,
}

impl Slots {
    /// `max` free slots.
    pub fn new(max: usize) -> Arc<Slots> {
        let max = max.min(Semaphore::MAX_PERMITS);
        Arc::new(Slots {
            semaphore: Arc::new(Semaphore::new(max)),
            max: AtomicUsize::new(max),
            debt: AtomicUsize::new(0),
        })
    }

    /// Changes the limit to `max`, the requests in flight still counted: raised, the new slots
    /// are free at once; lowered below what is in flight, the surplus slots disappear as their
    /// requests finish.
    pub fn resize(&self, max: usize) {
        let max = max.min(Semaphore::MAX_PERMITS);
        let old = self.max.swap(max, Ordering::SeqCst);
        if max > old {
            let mut more = max - old;
            // Pay back debt first.
            let _ = self
                .debt
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| {
                    let paid = d.min(more);
                    Some(d - paid)
                })
                .map(|d| more -= d.min(more));
            self.semaphore.add_permits(more);
        } else if max < old {
            let less = old - max;
            let forgotten = self.semaphore.forget_permits(less);
            self.debt.fetch_add(less - forgotten, Ordering::SeqCst);
        }
    }

    /// Requests holding a slot.
    pub fn in_flight(&self) -> usize {
        (self.max.load(Ordering::SeqCst) + self.debt.load(Ordering::SeqCst))
            .saturating_sub(self.semaphore.available_permits())
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

/// A held slot: given back when dropped (or forgotten, to pay a lowered limit's debt).
struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<Slots>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some(p) = self.permit.take() else { return };
        let owed = self
            .slots
            .debt
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
            .is_ok();
        if owed {
            p.forget();
        }
    }
}

/// At most `max` requests in flight through `inner`; see the [module docs](self).
pub struct ConcurrencyLimit {
    name: String,
    inner: ArcEngine,
    slots: Arc<Slots>,
    over_limit: OverLimit,
}

impl std::fmt::Debug for ConcurrencyLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurrencyLimit")
            .field("name", &self.name)
            .field("max", &self.max())
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
        Self::with_slots(name, inner, Slots::new(max), over_limit)
    }

    /// Limits `inner` with `slots` (shared with other limits, e.g. an earlier graph's).
    pub fn with_slots(
        name: impl Into<String>,
        inner: ArcEngine,
        slots: Arc<Slots>,
        over_limit: OverLimit,
    ) -> Self {
        ConcurrencyLimit {
            name: name.into(),
            inner,
            slots,
            over_limit,
        }
    }

    /// Requests currently holding a slot (streams count until they end).
    pub fn in_flight(&self) -> usize {
        self.slots.in_flight()
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.slots.max()
    }

    fn over(&self) -> Error {
        Error::rate_limited(
            format!(
                "`{}` already has {} requests in flight (its concurrency limit); try again shortly",
                self.name,
                self.max()
            ),
            None,
        )
        .with_code("concurrency_limit_exceeded")
    }
}

/// The [`Layer`] form of [`ConcurrencyLimit`]: each engine it wraps gets its own limit of `max`
/// (or, [`with_slots`](Self::with_slots), every engine shares the given slots).
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    name: String,
    max: usize,
    over_limit: OverLimit,
    slots: Option<Arc<Slots>>,
}

impl ConcurrencyLimitLayer {
    /// At most `max` requests in flight through each wrapped engine; `name` appears in the 429.
    pub fn new(name: impl Into<String>, max: usize, over_limit: OverLimit) -> Self {
        ConcurrencyLimitLayer {
            name: name.into(),
            max,
            over_limit,
            slots: None,
        }
    }

    /// Limits every wrapped engine with `slots` (kept across graphs; their limit is theirs).
    pub fn with_slots(mut self, slots: Arc<Slots>) -> Self {
        self.max = slots.max();
        self.slots = Some(slots);
        self
    }
}

impl Layer for ConcurrencyLimitLayer {
    fn layer(&self, inner: ArcEngine) -> ArcEngine {
        let slots = self.slots.clone().unwrap_or_else(|| Slots::new(self.max));
        Arc::new(ConcurrencyLimit::with_slots(
            self.name.clone(),
            inner,
            slots,
            self.over_limit,
        ))
    }
}

#[async_trait]
impl Engine for ConcurrencyLimit {
    async fn process(&self, req: Request) -> Result<Response, Error> {
        let semaphore = self.slots.semaphore.clone();
        let permit = match self.over_limit {
            OverLimit::Reject => semaphore.try_acquire_owned().map_err(|_| self.over())?,
            OverLimit::Queue(wait) => {
                match tokio::time::timeout(wait, semaphore.acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => return Err(self.over()),
                }
            }
        };
        let permit = Permit {
            permit: Some(permit),
            slots: self.slots.clone(),
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
    permit: Option<Permit>,
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
    async fn shared_slots_keep_counting_and_follow_a_new_limit() {
        let (engine, mut senders) = streaming();
        let slots = Slots::new(2);
        let old =
            ConcurrencyLimit::with_slots("oa", engine.clone(), slots.clone(), OverLimit::Reject);
        let a = old.process(req()).await.unwrap();
        let _ta = senders.recv().await.unwrap();
        let b = old.process(req()).await.unwrap();
        let _tb = senders.recv().await.unwrap();
        // A rebuilt graph's limit with the same slots: both still count.
        let new = ConcurrencyLimit::with_slots("oa", engine, slots.clone(), OverLimit::Reject);
        assert_eq!(new.in_flight(), 2);
        assert_eq!(new.process(req()).await.unwrap_err().status(), 429);
        // Lowered to 1 with 2 in flight: the first to finish frees nothing.
        slots.resize(1);
        assert_eq!((new.max(), new.in_flight()), (1, 2));
        drop(a);
        assert_eq!(new.in_flight(), 1);
        assert_eq!(new.process(req()).await.unwrap_err().status(), 429);
        drop(b);
        assert_eq!(new.in_flight(), 0);
        let c = new.process(req()).await.unwrap();
        let _tc = senders.recv().await.unwrap();
        assert_eq!(new.process(req()).await.unwrap_err().status(), 429);
        // Raised: free at once.
        slots.resize(3);
        let _d = new.process(req()).await.unwrap();
        assert_eq!(new.in_flight(), 2);
        drop(c);
        assert_eq!(new.in_flight(), 1);
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
