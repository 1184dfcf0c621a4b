//! The deterministic answer to a request, before any wire format: reply text split into stream
//! pieces, tool calls, finish kind and token usage. Protocol modules only render a [`Plan`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::directives::Directives;
use crate::record::State;

/// Model name used when a request does not name one.
pub(crate) const DEFAULT_MODEL: &str = "octo-mock";
/// Fixed `created` timestamp, so that replies are byte-for-byte reproducible.
pub(crate) const CREATED: u64 = 1_735_689_600;
/// How many characters of the user's text are echoed.
const ECHO_CHARS: usize = 64;
/// Piece appended when `events=N` asks for more pieces than the text has.
const FILLER: &str = " mock";

/// The request's tool choice, reduced to what the mock needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum ToolChoice {
    /// Tools may be called (only the `tool`/`tools` directives make the mock call them).
    #[default]
    Auto,
    /// Tools must not be called.
    None,
    /// A tool must be called; with a name, that one.
    Forced(Option<String>),
}

/// What a protocol parser extracts from a request body.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    pub(crate) model: String,
    pub(crate) stream: bool,
    /// OpenAI chat `stream_options.include_usage`.
    pub(crate) include_usage: bool,
    /// Text of the last user turn that has text.
    pub(crate) user_text: Option<String>,
    /// Set when the last message is a tool result: its text.
    pub(crate) tool_result: Option<String>,
    /// Names of the function tools the request defines, in order.
    pub(crate) tools: Vec<String>,
    /// JSON schema of each tool's parameters, by name, where the request gives one.
    pub(crate) tool_schemas: BTreeMap<String, Value>,
    pub(crate) tool_choice: ToolChoice,
    /// The protocol's stop sequences (OpenAI Chat `stop`, Anthropic `stop_sequences`, Gemini
    /// `generationConfig.stopSequences`; the Responses API has none).
    pub(crate) stop: Vec<String>,
    /// The structured output asked for: the reply text is then JSON.
    pub(crate) output: Option<crate::rules::OutputFormat>,
}

/// Why the reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    Stop,
    /// A stop sequence of the request occurred in the text, which was cut before it.
    StopSequence,
    Length,
    ToolCalls,
}

/// The reasoning text of a reply asked for with the `thinking` directive.
pub(crate) const THINKING_TEXT: &str = "The mock thinks before it answers.";

/// One tool call of the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolCall {
    /// Number for the protocol's id format (`call_mock_{id}`, `toolu_mock_{id}`).
    pub(crate) id: u64,
    pub(crate) name: String,
    /// Position among the parallel calls (0-based); also the `n` argument.
    pub(crate) index: usize,
    /// JSON text of the arguments: `{"query":"mock","n":<index>}`, or for a tool named by the
    /// `tool=NAME` directive, values for the required parameters of its schema (see
    /// [`arguments_for_schema`]); the `tool_args` directive's object when given.
    pub(crate) arguments: String,
}

impl ToolCall {
    /// The arguments as a JSON object.
    pub(crate) fn arguments_json(&self) -> Value {
        serde_json::from_str(&self.arguments).unwrap_or_else(|_| Value::Object(Map::new()))
    }

    /// The arguments split into the two fragments that are streamed.
    pub(crate) fn fragments(&self) -> (&str, &str) {
        self.arguments.split_at(self.arguments.len() / 2)
    }
}

/// The complete, protocol-neutral reply.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Number for the protocol's response id format.
    pub(crate) id: u64,
    pub(crate) model: String,
    /// Text pieces, one per streamed text delta; empty when the reply is tool calls.
    pub(crate) pieces: Vec<String>,
    pub(crate) tool_calls: Vec<ToolCall>,
    pub(crate) finish: Finish,
    /// The stop sequence that cut the text (`Finish::StopSequence`).
    pub(crate) stop_sequence: Option<String>,
    /// Reasoning before the answer ([`THINKING_TEXT`]), with the protocol's signature.
    pub(crate) thinking: Option<&'static str>,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) include_usage: bool,
}

impl Plan {
    pub(crate) fn new(
        summary: Summary,
        directives: &Directives,
        body_len: usize,
        state: &State,
    ) -> Self {
        let tool_calls = plan_tool_calls(&summary, directives, state);
        let mut stop_sequence = None;
        let pieces = if tool_calls.is_empty() {
            let text = match (&summary.tool_result, &summary.user_text) {
                _ if directives.say.is_some() => directives.say.clone().unwrap_or_default(),
                (Some(result), _) => format!("Hello from octo-mock. Tool result: {}", echo(result)),
                (None, text) => format!(
                    "Hello from octo-mock. You said: {}",
                    echo(text.as_deref().unwrap_or_default())
                ),
            };
            let mut text = match &summary.output {
                Some(format) => crate::rules::answer_json(format, text.trim_end()),
                None => text.trim_end().to_owned(),
            };
            // The earliest stop sequence in the text cuts it (the sequence itself is not sent).
            if let Some((at, stop)) = summary
                .stop
                .iter()
                .filter(|s| !s.is_empty())
                .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
                .min_by_key(|(at, _)| *at)
            {
                stop_sequence = Some(stop.clone());
                text.truncate(at);
            }
            let pieces = split_words(&text);
            match directives.events {
                Some(n) => regroup(pieces, n),
                None => pieces,
            }
        } else {
            Vec::new()
        };
        let finish = if !tool_calls.is_empty() {
            Finish::ToolCalls
        } else if directives.max_tokens {
            Finish::Length
        } else if stop_sequence.is_some() {
            Finish::StopSequence
        } else {
            Finish::Stop
        };
        if finish != Finish::StopSequence {
            stop_sequence = None;
        }
        let thinking = directives.thinking.then_some(THINKING_TEXT);
        let output_tokens =
            (pieces.len() + 2 * tool_calls.len() + usize::from(thinking.is_some())) as u64;
        Plan {
            id: state.next_id(),
            model: summary.model,
            pieces,
            tool_calls,
            finish,
            stop_sequence,
            thinking,
            input_tokens: body_len as u64 / 4 + 1,
            output_tokens,
            include_usage: summary.include_usage,
        }
    }

    /// The whole reply text.
    pub(crate) fn text(&self) -> String {
        self.pieces.concat()
    }

    pub(crate) fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

fn plan_tool_calls(summary: &Summary, directives: &Directives, state: &State) -> Vec<ToolCall> {
    if summary.tool_result.is_some() || summary.tools.is_empty() || directives.max_tokens {
        return Vec::new();
    }
    // A `tool=NAME` directive picks a defined tool unless the tool choice forces another one.
    let named = directives
        .tool_name
        .as_deref()
        .filter(|name| summary.tools.iter().any(|t| t == name))
        .filter(|name| match &summary.tool_choice {
            ToolChoice::Forced(Some(forced)) => forced == name,
            _ => true,
        });
    let names: Vec<&str> = match (&summary.tool_choice, named) {
        (ToolChoice::None, _) => return Vec::new(),
        (_, Some(name)) => vec![name],
        (ToolChoice::Forced(Some(name)), None) => vec![name.as_str()],
        (ToolChoice::Forced(None) | ToolChoice::Auto, None) => {
            summary.tools.iter().map(String::as_str).collect()
        }
    };
    let count = match (directives.tool_calls(), &summary.tool_choice) {
        (0, ToolChoice::Forced(_)) => 1,
        (n, _) => n,
    };
    (0..count)
        .map(|index| {
            let name = names[index % names.len()];
            let arguments = match (&directives.tool_args, named) {
                (Some(exact), _) => exact.clone(),
                (None, Some(_)) => arguments_for_schema(
                    summary.tool_schemas.get(name),
                    directives.tool_arg.as_deref().unwrap_or(DEFAULT_ARG),
                )
                .to_string(),
                (None, None) => format!(r#"{{"query":"mock","n":{index}}}"#),
            };
            ToolCall {
                id: state.next_tool_id(),
                name: name.to_owned(),
                index,
                arguments,
            }
        })
        .collect()
}

/// The string given to a named tool's string parameters when `tool_arg` is not set.
const DEFAULT_ARG: &str = "mock";

/// Arguments that satisfy a JSON schema's required parameters: strings get `text`, arrays of
/// strings get `text` split on whitespace (a command line as an argv), numbers their `minimum` or
/// 0, booleans `false`, objects are filled recursively, and an `enum` or `const` its first value.
/// Optional parameters are left out; with no schema the arguments are `{}`.
pub(crate) fn arguments_for_schema(schema: Option<&Value>, text: &str) -> Value {
    let mut args = Map::new();
    let Some(schema) = schema else {
        return Value::Object(args);
    };
    let properties = schema.get("properties").and_then(Value::as_object);
    let required = schema.get("required").and_then(Value::as_array);
    for name in required.into_iter().flatten().filter_map(Value::as_str) {
        let property = properties.and_then(|p| p.get(name));
        args.insert(name.to_owned(), value_for_schema(property, text));
    }
    Value::Object(args)
}

fn value_for_schema(schema: Option<&Value>, text: &str) -> Value {
    let Some(schema) = schema else {
        return Value::String(text.to_owned());
    };
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    // `type` may be a list (`["string", "null"]`); the first non-null one counts.
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => Some(kind.as_str()),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null"),
        _ => None,
    };
    match kind {
        Some("integer" | "number") => schema
            .get("minimum")
            .cloned()
            .unwrap_or_else(|| Value::from(0)),
        Some("boolean") => Value::Bool(false),
        Some("object") => arguments_for_schema(Some(schema), text),
        Some("array") => {
            let items = schema.get("items");
            let item_kind = items.and_then(|i| i.get("type")).and_then(Value::as_str);
            if matches!(item_kind, None | Some("string")) {
                text.split_whitespace()
                    .map(|w| Value::String(w.to_owned()))
                    .collect()
            } else {
                Value::Array(Vec::new())
            }
        }
        Some("null") => Value::Null,
        _ => Value::String(text.to_owned()),
    }
}

/// The first [`ECHO_CHARS`] characters of `text`.
fn echo(text: &str) -> &str {
    match text.char_indices().nth(ECHO_CHARS) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// Splits before every space that follows a non-space, like a word tokenizer: the pieces
/// concatenate back to `text`.
pub(crate) fn split_words(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if space && !prev_space && i > start {
            pieces.push(text[start..i].to_owned());
            start = i;
        }
        prev_space = space;
    }
    if start < text.len() {
        pieces.push(text[start..].to_owned());
    }
    pieces
}

/// Exactly `n` pieces: merges neighbours evenly when there are too many, appends filler when
/// there are too few.
pub(crate) fn regroup(pieces: Vec<String>, n: usize) -> Vec<String> {
    let len = pieces.len();
    if n == 0 {
        return Vec::new();
    }
    if n >= len {
        let mut pieces = pieces;
        pieces.resize(n, FILLER.to_owned());
        return pieces;
    }
    let mut groups = vec![String::new(); n];
    for (j, piece) in pieces.into_iter().enumerate() {
        groups[j * n / len].push_str(&piece);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MockConfig;

    fn summary(text: &str) -> Summary {
        Summary {
            model: "m".into(),
            user_text: Some(text.into()),
            ..Summary::default()
        }
    }

    #[test]
    fn words_round_trip() {
        let pieces = split_words("Hello from  octo-mock. You said: hi");
        assert_eq!(
            pieces,
            ["Hello", " from", "  octo-mock.", " You", " said:", " hi"]
        );
        assert_eq!(pieces.concat(), "Hello from  octo-mock. You said: hi");
        assert!(split_words("").is_empty());
    }

    #[test]
    fn regroup_is_exact() {
        let pieces = split_words("a b c d e");
        let three = regroup(pieces.clone(), 3);
        assert_eq!(three.len(), 3);
        assert_eq!(three.concat(), "a b c d e");
        let seven = regroup(pieces.clone(), 7);
        assert_eq!(seven.len(), 7);
        assert_eq!(seven.concat(), "a b c d e mock mock");
        assert!(regroup(pieces, 0).is_empty());
    }

    #[test]
    fn text_reply_echoes_64_chars() {
        let state = State::new(MockConfig::default());
        let long = "é".repeat(100);
        let plan = Plan::new(summary(&long), &Directives::default(), 40, &state);
        assert_eq!(
            plan.text(),
            format!("Hello from octo-mock. You said: {}", "é".repeat(64))
        );
        assert_eq!(plan.finish, Finish::Stop);
        assert_eq!(plan.input_tokens, 11);
        assert_eq!(plan.output_tokens, plan.pieces.len() as u64);
        assert_eq!(plan.id, 1);
        assert_eq!(
            Plan::new(summary("x"), &Directives::default(), 0, &state).id,
            2
        );
    }

    #[test]
    fn tool_calls_cycle_and_respect_choice() {
        let state = State::new(MockConfig::default());
        let mut s = summary("x");
        s.tools = vec!["a".into(), "b".into()];
        let d = Directives::parse(&http::HeaderMap::new(), b"[mock:tools=3]");
        let plan = Plan::new(s.clone(), &d, 0, &state);
        let names: Vec<_> = plan.tool_calls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "a"]);
        assert_eq!(plan.tool_calls[2].arguments, r#"{"query":"mock","n":2}"#);
        assert_eq!(plan.tool_calls[2].id, 3);
        assert_eq!(plan.finish, Finish::ToolCalls);
        assert_eq!(plan.output_tokens, 6);
        let (a, b) = plan.tool_calls[0].fragments();
        assert!(!a.is_empty() && !b.is_empty());

        // Forced by tool choice, no directive: one call to the named tool.
        s.tool_choice = ToolChoice::Forced(Some("b".into()));
        let plan = Plan::new(s.clone(), &Directives::default(), 0, &state);
        assert_eq!(plan.tool_calls.len(), 1);
        assert_eq!(plan.tool_calls[0].name, "b");

        // `none` and a trailing tool result both answer with text.
        s.tool_choice = ToolChoice::None;
        assert!(Plan::new(s.clone(), &d, 0, &state).tool_calls.is_empty());
        s.tool_choice = ToolChoice::Auto;
        s.tool_result = Some("sunny".into());
        let plan = Plan::new(s, &d, 0, &state);
        assert_eq!(plan.text(), "Hello from octo-mock. Tool result: sunny");
        assert_eq!(plan.finish, Finish::Stop);
    }

    #[test]
    fn tool_by_name_gets_arguments_from_its_schema() {
        let state = State::new(MockConfig::default());
        let mut s = summary("x");
        s.tools = vec!["Task".into(), "Bash".into(), "shell".into()];
        s.tool_schemas.insert(
            "Bash".into(),
            serde_json::json!({
                "type": "object",
                "properties": {
                    "command": {"type": "string"},
                    "timeout": {"type": "number"},
                    "mode": {"enum": ["fast", "slow"]},
                    "env": {"type": "object", "properties": {"k": {"type": ["string", "null"]}}, "required": ["k"]},
                    "limit": {"type": "integer", "minimum": 1},
                    "bg": {"type": "boolean"}
                },
                "required": ["command", "mode", "env", "limit", "bg"]
            }),
        );
        s.tool_schemas.insert(
            "shell".into(),
            serde_json::json!({"properties": {"command": {"type": "array", "items": {"type": "string"}}}, "required": ["command"]}),
        );
        let d = Directives::parse(
            &http::HeaderMap::new(),
            b"[mock:tool=Bash] [mock:tool_arg=echo hi]",
        );
        let plan = Plan::new(s.clone(), &d, 0, &state);
        assert_eq!(plan.tool_calls.len(), 1);
        assert_eq!(plan.tool_calls[0].name, "Bash");
        assert_eq!(
            plan.tool_calls[0].arguments_json(),
            serde_json::json!({"command": "echo hi", "mode": "fast", "env": {"k": "echo hi"}, "limit": 1, "bg": false})
        );
        assert_eq!(plan.finish, Finish::ToolCalls);

        // Arrays of strings get an argv; the default text is "mock"; no schema gives `{}`.
        let d = Directives::parse(&http::HeaderMap::new(), b"[mock:tool=shell]");
        let plan = Plan::new(s.clone(), &d, 0, &state);
        assert_eq!(plan.tool_calls[0].arguments, r#"{"command":["mock"]}"#);
        let d = Directives::parse(&http::HeaderMap::new(), b"[mock:tool=Task]");
        assert_eq!(
            Plan::new(s.clone(), &d, 0, &state).tool_calls[0].arguments,
            "{}"
        );

        // An undefined name falls back to the first tool with the usual arguments.
        let d = Directives::parse(&http::HeaderMap::new(), b"[mock:tool=Nope]");
        let plan = Plan::new(s.clone(), &d, 0, &state);
        assert_eq!(plan.tool_calls[0].name, "Task");
        assert_eq!(plan.tool_calls[0].arguments, r#"{"query":"mock","n":0}"#);

        // `tool_args` gives the exact arguments, multi-line strings included.
        let d = Directives::parse(
            &http::HeaderMap::new(),
            // {"command":"printf a\nb"}
            b"[mock:tool=Bash] [mock:tool_arg=ignored] [mock:tool_args=eyJjb21tYW5kIjoicHJpbnRmIGFcbmIifQ==]",
        );
        let plan = Plan::new(s.clone(), &d, 0, &state);
        assert_eq!(plan.tool_calls[0].name, "Bash");
        assert_eq!(
            plan.tool_calls[0].arguments_json(),
            serde_json::json!({"command": "printf a\nb"})
        );

        // A trailing tool result still ends the loop with text.
        s.tool_result = Some("hi".into());
        let d = Directives::parse(&http::HeaderMap::new(), b"[mock:tool=Bash]");
        assert!(Plan::new(s, &d, 0, &state).tool_calls.is_empty());
    }

    #[test]
    fn stop_sequences_cut_the_text_at_the_earliest_match() {
        let state = State::new(MockConfig::default());
        let mut s = summary("cut here|STOP|never shown, END");
        s.stop = vec!["END".into(), String::new(), "|STOP|".into()];
        let plan = Plan::new(s.clone(), &Directives::default(), 0, &state);
        assert_eq!(plan.text(), "Hello from octo-mock. You said: cut here");
        assert_eq!(plan.finish, Finish::StopSequence);
        assert_eq!(plan.stop_sequence.as_deref(), Some("|STOP|"));
        // No match: a normal stop; `max_tokens` wins over a match.
        s.stop = vec!["absent".into()];
        let plan = Plan::new(s.clone(), &Directives::default(), 0, &state);
        assert_eq!((plan.finish, plan.stop_sequence), (Finish::Stop, None));
        s.stop = vec!["|STOP|".into()];
        let d = Directives::parse(&http::HeaderMap::new(), b"[mock:max_tokens]");
        let plan = Plan::new(s, &d, 0, &state);
        assert_eq!((plan.finish, plan.stop_sequence), (Finish::Length, None));
    }

    #[test]
    fn thinking_directive_adds_reasoning() {
        let state = State::new(MockConfig::default());
        let d = Directives::parse(&http::HeaderMap::new(), b"[mock:thinking]");
        let plan = Plan::new(summary("x"), &d, 0, &state);
        assert_eq!(plan.thinking, Some(THINKING_TEXT));
        assert_eq!(plan.output_tokens, plan.pieces.len() as u64 + 1);
        let plan = Plan::new(summary("x"), &Directives::default(), 0, &state);
        assert_eq!(plan.thinking, None);
    }

    #[test]
    fn max_tokens_and_no_tools() {
        let state = State::new(MockConfig::default());
        let d = Directives::parse(&http::HeaderMap::new(), b"[mock:max_tokens] [mock:tool]");
        let plan = Plan::new(summary("x"), &d, 0, &state);
        assert_eq!(plan.finish, Finish::Length);
        assert!(plan.tool_calls.is_empty());
    }
}
