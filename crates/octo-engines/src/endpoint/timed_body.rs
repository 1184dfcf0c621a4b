//! An upstream body stream with an idle deadline between chunks and an overall deadline.
//!
//! The HTTP clients' own timeouts cover a whole request; a token stream needs a bound on the gap
//! between events too, so that a stalled upstream is noticed in `idle` time, not after `total`.
//! Both transports (reqwest and hyper-util, `endpoint/transport.rs`) feed it the same way: a
//! stream of chunks whose errors are [`BodyError`]s.
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

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BodyError>> + Send>>;

/// A transport's failure while reading a body: whether it was the client's own timeout, and its
/// text.
#[derive(Debug)]
pub(crate) struct BodyError {
    pub(crate) timeout: bool,
    pub(crate) text: String,
}

impl From<reqwest::Error> for BodyError {
    fn from(e: reqwest::Error) -> Self {
        BodyError {
            timeout: e.is_timeout(),
            text: e.to_string(),
        }
    }
}

impl From<hyper::Error> for BodyError {
    fn from(e: hyper::Error) -> Self {
        BodyError {
            timeout: e.is_timeout(),
            text: e.to_string(),
        }
    }
}

/// Wraps a transport's byte stream; yields a timeout [`Error`] (and ends) when a deadline passes.
///
/// One timer serves both deadlines: it is set to the earlier of the idle deadline and the total
/// one, and when it fires, which of the two it was tells the error apart (one timer entry and
/// one allocation per exchange instead of two).
pub(crate) struct TimedBody {
    inner: ByteStream,
    backend: String,
    idle: Duration,
    /// The end of the whole exchange.
    deadline: Instant,
    /// Fires at `min(last chunk + idle, deadline)`.
    sleep: Pin<Box<Sleep>>,
    done: bool,
    /// Where waiting time is added, and since when the current wait has lasted.
    upstream: Option<UpstreamTime>,
    waiting_since: Option<std::time::Instant>,
}

impl TimedBody {
    pub(crate) fn new(
        inner: impl Stream<Item = Result<Bytes, BodyError>> + Send + 'static,
        backend: String,
        idle: Duration,
        deadline: Instant,
    ) -> Self {
        TimedBody {
            inner: Box::pin(inner),
            backend,
            idle,
            deadline,
            sleep: Box::pin(tokio::time::sleep_until(next_wake(idle, deadline))),
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
                this.sleep
                    .as_mut()
                    .reset(next_wake(this.idle, this.deadline));
                return Poll::Ready(Some(Ok(chunk)));
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                let err = if e.timeout {
                    Error::timeout(format!("backend `{}` timed out mid-response", this.backend))
                } else {
                    Error::upstream(format!(
                        "backend `{}` broke off the response: {}",
                        this.backend, e.text
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
        if this.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.done = true;
        this.end_wait();
        // The total deadline wins when both fall at the same instant.
        let message = if this.sleep.deadline() >= this.deadline {
            format!("backend `{}` exceeded the total timeout", this.backend)
        } else {
            format!(
                "backend `{}` sent nothing for {:?} (idle timeout)",
                this.backend, this.idle
            )
        };
        Poll::Ready(Some(Err(Error::timeout(message))))
    }
}

/// When the timer should next fire: after `idle` from now, but never past `deadline`.
fn next_wake(idle: Duration, deadline: Instant) -> Instant {
    Instant::now()
        .checked_add(idle)
        .map_or(deadline, |idle_end| idle_end.min(deadline))
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        // A stream dropped mid-wait (the client left) still spent that time waiting upstream.
        self.end_wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn chunk(s: &'static str) -> Result<Bytes, BodyError> {
        Ok(Bytes::from_static(s.as_bytes()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_upstream_hits_the_idle_deadline() {
        let inner = futures::stream::iter([chunk("a")]).chain(futures::stream::pending());
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut body = TimedBody::new(inner, "b".into(), Duration::from_secs(5), deadline);
        assert_eq!(body.next().await.unwrap().unwrap(), "a");
        let start = Instant::now();
        let e = body.next().await.unwrap().unwrap_err();
        assert!(e.message().contains("idle timeout"), "{}", e.message());
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert!(body.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_upstream_hits_the_total_deadline() {
        let inner = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((chunk("x"), ()))
        });
        let start = Instant::now();
        let deadline = start + Duration::from_millis(3500);
        let mut body = TimedBody::new(inner, "b".into(), Duration::from_secs(2), deadline);
        let mut chunks = 0;
        let e = loop {
            match body.next().await.unwrap() {
                Ok(_) => chunks += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(chunks, 3);
        assert!(e.message().contains("total timeout"), "{}", e.message());
        assert_eq!(start.elapsed(), Duration::from_millis(3500));
    }
}
