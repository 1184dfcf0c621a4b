//! OpenAI Responses streams: event decoder and encoder.
//!
//! The encoder writes the sequence the official SDK's `responses.stream()` accumulator and Codex
//! expect: `response.created`, `response.in_progress`, per output item `output_item.added` → (for
//! messages `content_part.added` → `output_text.delta`* → `output_text.done` →
//! `content_part.done`; for calls `function_call_arguments.delta`* → `.done`; for reasoning
//! `reasoning_summary_part.added` → `reasoning_summary_text.delta`* → `.done` →
//! `reasoning_summary_part.done`) → `output_item.done`, and finally `response.completed` (or
//! `response.incomplete` for a length or content-filter stop, as the API does) carrying the whole
//! output and the usage. Every event has a monotonic `sequence_number`; item ids stay the same from
//! `added` to `completed`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use octo_core::{Error, Event, Protocol};

use crate::canonical::{CUSTOM_INPUT, ToolOrigin};
use crate::canonical::{
    StopReason, StreamEvent, StreamStart, Thinking, Usage, effective_stop, refusal_stop,
};
use crate::ids;
use crate::json_string::InputDecoder;
use crate::openai_responses::{
    call_item, custom_arguments, failed_error, item_id, message_content, reasoning_item,
    response_object, status_of, stop_from,
};
use crate::stream::{Decoder, Encoder, read_event};
use crate::tools::ToolMap;
use crate::util::{At, fresh_id, inband_error, now, status_for_type};

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
    output_index: Option<u64>,
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    delta: Option<Cow<'a, str>>,
    #[serde(default)]
    summary_index: Option<u64>,
    #[serde(default)]
    arguments: Option<String>,
    #[serde(default)]
    item: Option<Value>,
    #[serde(default)]
    response: Option<Value>,
}

/// Upstream Responses events → canonical events.
#[derive(Default)]
pub(crate) struct OpenAiResponsesDecoder {
    /// `(output_index, arguments seen)` of started calls.
    calls: Vec<(u64, bool)>,
    /// A refusal was streamed.
    refused: bool,
    /// `(output_index, closed)` of `custom_tool_call`s whose input is streaming as the
    /// arguments `{"input":"…"}`.
    custom: Vec<(u64, bool)>,
}

impl OpenAiResponsesDecoder {
    fn start_call(&mut self, index: u64, item: &Value, out: &mut Vec<StreamEvent>) {
        if self.calls.iter().any(|(k, _)| *k == index) {
            return;
        }
        self.calls.push((index, false));
        let (id, signature) = ids::unfold_signature(
            item.get("call_id")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        let field = |k: &str| item.get(k).and_then(Value::as_str);
        out.push(StreamEvent::ToolCallStart {
            key: index,
            id,
            name: ToolOrigin::qualified(field("namespace"), field("name").unwrap_or_default()),
            signature,
        });
    }

    fn args(&mut self, index: u64, fragment: &str, whole: bool, out: &mut Vec<StreamEvent>) {
        let Some(call) = self.calls.iter_mut().find(|(k, _)| *k == index) else {
            return;
        };
        if whole && call.1 {
            return;
        }
        call.1 = true;
        if !fragment.is_empty() {
            out.push(StreamEvent::ToolCallArgs {
                key: index,
                fragment: fragment.to_owned(),
            });
        }
    }
}

impl OpenAiResponsesDecoder {
    /// A `custom_tool_call_input` delta, as a fragment of the arguments `{"input":"…"}`.
    fn custom_delta(&mut self, index: u64, delta: &str, out: &mut Vec<StreamEvent>) {
        let escaped = serde_json::to_string(delta).unwrap_or_default();
        let escaped = &escaped[1..escaped.len().saturating_sub(1).max(1)];
        let fragment = if self.custom.iter().any(|(k, _)| *k == index) {
            escaped.to_owned()
        } else {
            self.custom.push((index, false));
            format!("{{\"{CUSTOM_INPUT}\":\"{escaped}")
        };
        self.args(index, &fragment, false, out);
    }

    /// The whole input of a custom call: closes the streamed arguments, or sends them whole.
    fn custom_done(&mut self, index: u64, input: Option<&str>, out: &mut Vec<StreamEvent>) {
        match self.custom.iter_mut().find(|(k, _)| *k == index) {
            Some((_, closed)) if !*closed => {
                *closed = true;
                self.args(index, "\"}", false, out);
            }
            Some(_) => {}
            None => {
                if let Some(input) = input {
                    self.custom.push((index, true));
                    self.args(index, &custom_arguments(input), true, out);
                }
            }
        }
    }
}

impl Decoder for OpenAiResponsesDecoder {
    fn decode(&mut self, event: &Event, out: &mut Vec<StreamEvent>) -> Result<(), Error> {
        let data = event.data_body().to_bytes();
        let Some(ev) = read_event::<In<'_>>(&data, "Responses event") else {
            return Ok(());
        };
        let index = ev.output_index.unwrap_or(0);
        match ev.kind.as_deref().or(event.name()).unwrap_or_default() {
            "response.created" => {
                let r = ev.response.unwrap_or(Value::Null);
                out.push(StreamEvent::Start(StreamStart {
                    id: r.get("id").and_then(Value::as_str).map(str::to_owned),
                    model: r.get("model").and_then(Value::as_str).map(str::to_owned),
                    created: r.get("created_at").and_then(Value::as_u64),
                }));
            }
            "response.output_item.added" => {
                let item = ev.item.unwrap_or(Value::Null);
                let kind = item.get("type").and_then(Value::as_str);
                if kind == Some("custom_tool_call") {
                    self.start_call(index, &item, out);
                } else if kind == Some("function_call") {
                    self.start_call(index, &item, out);
                    if let Some(a) = item.get("arguments").and_then(Value::as_str) {
                        if !a.is_empty() {
                            self.args(index, a, false, out);
                        }
                    }
                }
            }
            "response.output_text.delta" => {
                if let Some(d) = ev.delta.filter(|d| !d.is_empty()) {
                    out.push(StreamEvent::Text(d.into_owned()));
                }
            }
            "response.refusal.delta" => {
                if let Some(d) = ev.delta.filter(|d| !d.is_empty()) {
                    self.refused = true;
                    out.push(StreamEvent::Refusal(d.into_owned()));
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                if let Some(d) = ev.delta.filter(|d| !d.is_empty()) {
                    out.push(StreamEvent::Thinking(d.into_owned()));
                }
            }
            "response.reasoning_summary_part.added" if ev.summary_index.unwrap_or(0) > 0 => {
                out.push(StreamEvent::Thinking("\n\n".to_owned()));
            }
            "response.function_call_arguments.delta" => {
                if let Some(d) = ev.delta {
                    self.args(index, &d, false, out);
                }
            }
            "response.custom_tool_call_input.delta" => {
                if let Some(d) = ev.delta.filter(|d| !d.is_empty()) {
                    self.custom_delta(index, &d, out);
                }
            }
            "response.custom_tool_call_input.done" => {
                let body: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
                let input = body.get("input").and_then(Value::as_str);
                self.custom_done(index, input, out);
            }
            "response.function_call_arguments.done" => {
                if let Some(a) = ev.arguments {
                    self.args(index, &a, true, out);
                }
            }
            "response.output_item.done" => {
                let item = ev.item.unwrap_or(Value::Null);
                match item.get("type").and_then(Value::as_str) {
                    Some("function_call") => {
                        self.start_call(index, &item, out);
                        if let Some(a) = item.get("arguments").and_then(Value::as_str) {
                            self.args(index, a, true, out);
                        }
                        out.push(StreamEvent::BlockEnd);
                    }
                    Some("custom_tool_call") => {
                        self.start_call(index, &item, out);
                        let input = item.get("input").and_then(Value::as_str).unwrap_or("");
                        self.custom_done(index, Some(input), out);
                        out.push(StreamEvent::BlockEnd);
                    }
                    Some("reasoning") => {
                        if let Some(enc) = item
                            .get("encrypted_content")
                            .and_then(Value::as_str)
                            .filter(|e| !e.is_empty())
                        {
                            out.push(StreamEvent::ThinkingSignature(enc.to_owned()));
                        }
                        out.push(StreamEvent::BlockEnd);
                    }
                    _ => out.push(StreamEvent::BlockEnd),
                }
            }
            kind @ ("response.completed" | "response.incomplete") => {
                let r = ev.response.unwrap_or(Value::Null);
                if let Some(u) = r.get("usage").and_then(Usage::from_openai_responses) {
                    out.push(StreamEvent::Usage(u));
                }
                let status = if kind == "response.incomplete" {
                    Some("incomplete")
                } else {
                    r.get("status")
                        .and_then(Value::as_str)
                        .or(Some("completed"))
                };
                let reason = r.at("incomplete_details", "reason").and_then(Value::as_str);
                if let Some(reason) = refusal_stop(stop_from(status, reason), self.refused) {
                    out.push(StreamEvent::Finish {
                        reason,
                        stop_sequence: None,
                    });
                }
                out.push(StreamEvent::End);
            }
            "response.failed" => {
                return Err(failed_error(ev.response.as_ref().unwrap_or(&Value::Null)));
            }
            "error" => {
                let body: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
                let code = body
                    .get("code")
                    .or_else(|| body.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                return Err(inband_error(
                    Protocol::OpenAiResponses,
                    status_for_type(code),
                    &body,
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------- encode

/// The `error.code` of a failed response: one of the codes the API defines (`ResponseError.code`).
fn response_error_code(error: &Error) -> &'static str {
    match error.status().as_u16() {
        429 => "rate_limit_exceeded",
        _ => "server_error",
    }
}

#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    delta: &'a str,
    logprobs: [(); 0],
    sequence_number: u64,
}

#[derive(Serialize)]
struct ArgsDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    item_id: &'a str,
    output_index: usize,
    delta: &'a str,
    sequence_number: u64,
}

#[derive(Serialize)]
struct SummaryDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    item_id: &'a str,
    output_index: usize,
    summary_index: usize,
    delta: &'a str,
    sequence_number: u64,
}

/// The open output item.
enum Item {
    Message {
        id: String,
        /// Finished parts (`output_text` / `refusal`).
        parts: Vec<Value>,
        /// The open part: `(is_refusal, text)`.
        current: Option<(bool, String)>,
    },
    Reasoning {
        id: String,
        text: String,
        signature: Option<String>,
        summary_open: bool,
    },
    Call {
        key: u64,
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        /// How the client declared the tool (a `custom` tool streams `input`, not arguments).
        origin: Option<ToolOrigin>,
        /// For a `custom` tool: the `input` decoded from the arguments so far.
        input: InputDecoder,
    },
}

#[derive(Serialize)]
struct InputDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    item_id: &'a str,
    output_index: usize,
    delta: &'a str,
    sequence_number: u64,
}

/// Canonical events → Responses events.
pub(crate) struct OpenAiResponsesEncoder {
    id: String,
    model: String,
    created: u64,
    seq: u64,
    started: bool,
    open: Option<Item>,
    /// Finished output items, repeated in `response.completed`.
    output: Vec<Value>,
    saw_tool: bool,
    stop: Option<StopReason>,
    usage: Option<Usage>,
    /// The client's custom and namespaced tools.
    tools: Arc<ToolMap>,
}

impl OpenAiResponsesEncoder {
    /// An encoder; `model` is the fallback when the upstream names none, `tools` how the client
    /// declared tools that are not plain functions.
    pub(crate) fn new(model: &str, tools: Arc<ToolMap>) -> Self {
        OpenAiResponsesEncoder {
            id: String::new(),
            model: model.to_owned(),
            created: now(),
            seq: 0,
            started: false,
            open: None,
            output: Vec::new(),
            saw_tool: false,
            stop: None,
            usage: None,
            tools,
        }
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.seq;
        self.seq += 1;
        s
    }

    /// Adds `type` and `sequence_number` to `data` and frames it.
    fn emit(&mut self, kind: &'static str, mut data: Value, out: &mut VecDeque<Event>) {
        data["type"] = kind.into();
        data["sequence_number"] = self.next_seq().into();
        out.push_back(Event::named(
            kind,
            Bytes::from(serde_json::to_vec(&data).unwrap_or_default()),
        ));
    }

    fn emit_typed(&mut self, kind: &'static str, data: &impl Serialize, out: &mut VecDeque<Event>) {
        out.push_back(Event::named(
            kind,
            Bytes::from(serde_json::to_vec(data).unwrap_or_default()),
        ));
    }

    fn response(&self, status: &str, incomplete: Value, output: Vec<Value>) -> Value {
        let mut r = response_object(
            &self.id,
            &self.model,
            self.created,
            status,
            incomplete,
            output,
            &self.usage.unwrap_or_default(),
        );
        if status == "in_progress" {
            r["usage"] = Value::Null;
        }
        r
    }

    fn ensure_started(&mut self, out: &mut VecDeque<Event>) {
        if self.started {
            return;
        }
        self.started = true;
        if self.id.is_empty() {
            self.id = fresh_id("resp_");
        }
        let r = self.response("in_progress", Value::Null, Vec::new());
        self.emit("response.created", json!({"response": r}), out);
        let r = self.response("in_progress", Value::Null, Vec::new());
        self.emit("response.in_progress", json!({"response": r}), out);
    }

    fn index(&self) -> usize {
        self.output.len()
    }

    /// Closes the open part of a message item.
    fn close_part(&mut self, out: &mut VecDeque<Event>) {
        let index = self.index();
        let Some(Item::Message { id, parts, current }) = &mut self.open else {
            return;
        };
        let Some((refusal, text)) = current.take() else {
            return;
        };
        let id = id.clone();
        let content_index = parts.len();
        let part = message_content(&text, refusal);
        parts.push(part.clone());
        if refusal {
            self.emit(
                "response.refusal.done",
                json!({"item_id": id, "output_index": index, "content_index": content_index, "refusal": text}),
                out,
            );
        } else {
            self.emit(
                "response.output_text.done",
                json!({"item_id": id, "output_index": index, "content_index": content_index, "text": text, "logprobs": []}),
                out,
            );
        }
        self.emit(
            "response.content_part.done",
            json!({"item_id": id, "output_index": index, "content_index": content_index, "part": part}),
            out,
        );
    }

    fn close(&mut self, out: &mut VecDeque<Event>) {
        self.close_part(out);
        // A call that streamed no arguments gets `{}`, so clients can parse them.
        if let Some(Item::Call {
            key,
            arguments,
            origin,
            ..
        }) = &self.open
        {
            if arguments.is_empty() && !origin.as_ref().is_some_and(|o| o.custom) {
                let key = *key;
                self.encode(
                    StreamEvent::ToolCallArgs {
                        key,
                        fragment: "{}".to_owned(),
                    },
                    out,
                );
            }
        }
        let index = self.index();
        let Some(item) = self.open.take() else { return };
        let done = match item {
            Item::Message { id, parts, .. } => json!({
                "type": "message",
                "id": id,
                "status": "completed",
                "role": "assistant",
                "content": parts,
            }),
            Item::Reasoning {
                id,
                text,
                signature,
                summary_open,
            } => {
                if summary_open {
                    self.emit(
                        "response.reasoning_summary_text.done",
                        json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
                        out,
                    );
                    self.emit(
                        "response.reasoning_summary_part.done",
                        json!({"item_id": id, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": text}}),
                        out,
                    );
                }
                reasoning_item(
                    &id,
                    &Thinking {
                        text,
                        signature,
                        redacted: None,
                    },
                )
            }
            Item::Call {
                call_id,
                name,
                arguments,
                origin,
                input,
                ..
            } => {
                let done = call_item(
                    &self.id,
                    index,
                    &call_id,
                    &name,
                    &arguments,
                    origin.as_ref(),
                );
                let id = done["id"].as_str().unwrap_or_default().to_owned();
                match done.get("input").and_then(Value::as_str) {
                    Some(full) => {
                        // What the incremental decoder could not stream (arguments of another
                        // shape) goes out now, so the deltas add up to `input`.
                        if let Some(rest) = full.strip_prefix(input.text.as_str()) {
                            if !rest.is_empty() {
                                self.emit(
                                    "response.custom_tool_call_input.delta",
                                    json!({"item_id": id, "output_index": index, "delta": rest}),
                                    out,
                                );
                            }
                        }
                        self.emit(
                            "response.custom_tool_call_input.done",
                            json!({"item_id": id, "output_index": index, "input": full}),
                            out,
                        );
                    }
                    None => self.emit(
                        "response.function_call_arguments.done",
                        json!({"item_id": id, "output_index": index, "arguments": arguments}),
                        out,
                    ),
                }
                done
            }
        };
        self.emit(
            "response.output_item.done",
            json!({"output_index": index, "item": done}),
            out,
        );
        self.output.push(done);
    }

    /// Opens a new item after closing the open one.
    fn open(&mut self, item: Item, added: Value, out: &mut VecDeque<Event>) {
        self.ensure_started(out);
        self.close(out);
        let index = self.index();
        self.emit(
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
            out,
        );
        self.open = Some(item);
    }

    fn open_message(&mut self, out: &mut VecDeque<Event>) {
        if matches!(self.open, Some(Item::Message { .. })) {
            return;
        }
        self.ensure_started(out);
        self.close(out);
        let id = item_id("msg", &self.id, self.index());
        let added = json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
        self.open(
            Item::Message {
                id,
                parts: Vec::new(),
                current: None,
            },
            added,
            out,
        );
    }

    fn message_text(&mut self, text: &str, refusal: bool, out: &mut VecDeque<Event>) {
        self.open_message(out);
        let needs_part = !matches!(
            &self.open,
            Some(Item::Message { current: Some((r, _)), .. }) if *r == refusal
        );
        if needs_part {
            self.close_part(out);
        }
        let index = self.index();
        let Some(Item::Message { id, parts, current }) = &mut self.open else {
            return;
        };
        let id = id.clone();
        let content_index = parts.len();
        if needs_part {
            *current = Some((refusal, String::new()));
        }
        if let Some((_, acc)) = current.as_mut() {
            acc.push_str(text);
        }
        if needs_part {
            let part = message_content("", refusal);
            self.emit(
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": content_index, "part": part}),
                out,
            );
        }
        if refusal {
            self.emit(
                "response.refusal.delta",
                json!({"item_id": id, "output_index": index, "content_index": content_index, "delta": text}),
                out,
            );
        } else {
            let seq = self.next_seq();
            self.emit_typed(
                "response.output_text.delta",
                &TextDelta {
                    kind: "response.output_text.delta",
                    item_id: &id,
                    output_index: index,
                    content_index,
                    delta: text,
                    logprobs: [],
                    sequence_number: seq,
                },
                out,
            );
        }
    }

    fn open_reasoning(&mut self, out: &mut VecDeque<Event>) {
        if matches!(self.open, Some(Item::Reasoning { .. })) {
            return;
        }
        self.ensure_started(out);
        self.close(out);
        let id = item_id("rs", &self.id, self.index());
        let added = json!({"type": "reasoning", "id": id, "summary": []});
        self.open(
            Item::Reasoning {
                id,
                text: String::new(),
                signature: None,
                summary_open: false,
            },
            added,
            out,
        );
    }
}

impl Encoder for OpenAiResponsesEncoder {
    fn encode(&mut self, event: StreamEvent, out: &mut VecDeque<Event>) {
        match event {
            StreamEvent::Start(mut start) => {
                start.adopt(&mut self.id, &mut self.model);
                if let Some(created) = start.created {
                    self.created = created;
                }
                self.ensure_started(out);
            }
            StreamEvent::Text(t) => {
                if !t.is_empty() {
                    self.message_text(&t, false, out);
                }
            }
            StreamEvent::Refusal(t) => {
                if !t.is_empty() {
                    self.message_text(&t, true, out);
                }
            }
            StreamEvent::Thinking(t) => {
                self.open_reasoning(out);
                let index = self.index();
                let Some(Item::Reasoning {
                    id,
                    text,
                    summary_open,
                    ..
                }) = &mut self.open
                else {
                    return;
                };
                let id = id.clone();
                text.push_str(&t);
                let first = !*summary_open;
                *summary_open = true;
                if first {
                    self.emit(
                        "response.reasoning_summary_part.added",
                        json!({"item_id": id, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
                        out,
                    );
                }
                let seq = self.next_seq();
                self.emit_typed(
                    "response.reasoning_summary_text.delta",
                    &SummaryDelta {
                        kind: "response.reasoning_summary_text.delta",
                        item_id: &id,
                        output_index: index,
                        summary_index: 0,
                        delta: &t,
                        sequence_number: seq,
                    },
                    out,
                );
            }
            StreamEvent::ThinkingSignature(sig) => {
                self.open_reasoning(out);
                if let Some(Item::Reasoning { signature, .. }) = &mut self.open {
                    *signature = Some(sig);
                }
            }
            StreamEvent::RedactedThinking(data) => {
                self.ensure_started(out);
                self.close(out);
                self.open_reasoning(out);
                if let Some(Item::Reasoning { signature, .. }) = &mut self.open {
                    *signature = Some(data);
                }
                self.close(out);
            }
            StreamEvent::ToolCallStart {
                key,
                id: call,
                name,
                signature,
            } => {
                self.saw_tool = true;
                self.ensure_started(out);
                self.close(out);
                let call_id = ids::fold_signature(&call, signature.as_deref());
                let origin = self.tools.origin(&name).cloned();
                // The `added` item is the finished one with empty arguments / input.
                let mut added =
                    call_item(&self.id, self.index(), &call_id, &name, "", origin.as_ref());
                if added.get("input").is_some() {
                    added["input"] = "".into();
                } else {
                    added["arguments"] = "".into();
                    added["status"] = "in_progress".into();
                }
                let id = added["id"].as_str().unwrap_or_default().to_owned();
                self.open(
                    Item::Call {
                        key,
                        id,
                        call_id,
                        name,
                        arguments: String::new(),
                        origin,
                        input: InputDecoder::default(),
                    },
                    added,
                    out,
                );
            }
            StreamEvent::ToolCallArgs { key, fragment } => {
                let index = self.index();
                let Some(Item::Call {
                    key: open_key,
                    id,
                    arguments,
                    origin,
                    input,
                    ..
                }) = &mut self.open
                else {
                    tracing::debug!(key, "dropping arguments for a tool call that is not open");
                    return;
                };
                if *open_key != key {
                    tracing::debug!(key, "dropping arguments for a tool call that is not open");
                    return;
                }
                arguments.push_str(&fragment);
                let id = id.clone();
                if origin.as_ref().is_some_and(|o| o.custom) {
                    let delta = input.advance(arguments).to_owned();
                    if !delta.is_empty() {
                        let seq = self.next_seq();
                        self.emit_typed(
                            "response.custom_tool_call_input.delta",
                            &InputDelta {
                                kind: "response.custom_tool_call_input.delta",
                                item_id: &id,
                                output_index: index,
                                delta: &delta,
                                sequence_number: seq,
                            },
                            out,
                        );
                    }
                    return;
                }
                let seq = self.next_seq();
                self.emit_typed(
                    "response.function_call_arguments.delta",
                    &ArgsDelta {
                        kind: "response.function_call_arguments.delta",
                        item_id: &id,
                        output_index: index,
                        delta: &fragment,
                        sequence_number: seq,
                    },
                    out,
                );
            }
            StreamEvent::BlockEnd => self.close(out),
            StreamEvent::Usage(u) => self.usage = Some(u),
            StreamEvent::Finish { reason, .. } => self.stop = Some(reason),
            StreamEvent::End => {}
        }
    }

    /// `response.failed` (the SDK's stream helper needs `response.created` first, with the same
    /// id): the finished items, `status: "failed"` and `error: {code, message}`. An item that was
    /// still open is not finished (no `.done` events), since its content is incomplete.
    fn fail(&mut self, error: &Error, out: &mut VecDeque<Event>) -> bool {
        self.ensure_started(out);
        self.open = None;
        let output = std::mem::take(&mut self.output);
        let mut r = self.response("failed", Value::Null, output);
        // Upstreams report usage at the end, which a failed stream did not reach.
        r["usage"] = Value::Null;
        r["error"] = json!({
            "code": response_error_code(error),
            "message": error.message(),
        });
        self.emit("response.failed", json!({"response": r}), out);
        true
    }

    fn finish(&mut self, out: &mut VecDeque<Event>) {
        self.ensure_started(out);
        self.close(out);
        let (status, incomplete) = status_of(effective_stop(self.stop, self.saw_tool));
        let output = std::mem::take(&mut self.output);
        let r = self.response(status, incomplete, output);
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(kind, json!({"response": r}), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::StreamStart;
    use crate::testing::convert_stream;

    fn anthropic(name: &'static str, data: Value) -> Result<Event, Error> {
        Ok(Event::named(name, Bytes::from(data.to_string())))
    }

    fn frames(out: Vec<Result<Event, Error>>) -> Vec<(String, Value)> {
        out.into_iter()
            .map(|e| {
                let e = e.expect("a Responses client gets no Err: the failure is an event");
                let v = serde_json::from_slice(&e.data_body().to_bytes()).unwrap();
                (e.name().unwrap().to_owned(), v)
            })
            .collect()
    }

    #[test]
    fn a_mid_stream_failure_is_response_failed_with_the_created_id() {
        let events = vec![
            anthropic(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 3, "output_tokens": 1}}}),
            ),
            anthropic(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            anthropic(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            ),
            anthropic(
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ),
        ];
        let out = frames(convert_stream(
            Protocol::OpenAiResponses,
            Protocol::Anthropic,
            true,
            events,
        ));
        let (name, last) = out.last().unwrap();
        assert_eq!(name, "response.failed");
        assert_eq!(last["type"], "response.failed");
        let r = &last["response"];
        assert_eq!(r["status"], "failed");
        assert_eq!(r["id"], "resp_1");
        assert_eq!(
            r["id"], out[0].1["response"]["id"],
            "same id as response.created"
        );
        assert_eq!(
            r["error"],
            json!({"code": "server_error", "message": "Overloaded"})
        );
        let seqs: Vec<u64> = out
            .iter()
            .map(|(_, v)| v["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..out.len() as u64).collect::<Vec<_>>());
        assert!(
            !out.iter()
                .any(|(n, _)| n == "error" || n == "response.completed")
        );
    }

    #[test]
    fn a_transport_failure_after_the_start_is_response_failed() {
        let chunk = |s: &'static str| Ok(Event::data(Bytes::from_static(s.as_bytes())));
        let out = frames(convert_stream(
            Protocol::OpenAiResponses,
            Protocol::OpenAiChat,
            true,
            vec![
                chunk(
                    r#"{"id":"chatcmpl-7","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
                ),
                Err(Error::upstream("rate limited")
                    .with_status(http::StatusCode::TOO_MANY_REQUESTS)),
            ],
        ));
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.failed"
            ]
        );
        assert_eq!(out[2].1["response"]["id"], "resp_7");
        assert_eq!(out[2].1["response"]["error"]["code"], "rate_limit_exceeded");
        assert_eq!(out[2].1["response"]["error"]["message"], "rate limited");
    }

    #[test]
    fn a_failure_before_the_first_event_stays_an_error() {
        // So the retry layer can try another target and the front can answer an HTTP status.
        let out = convert_stream(
            Protocol::OpenAiResponses,
            Protocol::OpenAiChat,
            true,
            vec![Err(Error::upstream("down"))],
        );
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Err(e) if e.message() == "down"));
    }

    fn custom_map() -> Arc<ToolMap> {
        Arc::new(ToolMap {
            tools: vec![(
                "apply_patch".into(),
                ToolOrigin {
                    custom: true,
                    namespace: None,
                    name: "apply_patch".into(),
                },
            )],
        })
    }

    #[test]
    fn a_custom_call_streams_its_input() {
        let mut enc = OpenAiResponsesEncoder::new("m", custom_map());
        let mut out = VecDeque::new();
        enc.encode(
            StreamEvent::Start(StreamStart {
                id: Some("resp_1".into()),
                ..Default::default()
            }),
            &mut out,
        );
        enc.encode(
            StreamEvent::ToolCallStart {
                key: 0,
                id: "call_1".into(),
                name: "apply_patch".into(),
                signature: None,
            },
            &mut out,
        );
        for fragment in [r#"{"inp"#, r#"ut": "line 1\n"#, r#"li"#, r#"ne \"2\""}"#] {
            enc.encode(
                StreamEvent::ToolCallArgs {
                    key: 0,
                    fragment: fragment.into(),
                },
                &mut out,
            );
        }
        enc.encode(StreamEvent::BlockEnd, &mut out);
        enc.finish(&mut out);
        let events: Vec<(String, Value)> = out
            .into_iter()
            .map(|e| {
                (
                    e.name().unwrap().to_owned(),
                    serde_json::from_slice(&e.data_body().to_bytes()).unwrap(),
                )
            })
            .collect();
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.custom_tool_call_input.delta",
                "response.custom_tool_call_input.delta",
                "response.custom_tool_call_input.delta",
                "response.custom_tool_call_input.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let added = &events[2].1["item"];
        assert_eq!(added["type"], "custom_tool_call");
        assert_eq!(added["input"], "");
        let deltas: Vec<&str> = events[3..6]
            .iter()
            .map(|(_, v)| v["delta"].as_str().unwrap())
            .collect();
        assert_eq!(deltas, ["line 1\n", "li", "ne \"2\""]);
        assert_eq!(events[6].1["input"], "line 1\nline \"2\"");
        let item = &events[7].1["item"];
        assert_eq!(item["id"], added["id"]);
        assert_eq!(item["input"], "line 1\nline \"2\"");
        assert_eq!(events[8].1["response"]["output"][0], *item);
    }

    #[test]
    fn a_custom_call_in_another_shape_sends_its_input_at_the_end() {
        let mut enc = OpenAiResponsesEncoder::new("m", custom_map());
        let mut out = VecDeque::new();
        enc.encode(
            StreamEvent::ToolCallStart {
                key: 3,
                id: "c".into(),
                name: "apply_patch".into(),
                signature: None,
            },
            &mut out,
        );
        enc.encode(
            StreamEvent::ToolCallArgs {
                key: 3,
                fragment: r#"{"patch":"p"}"#.into(),
            },
            &mut out,
        );
        enc.finish(&mut out);
        let deltas: Vec<Value> = out
            .iter()
            .filter(|e| e.name() == Some("response.custom_tool_call_input.delta"))
            .map(|e| serde_json::from_slice(&e.data_body().to_bytes()).unwrap())
            .collect();
        assert_eq!(deltas.len(), 1);
        assert_eq!(deltas[0]["delta"], "p");
    }

    #[test]
    fn custom_input_events_from_a_responses_upstream_become_arguments() {
        let ev =
            |name: &'static str, data: Value| Ok(Event::named(name, Bytes::from(data.to_string())));
        let out = convert_stream(
            Protocol::OpenAiChat,
            Protocol::OpenAiResponses,
            false,
            vec![
                ev(
                    "response.created",
                    json!({"type": "response.created", "response": {"id": "resp_1"}}),
                ),
                ev(
                    "response.output_item.added",
                    json!({"type": "response.output_item.added", "output_index": 0,
                    "item": {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": ""}}),
                ),
                ev(
                    "response.custom_tool_call_input.delta",
                    json!({"type": "response.custom_tool_call_input.delta", "output_index": 0, "delta": "a \"q\"\n"}),
                ),
                ev(
                    "response.custom_tool_call_input.delta",
                    json!({"type": "response.custom_tool_call_input.delta", "output_index": 0, "delta": "b"}),
                ),
                ev(
                    "response.custom_tool_call_input.done",
                    json!({"type": "response.custom_tool_call_input.done", "output_index": 0, "input": "a \"q\"\nb"}),
                ),
                ev(
                    "response.output_item.done",
                    json!({"type": "response.output_item.done", "output_index": 0,
                    "item": {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "a \"q\"\nb"}}),
                ),
                ev(
                    "response.completed",
                    json!({"type": "response.completed", "response": {"id": "resp_1", "status": "completed"}}),
                ),
            ],
        );
        let mut args = String::new();
        for e in out {
            let e = e.unwrap();
            let bytes = e.data_body().to_bytes();
            let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            if let Some(a) = v.pointer("/choices/0/delta/tool_calls/0/function/arguments") {
                args.push_str(a.as_str().unwrap());
            }
        }
        let v: Value = serde_json::from_str(&args).unwrap();
        assert_eq!(v, json!({"input": "a \"q\"\nb"}));
    }

    #[test]
    fn other_clients_still_get_the_error() {
        let out = convert_stream(
            Protocol::Anthropic,
            Protocol::OpenAiChat,
            true,
            vec![Ok(Event::data(Bytes::from_static(
                br#"{"error":{"message":"boom","type":"server_error"}}"#,
            )))],
        );
        assert!(matches!(out.last(), Some(Err(e)) if e.message() == "boom"));
    }
}
