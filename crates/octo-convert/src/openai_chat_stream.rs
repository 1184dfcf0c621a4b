//! OpenAI Chat Completions streams: chunk decoder and encoder.
//!
//! Decoding reads each chunk with borrowed, typed serde structs (no document tree), so the hot path
//! (a content delta) costs one small parse. Encoding writes chunks from typed structs: one choice,
//! `role` on the first chunk, `id`/`type`/`name` only on a tool call's first fragment, one `index` per
//! call, the finish chunk, the `choices: []` usage chunk when the client asked for it, `[DONE]`.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use octo_core::{Error, Event, Protocol};

use crate::canonical::{StopReason, StreamEvent, StreamStart, Usage, effective_stop, refusal_stop};
use crate::ids;
use crate::openai_chat::{finish_reason, stop_from};
use crate::stream::{Decoder, Encoder, read_event};
use crate::util::{as_u64, fresh_id, inband_error, now, status_for_type};

// ---------------------------------------------------------------------------------------- decode

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    created: Option<Value>,
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default)]
    reasoning: Option<Value>,
    #[serde(default)]
    thinking_blocks: Option<Vec<Value>>,
    /// OpenRouter's reasoning details (text with signature, encrypted data).
    #[serde(default)]
    reasoning_details: Option<Vec<Value>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    arguments: Option<Value>,
}

/// Upstream OpenAI Chat chunks → canonical events.
#[derive(Default)]
pub(crate) struct OpenAiChatDecoder {
    started: bool,
    /// Tool-call keys already started.
    keys: Vec<u64>,
    /// The key of the last fragment (for fragments without `index`).
    last_key: Option<u64>,
    /// A refusal was streamed.
    refused: bool,
    response_id: String,
}

impl Decoder for OpenAiChatDecoder {
    fn decode(&mut self, event: &Event, out: &mut Vec<StreamEvent>) -> Result<(), Error> {
        if event.is_done_marker() {
            out.push(StreamEvent::End);
            return Ok(());
        }
        let data = event.data_body().to_bytes();
        let Some(chunk) = read_event::<Chunk<'_>>(&data, "OpenAI chunk") else {
            return Ok(());
        };
        if let Some(err) = chunk.error {
            let kind = err
                .get("type")
                .or_else(|| err.get("code"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            return Err(inband_error(
                Protocol::OpenAiChat,
                status_for_type(kind),
                &json!({ "error": err }),
            ));
        }
        if !self.started {
            self.started = true;
            self.response_id = chunk.id.as_deref().unwrap_or_default().to_owned();
            out.push(StreamEvent::Start(StreamStart {
                id: chunk.id.map(Cow::into_owned),
                model: chunk.model.map(Cow::into_owned),
                created: chunk.created.as_ref().and_then(as_u64),
            }));
        }
        for choice in chunk.choices.into_iter().flatten() {
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                self.delta(delta, out);
            }
            let stop = choice.finish_reason.as_deref().and_then(stop_from);
            if let Some(reason) = stop.and_then(|s| refusal_stop(Some(s), self.refused)) {
                out.push(StreamEvent::Finish {
                    reason,
                    stop_sequence: None,
                });
            }
        }
        if let Some(usage) = chunk.usage.as_ref().and_then(Usage::from_openai_chat) {
            out.push(StreamEvent::Usage(usage));
        }
        Ok(())
    }
}

impl OpenAiChatDecoder {
    fn delta(&mut self, delta: Delta<'_>, out: &mut Vec<StreamEvent>) {
        let fallback = match delta.reasoning {
            Some(Value::String(r)) if !r.is_empty() => Some(Cow::Owned(r)),
            _ => None,
        };
        let reasoning = delta
            .reasoning_content
            .filter(|r| !r.is_empty())
            .or(fallback);
        let had_text = reasoning.is_some();
        if let Some(r) = reasoning {
            out.push(StreamEvent::Thinking(r.into_owned()));
        }
        for detail in delta.reasoning_details.iter().flatten() {
            match detail.get("type").and_then(Value::as_str) {
                Some("reasoning.encrypted") => {
                    if let Some(data) = detail.get("data").and_then(Value::as_str) {
                        out.push(StreamEvent::RedactedThinking(data.to_owned()));
                    }
                }
                Some("reasoning.text" | "reasoning.summary") => {
                    // OpenRouter repeats the text in `reasoning`: taken once.
                    let text = detail
                        .get("text")
                        .or_else(|| detail.get("summary"))
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty() && !had_text);
                    if let Some(t) = text {
                        out.push(StreamEvent::Thinking(t.to_owned()));
                    }
                    if let Some(sig) = detail
                        .get("signature")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                    {
                        out.push(StreamEvent::ThinkingSignature(sig.to_owned()));
                    }
                }
                _ => {}
            }
        }
        for block in delta.thinking_blocks.iter().flatten() {
            match block.get("type").and_then(Value::as_str) {
                Some("redacted_thinking") => {
                    if let Some(data) = block.get("data").and_then(Value::as_str) {
                        out.push(StreamEvent::RedactedThinking(data.to_owned()));
                    }
                }
                _ => {
                    if let Some(sig) = block
                        .get("signature")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                    {
                        out.push(StreamEvent::ThinkingSignature(sig.to_owned()));
                    }
                }
            }
        }
        if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
            out.push(StreamEvent::Text(text.into_owned()));
        }
        if let Some(text) = delta.refusal.filter(|t| !t.is_empty()) {
            self.refused = true;
            out.push(StreamEvent::Refusal(text.into_owned()));
        }
        for tc in delta.tool_calls.into_iter().flatten() {
            let key = match (tc.index, &tc.id) {
                (Some(i), _) => i,
                // No index: a new id starts a new call, otherwise it continues the last one.
                (None, Some(_)) => self.keys.iter().max().map_or(0, |k| k + 1),
                (None, None) => self.last_key.unwrap_or(0),
            };
            self.last_key = Some(key);
            let (name, arguments) = match tc.function {
                Some(f) => (f.name, f.arguments),
                None => (None, None),
            };
            if !self.keys.contains(&key) {
                self.keys.push(key);
                let raw_id = tc.id.map_or_else(
                    || ids::synthesized_id(&self.response_id, self.keys.len() - 1),
                    Cow::into_owned,
                );
                let (id, signature) = ids::unfold_signature(&raw_id);
                out.push(StreamEvent::ToolCallStart {
                    key,
                    id,
                    name: name.map(Cow::into_owned).unwrap_or_default(),
                    signature,
                });
            }
            let fragment = match arguments {
                Some(Value::String(a)) => a,
                Some(v @ Value::Object(_)) => v.to_string(),
                _ => String::new(),
            };
            if !fragment.is_empty() {
                out.push(StreamEvent::ToolCallArgs { key, fragment });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------- encode

#[derive(Serialize)]
struct OutChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [OutChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Value>,
}

#[derive(Serialize)]
struct OutChoice<'a> {
    index: u32,
    delta: OutDelta<'a>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct OutDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[OutToolCall<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_blocks: Option<Value>,
}

#[derive(Serialize)]
struct OutToolCall<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// Canonical events → OpenAI Chat chunks.
pub(crate) struct OpenAiChatEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    role_sent: bool,
    /// Upstream key → (Chat `index`, whether any argument fragment was sent).
    tools: Vec<(u64, u32, bool)>,
    stop: Option<StopReason>,
    usage: Option<Usage>,
}

impl OpenAiChatEncoder {
    /// An encoder; `model` is the fallback when the upstream names none.
    pub(crate) fn new(model: &str, include_usage: bool) -> Self {
        OpenAiChatEncoder {
            // Replaced by the upstream's id (in Chat's convention) when it gives one.
            id: fresh_id("chatcmpl-"),
            model: model.to_owned(),
            created: now(),
            include_usage,
            role_sent: false,
            tools: Vec::new(),
            stop: None,
            usage: None,
        }
    }

    fn chunk(&self, delta: OutDelta<'_>, finish: Option<&'static str>) -> Event {
        let choices = [OutChoice {
            index: 0,
            delta,
            finish_reason: finish,
        }];
        let chunk = OutChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: &choices,
            usage: None,
        };
        Event::data(Bytes::from(serde_json::to_vec(&chunk).unwrap_or_default()))
    }

    fn ensure_role(&mut self, out: &mut VecDeque<Event>) {
        if !self.role_sent {
            self.role_sent = true;
            out.push_back(self.chunk(
                OutDelta {
                    role: Some("assistant"),
                    content: Some(""),
                    ..OutDelta::default()
                },
                None,
            ));
        }
    }
}

impl Encoder for OpenAiChatEncoder {
    fn encode(&mut self, event: StreamEvent, out: &mut VecDeque<Event>) {
        match event {
            StreamEvent::Start(start) => {
                if let Some(id) = start.id {
                    self.id = id;
                }
                if let Some(model) = start.model.filter(|m| !m.is_empty()) {
                    self.model = model;
                }
                if let Some(created) = start.created {
                    self.created = created;
                }
                self.ensure_role(out);
            }
            StreamEvent::Text(t) => {
                self.ensure_role(out);
                out.push_back(self.chunk(
                    OutDelta {
                        content: Some(&t),
                        ..OutDelta::default()
                    },
                    None,
                ));
            }
            StreamEvent::Refusal(t) => {
                self.ensure_role(out);
                out.push_back(self.chunk(
                    OutDelta {
                        refusal: Some(&t),
                        ..OutDelta::default()
                    },
                    None,
                ));
            }
            StreamEvent::Thinking(t) => {
                self.ensure_role(out);
                out.push_back(self.chunk(
                    OutDelta {
                        reasoning_content: Some(&t),
                        ..OutDelta::default()
                    },
                    None,
                ));
            }
            StreamEvent::ThinkingSignature(sig) => {
                self.ensure_role(out);
                let blocks = json!([{"type": "thinking", "thinking": "", "signature": sig}]);
                out.push_back(self.chunk(
                    OutDelta {
                        thinking_blocks: Some(blocks),
                        ..OutDelta::default()
                    },
                    None,
                ));
            }
            StreamEvent::RedactedThinking(data) => {
                self.ensure_role(out);
                let blocks = json!([{"type": "redacted_thinking", "data": data}]);
                out.push_back(self.chunk(
                    OutDelta {
                        thinking_blocks: Some(blocks),
                        ..OutDelta::default()
                    },
                    None,
                ));
            }
            StreamEvent::ToolCallStart {
                key,
                id,
                name,
                signature,
            } => {
                self.ensure_role(out);
                let index = self.tools.len() as u32;
                self.tools.push((key, index, false));
                let id = ids::fold_signature(&id, signature.as_deref());
                out.push_back(self.chunk(
                    OutDelta {
                        tool_calls: Some([OutToolCall {
                            index,
                            id: Some(&id),
                            kind: Some("function"),
                            function: OutFunction {
                                name: Some(&name),
                                arguments: "",
                            },
                        }]),
                        ..OutDelta::default()
                    },
                    None,
                ));
            }
            StreamEvent::ToolCallArgs { key, fragment } => {
                let Some(tool) = self.tools.iter_mut().find(|(k, _, _)| *k == key) else {
                    tracing::debug!(key, "dropping arguments for a tool call that never started");
                    return;
                };
                tool.2 = true;
                let index = tool.1;
                out.push_back(self.chunk(
                    OutDelta {
                        tool_calls: Some([OutToolCall {
                            index,
                            id: None,
                            kind: None,
                            function: OutFunction {
                                name: None,
                                arguments: &fragment,
                            },
                        }]),
                        ..OutDelta::default()
                    },
                    None,
                ));
            }
            StreamEvent::BlockEnd | StreamEvent::End => {}
            StreamEvent::Usage(u) => self.usage = Some(u),
            StreamEvent::Finish { reason, .. } => self.stop = Some(reason),
        }
    }

    fn finish(&mut self, out: &mut VecDeque<Event>) {
        self.ensure_role(out);
        // A call that streamed no arguments (Anthropic sends `""` for a tool without input) gets
        // `{}`, so clients can parse them.
        let empty: Vec<u64> = self
            .tools
            .iter()
            .filter(|(_, _, sent)| !sent)
            .map(|(k, _, _)| *k)
            .collect();
        for key in empty {
            self.encode(
                StreamEvent::ToolCallArgs {
                    key,
                    fragment: "{}".to_owned(),
                },
                out,
            );
        }
        let stop = effective_stop(self.stop, !self.tools.is_empty());
        out.push_back(self.chunk(OutDelta::default(), Some(finish_reason(stop))));
        if self.include_usage {
            let chunk = OutChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: &[],
                usage: Some(self.usage.unwrap_or_default().to_openai_chat()),
            };
            out.push_back(Event::data(Bytes::from(
                serde_json::to_vec(&chunk).unwrap_or_default(),
            )));
        }
        out.push_back(Event::data(Bytes::from_static(b"[DONE]")));
    }
}
