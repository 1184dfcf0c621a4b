//! The canonical model every protocol is decoded into and encoded from.
//!
//! It is the union of what the four protocols can say, in the shape that makes conversion simple:
//! system instructions apart from the turns; two roles (tool results are parts of a user turn, as in
//! Anthropic and Gemini); tool calls with their arguments as JSON *text* (as OpenAI streams them);
//! reasoning blocks with their opaque signatures; usage in [`Usage`].
//!
//! Tool-call ids are kept as the client or upstream wrote them, with one exception: a Gemini
//! `thoughtSignature` attached to a function call is kept in [`ToolCall::signature`], and only
//! protocols without a place for it fold it into the id they show (see [`super::ids`]).

use serde_json::Value;

pub(crate) use crate::usage::Usage;

/// A chat request, whatever protocol it came in.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CanonicalRequest {
    /// The model name as the client gave it.
    pub(crate) model: String,
    /// System and developer instructions, in order of appearance.
    pub(crate) system: Vec<String>,
    pub(crate) messages: Vec<Message>,
    pub(crate) tools: Vec<Tool>,
    pub(crate) tool_choice: Option<ToolChoice>,
    /// `Some(false)` asks for at most one tool call per turn.
    pub(crate) parallel_tool_calls: Option<bool>,
    pub(crate) max_tokens: Option<u64>,
    pub(crate) temperature: Option<f64>,
    pub(crate) top_p: Option<f64>,
    pub(crate) top_k: Option<u64>,
    pub(crate) stop: Vec<String>,
    pub(crate) stream: bool,
    /// Whether the client wants usage in a stream (always, except OpenAI Chat without
    /// `stream_options.include_usage`).
    pub(crate) include_usage: bool,
    pub(crate) n: Option<u64>,
    pub(crate) seed: Option<i64>,
    pub(crate) frequency_penalty: Option<f64>,
    pub(crate) presence_penalty: Option<f64>,
    pub(crate) reasoning: Option<ReasoningConfig>,
    pub(crate) response_format: Option<ResponseFormat>,
    /// An end-user identifier (`user`, `safety_identifier`, `metadata.user_id`).
    pub(crate) user: Option<String>,
}

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    User,
    Assistant,
}

/// One turn.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    pub(crate) role: Role,
    pub(crate) parts: Vec<Part>,
}

/// One piece of a turn.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    Text(String),
    /// An assistant refusal.
    Refusal(String),
    Image(Media),
    /// A file (PDF and the like).
    Document {
        media: Media,
        name: Option<String>,
    },
    /// Input audio (base64) with its format (`wav`, `mp3`).
    Audio {
        data: String,
        format: String,
    },
    Thinking(Thinking),
    ToolCall(ToolCall),
    ToolResult(ToolResult),
}

/// Where a medium's bytes are.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Media {
    Url {
        url: String,
        media_type: Option<String>,
    },
    Base64 {
        media_type: String,
        data: String,
    },
}

/// A reasoning block.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Thinking {
    /// The visible reasoning (or its summary).
    pub(crate) text: String,
    /// The opaque token that lets the producer verify the block when it is replayed (Anthropic
    /// `signature`, Gemini `thoughtSignature`, Responses `encrypted_content`).
    pub(crate) signature: Option<String>,
    /// Anthropic `redacted_thinking.data`: a block whose text is not shown.
    pub(crate) redacted: Option<String>,
}

/// A call the assistant makes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ToolCall {
    pub(crate) id: String,
    pub(crate) name: String,
    /// The arguments as JSON text.
    pub(crate) arguments: String,
    /// A Gemini thought signature attached to the call.
    pub(crate) signature: Option<String>,
}

impl ToolCall {
    /// The arguments, `{}` when none were given (clients parse them as JSON).
    pub(crate) fn arguments_json(&self) -> &str {
        if self.arguments.trim().is_empty() {
            "{}"
        } else {
            &self.arguments
        }
    }
}

/// The answer to a call, sent back by the user side.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolResult {
    pub(crate) id: String,
    /// The called function's name, when known (Gemini needs it).
    pub(crate) name: Option<String>,
    /// Text and images.
    pub(crate) content: Vec<Part>,
    pub(crate) is_error: bool,
}

impl ToolResult {
    /// The text parts joined.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        for p in &self.content {
            if let Part::Text(t) = p {
                out.push_str(t);
            }
        }
        out
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tool {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    /// JSON Schema of the arguments.
    pub(crate) parameters: Option<Value>,
    pub(crate) strict: Option<bool>,
    /// How the client declared it, when that was not a plain function tool.
    pub(crate) origin: Option<ToolOrigin>,
}

/// A client tool that other protocols see as a function tool (OpenAI Responses `custom` tools and
/// tools inside a `namespace`). The converter maps calls back to this shape for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolOrigin {
    /// A free-form (`custom`) tool: the upstream sees a function with one string parameter
    /// [`CUSTOM_INPUT`], the client gets `custom_tool_call` items with that string as `input`.
    pub(crate) custom: bool,
    /// The namespace the tool was declared in (the upstream name is qualified with it).
    pub(crate) namespace: Option<String>,
    /// The tool's own name as the client declared it.
    pub(crate) name: String,
}

/// The one parameter of the function a free-form (`custom`) tool becomes.
pub(crate) const CUSTOM_INPUT: &str = "input";

impl ToolOrigin {
    /// The function name other protocols see for `name` inside `namespace`:
    /// `<namespace>__<name>` (no second separator when the namespace already ends with `__`).
    pub(crate) fn qualified(namespace: Option<&str>, name: &str) -> String {
        match namespace.filter(|n| !n.is_empty()) {
            None => name.to_owned(),
            Some(ns) if ns.ends_with("__") => format!("{ns}{name}"),
            Some(ns) => format!("{ns}__{name}"),
        }
    }
}

/// How the model may use tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolChoice {
    Auto,
    None,
    Required,
    /// This function must be called.
    Tool(String),
    /// Only these functions; `required` forces a call.
    Allowed {
        required: bool,
        names: Vec<String>,
    },
}

/// Reasoning settings. `effort` is one of `none`, `minimal`, `low`, `medium`, `high`, `xhigh`,
/// `max`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReasoningConfig {
    pub(crate) effort: Option<String>,
    pub(crate) budget_tokens: Option<u64>,
    /// Explicitly switched off.
    pub(crate) disabled: bool,
    /// The client wants to see the reasoning (summaries, thought parts, thinking blocks).
    pub(crate) include_thoughts: bool,
}

impl ReasoningConfig {
    /// Whether reasoning is asked for at all.
    pub(crate) fn enabled(&self) -> bool {
        !self.disabled && self.effort.as_deref() != Some("none")
    }

    /// The effort, derived from the budget when only a budget was given.
    pub(crate) fn effort_or_from_budget(&self) -> Option<String> {
        if let Some(e) = &self.effort {
            return Some(e.clone());
        }
        self.budget_tokens.map(|b| {
            match b {
                0 => "none",
                1..=2048 => "low",
                2049..=8192 => "medium",
                _ => "high",
            }
            .to_owned()
        })
    }

    /// The budget, derived from the effort when only an effort was given (min 1024).
    pub(crate) fn budget_or_from_effort(&self) -> Option<u64> {
        if let Some(b) = self.budget_tokens {
            return Some(b);
        }
        let b = match self.effort.as_deref()? {
            "none" => return None,
            "minimal" | "low" => 1024,
            "medium" => 4096,
            "high" => 8192,
            "xhigh" => 16384,
            "max" => 32768,
            _ => 4096,
        };
        Some(b)
    }
}

/// The requested output format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        strict: Option<bool>,
        description: Option<String>,
    },
}

/// Why generation stopped. See `docs/conversion.md` ("Stop reasons") for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    EndTurn,
    StopSequence,
    MaxTokens,
    ToolUse,
    ContentFilter,
}

/// A complete (non-streamed) answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CanonicalResponse {
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) created: Option<u64>,
    /// Thinking, text, refusal and tool-call parts in order.
    pub(crate) parts: Vec<Part>,
    pub(crate) stop: Option<StopReason>,
    pub(crate) stop_sequence: Option<String>,
    pub(crate) usage: Option<Usage>,
}

impl CanonicalResponse {
    /// Whether any part is a tool call.
    pub(crate) fn has_tool_calls(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::ToolCall(_)))
    }

    /// The stop reason, corrected by the rule that tool calls mean `ToolUse` unless the answer was
    /// cut short.
    pub(crate) fn effective_stop(&self) -> StopReason {
        effective_stop(self.stop, self.has_tool_calls())
    }
}

/// A plain stop after a refusal is a content-filter stop (`docs/conversion.md`, "Stop reasons": Anthropic's `refusal`).
pub(crate) fn refusal_stop(stop: Option<StopReason>, refused: bool) -> Option<StopReason> {
    match stop {
        Some(StopReason::EndTurn) | None if refused => Some(StopReason::ContentFilter),
        other => other,
    }
}

/// `stop` (default end of turn), with "has tool calls" winning over a plain stop.
pub(crate) fn effective_stop(stop: Option<StopReason>, has_tools: bool) -> StopReason {
    match stop {
        Some(StopReason::MaxTokens) => StopReason::MaxTokens,
        Some(StopReason::ContentFilter) => StopReason::ContentFilter,
        _ if has_tools => StopReason::ToolUse,
        Some(s) => s,
        None => StopReason::EndTurn,
    }
}

/// Response metadata known at the start of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StreamStart {
    pub(crate) id: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) created: Option<u64>,
}

impl StreamStart {
    /// Moves the upstream's id and model into an encoder's `id` and `model` where it names them
    /// (an empty one keeps the encoder's own).
    pub(crate) fn adopt(&mut self, id: &mut String, model: &mut String) {
        if let Some(new) = self.id.take().filter(|i| !i.is_empty()) {
            *id = new;
        }
        if let Some(new) = self.model.take().filter(|m| !m.is_empty()) {
            *model = new;
        }
    }
}

/// One step of a streamed answer, in the block structure Anthropic uses: deltas append to the open
/// block of their kind (opening one after closing any other), [`StreamEvent::BlockEnd`] closes the
/// open block. Tool calls are addressed by the upstream's `key` so fragments find their call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StreamEvent {
    Start(StreamStart),
    Text(String),
    Refusal(String),
    Thinking(String),
    /// The signature of the open (or a new, empty) thinking block.
    ThinkingSignature(String),
    /// A complete redacted-thinking block.
    RedactedThinking(String),
    ToolCallStart {
        key: u64,
        id: String,
        name: String,
        signature: Option<String>,
    },
    ToolCallArgs {
        key: u64,
        fragment: String,
    },
    /// The open block is complete.
    BlockEnd,
    /// A cumulative usage snapshot (replaces earlier ones).
    Usage(Usage),
    Finish {
        reason: StopReason,
        stop_sequence: Option<String>,
    },
    /// The upstream finished its stream properly.
    End,
}

impl CanonicalRequest {
    /// Merges consecutive turns of the same role, puts tool results first in every user turn, drops
    /// empty text parts and empty turns, and drops tool results that answer no earlier call.
    pub(crate) fn normalize(&mut self) {
        let mut known_calls: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut out: Vec<Message> = Vec::with_capacity(self.messages.len());
        for mut msg in std::mem::take(&mut self.messages) {
            msg.parts.retain(|p| match p {
                Part::Text(t) => !t.is_empty(),
                Part::ToolResult(r) => {
                    let known = known_calls.contains(&r.id);
                    if !known {
                        tracing::debug!(id = %r.id, "dropping a tool result that answers no earlier tool call");
                    }
                    known
                }
                _ => true,
            });
            for p in &msg.parts {
                if let Part::ToolCall(c) = p {
                    known_calls.insert(c.id.clone());
                }
            }
            if msg.parts.is_empty() {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.role == msg.role => last.parts.append(&mut msg.parts),
                _ => out.push(msg),
            }
        }
        for msg in &mut out {
            if msg.role == Role::User {
                // Stable partition: tool results first.
                let (mut results, rest): (Vec<Part>, Vec<Part>) = std::mem::take(&mut msg.parts)
                    .into_iter()
                    .partition(|p| matches!(p, Part::ToolResult(_)));
                results.extend(rest);
                msg.parts = results;
            }
        }
        self.messages = out;
    }

    /// Gives every tool result the name of the call it answers.
    pub(crate) fn fill_tool_result_names(&mut self) {
        let mut names: Vec<(String, String)> = Vec::new();
        for m in &mut self.messages {
            for p in &mut m.parts {
                match p {
                    Part::ToolCall(c) => names.push((c.id.clone(), c.name.clone())),
                    Part::ToolResult(r) if r.name.as_deref().is_none_or(str::is_empty) => {
                        r.name = names
                            .iter()
                            .rev()
                            .find(|(id, _)| *id == r.id)
                            .map(|(_, n)| n.clone());
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(role: Role, t: &str) -> Message {
        Message {
            role,
            parts: vec![Part::Text(t.into())],
        }
    }

    #[test]
    fn normalize_merges_and_orders() {
        let call = ToolCall {
            id: "c1".into(),
            name: "f".into(),
            arguments: "{}".into(),
            signature: None,
        };
        let result = |id: &str| {
            Part::ToolResult(ToolResult {
                id: id.into(),
                name: None,
                content: vec![Part::Text("ok".into())],
                is_error: false,
            })
        };
        let mut r = CanonicalRequest {
            messages: vec![
                text(Role::User, "a"),
                text(Role::User, ""),
                text(Role::User, "b"),
                Message {
                    role: Role::Assistant,
                    parts: vec![Part::ToolCall(call)],
                },
                text(Role::User, "after"),
                Message {
                    role: Role::User,
                    parts: vec![result("c1"), result("orphan")],
                },
            ],
            ..CanonicalRequest::default()
        };
        r.normalize();
        assert_eq!(r.messages.len(), 3);
        assert_eq!(
            r.messages[0].parts,
            vec![Part::Text("a".into()), Part::Text("b".into())]
        );
        assert!(matches!(r.messages[2].parts[0], Part::ToolResult(_)));
        assert_eq!(r.messages[2].parts[1], Part::Text("after".into()));
        assert_eq!(r.messages[2].parts.len(), 2);
    }

    #[test]
    fn stop_reason_rules() {
        assert_eq!(effective_stop(None, false), StopReason::EndTurn);
        assert_eq!(
            effective_stop(Some(StopReason::EndTurn), true),
            StopReason::ToolUse
        );
        assert_eq!(
            effective_stop(Some(StopReason::MaxTokens), true),
            StopReason::MaxTokens
        );
    }

    #[test]
    fn effort_and_budget_derive_each_other() {
        let r = ReasoningConfig {
            budget_tokens: Some(10000),
            ..Default::default()
        };
        assert_eq!(r.effort_or_from_budget().as_deref(), Some("high"));
        let r = ReasoningConfig {
            effort: Some("low".into()),
            ..Default::default()
        };
        assert_eq!(r.budget_or_from_effort(), Some(1024));
        assert!(r.enabled());
    }
}
