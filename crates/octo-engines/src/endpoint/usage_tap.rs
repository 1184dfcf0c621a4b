//! Reads token usage and the finish reason from an upstream's answer without changing a byte of it.
//!
//! The upstream client knows the protocol it spoke, so one tap here serves passthrough and
//! converted requests alike: what the upstream reported is the truth the request log, metrics,
//! limits and cost are built on. A full body is deserialised into the few members a protocol
//! reports usage and finish reasons in ([`read_full_checked`]): the rest of the document (the
//! answer's content, the bulk of it) is skipped by serde without building anything, in the same
//! pass that checks the body is JSON, and the body handed on is the same `Bytes` (building the
//! whole document as a `serde_json::Value` cost a quarter of the gateway's instructions per
//! request, `docs/performance.md`). A stream is read event by event; only events that can carry usage or a finish
//! reason (found by a byte search) are parsed, and the events themselves pass on untouched, raw
//! frames included.
//!
//! | protocol | usage | finish reason |
//! |---|---|---|
//! | OpenAI Chat | `usage` (last chunk, when `stream_options.include_usage`) | `choices[].finish_reason` |
//! | OpenAI Responses | `response.usage` in `response.completed` / `.incomplete` / `.failed` | `response.status` |
//! | Anthropic | `message.usage` in `message_start`, then `usage` snapshots in `message_delta` | `delta.stop_reason` |
//! | Gemini | `usageMetadata` (cumulative, the last one wins) | `candidates[].finishReason` |
//! | OpenAI embeddings | `usage` (`prompt_tokens`) | – |
//! | Gemini embeddings | `usageMetadata` when given (the public API gives none: the embeddings engine estimates) | – |

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use octo_core::record::RequestRecord;
use octo_core::usage::{Usage, UsageFields};
use octo_core::{Error, Event, Protocol};
use serde_json::Value;
use serde_json::value::RawValue;

/// What an answer said about usage and why it stopped.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Tapped {
    pub(crate) usage: Option<Usage>,
    pub(crate) finish_reason: Option<String>,
}

impl Tapped {
    fn merge(&mut self, usage: Usage, present: UsageFields) {
        self.usage
            .get_or_insert_with(Usage::default)
            .merge_snapshot(&usage, present);
    }

    fn finish(&mut self, reason: Option<&Value>) {
        if let Some(r) = reason.and_then(Value::as_str)
            && !r.is_empty()
        {
            self.finish_reason = Some(r.to_owned());
        }
    }

    /// Reads one JSON document of `protocol`: a full answer or one stream event's data.
    fn read(&mut self, protocol: Protocol, v: &Value) {
        match protocol {
            Protocol::OpenAiChat => {
                if let Some(u) = v.get("usage").filter(|u| u.is_object())
                    && let Some(u) = Usage::from_openai_chat(u)
                {
                    self.merge(u, UsageFields::ALL);
                }
                if let Some(choices) = v.get("choices").and_then(Value::as_array) {
                    for c in choices {
                        self.finish(c.get("finish_reason"));
                    }
                }
            }
            Protocol::OpenAiResponses => {
                // A full answer is the response object; a stream event wraps it in `response`.
                let resp = v.get("response").unwrap_or(v);
                if let Some(u) = resp.get("usage").filter(|u| u.is_object())
                    && let Some(u) = Usage::from_openai_responses(u)
                {
                    self.merge(u, UsageFields::ALL);
                }
                if resp.get("object").and_then(Value::as_str) == Some("response") {
                    self.finish(resp.get("status"));
                }
            }
            Protocol::Anthropic => {
                // `message_start` carries the message; a full answer is the message.
                let msg = v.get("message").unwrap_or(v);
                if let Some(u) = msg.get("usage")
                    && let Some((u, present)) = Usage::from_anthropic_snapshot(u)
                {
                    self.merge(u, present);
                }
                self.finish(msg.get("stop_reason"));
                if let Some(d) = v.get("delta") {
                    self.finish(d.get("stop_reason"));
                }
            }
            Protocol::OpenAiEmbeddings => {
                if let Some(u) = v.get("usage").filter(|u| u.is_object())
                    && let Some(u) = Usage::from_openai_chat(u)
                {
                    self.merge(u, UsageFields::ALL);
                }
            }
            Protocol::GeminiEmbeddings => {
                if let Some(u) = v.get("usageMetadata").and_then(Usage::from_gemini) {
                    self.merge(u, UsageFields::ALL);
                }
            }
            Protocol::Gemini => {
                let meta = v.get("usageMetadata").or_else(|| v.get("usage_metadata"));
                if let Some(u) = meta.and_then(Usage::from_gemini) {
                    self.merge(u, UsageFields::ALL);
                }
                if let Some(cands) = v.get("candidates").and_then(Value::as_array) {
                    for c in cands {
                        self.finish(c.get("finishReason").or_else(|| c.get("finish_reason")));
                    }
                }
            }
            _ => {}
        }
    }

    fn record(&self, record: &RequestRecord) {
        record.set_usage(self.usage, self.finish_reason.as_deref());
    }
}

/// A member kept as its JSON text, `null` included (`Some("null")`); absent is `None`. Keeps the
/// typed reading's answer the same as [`Tapped::read`]'s on the whole document, and costs no
/// allocation: the text is borrowed from the body.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue as serde::Deserialize>::deserialize(d).map(Some)
}

/// An element of `choices` / `candidates`: only its finish reason.
#[derive(serde::Deserialize)]
struct Finish<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    finish_reason: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present", rename = "finishReason")]
    finish_reason_camel: Option<&'a RawValue>,
}

/// The members of a full answer that carry usage or a finish reason, in any protocol; every
/// other member is skipped unread (serde's ignored values are checked for syntax, not built).
#[derive(serde::Deserialize)]
struct FullAnswer<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    usage: Option<&'a RawValue>,
    #[serde(
        default,
        borrow,
        deserialize_with = "present",
        rename = "usageMetadata"
    )]
    usage_metadata_camel: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    usage_metadata: Option<&'a RawValue>,
    #[serde(default, borrow)]
    choices: Option<Vec<Finish<'a>>>,
    #[serde(default, borrow)]
    candidates: Option<Vec<Finish<'a>>>,
    #[serde(default, borrow, deserialize_with = "present")]
    response: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    message: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    object: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    status: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    stop_reason: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    delta: Option<&'a RawValue>,
}

/// A member's text as a value (`None` only if it does not parse, which a member serde read
/// as JSON always does).
fn value(raw: &RawValue) -> Option<Value> {
    serde_json::from_str(raw.get()).ok()
}

impl FullAnswer<'_> {
    /// What the answer says, as [`Tapped::read`] reads the whole document (`None` if a member
    /// does not parse again). OpenAI Chat and embeddings answers (every passthrough request's)
    /// have their usage read from its text, typed; the other protocols' members are made values.
    fn tapped(self, protocol: Protocol) -> Option<Tapped> {
        let mut t = Tapped::default();
        if matches!(protocol, Protocol::OpenAiChat | Protocol::OpenAiEmbeddings) {
            if let Some(raw) = self.usage
                && raw.get().starts_with('{')
                && let Some(u) = Usage::from_openai_chat_json(raw.get())
            {
                t.merge(u, UsageFields::ALL);
            }
            if protocol == Protocol::OpenAiChat {
                for c in self.choices.iter().flatten() {
                    let reason = c.finish_reason.map(value);
                    t.finish(reason.as_ref().and_then(Option::as_ref));
                }
            }
            return Some(t);
        }
        t.read(protocol, &self.into_value()?);
        Some(t)
    }

    /// The document with only these members, for [`Tapped::read`].
    fn into_value(self) -> Option<Value> {
        fn finishes(list: Option<Vec<Finish<'_>>>) -> Option<Option<Value>> {
            let Some(list) = list else {
                return Some(None);
            };
            let mut out = Vec::with_capacity(list.len());
            for f in list {
                let mut o = serde_json::Map::new();
                if let Some(v) = f.finish_reason {
                    o.insert("finish_reason".to_owned(), value(v)?);
                }
                if let Some(v) = f.finish_reason_camel {
                    o.insert("finishReason".to_owned(), value(v)?);
                }
                out.push(Value::Object(o));
            }
            Some(Some(Value::Array(out)))
        }
        let mut m = serde_json::Map::new();
        let raw = [
            ("usage", self.usage),
            ("usageMetadata", self.usage_metadata_camel),
            ("usage_metadata", self.usage_metadata),
            ("response", self.response),
            ("message", self.message),
            ("object", self.object),
            ("status", self.status),
            ("stop_reason", self.stop_reason),
            ("delta", self.delta),
        ];
        for (k, v) in raw {
            if let Some(v) = v {
                m.insert(k.to_owned(), value(v)?);
            }
        }
        for (k, v) in [
            ("choices", finishes(self.choices)?),
            ("candidates", finishes(self.candidates)?),
        ] {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        }
        Some(Value::Object(m))
    }
}

/// Reads a full (non-stream) answer body and checks that it is JSON, in one pass: `Err` when it
/// is not JSON. An answer whose members have unexpected shapes (or duplicate names) is read again
/// as a whole document, so the answer is [`read_full`]'s in every case.
pub(crate) fn read_full_checked(
    protocol: Protocol,
    body: &[u8],
) -> Result<Tapped, serde_json::Error> {
    match serde_json::from_slice::<FullAnswer<'_>>(body) {
        Ok(doc) => Ok(doc
            .tapped(protocol)
            .unwrap_or_else(|| read_full(protocol, body))),
        Err(_) => {
            serde_json::from_slice::<serde::de::IgnoredAny>(body)?;
            Ok(read_full(protocol, body))
        }
    }
}

/// Reads a full (non-stream) answer body as a whole document.
pub(crate) fn read_full(protocol: Protocol, body: &[u8]) -> Tapped {
    let mut t = Tapped::default();
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        t.read(protocol, &v);
    }
    t
}

/// Whether a stream event's data may carry usage or a finish reason (a byte search).
fn interesting(protocol: Protocol, data: &[u8]) -> bool {
    let has = |needle: &[u8]| memchr::memmem::find(data, needle).is_some();
    match protocol {
        Protocol::OpenAiChat => {
            has_chat_usage(data)
                || (has(b"\"finish_reason\"") && !has(b"\"finish_reason\":null"))
                || has(b"\"finish_reason\": \"")
        }
        Protocol::OpenAiResponses => has(b"\"usage\""),
        Protocol::Anthropic => has(b"\"usage\"") || has(b"\"stop_reason\""),
        Protocol::Gemini => has(b"sageMetadata\"") || has(b"inishReason\""),
        _ => false,
    }
}

/// Whether OpenAI Chat data has a `"usage"` member that may not be `null`. Once usage is asked
/// for (which the gateway does for every stream, and conversion too), OpenAI repeats
/// `"usage":null` in every chunk: reading those as documents found nothing, at the cost of a
/// full parse per chunk.
fn has_chat_usage(data: &[u8]) -> bool {
    const KEY: &[u8] = b"\"usage\"";
    memchr::memmem::find_iter(data, KEY).any(|at| {
        let rest = data[at + KEY.len()..].trim_ascii_start();
        match rest.strip_prefix(b":") {
            Some(value) => !value.trim_ascii_start().starts_with(b"null"),
            None => true,
        }
    })
}

/// Passes an upstream event stream through unchanged, noting the first event's arrival and the
/// usage and finish reason it reports into the request's record (updated as they arrive, so a
/// stream cut by the client keeps what was seen).
#[pin_project::pin_project]
pub(crate) struct TapStream<S> {
    #[pin]
    inner: S,
    protocol: Protocol,
    record: RequestRecord,
    tapped: Tapped,
    first: bool,
    strip_usage: bool,
}

impl<S> TapStream<S> {
    pub(crate) fn new(inner: S, protocol: Protocol, record: RequestRecord) -> Self {
        TapStream {
            inner,
            protocol,
            record,
            tapped: Tapped::default(),
            first: true,
            strip_usage: false,
        }
    }

    /// Removes OpenAI Chat's usage-only chunk (`"choices": []` with `usage`) from the stream: the
    /// gateway asked for it ([`ask_for_stream_usage`]), the client did not.
    pub(crate) fn strip_usage_chunk(mut self, on: bool) -> Self {
        self.strip_usage = on;
        self
    }
}

/// Makes an OpenAI Chat stream request ask for usage (`stream_options.include_usage: true`),
/// keeping the client's other stream options. Returns whether it changed the body: `false` when
/// the client already asked.
///
/// # Errors
/// A 400 when the body is not a JSON object.
pub(crate) fn ask_for_stream_usage(body: &mut octo_core::Body) -> Result<bool, Error> {
    let mut options = match body.top_level_raw("stream_options")? {
        Some(raw) => match serde_json::from_slice::<Value>(&raw) {
            Ok(Value::Object(o)) => o,
            // `null` or a malformed value: leave it for the upstream to judge.
            Ok(Value::Null) => serde_json::Map::new(),
            _ => return Ok(false),
        },
        None => serde_json::Map::new(),
    };
    if options.get("include_usage") == Some(&Value::Bool(true)) {
        return Ok(false);
    }
    options.insert("include_usage".into(), Value::Bool(true));
    body.set_top_level("stream_options", &Value::Object(options))?;
    Ok(true)
}

impl<S: Stream<Item = Result<Event, Error>>> Stream for TapStream<S> {
    type Item = Result<Event, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            let mut item = std::task::ready!(this.inner.as_mut().poll_next(cx));
            if let Some(Ok(event)) = &mut item {
                if *this.first {
                    *this.first = false;
                    this.record.mark_first_byte();
                }
                let data: Bytes = event.data_body().to_bytes();
                if interesting(*this.protocol, &data)
                    && let Ok(v) = serde_json::from_slice::<Value>(&data)
                {
                    let before = this.tapped.clone();
                    this.tapped.read(*this.protocol, &v);
                    if *this.tapped != before {
                        this.tapped.record(this.record);
                    }
                    if *this.strip_usage && is_usage_only_chunk(&v) {
                        continue;
                    }
                }
                if *this.strip_usage
                    && let Some(spliced) = without_null_usage(&data)
                {
                    event.data_mut().set_bytes(spliced);
                }
            }
            return Poll::Ready(item);
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// A chunk without the `"usage":null` member OpenAI adds to every chunk once usage was asked for
/// (`None` when there is none): the member and one adjacent comma are cut out of the bytes, the
/// rest is kept as it came.
fn without_null_usage(data: &[u8]) -> Option<Bytes> {
    for pat in [&b"\"usage\":null"[..], &b"\"usage\": null"[..]] {
        let Some(at) = memchr::memmem::find(data, pat) else {
            continue;
        };
        let end = at + pat.len();
        let (from, to) = if data.get(end) == Some(&b',') {
            (at, end + 1)
        } else if at > 0 && data[at - 1] == b',' {
            (at - 1, end)
        } else {
            (at, end)
        };
        let mut out = Vec::with_capacity(data.len() - (to - from));
        out.extend_from_slice(&data[..from]);
        out.extend_from_slice(&data[to..]);
        return Some(Bytes::from(out));
    }
    None
}

/// OpenAI Chat's closing usage chunk: no choices, a usage object.
fn is_usage_only_chunk(v: &Value) -> bool {
    v.get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && v.get("usage").is_some_and(Value::is_object)
}

/// Records what a full answer said.
pub(crate) fn record_full(record: &RequestRecord, t: &Tapped) {
    if t.usage.is_some() || t.finish_reason.is_some() {
        t.record(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap(protocol: Protocol, events: &[&str]) -> Tapped {
        let mut t = Tapped::default();
        for e in events {
            if interesting(protocol, e.as_bytes()) {
                t.read(protocol, &serde_json::from_str(e).unwrap());
            }
        }
        t
    }

    #[test]
    fn openai_chat_stream_usage_chunk_and_finish() {
        let t = tap(
            Protocol::OpenAiChat,
            &[
                r#"{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#,
                r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
                r#"{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4}}}"#,
            ],
        );
        let u = t.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.cache_read_tokens, u.output_tokens),
            (6, 4, 3)
        );
        assert_eq!(t.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn embeddings_usage() {
        let t = read_full(
            Protocol::OpenAiEmbeddings,
            br#"{"object":"list","data":[],"usage":{"prompt_tokens":9,"total_tokens":9}}"#,
        );
        let u = t.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (9, 0));
        assert_eq!(t.finish_reason, None);
        let t = read_full(
            Protocol::GeminiEmbeddings,
            br#"{"embeddings":[{"values":[0.5]}]}"#,
        );
        assert_eq!(t.usage, None, "the public Gemini API reports none");
    }

    #[test]
    fn null_usage_alone_is_not_worth_a_parse() {
        let null = [
            &br#"{"usage":null,"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}"#[..],
            br#"{"usage" : null,"choices":[]}"#,
        ];
        for d in null {
            assert!(!interesting(Protocol::OpenAiChat, d), "{d:?}");
        }
        let read = [
            &br#"{"usage":{"prompt_tokens":1},"choices":[]}"#[..],
            br#"{"usage": {"prompt_tokens":1}}"#,
            br#"{"usage":null,"x":{"usage":{"prompt_tokens":1}}}"#,
            br#"{"usage":null,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            br#"{"usage""#,
        ];
        for d in read {
            assert!(interesting(Protocol::OpenAiChat, d), "{d:?}");
        }
    }

    #[test]
    fn a_chat_stream_without_usage_leaves_it_null_never_zero() {
        let t = tap(
            Protocol::OpenAiChat,
            &[r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}],"usage":null}"#],
        );
        assert_eq!(t.usage, None);
        assert_eq!(t.finish_reason.as_deref(), Some("length"));
    }

    #[test]
    fn anthropic_snapshots_merge() {
        let t = tap(
            Protocol::Anthropic,
            &[
                r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":20,"cache_read_input_tokens":100,"output_tokens":1}}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#,
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":42}}"#,
            ],
        );
        let u = t.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.cache_read_tokens, u.output_tokens),
            (20, 100, 42)
        );
        assert_eq!(t.finish_reason.as_deref(), Some("end_turn"));
    }

    #[test]
    fn responses_completed_event_and_full_answer() {
        let t = tap(
            Protocol::OpenAiResponses,
            &[
                r#"{"type":"response.output_text.delta","delta":"x"}"#,
                r#"{"type":"response.completed","response":{"object":"response","status":"completed","usage":{"input_tokens":7,"output_tokens":5,"output_tokens_details":{"reasoning_tokens":2}}}}"#,
            ],
        );
        let u = t.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.reasoning_tokens),
            (7, 5, 2)
        );
        assert_eq!(t.finish_reason.as_deref(), Some("completed"));
        let full = read_full(
            Protocol::OpenAiResponses,
            br#"{"object":"response","status":"incomplete","usage":{"input_tokens":1,"output_tokens":1}}"#,
        );
        assert_eq!(full.finish_reason.as_deref(), Some("incomplete"));
    }

    #[test]
    fn gemini_last_metadata_wins() {
        let t = tap(
            Protocol::Gemini,
            &[
                r#"{"candidates":[{"content":{"parts":[{"text":"a"}]}}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":1}}"#,
                r#"{"candidates":[{"content":{"parts":[{"text":"b"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":6,"thoughtsTokenCount":2}}"#,
            ],
        );
        let u = t.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.reasoning_tokens),
            (9, 8, 2)
        );
        assert_eq!(t.finish_reason.as_deref(), Some("STOP"));
    }

    #[test]
    fn stream_usage_is_asked_for_keeping_other_options() {
        let mut b = octo_core::Body::from_static(
            br#"{"model":"m","stream":true,"stream_options":{"include_obfuscation":false},"messages":[]}"#,
        );
        assert!(ask_for_stream_usage(&mut b).unwrap());
        let v: Value = serde_json::from_slice(&b.bytes()).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["include_obfuscation"], false);
        assert!(!ask_for_stream_usage(&mut b).unwrap(), "already asked");
        let mut plain = octo_core::Body::from_static(br#"{"model":"m","stream":true}"#);
        assert!(ask_for_stream_usage(&mut plain).unwrap());
        assert!(
            plain
                .bytes()
                .starts_with(br#"{"stream_options":{"include_usage":true},"model""#)
        );
        assert_eq!(
            without_null_usage(br#"{"id":"c","usage":null,"choices":[]}"#).as_deref(),
            Some(&br#"{"id":"c","choices":[]}"#[..])
        );
        assert_eq!(
            without_null_usage(br#"{"choices":[],"usage":null}"#).as_deref(),
            Some(&br#"{"choices":[]}"#[..])
        );
        assert_eq!(without_null_usage(br#"{"choices":[]}"#), None);
        assert!(is_usage_only_chunk(
            &serde_json::json!({"choices": [], "usage": {"prompt_tokens": 1}})
        ));
        assert!(!is_usage_only_chunk(
            &serde_json::json!({"choices": [{"delta": {}}], "usage": {"prompt_tokens": 1}})
        ));
    }

    #[test]
    fn the_typed_reading_agrees_with_the_whole_document() {
        let docs = [
            r#"{"choices":[{"message":{"content":"x"},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
            r#"{"choices":[{"finish_reason":null},{"finish_reason":"stop"}],"usage":null}"#,
            r#"{"choices":"odd","usage":{"prompt_tokens":1}}"#,
            r#"{"choices":[1,2],"usage":{"prompt_tokens":1}}"#,
            r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":7}}"#,
            r#"{"type":"message","content":[{"type":"text","text":"hi"}],"stop_reason":"max_tokens","usage":{"input_tokens":3,"output_tokens":2,"cache_read_input_tokens":1}}"#,
            r#"{"type":"message_start","message":{"usage":{"input_tokens":20}}}"#,
            r#"{"delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":4}}"#,
            r#"{"object":"response","status":"incomplete","output":[{"type":"message"}],"usage":{"input_tokens":1,"output_tokens":1}}"#,
            r#"{"response":{"object":"response","status":"completed","usage":{"input_tokens":2,"output_tokens":3}}}"#,
            r#"{"response":null,"object":"response","status":"completed"}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"b"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":6}}"#,
            r#"{"candidates":[{"finish_reason":"MAX_TOKENS"}],"usage_metadata":{"promptTokenCount":2,"candidatesTokenCount":1}}"#,
            r#"{"object":"list","data":[{"embedding":[0.1,0.2]}],"usage":{"prompt_tokens":9,"total_tokens":9}}"#,
            r#"{"embeddings":[{"values":[0.5]}],"usageMetadata":{"promptTokenCount":4}}"#,
            r#"[1,2,3]"#,
            r#"{}"#,
            r#" { "usage" : { "prompt_tokens" : 5 } , "choices" : [ { "finish_reason" : "st\u006fp" } ] } "#,
            r#"{"usage":[4,2],"choices":[{"finish_reason":""},{"finish_reason":7}]}"#,
            r#"{"usage":{"prompt_tokens":1,"prompt_tokens":9,"completion_tokens":2}}"#,
            r#"{"usage":{"prompt_tokens":1.5,"completion_tokens":2}}"#,
            r#"{"usage":{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":2,"cached_tokens":1}}}"#,
            r#"{"usage":{"prompt_tokens":3,"prompt_tokens_details":null,"completion_tokens_details":{"reasoning_tokens":1}}}"#,
            r#"{"usage":{"input_tokens":3},"usageMetadata":null,"response":"x","message":[],"delta":1}"#,
        ];
        for doc in docs {
            for protocol in [
                Protocol::OpenAiChat,
                Protocol::OpenAiResponses,
                Protocol::Anthropic,
                Protocol::Gemini,
                Protocol::OpenAiEmbeddings,
                Protocol::GeminiEmbeddings,
            ] {
                assert_eq!(
                    read_full_checked(protocol, doc.as_bytes()).unwrap(),
                    read_full(protocol, doc.as_bytes()),
                    "{protocol}: {doc}"
                );
            }
        }
        for bad in [
            &b"not json"[..],
            b"{\"usage\":1",
            b"{} x",
            b"{\"a\":\"\\q\"}",
        ] {
            assert!(read_full_checked(Protocol::OpenAiChat, bad).is_err());
            assert!(serde_json::from_slice::<serde::de::IgnoredAny>(bad).is_err());
        }
    }

    #[test]
    fn full_answers_of_each_protocol() {
        let chat = read_full(
            Protocol::OpenAiChat,
            br#"{"choices":[{"message":{"content":"x"},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
        );
        assert_eq!(chat.usage.unwrap().output_tokens, 2);
        assert_eq!(chat.finish_reason.as_deref(), Some("tool_calls"));
        let anthropic = read_full(
            Protocol::Anthropic,
            br#"{"type":"message","stop_reason":"max_tokens","usage":{"input_tokens":3,"output_tokens":2}}"#,
        );
        assert_eq!(anthropic.usage.unwrap().input_tokens, 3);
        assert_eq!(anthropic.finish_reason.as_deref(), Some("max_tokens"));
        assert_eq!(read_full(Protocol::Gemini, b"not json"), Tapped::default());
    }
}
