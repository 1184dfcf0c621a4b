//! The four wire protocols. Each module reads the few request fields the mock cares about into a
//! [`Summary`] and renders a [`Plan`] as a unary JSON body, as a sequence of stream events, or as
//! the protocol's error bodies. This module dispatches on [`Protocol`] and applies the stream
//! directives (`midstream_error`, `truncate`, `abort`) generically.

pub(crate) mod anthropic;
pub(crate) mod gemini;
pub(crate) mod openai_chat;
pub(crate) mod openai_responses;

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

use crate::body::Ending;
use crate::directives::Directives;
use crate::reply::{Plan, Summary};

/// Which API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    OpenAiChat,
    OpenAiResponses,
    Anthropic,
    Gemini,
}

/// How the reply is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One JSON body.
    Unary,
    /// Server-sent events.
    Sse,
    /// Gemini `streamGenerateContent` without `alt=sse`: a JSON array, one element per frame.
    JsonArray,
}

/// One rendered stream event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// The complete bytes of the event, sent as one body frame.
    pub(crate) frame: Bytes,
    /// Whether this is a content delta (text, reasoning or tool-argument fragment), the unit counted by the
    /// `events` and `midstream_error` directives.
    pub(crate) content: bool,
}

impl Event {
    pub(crate) fn new(frame: Bytes) -> Self {
        Event {
            frame,
            content: false,
        }
    }

    pub(crate) fn content(frame: Bytes) -> Self {
        Event {
            frame,
            content: true,
        }
    }
}

impl Protocol {
    /// Reads the request body. `path_model` is Gemini's model from the URL.
    pub(crate) fn summarize(self, body: &Value, path_model: Option<&str>) -> Summary {
        match self {
            Protocol::OpenAiChat => openai_chat::summarize(body),
            Protocol::OpenAiResponses => openai_responses::summarize(body),
            Protocol::Anthropic => anthropic::summarize(body),
            Protocol::Gemini => gemini::summarize(body, path_model.unwrap_or_default()),
        }
    }

    /// The non-streaming response body.
    pub(crate) fn render_unary(self, plan: &Plan) -> Bytes {
        match self {
            Protocol::OpenAiChat => openai_chat::render_unary(plan),
            Protocol::OpenAiResponses => openai_responses::render_unary(plan),
            Protocol::Anthropic => anthropic::render_unary(plan),
            Protocol::Gemini => gemini::render_unary(plan),
        }
    }

    /// The full, canonical event sequence of a streamed reply.
    pub(crate) fn render_stream(self, plan: &Plan, mode: Mode) -> Vec<Event> {
        match self {
            Protocol::OpenAiChat => openai_chat::render_stream(plan),
            Protocol::OpenAiResponses => openai_responses::render_stream(plan),
            Protocol::Anthropic => anthropic::render_stream(plan),
            Protocol::Gemini => gemini::render_stream(plan, mode),
        }
    }

    /// The in-band error event sent by `midstream_error`, as the `seq`-th frame of the stream.
    /// `suffix` is appended to its message (the `echo_key` directive's presented key).
    pub(crate) fn stream_error(self, mode: Mode, seq: usize, suffix: &str) -> Bytes {
        let message = format!("octo-mock: injected mid-stream error{suffix}");
        let message = message.as_str();
        match self {
            Protocol::OpenAiChat => openai_chat::stream_error(message),
            Protocol::OpenAiResponses => openai_responses::stream_error(message, seq),
            Protocol::Anthropic => anthropic::stream_error(message),
            Protocol::Gemini => gemini::stream_error(message, mode, seq),
        }
    }

    /// The JSON body of an HTTP error response.
    pub(crate) fn error_body(self, status: StatusCode, message: &str) -> Bytes {
        match self {
            Protocol::OpenAiChat | Protocol::OpenAiResponses => {
                openai_chat::error_body(status, message)
            }
            Protocol::Anthropic => anthropic::error_body(status, message),
            Protocol::Gemini => gemini::error_body(status, message),
        }
    }
}

/// Applies the stream-shaping directives to a rendered event sequence:
/// `midstream_error=K` keeps the events up to the K-th content event (before the first one for
/// K = 0; after the last one if there are fewer) and appends the protocol's error event from
/// `error(position)`; then `truncate=K` keeps the first K frames and ends cleanly, and `abort=K`
/// keeps the first K frames and fails the body.
pub(crate) fn shape_stream(
    events: Vec<Event>,
    directives: &Directives,
    error: impl FnOnce(usize) -> Bytes,
) -> (Vec<Bytes>, Ending) {
    let cut = directives.midstream_error.map(|k| {
        let mut content = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.content)
            .map(|(i, _)| i);
        let positions: Vec<usize> = if k == 0 {
            content.next().into_iter().collect()
        } else {
            content.take(k).collect()
        };
        match (k, positions.last()) {
            (0, Some(&first)) => first,
            (_, Some(&last)) => last + 1,
            (_, None) => events.len().saturating_sub(1),
        }
    });
    let mut frames: Vec<Bytes> = events.into_iter().map(|e| e.frame).collect();
    if let Some(cut) = cut {
        frames.truncate(cut);
        frames.push(error(cut));
    }
    let mut ending = Ending::Clean;
    if let Some(k) = directives.truncate {
        frames.truncate(k);
    }
    if let Some(k) = directives.abort {
        frames.truncate(k);
        ending = Ending::Abort;
    }
    (frames, ending)
}

/// The text of a message `content`: a string, or the concatenated `text` fields of an array of
/// parts (skipping Gemini thought parts). `None` when there is no text.
pub(crate) fn collect_text(content: &Value) -> Option<String> {
    let text = match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// `body[key]` as a string.
pub(crate) fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

/// `body[key]` as an array (empty when absent).
pub(crate) fn array_field<'a>(body: &'a Value, key: &str) -> &'a [Value] {
    body.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `body.stream == true`.
pub(crate) fn wants_stream(body: &Value) -> bool {
    body.get("stream").and_then(Value::as_bool) == Some(true)
}

/// Test helper: `(event name, data)` of every named frame, checking that `type` matches the event
/// line (Anthropic and Responses frame their events this way).
#[cfg(test)]
pub(crate) fn parse_named_events(events: &[Event]) -> Vec<(String, Value)> {
    events
        .iter()
        .map(|e| {
            let text = std::str::from_utf8(&e.frame).unwrap();
            let (head, data) = text.strip_suffix("\n\n").unwrap().split_once('\n').unwrap();
            let name = head.strip_prefix("event: ").unwrap().to_owned();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect()
}

/// Test helper: directives read from a request body `text` alone (no `x-mock-*` headers).
#[cfg(test)]
pub(crate) fn test_directives(text: &str) -> Directives {
    Directives::parse(&http::HeaderMap::new(), text.as_bytes())
}

/// Test helper: the plan a fresh default mock makes for `summary` (a 100-byte request) under the
/// directives in `directives`.
#[cfg(test)]
pub(crate) fn test_plan(summary: Summary, directives: &str) -> Plan {
    let state = crate::record::State::new(crate::MockConfig::default());
    Plan::new(summary, &test_directives(directives), 100, &state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Vec<Event> {
        vec![
            Event::new(Bytes::from_static(b"start")),
            Event::content(Bytes::from_static(b"c1")),
            Event::content(Bytes::from_static(b"c2")),
            Event::new(Bytes::from_static(b"stop")),
            Event::new(Bytes::from_static(b"done")),
        ]
    }

    fn err(at: usize) -> Bytes {
        Bytes::from(format!("err@{at}"))
    }

    #[test]
    fn midstream_error_positions() {
        let (f, e) = shape_stream(events(), &test_directives("[mock:midstream_error=1]"), err);
        assert_eq!(f, ["start", "c1", "err@2"]);
        assert_eq!(e, Ending::Clean);
        let (f, _) = shape_stream(events(), &test_directives("[mock:midstream_error=0]"), err);
        assert_eq!(f, ["start", "err@1"]);
        let (f, _) = shape_stream(events(), &test_directives("[mock:midstream_error=9]"), err);
        assert_eq!(f, ["start", "c1", "c2", "err@3"]);
    }

    #[test]
    fn truncate_and_abort() {
        let (f, e) = shape_stream(events(), &test_directives("[mock:truncate=2]"), err);
        assert_eq!(f, ["start", "c1"]);
        assert_eq!(e, Ending::Clean);
        let (f, e) = shape_stream(events(), &test_directives("[mock:abort=3]"), err);
        assert_eq!(f, ["start", "c1", "c2"]);
        assert_eq!(e, Ending::Abort);
        let (f, e) = shape_stream(events(), &test_directives(""), err);
        assert_eq!(f.len(), 5);
        assert_eq!(e, Ending::Clean);
    }

    #[test]
    fn text_collection() {
        let v: Value = serde_json::json!([{"type":"text","text":"a"},{"text":"b"},{"text":"x","thought":true},{"type":"image"}]);
        assert_eq!(collect_text(&v).as_deref(), Some("ab"));
        assert_eq!(
            collect_text(&Value::String("hi".into())).as_deref(),
            Some("hi")
        );
        assert_eq!(collect_text(&Value::Null), None);
        assert_eq!(collect_text(&serde_json::json!([])), None);
    }
}
