//! Stream events and the pulled event stream a streaming response carries.
//!
//! An [`Event`] is one server-sent event: an optional `event:` name, an optional `id:` and a lazily
//! parsed `data` [`Body`]. An event decoded from an upstream keeps its raw frame bytes; as long as no
//! engine changes it, it is forwarded exactly as received. Changing the data or the name drops the raw
//! frame, and the encoder writes a fresh, canonical one.
//!
//! [`EventStream`] is a boxed, pulled [`Stream`]: the consumer drives it, so backpressure and
//! cancellation (drop the stream) come for free. [`EventStream::channel`] is the helper for engines
//! that produce events from a spawned task: a bounded channel whose task is aborted when the stream is
//! dropped.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::body::Body;
use crate::error::Error;

/// One server-sent event.
#[derive(Clone)]
pub struct Event {
    name: Option<Bytes>,
    id: Option<Bytes>,
    data: Body,
    raw: Option<Bytes>,
}

impl Event {
    /// An unnamed event (`data:` only) — OpenAI Chat and Gemini style.
    pub fn data(data: impl Into<Body>) -> Self {
        Event {
            name: None,
            id: None,
            data: data.into(),
            raw: None,
        }
    }

    /// A named event (`event:` + `data:`) — Anthropic and OpenAI Responses style.
    pub fn named(name: impl Into<String>, data: impl Into<Body>) -> Self {
        Event {
            name: Some(Bytes::from(name.into())),
            id: None,
            data: data.into(),
            raw: None,
        }
    }

    /// Sets the `id:` field (drops the raw frame).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(Bytes::from(id.into()));
        self.raw = None;
        self
    }

    /// Used by the SSE decoder: an event whose fields are slices of `raw`.
    pub(crate) fn from_parts(
        name: Option<Bytes>,
        id: Option<Bytes>,
        data: Bytes,
        raw: Option<Bytes>,
    ) -> Self {
        Event {
            name,
            id,
            data: Body::from_bytes(data),
            raw,
        }
    }

    /// The `event:` name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The `id:` field, if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The data, for reading (parse it with [`Body::json`] through [`Event::data_mut`] if needed).
    pub fn data_body(&self) -> &Body {
        &self.data
    }

    /// The data for reading or editing; the raw frame is dropped, so the event is re-encoded.
    ///
    /// Reading through this is fine too: re-encoding an unchanged event yields an equivalent frame.
    pub fn data_mut(&mut self) -> &mut Body {
        self.raw = None;
        &mut self.data
    }

    /// Whether the data is exactly `[DONE]` (OpenAI Chat's terminator).
    pub fn is_done_marker(&self) -> bool {
        self.data.known_len() == Some(6) && &self.data.to_bytes()[..] == b"[DONE]"
    }

    /// Renames the event (drops the raw frame).
    pub fn set_name(&mut self, name: Option<String>) {
        self.name = name.map(Bytes::from);
        self.raw = None;
    }

    /// The frame as received, when the event is unchanged and was canonical on the wire.
    pub fn raw_frame(&self) -> Option<&Bytes> {
        self.raw.as_ref()
    }

    /// The SSE frame for this event: the raw bytes when unchanged, else a canonical encoding
    /// (`event:`, `id:`, one `data: ` line per data line, blank line).
    pub fn to_frame(&self) -> Bytes {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let data = self.data.to_bytes();
        let mut out = BytesMut::with_capacity(data.len() + 32);
        if let Some(name) = &self.name {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(name);
            out.extend_from_slice(b"\n");
        }
        if let Some(id) = &self.id {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(id);
            out.extend_from_slice(b"\n");
        }
        for line in data.split(|&b| b == b'\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
            out.extend_from_slice(b"\n");
        }
        out.extend_from_slice(b"\n");
        out.freeze()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name())
            .field("id", &self.id())
            .field("data", &String::from_utf8_lossy(&self.data.to_bytes()))
            .field("raw", &self.raw.is_some())
            .finish()
    }
}

type BoxEventStream = Pin<Box<dyn Stream<Item = Result<Event, Error>> + Send + 'static>>;

/// The pulled stream of events a streaming [`Response`](crate::Response) carries.
///
/// Dropping it cancels whatever produces the events: an upstream connection, or the task behind
/// [`EventStream::channel`].
pub struct EventStream {
    inner: BoxEventStream,
}

impl EventStream {
    /// Wraps any `Send` stream of events.
    pub fn new<S>(stream: S) -> Self
    where
        S: Stream<Item = Result<Event, Error>> + Send + 'static,
    {
        EventStream {
            inner: Box::pin(stream),
        }
    }

    /// A stream of the given events, in order.
    pub fn iter(events: impl IntoIterator<Item = Event>) -> Self
    where
        <Vec<Event> as IntoIterator>::IntoIter: Send,
    {
        let v: Vec<Result<Event, Error>> = events.into_iter().map(Ok).collect();
        Self::new(futures::stream::iter(v))
    }

    /// A stream fed by `producer` running in a spawned task through a channel of `capacity` events.
    ///
    /// The task is aborted when the stream is dropped, and [`EventSender::send`] fails once the
    /// consumer is gone, so a producer never outlives its client.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use futures::StreamExt;
    /// use octo_core::{Event, EventStream};
    ///
    /// let mut stream = EventStream::channel(4, |tx| async move {
    ///     for i in 0..3 {
    ///         if tx.send(Ok(Event::data(bytes::Bytes::from(i.to_string())))).await.is_err() {
    ///             return; // the client went away
    ///         }
    ///     }
    /// });
    /// let mut n = 0;
    /// while let Some(ev) = stream.next().await {
    ///     ev.unwrap();
    ///     n += 1;
    /// }
    /// assert_eq!(n, 3);
    /// # }
    /// ```
    pub fn channel<F, Fut>(capacity: usize, producer: F) -> Self
    where
        F: FnOnce(EventSender) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let task = tokio::spawn(producer(EventSender { tx }));
        Self::new(ChannelStream { rx, task })
    }
}

impl Stream for EventStream {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventStream")
    }
}

/// The sending half given to an [`EventStream::channel`] producer.
#[derive(Clone, Debug)]
pub struct EventSender {
    tx: mpsc::Sender<Result<Event, Error>>,
}

/// The consumer dropped the stream; stop producing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamClosed;

impl EventSender {
    /// Sends one event, waiting while the channel is full (backpressure).
    ///
    /// # Errors
    /// [`StreamClosed`] once the consumer dropped the stream.
    pub async fn send(&self, item: Result<Event, Error>) -> Result<(), StreamClosed> {
        self.tx.send(item).await.map_err(|_| StreamClosed)
    }

    /// Resolves when the consumer has dropped the stream.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

struct ChannelStream {
    rx: mpsc::Receiver<Result<Event, Error>>,
    task: JoinHandle<()>,
}

impl Stream for ChannelStream {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for ChannelStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn encodes_canonical_frames() {
        let ev = Event::named(
            "message_stop",
            Bytes::from_static(br#"{"type":"message_stop"}"#),
        );
        assert_eq!(
            &ev.to_frame()[..],
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
        let multi = Event::data(Bytes::from_static(b"a\nb")).with_id("7");
        assert_eq!(&multi.to_frame()[..], b"id: 7\ndata: a\ndata: b\n\n");
    }

    #[test]
    fn editing_drops_the_raw_frame() {
        let raw = Bytes::from_static(b"data:   {\"x\":1}\n\n");
        let mut ev = Event::from_parts(None, None, raw.slice(6..15), Some(raw.clone()));
        assert_eq!(ev.to_frame(), raw);
        ev.data_mut().json_mut().unwrap()["x"] = 2.into();
        assert_eq!(&ev.to_frame()[..], b"data: {\"x\":2}\n\n");
    }

    #[tokio::test]
    async fn dropping_a_channel_stream_aborts_its_producer() {
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let flag = dropped.clone();
        let mut stream = EventStream::channel(1, move |tx| async move {
            let _guard = SetOnDrop(flag);
            let _ = tx.send(Ok(Event::data(Bytes::from_static(b"1")))).await;
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
        });
        assert!(stream.next().await.is_some());
        started_rx.await.unwrap();
        drop(stream);
        // Abort is delivered at the task's next poll; yield until the runtime has run it.
        for _ in 0..100 {
            if dropped.load(Ordering::SeqCst) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(dropped.load(Ordering::SeqCst));
    }
}
