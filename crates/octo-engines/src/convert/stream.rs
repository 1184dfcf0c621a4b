//! The stream adapter: upstream events → [`StreamEvent`]s → client events, one event at a time.
//!
//! [`ConvertStream`] pulls one upstream [`Event`], lets the upstream protocol's [`Decoder`] turn it
//! into canonical [`StreamEvent`]s and the client protocol's [`Encoder`] turn those into client
//! events, queues them, and hands them out before pulling again. Nothing but a few events and the
//! encoders' per-block state is held, so memory does not grow with the stream (a Responses client is
//! the exception the protocol imposes: `response.completed` must repeat the whole output).
//!
//! Endings:
//! - the upstream's terminator (`[DONE]`, `message_stop`, `response.completed`) or plain EOF
//!   → the encoder writes the client protocol's terminator; a stream is never left open;
//! - an in-band upstream error or a transport error → the client's encoder writes its protocol's
//!   failure event when it has one (Responses: `response.failed`, see [`Encoder::fail`]); otherwise
//!   the stream yields `Err(Error)` and ends, and the front renders it as the client protocol's
//!   in-band error event (`Error::render_stream_frame`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use octo_core::{Error, Event, EventStream};

use super::NameMap;
use super::model::{ChatResponse, Part, StreamEvent, StreamStart, Thinking, ToolCall};

/// Turns upstream events into canonical stream events.
pub(crate) trait Decoder: Send {
    /// Decodes one upstream event; an in-band error becomes `Err`.
    fn decode(&mut self, event: &Event, out: &mut Vec<StreamEvent>) -> Result<(), Error>;
    /// The upstream ended without more events (emits [`StreamEvent::End`] if it was not seen).
    fn finish(&mut self, out: &mut Vec<StreamEvent>);
}

/// Turns canonical stream events into client events.
pub(crate) trait Encoder: Send {
    /// Encodes one event (never [`StreamEvent::End`]; that is [`Encoder::finish`]).
    fn encode(&mut self, event: StreamEvent, out: &mut VecDeque<Event>);
    /// Writes whatever closes the client's stream.
    fn finish(&mut self, out: &mut VecDeque<Event>);
    /// Called after the events decoded from one upstream event: an encoder that defers its
    /// opening event (to fill it from the rest of that upstream event) writes it now, so the
    /// client's first byte never waits for the upstream's second event.
    fn flush(&mut self, out: &mut VecDeque<Event>) {
        let _ = out;
    }
    /// The stream failed with `error` after it started. An encoder whose protocol has its own
    /// failure event writes it and returns `true` (OpenAI Responses: `response.failed`); the
    /// default returns `false` and the stream yields the error, which the front renders as the
    /// client protocol's in-band error event.
    fn fail(&mut self, error: &Error, out: &mut VecDeque<Event>) -> bool {
        let _ = (error, out);
        false
    }
}

/// The converting stream; see the [module docs](self).
pub(crate) struct ConvertStream {
    inner: Option<EventStream>,
    decoder: Box<dyn Decoder>,
    encoder: Box<dyn Encoder>,
    names: NameMap,
    canon: Vec<StreamEvent>,
    out: VecDeque<Event>,
    error: Option<Error>,
    done: bool,
    /// An event was handed to the client.
    emitted: bool,
}

impl ConvertStream {
    pub(crate) fn new(
        inner: EventStream,
        decoder: Box<dyn Decoder>,
        encoder: Box<dyn Encoder>,
        names: NameMap,
    ) -> Self {
        ConvertStream {
            inner: Some(inner),
            decoder,
            encoder,
            names,
            canon: Vec::with_capacity(8),
            out: VecDeque::with_capacity(8),
            error: None,
            done: false,
            emitted: false,
        }
    }

    /// Runs the decoded events through the encoder; returns whether the stream has ended.
    fn pump(&mut self) -> bool {
        for mut ev in self.canon.drain(..) {
            if let StreamEvent::ToolCallStart { name, .. } = &mut ev {
                self.names.restore(name);
            }
            if ev == StreamEvent::End {
                self.encoder.finish(&mut self.out);
                self.done = true;
                return true;
            }
            self.encoder.encode(ev, &mut self.out);
        }
        self.encoder.flush(&mut self.out);
        false
    }

    /// The stream failed: once the client has events, the encoder renders `e` itself if its
    /// protocol has a failure event; before that (and otherwise) the stream yields it, so that a
    /// stream failing before its first event stays an error the retry layer can act on and the
    /// front can answer with an HTTP status.
    fn fail(&mut self, e: Error) {
        let started = self.emitted || !self.out.is_empty();
        if !started || !self.encoder.fail(&e, &mut self.out) {
            self.error = Some(e);
        }
        self.done = true;
        self.inner = None;
    }

    /// Feeds one upstream event.
    fn feed(&mut self, event: &Event) {
        let result = self.decoder.decode(event, &mut self.canon);
        let ended = self.pump();
        if let Err(e) = result {
            if !ended {
                self.fail(e);
            }
            self.done = true;
        }
        if self.done {
            // Close the upstream as soon as its answer is complete.
            self.inner = None;
        }
    }

    /// Upstream EOF.
    fn eof(&mut self) {
        self.decoder.finish(&mut self.canon);
        if !self.pump() {
            self.encoder.finish(&mut self.out);
        }
        self.done = true;
        self.inner = None;
    }

    /// Converts a whole sequence of upstream events synchronously (tests, fuzzing, benchmarks).
    pub(crate) fn convert_all(
        decoder: Box<dyn Decoder>,
        encoder: Box<dyn Encoder>,
        names: NameMap,
        events: impl IntoIterator<Item = Result<Event, Error>>,
    ) -> Vec<Result<Event, Error>> {
        let mut s = ConvertStream {
            inner: None,
            decoder,
            encoder,
            names,
            canon: Vec::new(),
            out: VecDeque::new(),
            error: None,
            done: false,
            emitted: false,
        };
        let mut result = Vec::new();
        for item in events {
            match item {
                Ok(ev) => s.feed(&ev),
                Err(e) => s.fail(e),
            }
            s.emitted |= !s.out.is_empty();
            result.extend(s.out.drain(..).map(Ok));
            if s.done {
                break;
            }
        }
        if !s.done {
            s.eof();
            result.extend(s.out.drain(..).map(Ok));
        }
        if let Some(e) = s.error.take() {
            result.push(Err(e));
        }
        result
    }
}

impl Stream for ConvertStream {
    type Item = Result<Event, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(ev) = this.out.pop_front() {
                this.emitted = true;
                return Poll::Ready(Some(Ok(ev)));
            }
            if let Some(e) = this.error.take() {
                return Poll::Ready(Some(Err(e)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let Some(inner) = this.inner.as_mut() else {
                this.eof();
                continue;
            };
            match Pin::new(inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(event))) => this.feed(&event),
                Poll::Ready(Some(Err(e))) => this.fail(e),
                Poll::Ready(None) => this.eof(),
            }
        }
    }
}

/// A complete answer as the stream events that would have produced it (for an upstream that
/// ignored `stream: true`).
pub(crate) fn response_events(r: ChatResponse) -> Vec<StreamEvent> {
    let mut out = Vec::with_capacity(r.parts.len() * 3 + 4);
    out.push(StreamEvent::Start(StreamStart {
        id: Some(r.id).filter(|i| !i.is_empty()),
        model: Some(r.model).filter(|m| !m.is_empty()),
        created: r.created,
    }));
    if let Some(u) = r.usage {
        out.push(StreamEvent::Usage(u));
    }
    for (key, p) in r.parts.into_iter().enumerate() {
        match p {
            Part::Text(t) => out.push(StreamEvent::Text(t)),
            Part::Refusal(t) => out.push(StreamEvent::Refusal(t)),
            Part::Thinking(t) => {
                if let Some(data) = t.redacted {
                    out.push(StreamEvent::RedactedThinking(data));
                } else {
                    out.push(StreamEvent::Thinking(t.text));
                    if let Some(sig) = t.signature {
                        out.push(StreamEvent::ThinkingSignature(sig));
                    }
                }
            }
            Part::ToolCall(c) => {
                out.push(StreamEvent::ToolCallStart {
                    key: key as u64,
                    id: c.id,
                    name: c.name,
                    signature: c.signature,
                });
                out.push(StreamEvent::ToolCallArgs {
                    key: key as u64,
                    fragment: c.arguments,
                });
            }
            _ => continue,
        }
        out.push(StreamEvent::BlockEnd);
    }
    if let Some(reason) = r.stop {
        out.push(StreamEvent::Finish {
            reason,
            stop_sequence: r.stop_sequence,
        });
    }
    out
}

/// Runs canonical events through an encoder, terminator included.
pub(crate) fn encode_events(mut encoder: Box<dyn Encoder>, events: Vec<StreamEvent>) -> Vec<Event> {
    let mut out = VecDeque::new();
    for ev in events {
        if ev != StreamEvent::End {
            encoder.encode(ev, &mut out);
        }
    }
    encoder.finish(&mut out);
    out.into()
}

/// Collects a whole upstream stream into one answer (for an upstream that streamed although the
/// client did not ask).
pub(crate) async fn collect(
    mut events: EventStream,
    mut decoder: Box<dyn Decoder>,
    names: &NameMap,
) -> Result<ChatResponse, Error> {
    use futures::StreamExt;
    let mut c = Collector::default();
    let mut canon = Vec::new();
    while let Some(ev) = events.next().await {
        decoder.decode(&ev?, &mut canon)?;
        for e in canon.drain(..) {
            c.push(e);
        }
        if c.ended {
            break;
        }
    }
    let mut r = c.resp;
    for p in &mut r.parts {
        if let Part::ToolCall(call) = p {
            names.restore(&mut call.name);
        }
    }
    Ok(r)
}

/// Builds a [`ChatResponse`] from stream events.
#[derive(Default)]
struct Collector {
    resp: ChatResponse,
    /// Upstream key → index in `resp.parts`.
    calls: Vec<(u64, usize)>,
    /// Whether the last part is still open for deltas.
    open: bool,
    ended: bool,
}

impl Collector {
    fn push(&mut self, ev: StreamEvent) {
        let parts = &mut self.resp.parts;
        match ev {
            StreamEvent::Start(s) => {
                self.resp.id = s.id.unwrap_or_default();
                self.resp.model = s.model.unwrap_or_default();
                self.resp.created = s.created;
            }
            StreamEvent::Text(t) => match parts.last_mut() {
                Some(Part::Text(acc)) if self.open => acc.push_str(&t),
                _ => {
                    parts.push(Part::Text(t));
                    self.open = true;
                }
            },
            StreamEvent::Refusal(t) => match parts.last_mut() {
                Some(Part::Refusal(acc)) if self.open => acc.push_str(&t),
                _ => {
                    parts.push(Part::Refusal(t));
                    self.open = true;
                }
            },
            StreamEvent::Thinking(t) => match parts.last_mut() {
                Some(Part::Thinking(acc)) if self.open && acc.redacted.is_none() => {
                    acc.text.push_str(&t);
                }
                _ => {
                    parts.push(Part::Thinking(Thinking {
                        text: t,
                        ..Thinking::default()
                    }));
                    self.open = true;
                }
            },
            StreamEvent::ThinkingSignature(sig) => match parts.last_mut() {
                Some(Part::Thinking(acc)) if self.open && acc.redacted.is_none() => {
                    acc.signature = Some(sig);
                }
                _ => {
                    parts.push(Part::Thinking(Thinking {
                        signature: Some(sig),
                        ..Thinking::default()
                    }));
                    self.open = true;
                }
            },
            StreamEvent::RedactedThinking(data) => {
                parts.push(Part::Thinking(Thinking {
                    redacted: Some(data),
                    ..Thinking::default()
                }));
                self.open = false;
            }
            StreamEvent::ToolCallStart {
                key,
                id,
                name,
                signature,
            } => {
                self.calls.push((key, parts.len()));
                parts.push(Part::ToolCall(ToolCall {
                    id,
                    name,
                    arguments: String::new(),
                    signature,
                }));
                self.open = false;
            }
            StreamEvent::ToolCallArgs { key, fragment } => {
                if let Some(&(_, i)) = self.calls.iter().find(|(k, _)| *k == key) {
                    if let Some(Part::ToolCall(c)) = parts.get_mut(i) {
                        c.arguments.push_str(&fragment);
                    }
                }
            }
            StreamEvent::BlockEnd => self.open = false,
            StreamEvent::Usage(u) => self.resp.usage = Some(u),
            StreamEvent::Finish {
                reason,
                stop_sequence,
            } => {
                self.resp.stop = Some(reason);
                self.resp.stop_sequence = stop_sequence;
            }
            StreamEvent::End => self.ended = true,
        }
    }
}
