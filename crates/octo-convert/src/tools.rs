//! What the response side must remember about the client's tools: the shape each tool was declared
//! in ([`ToolMap`]), the tool names shortened for the upstream ([`NameMap`]), and the tool that
//! carries a JSON answer toward an upstream without a JSON mode ([`JSON_ANSWER_TOOL`]).

use crate::canonical::{
    CanonicalRequest, CanonicalResponse, Part, ResponseFormat, StopReason, StreamEvent, Tool,
    ToolChoice, ToolOrigin,
};
use crate::ids;

/// The client's tools that are not plain function tools (Responses `custom` and namespaced
/// tools), by the function name the upstream sees, so calls go back to the client in its shape.
#[derive(Debug, Clone, Default)]
pub(crate) struct ToolMap {
    pub(crate) tools: Vec<(String, ToolOrigin)>,
}

impl ToolMap {
    pub(crate) fn from_request(r: &CanonicalRequest) -> ToolMap {
        ToolMap {
            tools: r
                .tools
                .iter()
                .filter_map(|t| Some((t.name.clone(), t.origin.clone()?)))
                .collect(),
        }
    }

    /// How the client declared the tool the upstream calls `name`.
    pub(crate) fn origin(&self, name: &str) -> Option<&ToolOrigin> {
        self.tools.iter().find(|(n, _)| n == name).map(|(_, o)| o)
    }
}

/// The tool a JSON-object answer is asked through when the upstream has no JSON mode (Anthropic
/// has JSON schemas, not "any object"): its input is the answer, given back as text.
pub(crate) const JSON_ANSWER_TOOL: &str = "octollm_json_answer";

/// Asks for `response_format: json_object` through [`JSON_ANSWER_TOOL`]: the tool is added and,
/// when the client offered no tools of its own, forced. Returns whether it was added.
pub(crate) fn ask_json_through_a_tool(r: &mut CanonicalRequest) -> bool {
    if r.response_format != Some(ResponseFormat::JsonObject) {
        return false;
    }
    r.response_format = None;
    if r.tools.is_empty() {
        r.tool_choice = Some(ToolChoice::Tool(JSON_ANSWER_TOOL.to_owned()));
    }
    r.tools.push(Tool {
        name: JSON_ANSWER_TOOL.to_owned(),
        description: Some(
            "Give your whole answer by calling this tool: its input is the answer, one JSON object."
                .to_owned(),
        ),
        parameters: Some(serde_json::json!({"type": "object"})),
        strict: None,
        origin: None,
    });
    true
}

/// Tool names shortened for the upstream, and the way back.
#[derive(Debug, Clone, Default)]
pub(crate) struct NameMap {
    /// `(short, original)`.
    pairs: Vec<(String, String)>,
    /// Calls of [`JSON_ANSWER_TOOL`] are the answer's text.
    json_answer: bool,
    /// In a stream: the key of the JSON answer's call, and whether other calls were made.
    json_key: Option<u64>,
    other_calls: bool,
}

impl NameMap {
    /// Shortens every tool name the upstream would refuse, everywhere it appears.
    pub(crate) fn shorten(r: &mut CanonicalRequest) -> NameMap {
        let mut map = NameMap::default();
        let mut fix = |name: &mut String| {
            if let Some(short) = ids::short_name(name) {
                if !map.pairs.iter().any(|(s, _)| *s == short) {
                    map.pairs.push((short.clone(), name.clone()));
                }
                *name = short;
            }
        };
        for t in &mut r.tools {
            fix(&mut t.name);
        }
        match &mut r.tool_choice {
            Some(ToolChoice::Tool(name)) => fix(name),
            Some(ToolChoice::Allowed { names, .. }) => names.iter_mut().for_each(&mut fix),
            _ => {}
        }
        for m in &mut r.messages {
            for p in &mut m.parts {
                match p {
                    Part::ToolCall(c) => fix(&mut c.name),
                    Part::ToolResult(res) => {
                        if let Some(n) = res.name.as_mut() {
                            fix(n);
                        }
                    }
                    _ => {}
                }
            }
        }
        map
    }

    /// Puts the original name back.
    pub(crate) fn restore(&self, name: &mut String) {
        if let Some((_, original)) = self.pairs.iter().find(|(s, _)| s == name) {
            name.clone_from(original);
        }
    }

    /// Marks the answer as asked through [`JSON_ANSWER_TOOL`].
    pub(crate) fn with_json_answer(mut self, on: bool) -> Self {
        self.json_answer = on;
        self
    }

    /// A stream event as the client sees it: the JSON answer tool's call becomes text (see
    /// [`JSON_ANSWER_TOOL`]); `None` drops the event.
    pub(crate) fn answer_event(&mut self, ev: StreamEvent) -> Option<StreamEvent> {
        if !self.json_answer {
            return Some(ev);
        }
        match ev {
            StreamEvent::ToolCallStart { key, name, .. } if name == JSON_ANSWER_TOOL => {
                self.json_key = Some(key);
                None
            }
            ev @ StreamEvent::ToolCallStart { .. } => {
                self.other_calls = true;
                Some(ev)
            }
            StreamEvent::ToolCallArgs { key, fragment } if Some(key) == self.json_key => {
                Some(StreamEvent::Text(fragment))
            }
            StreamEvent::Finish {
                reason: StopReason::ToolUse,
                stop_sequence,
            } if !self.other_calls => Some(StreamEvent::Finish {
                reason: StopReason::EndTurn,
                stop_sequence,
            }),
            ev => Some(ev),
        }
    }

    /// Puts the original names back in every tool call of `r` (and a JSON answer asked through
    /// [`JSON_ANSWER_TOOL`] as text).
    pub(crate) fn restore_response(&self, r: &mut CanonicalResponse) {
        if self.json_answer {
            for p in &mut r.parts {
                if let Part::ToolCall(c) = p
                    && c.name == JSON_ANSWER_TOOL
                {
                    *p = Part::Text(c.arguments_json().to_owned());
                }
            }
            if !r.has_tool_calls() && r.stop == Some(StopReason::ToolUse) {
                r.stop = Some(StopReason::EndTurn);
            }
        }
        if self.pairs.is_empty() {
            return;
        }
        for p in &mut r.parts {
            if let Part::ToolCall(c) = p {
                self.restore(&mut c.name);
            }
        }
    }
}
