//! Anthropic Messages streams: event decoder and encoder.
//!
//! The encoder keeps Anthropic's framing exactly: `message_start`, then blocks with contiguous
//! indices from 0, each closed (`content_block_stop`) before the next opens, tool input only as
//! `input_json_delta`, then `message_delta` (with `stop_reason` and cumulative usage) and
//! `message_stop`, which is always written, even when the upstream just stopped.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use octo_core::{Error, Event, Protocol};

use crate::anthropic::{stop_from, stop_reason};
use crate::canonical::{StopReason, StreamEvent, StreamStart, Usage, effective_stop};
use crate::ids;
use crate::stream::{Decoder, Encoder, read_event};
use crate::util::{fresh_id, inband_error, status_for_type};

// ---------------------------------------------------------------------------------------- decode

#[derive(Deserialize)]
struct In<'a> {
    #[serde(
        rename = "type",
        borrow,
        default,
        deserialize_with = "crate::util::borrowed_str"
    )]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<InDelta<'a>>,
    #[serde(default)]
    content_block: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct InDelta<'a> {
    #[serde(
        rename = "type",
        borrow,
        default,
        deserialize_with = "crate::util::borrowed_str"
    )]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    signature: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    stop_sequence: Option<Cow<'a, str>>,
}

/// Upstream Anthropic events → canonical events.
#[derive(Default)]
pub(crate) struct AnthropicDecoder {
    /// Block indices whose events are skipped (server tools and the like).
    ignored: Vec<u64>,
    usage: Usage,
}

impl Decoder for AnthropicDecoder {
    fn decode(&mut self, event: &Event, out: &mut Vec<StreamEvent>) -> Result<(), Error> {
        let data = event.data_body().to_bytes();
        let Some(ev) = read_event::<In<'_>>(&data, "Anthropic event") else {
            return Ok(());
        };
        let kind = ev.kind.as_deref().or(event.name()).unwrap_or_default();
        match kind {
            "message_start" => {
                let msg = ev.message.unwrap_or(Value::Null);
                out.push(StreamEvent::Start(StreamStart {
                    id: msg.get("id").and_then(Value::as_str).map(str::to_owned),
                    model: msg.get("model").and_then(Value::as_str).map(str::to_owned),
                    created: None,
                }));
                if let Some(u) = msg.get("usage").and_then(Usage::from_anthropic) {
                    self.usage = u;
                    out.push(StreamEvent::Usage(u));
                }
            }
            "content_block_start" => {
                let index = ev.index.unwrap_or(0);
                let block = ev.content_block.unwrap_or(Value::Null);
                let str_of = |k: &str| block.get(k).and_then(Value::as_str).unwrap_or_default();
                match str_of("type") {
                    "text" => {
                        let t = str_of("text");
                        if !t.is_empty() {
                            out.push(StreamEvent::Text(t.to_owned()));
                        }
                    }
                    "thinking" => {
                        let t = str_of("thinking");
                        if !t.is_empty() {
                            out.push(StreamEvent::Thinking(t.to_owned()));
                        }
                        let sig = str_of("signature");
                        if !sig.is_empty() {
                            out.push(StreamEvent::ThinkingSignature(sig.to_owned()));
                        }
                    }
                    "redacted_thinking" => {
                        out.push(StreamEvent::RedactedThinking(str_of("data").to_owned()));
                        self.ignored.push(index);
                    }
                    "tool_use" => {
                        let (id, signature) = ids::unfold_signature(str_of("id"));
                        out.push(StreamEvent::ToolCallStart {
                            key: index,
                            id,
                            name: str_of("name").to_owned(),
                            signature,
                        });
                        if let Some(input) = block
                            .get("input")
                            .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                        {
                            out.push(StreamEvent::ToolCallArgs {
                                key: index,
                                fragment: input.to_string(),
                            });
                        }
                    }
                    other => {
                        tracing::debug!(
                            block = other,
                            "skipping an Anthropic block other protocols cannot express"
                        );
                        self.ignored.push(index);
                    }
                }
            }
            "content_block_delta" => {
                let index = ev.index.unwrap_or(0);
                if self.ignored.contains(&index) {
                    return Ok(());
                }
                let Some(d) = ev.delta else { return Ok(()) };
                match d.kind.as_deref().unwrap_or_default() {
                    "text_delta" => {
                        if let Some(t) = d.text.filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::Text(t.into_owned()));
                        }
                    }
                    "input_json_delta" => {
                        if let Some(p) = d.partial_json.filter(|p| !p.is_empty()) {
                            out.push(StreamEvent::ToolCallArgs {
                                key: index,
                                fragment: p.into_owned(),
                            });
                        }
                    }
                    "thinking_delta" => {
                        if let Some(t) = d.thinking.filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::Thinking(t.into_owned()));
                        }
                    }
                    "signature_delta" => {
                        if let Some(s) = d.signature.filter(|s| !s.is_empty()) {
                            out.push(StreamEvent::ThinkingSignature(s.into_owned()));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" if !self.ignored.contains(&ev.index.unwrap_or(0)) => {
                out.push(StreamEvent::BlockEnd);
            }
            "message_delta" => {
                if let Some(d) = ev.delta {
                    if let Some(reason) = d.stop_reason.as_deref().and_then(stop_from) {
                        out.push(StreamEvent::Finish {
                            reason,
                            stop_sequence: d.stop_sequence.map(Cow::into_owned),
                        });
                    }
                }
                if let Some((u, present)) =
                    ev.usage.as_ref().and_then(Usage::from_anthropic_snapshot)
                {
                    self.usage.merge_snapshot(&u, present);
                    out.push(StreamEvent::Usage(self.usage));
                }
            }
            "message_stop" => {
                out.push(StreamEvent::End);
            }
            "error" => {
                let err = ev.error.unwrap_or(Value::Null);
                let status =
                    status_for_type(err.get("type").and_then(Value::as_str).unwrap_or_default());
                let body: Value = serde_json::from_slice(&data)
                    .unwrap_or_else(|_| json!({"type": "error", "error": err}));
                return Err(inband_error(Protocol::Anthropic, status, &body));
            }
            _ => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------- encode

#[derive(Serialize)]
struct OutDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: DeltaBody<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum DeltaBody<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    Tool(u64),
}

/// Canonical events → Anthropic events.
pub(crate) struct AnthropicEncoder {
    id: String,
    model: String,
    started: bool,
    /// The upstream's stream began: `message_start` goes out at the latest after the upstream
    /// event that began it (see [`Encoder::flush`]).
    start_seen: bool,
    next_index: u32,
    open: Option<Open>,
    saw_tool: bool,
    stop: Option<StopReason>,
    stop_sequence: Option<String>,
    usage: Usage,
}

impl AnthropicEncoder {
    /// An encoder; `model` is the fallback when the upstream names none.
    pub(crate) fn new(model: &str) -> Self {
        AnthropicEncoder {
            id: String::new(),
            model: model.to_owned(),
            started: false,
            start_seen: false,
            next_index: 0,
            open: None,
            saw_tool: false,
            stop: None,
            stop_sequence: None,
            usage: Usage::default(),
        }
    }

    fn event(name: &'static str, data: &impl Serialize) -> Event {
        Event::named(
            name,
            Bytes::from(serde_json::to_vec(data).unwrap_or_default()),
        )
    }

    fn ensure_started(&mut self, out: &mut VecDeque<Event>) {
        if self.started {
            return;
        }
        self.started = true;
        if self.id.is_empty() {
            self.id = fresh_id("msg_");
        }
        out.push_back(Self::event(
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": self.usage.to_anthropic(),
                }
            }),
        ));
    }

    fn close(&mut self, out: &mut VecDeque<Event>) {
        if self.open.take().is_some() {
            out.push_back(Self::event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.next_index - 1}),
            ));
        }
    }

    fn open(&mut self, kind: Open, block: Value, out: &mut VecDeque<Event>) {
        self.ensure_started(out);
        self.close(out);
        out.push_back(Self::event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.next_index, "content_block": block}),
        ));
        self.next_index += 1;
        self.open = Some(kind);
    }

    fn delta(&self, body: DeltaBody<'_>) -> Event {
        Self::event(
            "content_block_delta",
            &OutDelta {
                kind: "content_block_delta",
                index: self.next_index - 1,
                delta: body,
            },
        )
    }
}

impl Encoder for AnthropicEncoder {
    fn encode(&mut self, event: StreamEvent, out: &mut VecDeque<Event>) {
        match event {
            StreamEvent::Start(mut start) => {
                start.adopt(&mut self.id, &mut self.model);
                self.start_seen = true;
            }
            StreamEvent::Text(t) | StreamEvent::Refusal(t) => {
                if t.is_empty() {
                    return;
                }
                if self.open != Some(Open::Text) {
                    self.open(Open::Text, json!({"type": "text", "text": ""}), out);
                }
                out.push_back(self.delta(DeltaBody::Text { text: &t }));
            }
            StreamEvent::Thinking(t) => {
                if self.open != Some(Open::Thinking) {
                    self.open(
                        Open::Thinking,
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                        out,
                    );
                }
                if !t.is_empty() {
                    out.push_back(self.delta(DeltaBody::Thinking { thinking: &t }));
                }
            }
            StreamEvent::ThinkingSignature(sig) => {
                if self.open != Some(Open::Thinking) {
                    self.open(
                        Open::Thinking,
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                        out,
                    );
                }
                out.push_back(self.delta(DeltaBody::Signature { signature: &sig }));
            }
            StreamEvent::RedactedThinking(data) => {
                self.open(
                    Open::Thinking,
                    json!({"type": "redacted_thinking", "data": data}),
                    out,
                );
                self.close(out);
            }
            StreamEvent::ToolCallStart {
                key,
                id,
                name,
                signature,
            } => {
                self.saw_tool = true;
                let id = ids::anthropic_id(&ids::fold_signature(&id, signature.as_deref()));
                self.open(
                    Open::Tool(key),
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    out,
                );
            }
            StreamEvent::ToolCallArgs { key, fragment } => {
                if self.open == Some(Open::Tool(key)) {
                    out.push_back(self.delta(DeltaBody::InputJson {
                        partial_json: &fragment,
                    }));
                } else {
                    tracing::debug!(
                        key,
                        "dropping arguments for a tool call whose block is not open"
                    );
                }
            }
            StreamEvent::BlockEnd => self.close(out),
            StreamEvent::Usage(u) => self.usage = u,
            StreamEvent::Finish {
                reason,
                stop_sequence,
            } => {
                self.stop = Some(reason);
                self.stop_sequence = stop_sequence;
            }
            StreamEvent::End => {}
        }
    }

    fn flush(&mut self, out: &mut VecDeque<Event>) {
        if self.start_seen {
            self.ensure_started(out);
        }
    }

    fn finish(&mut self, out: &mut VecDeque<Event>) {
        self.ensure_started(out);
        self.close(out);
        let stop = effective_stop(self.stop, self.saw_tool);
        let stop_sequence = if stop == StopReason::StopSequence {
            self.stop_sequence.take()
        } else {
            None
        };
        out.push_back(Self::event(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(stop), "stop_sequence": stop_sequence},
                "usage": self.usage.to_anthropic(),
            }),
        ));
        out.push_back(Self::event(
            "message_stop",
            &json!({"type": "message_stop"}),
        ));
    }
}
