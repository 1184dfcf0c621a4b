//! The response body type: either one buffered chunk, or a pre-rendered sequence of stream events
//! handed to hyper one frame per event, paced by an interval, and counted in the stats when it
//! completes, is aborted on purpose, or is dropped early because the client went away.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::record::State;

/// Error type of the body and the service.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a stream ends after its last frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// End of body.
    Clean,
    /// Fail the body, so the connection (HTTP/1) or stream (HTTP/2) is reset.
    Abort,
}

/// A response body.
pub(crate) struct MockBody(Inner);

enum Inner {
    Full(Option<Bytes>),
    Events(Box<Events>),
}

struct Events {
    frames: std::vec::IntoIter<Bytes>,
    ending: Ending,
    interval: Duration,
    /// Allocated once when an interval is set, re-armed between events.
    pause: Option<Pin<Box<Sleep>>>,
    paused: bool,
    /// Whether the body already returned `Pending` once before failing (see `Ending::Abort`).
    flushed: bool,
    finished: bool,
    state: Arc<State>,
}

impl MockBody {
    /// A body that is sent in one frame.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        MockBody(Inner::Full(Some(bytes.into())))
    }

    /// A stream of `frames`, one body frame each, `interval` apart. Counts as a started stream.
    pub(crate) fn events(
        frames: Vec<Bytes>,
        ending: Ending,
        interval: Duration,
        state: Arc<State>,
    ) -> Self {
        state.update(|s| s.streams_started += 1);
        let pause = (!interval.is_zero()).then(|| Box::pin(tokio::time::sleep(Duration::ZERO)));
        MockBody(Inner::Events(Box::new(Events {
            frames: frames.into_iter(),
            ending,
            interval,
            pause,
            paused: false,
            flushed: false,
            finished: false,
            state,
        })))
    }
}

impl Events {
    fn finish(&mut self, aborted: bool) {
        self.finished = true;
        self.state.update(|s| {
            if aborted {
                s.streams_aborted += 1;
            } else {
                s.streams_completed += 1;
            }
        });
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.paused {
            if let Some(pause) = self.pause.as_mut() {
                ready!(pause.as_mut().poll(cx));
            }
            self.paused = false;
        }
        match self.frames.next() {
            Some(frame) => {
                let more = self.frames.len() > 0;
                if !more && self.ending == Ending::Clean {
                    self.finish(false);
                } else if more {
                    if let Some(pause) = self.pause.as_mut() {
                        pause.as_mut().reset(Instant::now() + self.interval);
                        self.paused = true;
                    }
                }
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            None => match self.ending {
                Ending::Clean => {
                    self.finish(false);
                    Poll::Ready(None)
                }
                Ending::Abort if !self.flushed => {
                    // Give the connection one turn to flush the frames already produced, so that
                    // the client receives them before the reset.
                    self.flushed = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Ending::Abort => {
                    self.finish(true);
                    Poll::Ready(Some(Err(
                        "octo-mock: stream aborted by the abort directive".into(),
                    )))
                }
            },
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        if !self.finished {
            self.state.update(|s| s.streams_cancelled += 1);
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Events(events) => events.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Full(bytes) => bytes.is_none(),
            Inner::Events(events) => events.finished,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Inner::Events(_) => SizeHint::default(),
        }
    }
}

/// Counts a request in `requests_cancelled` if it is dropped (the client went away) before
/// [`PendingGuard::disarm`] is called.
pub(crate) struct PendingGuard {
    state: Option<Arc<State>>,
}

impl PendingGuard {
    pub(crate) fn new(state: &Arc<State>) -> Self {
        PendingGuard {
            state: Some(Arc::clone(state)),
        }
    }

    pub(crate) fn disarm(&mut self) {
        self.state = None;
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            state.update(|s| s.requests_cancelled += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MockConfig;
    use http_body_util::BodyExt;

    fn frames(n: usize) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(format!("e{i}"))).collect()
    }

    #[tokio::test]
    async fn full_stream_is_one_frame_per_event_and_completes() {
        let state = Arc::new(State::new(MockConfig::default()));
        let mut body = MockBody::events(frames(3), Ending::Clean, Duration::ZERO, state.clone());
        let mut seen = Vec::new();
        while let Some(frame) = body.frame().await {
            seen.push(frame.unwrap().into_data().unwrap());
        }
        assert_eq!(seen, frames(3));
        assert!(body.is_end_stream());
        drop(body);
        let s = state.stats();
        assert_eq!(
            (s.streams_started, s.streams_completed, s.streams_cancelled),
            (1, 1, 0)
        );
    }

    #[tokio::test]
    async fn interval_paces_and_drop_counts_cancelled() {
        let state = Arc::new(State::new(MockConfig::default()));
        let mut body = MockBody::events(
            frames(3),
            Ending::Clean,
            Duration::from_millis(20),
            state.clone(),
        );
        let start = Instant::now();
        body.frame().await.unwrap().unwrap();
        body.frame().await.unwrap().unwrap();
        assert!(start.elapsed() >= Duration::from_millis(20));
        drop(body);
        let s = state.stats();
        assert_eq!((s.streams_completed, s.streams_cancelled), (0, 1));
    }

    #[tokio::test]
    async fn abort_fails_after_the_frames() {
        let state = Arc::new(State::new(MockConfig::default()));
        let mut body = MockBody::events(frames(1), Ending::Abort, Duration::ZERO, state.clone());
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.unwrap().is_err());
        drop(body);
        let s = state.stats();
        assert_eq!((s.streams_aborted, s.streams_cancelled), (1, 0));
    }

    #[test]
    fn pending_guard_counts_unless_disarmed() {
        let state = Arc::new(State::new(MockConfig::default()));
        drop(PendingGuard::new(&state));
        let mut guard = PendingGuard::new(&state);
        guard.disarm();
        drop(guard);
        assert_eq!(state.stats().requests_cancelled, 1);
    }
}
