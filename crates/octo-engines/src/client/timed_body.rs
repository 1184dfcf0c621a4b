//! An upstream body stream with an idle deadline between chunks and an overall deadline.
//!
//! reqwest's own timeouts cover a whole request; a token stream needs a bound on the gap between
//! events too, so that a stalled upstream is noticed in `idle` time, not after `total`.
//!
//! It also adds the time the gateway spends waiting for the upstream's next chunk (from the first
//! `Pending` to the chunk) to the request's [`UpstreamTime`], for the overhead histogram.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use octo_core::Error;
use octo_core::overhead::UpstreamTime;
use tokio::time::{Instant, Sleep};

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Wraps reqwest's byte stream; yields a timeout [`Error`] (and ends) when a deadline passes.
pub(crate) struct TimedBody {
    inner: ByteStream,
    backend: String,
    idle: Duration,
    idle_sleep: Pin<Box<Sleep>>,
    total_sleep: Pin<Box<Sleep>>,
    done: bool,
    /// Where waiting time is added, and since when the current wait has lasted.
    upstream: Option<UpstreamTime>,
    waiting_since: Option<std::time::Instant>,
}

impl TimedBody {
    pub(crate) fn new(
        inner: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
        backend: String,
        idle: Duration,
        deadline: Instant,
    ) -> Self {
        TimedBody {
            inner: Box::pin(inner),
            backend,
            idle,
            idle_sleep: Box::pin(tokio::time::sleep(idle)),
            total_sleep: Box::pin(tokio::time::sleep_until(deadline)),
            done: false,
            upstream: None,
            waiting_since: None,
        }
    }

    /// Adds the time spent waiting for chunks to `upstream`.
    pub(crate) fn count_waits(mut self, upstream: Option<UpstreamTime>) -> Self {
        self.upstream = upstream;
        self
    }

    /// Ends the current wait, if one is running.
    fn end_wait(&mut self) {
        if let (Some(since), Some(acc)) = (self.waiting_since.take(), &self.upstream) {
            acc.add(since.elapsed());
        }
    }

    pub(crate) fn backend(&self) -> &str {
        &self.backend
    }
}

impl Stream for TimedBody {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let polled = this.inner.as_mut().poll_next(cx);
        if polled.is_ready() {
            this.end_wait();
        } else if this.upstream.is_some() && this.waiting_since.is_none() {
            this.waiting_since = Some(std::time::Instant::now());
        }
        match polled {
            Poll::Ready(Some(Ok(chunk))) => {
                this.idle_sleep.as_mut().reset(Instant::now() + this.idle);
                return Poll::Ready(Some(Ok(chunk)));
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                let err = if e.is_timeout() {
                    Error::timeout(format!("backend `{}` timed out mid-response", this.backend))
                } else {
                    Error::upstream(format!(
                        "backend `{}` broke off the response: {e}",
                        this.backend
                    ))
                };
                return Poll::Ready(Some(Err(err)));
            }
            Poll::Ready(None) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if this.total_sleep.as_mut().poll(cx).is_ready() {
            this.done = true;
            this.end_wait();
            return Poll::Ready(Some(Err(Error::timeout(format!(
                "backend `{}` exceeded the total timeout",
                this.backend
            )))));
        }
        if this.idle_sleep.as_mut().poll(cx).is_ready() {
            this.done = true;
            this.end_wait();
            return Poll::Ready(Some(Err(Error::timeout(format!(
                "backend `{}` sent nothing for {:?} (idle timeout)",
                this.backend, this.idle
            )))));
        }
        Poll::Pending
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        // A stream dropped mid-wait (the client left) still spent that time waiting upstream.
        self.end_wait();
    }
}
