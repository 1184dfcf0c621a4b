//! Streams converted event by event: upstream events → [`StreamEvent`]s → client events.
//!
//! [`StreamConverter`] takes one upstream [`Event`], lets the upstream protocol's [`Decoder`] turn
//! it into canonical [`StreamEvent`]s and the client protocol's [`Encoder`] turn those into client
//! events, and queues them until they are taken. Nothing but a few events and the encoders'
//! per-block state is held. The same canonical events also replay a complete answer as a stream
//! ([`response_events`]) and build a complete answer from a stream ([`Collector`]).

use std::collections::VecDeque;

use octo_core::{Error, Event};

use crate::canonical::{CanonicalResponse, Part, StreamEvent, StreamStart, Thinking, ToolCall};
use crate::tools::NameMap;

/// Reads an upstream stream event's data as `T`; `None` (logged at debug level, naming `what`)
/// for data that is not a readable `T`, which the decoders skip rather than fail the stream on.
pub(crate) fn read_event<'a, T: serde::Deserialize<'a>>(data: &'a [u8], what: &str) -> Option<T> {
    match serde_json::from_slice(data) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!(error = %e, "skipping an unreadable {what}");
            None
        }
    }
}

/// Turns upstream events into canonical stream events.
///
/// A decoder pushes [`StreamEvent::End`] when it reads the upstream's terminator; it is fed no
/// more events after that. An upstream that just stops (EOF, or Gemini, which has no terminator)
/// is ended by [`StreamConverter::finish`], in one place for every protocol.
pub(crate) trait Decoder: Send {
    /// Decodes one upstream event; an in-band error becomes `Err`.
    fn decode(&mut self, event: &Event, out: &mut Vec<StreamEvent>) -> Result<(), Error>;
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

/// Converts an upstream stream into the client's, one upstream event at a time, without doing IO.
///
/// Feed it what the upstream sends — [`push`](Self::push) for each event,
/// [`fail`](Self::fail) for a transport error, [`finish`](Self::finish) at EOF — and take the
/// client's events out with [`next_event`](Self::next_event) after each step. Once
/// [`is_done`](Self::is_done) the upstream's answer is complete (stop reading from it and drop
/// it); the converter ignores further input.
///
/// Endings:
/// - the upstream's terminator (`[DONE]`, `message_stop`, `response.completed`) or plain EOF
///   → the client's terminator; a stream is never left open;
/// - an in-band upstream error or a transport error → the client protocol's failure event when it
///   has one (Responses: `response.failed`); otherwise [`next_event`](Self::next_event) yields
///   `Err(Error)` after the events before it, and the front renders it as the client protocol's
///   in-band error event (`Error::render_stream_frame`). A stream that fails before its first
///   client event always yields the error, so the retry layer can act on it and the front can
///   answer with an HTTP status.
///
/// Memory is bounded by the open block, not by the stream's length (a Responses client is the
/// exception its protocol imposes: `response.completed` repeats the whole output).
///
/// ```
/// use bytes::Bytes;
/// use octo_convert::ResponseConverter;
/// use octo_core::{Event, Protocol};
///
/// // An Anthropic upstream answering an OpenAI Chat client.
/// let answer = ResponseConverter::new(Protocol::OpenAiChat, Protocol::Anthropic, "claude").unwrap();
/// let mut stream = answer.stream();
/// for data in [
///     r#"{"type":"message_start","message":{"id":"msg_1","model":"claude","usage":{"input_tokens":3}}}"#,
///     r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
///     r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
///     r#"{"type":"message_stop"}"#,
/// ] {
///     stream.push(&Event::data(Bytes::from_static(data.as_bytes())));
/// }
/// assert!(stream.is_done());
/// let frames: Vec<String> = std::iter::from_fn(|| stream.next_event())
///     .map(|e| String::from_utf8(e.unwrap().to_frame().to_vec()).unwrap())
///     .collect();
/// assert!(frames.iter().any(|f| f.contains(r#""content":"Hi""#)));
/// assert_eq!(frames.last().unwrap(), "data: [DONE]\n\n");
/// ```
pub struct StreamConverter {
    decoder: Box<dyn Decoder>,
    encoder: Box<dyn Encoder>,
    names: NameMap,
    canon: Vec<StreamEvent>,
    out: VecDeque<Event>,
    error: Option<Error>,
    done: bool,
    /// A client event was produced.
    started: bool,
}

impl std::fmt::Debug for StreamConverter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConverter")
            .field("queued", &self.out.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl StreamConverter {
    pub(crate) fn new(
        decoder: Box<dyn Decoder>,
        encoder: Box<dyn Encoder>,
        names: NameMap,
    ) -> Self {
        StreamConverter {
            decoder,
            encoder,
            names,
            canon: Vec::with_capacity(8),
            out: VecDeque::with_capacity(8),
            error: None,
            done: false,
            started: false,
        }
    }

    /// Runs the decoded events through the encoder; returns whether the stream has ended.
    fn pump(&mut self) -> bool {
        for ev in self.canon.drain(..) {
            let Some(mut ev) = self.names.answer_event(ev) else {
                continue;
            };
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

    /// Feeds one upstream event.
    pub fn push(&mut self, event: &Event) {
        if self.done {
            return;
        }
        let result = self.decoder.decode(event, &mut self.canon);
        let ended = self.pump();
        if let Err(e) = result {
            if !ended {
                self.fail(e);
            }
            self.done = true;
        }
    }

    /// The upstream stream failed with `error` (a transport error): the client gets its protocol's
    /// failure event, or the error itself (see the [type docs](Self)).
    pub fn fail(&mut self, error: Error) {
        if self.done {
            return;
        }
        let started = self.started || !self.out.is_empty();
        if !started || !self.encoder.fail(&error, &mut self.out) {
            self.error = Some(error);
        }
        self.done = true;
    }

    /// The upstream stream ended (EOF): the client's stream is closed with its terminator.
    pub fn finish(&mut self) {
        if self.done {
            return;
        }
        self.encoder.finish(&mut self.out);
        self.done = true;
    }

    /// The next client event (or, last, the error the stream ends with); `None` when everything
    /// produced so far has been taken.
    pub fn next_event(&mut self) -> Option<Result<Event, Error>> {
        if let Some(ev) = self.out.pop_front() {
            self.started = true;
            return Some(Ok(ev));
        }
        self.error.take().map(Err)
    }

    /// Whether the upstream's answer is complete: feed nothing more, drain
    /// [`next_event`](Self::next_event), then the client's stream is over.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Converts a whole sequence of upstream events (tests, fuzzing, benchmarks): stops reading at
    /// the upstream's end, finishes at the end of `events`.
    pub fn convert_all(
        mut self,
        events: impl IntoIterator<Item = Result<Event, Error>>,
    ) -> Vec<Result<Event, Error>> {
        let mut result = Vec::new();
        for item in events {
            match item {
                Ok(ev) => self.push(&ev),
                Err(e) => self.fail(e),
            }
            result.extend(std::iter::from_fn(|| self.next_event()));
            if self.done {
                break;
            }
        }
        self.finish();
        result.extend(std::iter::from_fn(|| self.next_event()));
        result
    }
}

/// A complete answer as the stream events that would have produced it (for an upstream that
/// ignored `stream: true`).
pub(crate) fn response_events(r: CanonicalResponse) -> Vec<StreamEvent> {
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

/// Builds a [`CanonicalResponse`] from stream events.
#[derive(Default)]
pub(crate) struct Collector {
    pub(crate) resp: CanonicalResponse,
    /// Upstream key → index in `resp.parts`.
    calls: Vec<(u64, usize)>,
    /// Whether the last part is still open for deltas.
    open: bool,
    pub(crate) ended: bool,
}

impl Collector {
    pub(crate) fn push(&mut self, ev: StreamEvent) {
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
