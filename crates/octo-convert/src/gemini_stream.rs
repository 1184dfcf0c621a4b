//! Gemini `streamGenerateContent` streams: chunk decoder and encoder.
//!
//! Gemini has no terminator event; its stream ends at EOF, and every chunk carries cumulative
//! `usageMetadata`. A function call arrives whole (arguments as an object) and may carry a
//! `thoughtSignature`; `STOP` after function calls means "tool use" (remembered across chunks).
//! The encoder buffers a call's argument fragments until the call is complete (Gemini clients expect
//! whole calls) and always ends with a chunk carrying `finishReason` and the usage.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use octo_core::{Error, Event, Protocol};

use crate::canonical::{StopReason, StreamEvent, StreamStart, Usage, effective_stop};
use crate::gemini::{finish_reason, stop_from, wrap_redacted, wrap_signature};
use crate::ids;
use crate::stream::{Decoder, Encoder, read_event};
use crate::util::{args_object, fresh_id, inband_error};

// ---------------------------------------------------------------------------------------- decode

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    candidates: Option<Vec<Candidate<'a>>>,
    #[serde(default, rename = "usageMetadata", alias = "usage_metadata")]
    usage: Option<Value>,
    #[serde(
        borrow,
        default,
        rename = "modelVersion",
        alias = "model_version",
        deserialize_with = "crate::util::borrowed_str"
    )]
    model: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        rename = "responseId",
        alias = "response_id",
        deserialize_with = "crate::util::borrowed_str"
    )]
    id: Option<Cow<'a, str>>,
    #[serde(default, rename = "promptFeedback", alias = "prompt_feedback")]
    prompt_feedback: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Candidate<'a> {
    #[serde(borrow, default)]
    content: Option<Content<'a>>,
    #[serde(
        borrow,
        default,
        rename = "finishReason",
        alias = "finish_reason",
        deserialize_with = "crate::util::borrowed_str"
    )]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    index: Option<u64>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(borrow, default)]
    parts: Option<Vec<PartIn<'a>>>,
}

#[derive(Deserialize)]
struct PartIn<'a> {
    #[serde(borrow, default, deserialize_with = "crate::util::borrowed_str")]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(
        borrow,
        default,
        rename = "thoughtSignature",
        alias = "thought_signature",
        deserialize_with = "crate::util::borrowed_str"
    )]
    signature: Option<Cow<'a, str>>,
    #[serde(default, rename = "functionCall", alias = "function_call")]
    call: Option<Value>,
}

/// Upstream Gemini chunks → canonical events.
#[derive(Default)]
pub(crate) struct GeminiDecoder {
    started: bool,
    calls: usize,
    response_id: String,
}

impl Decoder for GeminiDecoder {
    fn decode(&mut self, event: &Event, out: &mut Vec<StreamEvent>) -> Result<(), Error> {
        let data = event.data_body().to_bytes();
        let Some(chunk) = read_event::<Chunk<'_>>(&data, "Gemini chunk") else {
            return Ok(());
        };
        if let Some(err) = chunk.error {
            let code = err
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500);
            return Err(inband_error(
                Protocol::Gemini,
                code,
                &json!({ "error": err }),
            ));
        }
        if !self.started {
            self.started = true;
            self.response_id = chunk.id.as_deref().unwrap_or_default().to_owned();
            out.push(StreamEvent::Start(StreamStart {
                id: chunk.id.map(Cow::into_owned),
                model: chunk.model.map(Cow::into_owned),
                created: None,
            }));
        }
        if let Some(u) = chunk.usage.as_ref().and_then(Usage::from_gemini) {
            out.push(StreamEvent::Usage(u));
        }
        let mut any_candidate = false;
        for cand in chunk.candidates.into_iter().flatten() {
            if cand.index.unwrap_or(0) != 0 {
                continue;
            }
            any_candidate = true;
            for p in cand.content.and_then(|c| c.parts).into_iter().flatten() {
                if let Some(call) = p.call {
                    let id = call
                        .get("id")
                        .and_then(Value::as_str)
                        .filter(|x| !x.is_empty())
                        .map_or_else(
                            || ids::synthesized_id(&self.response_id, self.calls),
                            str::to_owned,
                        );
                    let key = self.calls as u64;
                    self.calls += 1;
                    out.push(StreamEvent::ToolCallStart {
                        key,
                        id,
                        name: call
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        signature: p.signature.map(Cow::into_owned),
                    });
                    out.push(StreamEvent::ToolCallArgs {
                        key,
                        fragment: call
                            .get("args")
                            .map_or_else(|| "{}".to_owned(), Value::to_string),
                    });
                    out.push(StreamEvent::BlockEnd);
                } else if let Some(text) = p.text {
                    if p.thought == Some(true) {
                        if !text.is_empty() {
                            out.push(StreamEvent::Thinking(text.into_owned()));
                        }
                        if let Some(sig) = p.signature.filter(|s| !s.is_empty()) {
                            out.push(StreamEvent::ThinkingSignature(sig.into_owned()));
                        }
                    } else if !text.is_empty() {
                        out.push(StreamEvent::Text(text.into_owned()));
                    }
                }
            }
            if let Some(reason) = cand.finish_reason.as_deref().and_then(stop_from) {
                out.push(StreamEvent::Finish {
                    reason,
                    stop_sequence: None,
                });
            }
        }
        let blocked = chunk.prompt_feedback.as_ref().is_some_and(|f| {
            f.get("blockReason")
                .or_else(|| f.get("block_reason"))
                .is_some()
        });
        if !any_candidate && blocked {
            out.push(StreamEvent::Finish {
                reason: StopReason::ContentFilter,
                stop_sequence: None,
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------- encode

#[derive(Serialize)]
struct OutChunk<'a> {
    candidates: [OutCandidate<'a>; 1],
    #[serde(rename = "usageMetadata", skip_serializing_if = "Option::is_none")]
    usage: Option<Value>,
    #[serde(rename = "modelVersion")]
    model: &'a str,
    #[serde(rename = "responseId")]
    id: &'a str,
}

#[derive(Serialize)]
struct OutCandidate<'a> {
    content: OutContent<'a>,
    #[serde(rename = "finishReason", skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'static str>,
    index: u32,
}

#[derive(Serialize)]
struct OutContent<'a> {
    parts: &'a [OutPart<'a>],
    role: &'static str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutPart<'a> {
    Text {
        text: &'a str,
    },
    Thought {
        text: &'a str,
        thought: bool,
        #[serde(rename = "thoughtSignature", skip_serializing_if = "Option::is_none")]
        signature: Option<&'a str>,
    },
    Call {
        #[serde(rename = "functionCall")]
        call: &'a Value,
    },
}

struct PendingCall {
    key: u64,
    id: String,
    name: String,
    arguments: String,
}

/// Canonical events → Gemini chunks.
pub(crate) struct GeminiEncoder {
    id: String,
    model: String,
    /// Calls whose arguments are still arriving, in order.
    calls: Vec<PendingCall>,
    saw_tool: bool,
    stop: Option<StopReason>,
    usage: Option<Usage>,
}

impl GeminiEncoder {
    /// An encoder; `model` is the fallback when the upstream names none.
    pub(crate) fn new(model: &str) -> Self {
        GeminiEncoder {
            id: String::new(),
            model: model.to_owned(),
            calls: Vec::new(),
            saw_tool: false,
            stop: None,
            usage: None,
        }
    }

    fn chunk(&mut self, parts: &[OutPart<'_>], finish: Option<&'static str>) -> Event {
        if self.id.is_empty() {
            self.id = fresh_id("resp_");
        }
        let usage = finish.map(|_| self.usage.unwrap_or_default().to_gemini());
        let chunk = OutChunk {
            candidates: [OutCandidate {
                content: OutContent {
                    parts,
                    role: "model",
                },
                finish_reason: finish,
                index: 0,
            }],
            usage,
            model: &self.model,
            id: &self.id,
        };
        Event::data(Bytes::from(serde_json::to_vec(&chunk).unwrap_or_default()))
    }

    fn call_part(c: PendingCall) -> Value {
        json!({"id": c.id, "name": c.name, "args": args_object(&c.arguments)})
    }

    /// Emits every buffered call.
    /// A thought part carrying only a (wrapped) signature.
    fn signature_chunk(&mut self, signature: &str, out: &mut VecDeque<Event>) {
        self.flush_calls(out);
        let part = OutPart::Thought {
            text: "",
            thought: true,
            signature: Some(signature),
        };
        let ev = self.chunk(&[part], None);
        out.push_back(ev);
    }

    fn flush_calls(&mut self, out: &mut VecDeque<Event>) {
        if self.calls.is_empty() {
            return;
        }
        let calls: Vec<Value> = self.calls.drain(..).map(Self::call_part).collect();
        let parts: Vec<OutPart<'_>> = calls.iter().map(|c| OutPart::Call { call: c }).collect();
        let ev = self.chunk(&parts, None);
        out.push_back(ev);
    }
}

impl Encoder for GeminiEncoder {
    fn encode(&mut self, event: StreamEvent, out: &mut VecDeque<Event>) {
        match event {
            StreamEvent::Start(mut start) => {
                start.adopt(&mut self.id, &mut self.model);
            }
            StreamEvent::Text(t) | StreamEvent::Refusal(t) => {
                if t.is_empty() {
                    return;
                }
                self.flush_calls(out);
                let ev = self.chunk(&[OutPart::Text { text: &t }], None);
                out.push_back(ev);
            }
            StreamEvent::Thinking(t) => {
                if t.is_empty() {
                    return;
                }
                self.flush_calls(out);
                let part = OutPart::Thought {
                    text: &t,
                    thought: true,
                    signature: None,
                };
                let ev = self.chunk(&[part], None);
                out.push_back(ev);
            }
            StreamEvent::ThinkingSignature(sig) => {
                self.signature_chunk(&wrap_signature(&sig), out);
            }
            StreamEvent::RedactedThinking(data) => {
                self.signature_chunk(&wrap_redacted(&data), out);
            }
            StreamEvent::ToolCallStart {
                key,
                id,
                name,
                signature,
            } => {
                self.saw_tool = true;
                // Upstreams send calls one after the other: the previous one is complete.
                self.flush_calls(out);
                self.calls.push(PendingCall {
                    key,
                    id: ids::fold_signature(&id, signature.as_deref()),
                    name,
                    arguments: String::new(),
                });
            }
            StreamEvent::ToolCallArgs { key, fragment } => {
                match self.calls.iter_mut().rev().find(|c| c.key == key) {
                    Some(c) => c.arguments.push_str(&fragment),
                    None => tracing::debug!(key, "dropping arguments for a call already sent"),
                }
            }
            StreamEvent::BlockEnd => self.flush_calls(out),
            StreamEvent::Usage(u) => self.usage = Some(u),
            StreamEvent::Finish { reason, .. } => self.stop = Some(reason),
            StreamEvent::End => {}
        }
    }

    fn finish(&mut self, out: &mut VecDeque<Event>) {
        // Calls go out in their own chunk; the last chunk carries the finish reason and the usage
        // with an empty text part, as Gemini itself ends streams.
        self.flush_calls(out);
        let stop = effective_stop(self.stop, self.saw_tool);
        let ev = self.chunk(&[OutPart::Text { text: "" }], Some(finish_reason(stop)));
        out.push_back(ev);
    }
}
