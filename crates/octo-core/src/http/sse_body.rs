//! The HTTP body that writes an [`EventStream`] to the client, one frame per event.
//!
//! Each event becomes exactly one body frame, which hyper (≥ 1.12) flushes before waiting for the
//! next, so tokens reach the client as they are produced. An idle stream gets the keep-alive of the
//! client's protocol ([`KeepAlive`]). An error from the stream after the head was sent is written as
//! the protocol's in-band error event, then the body ends: the client learns what happened instead
//! of seeing a silently truncated stream. Gemini's non-SSE `streamGenerateContent` is rendered as the
//! JSON array that API returns.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::event::EventStream;
use crate::protocol::Protocol;
use crate::record::CompleteOnDrop;
use crate::sse::KeepAlive;

/// How the events are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEncoding {
    /// `text/event-stream`.
    Sse,
    /// One JSON array whose elements are the events' data (Gemini without `alt=sse`).
    JsonArray,
}

/// A [`Body`] over an [`EventStream`].
#[pin_project::pin_project]
pub struct SseBody {
    events: EventStream,
    format: Protocol,
    encoding: StreamEncoding,
    keep_alive: Option<KeepAlive>,
    sleep: Option<Pin<Box<Sleep>>>,
    started: bool,
    done: bool,
    /// Completes the request's record when the stream ends, fails, or is dropped (499).
    record: Option<(CompleteOnDrop, u16)>,
}

impl SseBody {
    /// Writes `events` for a client speaking `format`.
    pub fn new(
        events: EventStream,
        format: Protocol,
        encoding: StreamEncoding,
        keep_alive: Option<KeepAlive>,
    ) -> Self {
        let keep_alive = keep_alive.filter(|_| encoding == StreamEncoding::Sse);
        let sleep = keep_alive
            .as_ref()
            .map(|k| Box::pin(tokio::time::sleep(k.interval)));
        SseBody {
            events,
            format,
            encoding,
            keep_alive,
            sleep,
            started: false,
            done: false,
            record: None,
        }
    }

    /// Completes `record` with `status` when the stream ends, with the error's status and message
    /// when it fails, or as 499 when the body is dropped first (the client went away).
    pub fn with_record(mut self, record: CompleteOnDrop, status: u16) -> Self {
        self.record = Some((record, status));
        self
    }

    fn finish(&mut self, error: Option<&crate::Error>) {
        self.done = true;
        if let Some((mut guard, status)) = self.record.take() {
            match error {
                Some(e) => guard.complete(e.status().as_u16(), Some(e.message().to_owned())),
                None => guard.complete(status, None),
            }
        }
    }

    /// Keeps what the client is sent with the record, when it keeps bodies.
    fn keep(&self, frame: &[u8]) {
        if let Some(r) = self.record.as_ref().and_then(|(g, _)| g.record()) {
            r.append_response_body(frame);
        }
    }

    fn array_piece(&mut self, data: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(data.len() + 1);
        out.extend_from_slice(if self.started { b"," } else { b"[" });
        self.started = true;
        out.extend_from_slice(data);
        out.freeze()
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.events).poll_next(cx) {
            Poll::Ready(Some(Ok(event))) => {
                if let (Some(k), Some(sleep)) = (&this.keep_alive, this.sleep.as_mut()) {
                    sleep.as_mut().reset(Instant::now() + k.interval);
                }
                let frame = match this.encoding {
                    StreamEncoding::Sse => event.to_frame(),
                    StreamEncoding::JsonArray => this.array_piece(&event.data_body().to_bytes()),
                };
                this.keep(&frame);
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            Poll::Ready(Some(Err(err))) => {
                tracing::warn!(error = %err, "stream ended with an error");
                let frame = match this.encoding {
                    StreamEncoding::Sse => err.render_stream_frame(this.format),
                    StreamEncoding::JsonArray => {
                        let body = err.render(this.format).body;
                        let mut piece = BytesMut::from(&this.array_piece(&body)[..]);
                        piece.extend_from_slice(b"]");
                        piece.freeze()
                    }
                };
                this.keep(&frame);
                this.finish(Some(&err));
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            Poll::Ready(None) => match this.encoding {
                StreamEncoding::Sse => {
                    this.finish(None);
                    Poll::Ready(None)
                }
                StreamEncoding::JsonArray => {
                    let close: &'static [u8] = if this.started { b"]" } else { b"[]" };
                    this.keep(close);
                    this.finish(None);
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(close)))))
                }
            },
            Poll::Pending => {
                let (Some(k), Some(sleep)) = (&this.keep_alive, this.sleep.as_mut()) else {
                    return Poll::Pending;
                };
                if sleep.as_mut().poll(cx).is_ready() {
                    sleep.as_mut().reset(Instant::now() + k.interval);
                    return Poll::Ready(Some(Ok(Frame::data(k.frame.clone()))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, Event};
    use http_body_util::BodyExt;
    use std::time::Duration;

    async fn collect(body: SseBody) -> Vec<Bytes> {
        let mut body = body;
        let mut frames = Vec::new();
        while let Some(f) = body.frame().await {
            frames.push(f.unwrap().into_data().unwrap());
        }
        frames
    }

    #[tokio::test]
    async fn one_frame_per_event_then_in_band_error() {
        let events = EventStream::new(futures::stream::iter(vec![
            Ok(Event::named("a", Bytes::from_static(b"{}"))),
            Err(Error::upstream("backend `x` reset the connection")),
            Ok(Event::named("never", Bytes::from_static(b"{}"))),
        ]));
        let frames = collect(SseBody::new(
            events,
            Protocol::Anthropic,
            StreamEncoding::Sse,
            None,
        ))
        .await;
        assert_eq!(frames.len(), 2);
        assert_eq!(&frames[0][..], b"event: a\ndata: {}\n\n");
        assert!(frames[1].starts_with(b"event: error\n"));
    }

    #[tokio::test]
    async fn json_array_encoding_for_gemini() {
        let events = EventStream::iter(vec![
            Event::data(Bytes::from_static(b"{\"a\":1}")),
            Event::data(Bytes::from_static(b"{\"b\":2}")),
        ]);
        let frames = collect(SseBody::new(
            events,
            Protocol::Gemini,
            StreamEncoding::JsonArray,
            None,
        ))
        .await;
        let joined: Vec<u8> = frames.concat();
        assert_eq!(&joined[..], b"[{\"a\":1},{\"b\":2}]");
        let empty = collect(SseBody::new(
            EventStream::iter(vec![]),
            Protocol::Gemini,
            StreamEncoding::JsonArray,
            None,
        ))
        .await;
        assert_eq!(&empty.concat()[..], b"[]");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_streams_get_keep_alives() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Error>>(1);
        let events = EventStream::new(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        let ka = KeepAlive::for_format(Protocol::OpenAiChat, Duration::from_secs(5));
        let mut body = SseBody::new(events, Protocol::OpenAiChat, StreamEncoding::Sse, ka);
        // With the clock paused, the runtime advances time to the keep-alive deadline.
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b": keep-alive\n\n");
        tx.send(Ok(Event::data(Bytes::from_static(b"x"))))
            .await
            .unwrap();
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&second[..], b"data: x\n\n");
        drop(tx);
        assert!(body.frame().await.is_none());
    }
}
