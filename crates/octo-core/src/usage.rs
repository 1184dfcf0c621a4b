//! Token usage in one canonical shape, read from and written to each protocol's convention.
//!
//! The four protocols count the same things differently:
//!
//! | canonical | OpenAI Chat | OpenAI Responses | Anthropic | Gemini |
//! |---|---|---|---|---|
//! | [`input_tokens`](Usage::input_tokens) (uncached) | `prompt_tokens − cached − cache_write` | `input_tokens − cached − cache_write` | `input_tokens` | `promptTokenCount + toolUsePromptTokenCount − cachedContentTokenCount` |
//! | [`cache_read_tokens`](Usage::cache_read_tokens) | `prompt_tokens_details.cached_tokens` | `input_tokens_details.cached_tokens` | `cache_read_input_tokens` | `cachedContentTokenCount` |
//! | [`cache_write_tokens`](Usage::cache_write_tokens) | `prompt_tokens_details.cache_write_tokens` | `input_tokens_details.cache_write_tokens` | `cache_creation_input_tokens` | – |
//! | [`output_tokens`](Usage::output_tokens) (incl. reasoning) | `completion_tokens` | `output_tokens` | `output_tokens` | `candidatesTokenCount + thoughtsTokenCount` |
//! | [`reasoning_tokens`](Usage::reasoning_tokens) | `completion_tokens_details.reasoning_tokens` | `output_tokens_details.reasoning_tokens` | `output_tokens_details.thinking_tokens` | `thoughtsTokenCount` |
//!
//! OpenAI and Gemini count cached tokens *inside* the prompt total; Anthropic counts them *beside*
//! `input_tokens`. Converting one into the other subtracts or adds once, never twice. Streams report
//! cumulative snapshots: a later snapshot replaces an earlier one ([`Usage::merge_snapshot`]); it is
//! never added to it.
//!
//! ```
//! use octo_core::usage::Usage;
//! use serde_json::json;
//!
//! let u = Usage::from_openai_chat(&json!({
//!     "prompt_tokens": 100, "completion_tokens": 20,
//!     "prompt_tokens_details": {"cached_tokens": 60},
//!     "completion_tokens_details": {"reasoning_tokens": 5}
//! })).unwrap();
//! assert_eq!((u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens), (40, 60, 20, 5));
//! let anthropic = u.to_anthropic();
//! assert_eq!(anthropic["input_tokens"], 40);
//! assert_eq!(anthropic["cache_read_input_tokens"], 60);
//! assert_eq!(u.total_input_tokens(), 100);
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Token counts of one exchange, normalised. See the [module docs](self) for the mapping.
///
/// Its JSON form (`{"input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens",
/// "reasoning_tokens"}`) is the request log's `usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens that were neither read from nor written to a prompt cache.
    pub input_tokens: u64,
    /// Input tokens read from a prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to a prompt cache.
    pub cache_write_tokens: u64,
    /// Output tokens, reasoning included.
    pub output_tokens: u64,
    /// The part of `output_tokens` spent on reasoning.
    pub reasoning_tokens: u64,
}

impl Usage {
    /// All input tokens: uncached, cache reads and cache writes.
    pub fn total_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cache_read_tokens)
            .saturating_add(self.cache_write_tokens)
    }

    /// Input and output tokens.
    pub fn total_tokens(&self) -> u64 {
        self.total_input_tokens().saturating_add(self.output_tokens)
    }

    /// Reads an OpenAI Chat `usage` object; `None` when `v` is not an object.
    pub fn from_openai_chat(v: &Value) -> Option<Usage> {
        ChatUsage::deserialize(v).ok().map(Usage::from)
    }

    /// Reads an OpenAI Chat `usage` object from its JSON text: the answer of
    /// [`Usage::from_openai_chat`] on the parsed value, without building the value when the
    /// text is an object of the expected shape (the upstream client reads every answer's usage).
    ///
    /// ```
    /// use octo_core::usage::Usage;
    ///
    /// let u = Usage::from_openai_chat_json(r#"{"prompt_tokens":3,"completion_tokens":2}"#).unwrap();
    /// assert_eq!((u.input_tokens, u.output_tokens), (3, 2));
    /// assert!(Usage::from_openai_chat_json("not json").is_none());
    /// ```
    pub fn from_openai_chat_json(json: &str) -> Option<Usage> {
        match serde_json::from_str::<ChatUsage>(json) {
            Ok(u) if json.trim_start().starts_with('{') => Some(Usage::from(u)),
            // Another shape, or duplicate members (the value keeps the last): as the value reads.
            _ => Self::from_openai_chat(&serde_json::from_str::<Value>(json).ok()?),
        }
    }

    /// Reads an OpenAI Responses `usage` object.
    pub fn from_openai_responses(v: &Value) -> Option<Usage> {
        ResponsesUsage::deserialize(v).ok().map(Usage::from)
    }

    /// Reads an Anthropic `usage` object.
    pub fn from_anthropic(v: &Value) -> Option<Usage> {
        Self::from_anthropic_snapshot(v).map(|(u, _)| u)
    }

    /// Reads an Anthropic `usage` object (also the partial one in a stream's `message_delta`),
    /// with the fields it carried, for [`Usage::merge_snapshot`].
    pub fn from_anthropic_snapshot(v: &Value) -> Option<(Usage, UsageFields)> {
        let u = AnthropicUsage::deserialize(v).ok()?;
        let present = u.present();
        Some((Usage::from(u), present))
    }

    /// Reads a Gemini `usageMetadata` object (camelCase or snake_case keys).
    pub fn from_gemini(v: &Value) -> Option<Usage> {
        GeminiUsage::deserialize(v).ok().map(Usage::from)
    }

    /// An OpenAI Chat `usage` object.
    pub fn to_openai_chat(&self) -> Value {
        let mut prompt_details = json!({"cached_tokens": self.cache_read_tokens});
        if self.cache_write_tokens > 0 {
            prompt_details["cache_write_tokens"] = self.cache_write_tokens.into();
        }
        json!({
            "prompt_tokens": self.total_input_tokens(),
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens(),
            "prompt_tokens_details": prompt_details,
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        })
    }

    /// An OpenAI Responses `usage` object.
    pub fn to_openai_responses(&self) -> Value {
        let mut input_details = json!({"cached_tokens": self.cache_read_tokens});
        if self.cache_write_tokens > 0 {
            input_details["cache_write_tokens"] = self.cache_write_tokens.into();
        }
        json!({
            "input_tokens": self.total_input_tokens(),
            "input_tokens_details": input_details,
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.total_tokens(),
        })
    }

    /// An Anthropic `usage` object; the cache fields only when non-zero. Anthropic has no standard
    /// field for reasoning tokens (they are inside `output_tokens`).
    pub fn to_anthropic(&self) -> Value {
        let mut m = Map::new();
        m.insert("input_tokens".into(), self.input_tokens.into());
        m.insert("output_tokens".into(), self.output_tokens.into());
        if self.cache_write_tokens > 0 {
            m.insert(
                "cache_creation_input_tokens".into(),
                self.cache_write_tokens.into(),
            );
        }
        if self.cache_read_tokens > 0 {
            m.insert(
                "cache_read_input_tokens".into(),
                self.cache_read_tokens.into(),
            );
        }
        Value::Object(m)
    }

    /// A Gemini `usageMetadata` object; cache and thought counts only when non-zero.
    pub fn to_gemini(&self) -> Value {
        let mut m = Map::new();
        m.insert("promptTokenCount".into(), self.total_input_tokens().into());
        m.insert(
            "candidatesTokenCount".into(),
            self.output_tokens
                .saturating_sub(self.reasoning_tokens)
                .into(),
        );
        m.insert("totalTokenCount".into(), self.total_tokens().into());
        if self.cache_read_tokens > 0 {
            m.insert(
                "cachedContentTokenCount".into(),
                self.cache_read_tokens.into(),
            );
        }
        if self.reasoning_tokens > 0 {
            m.insert("thoughtsTokenCount".into(), self.reasoning_tokens.into());
        }
        Value::Object(m)
    }

    /// Applies a later cumulative snapshot: every field the snapshot carries replaces ours; fields it
    /// does not carry are kept. Anthropic's `message_delta` repeats only some fields, so
    /// `present` says which ones it had.
    pub fn merge_snapshot(&mut self, later: &Usage, present: UsageFields) {
        if present.input {
            self.input_tokens = later.input_tokens;
        }
        if present.cache_read {
            self.cache_read_tokens = later.cache_read_tokens;
        }
        if present.cache_write {
            self.cache_write_tokens = later.cache_write_tokens;
        }
        if present.output {
            self.output_tokens = later.output_tokens;
        }
        if present.reasoning {
            self.reasoning_tokens = later.reasoning_tokens;
        }
    }
}

/// Which fields a usage snapshot carried (see [`Usage::merge_snapshot`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageFields {
    /// Uncached input.
    pub input: bool,
    /// Cache reads.
    pub cache_read: bool,
    /// Cache writes.
    pub cache_write: bool,
    /// Output.
    pub output: bool,
    /// Reasoning.
    pub reasoning: bool,
}

impl UsageFields {
    /// Every field.
    pub const ALL: UsageFields = UsageFields {
        input: true,
        cache_read: true,
        cache_write: true,
        output: true,
        reasoning: true,
    };
}

fn sub(total: u64, a: u64, b: u64) -> u64 {
    total.saturating_sub(a).saturating_sub(b)
}

/// OpenAI Chat `usage`, as it arrives: the members [`Usage::from_openai_chat`] reads, every one
/// optional, nothing else checked. For decoders that read an answer or a stream chunk typed and
/// want the same [`Usage`] the document reading gives.
///
/// ```
/// use octo_core::usage::Usage;
/// use octo_core::usage::ChatUsage;
///
/// let u: ChatUsage = serde_json::from_str(
///     r#"{"prompt_tokens": 10, "completion_tokens": 4,
///         "prompt_tokens_details": {"cached_tokens": 6}}"#,
/// )
/// .unwrap();
/// let usage = Usage::from(u);
/// assert_eq!((usage.input_tokens, usage.cache_read_tokens, usage.output_tokens), (4, 6, 4));
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChatUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<ChatPromptDetails>,
    completion_tokens_details: Option<ChatCompletionDetails>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ChatPromptDetails {
    cached_tokens: Option<u64>,
    cache_write_tokens: Option<u64>,
    cache_creation_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ChatCompletionDetails {
    reasoning_tokens: Option<u64>,
}

impl From<ChatUsage> for Usage {
    fn from(u: ChatUsage) -> Usage {
        let (read, write) = u.prompt_tokens_details.map_or((0, 0), |d| {
            (
                d.cached_tokens.unwrap_or(0),
                d.cache_write_tokens
                    .or(d.cache_creation_tokens)
                    .unwrap_or(0),
            )
        });
        Usage {
            input_tokens: sub(u.prompt_tokens.unwrap_or(0), read, write),
            cache_read_tokens: read,
            cache_write_tokens: write,
            output_tokens: u.completion_tokens.unwrap_or(0),
            reasoning_tokens: u
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

/// OpenAI Responses `usage`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ResponsesUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<ChatPromptDetails>,
    output_tokens_details: Option<ChatCompletionDetails>,
}

impl From<ResponsesUsage> for Usage {
    fn from(u: ResponsesUsage) -> Usage {
        let (read, write) = u.input_tokens_details.map_or((0, 0), |d| {
            (
                d.cached_tokens.unwrap_or(0),
                d.cache_write_tokens
                    .or(d.cache_creation_tokens)
                    .unwrap_or(0),
            )
        });
        Usage {
            input_tokens: sub(u.input_tokens.unwrap_or(0), read, write),
            cache_read_tokens: read,
            cache_write_tokens: write,
            output_tokens: u.output_tokens.unwrap_or(0),
            reasoning_tokens: u
                .output_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

/// Anthropic `usage` (also the partial one in `message_delta`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AnthropicUsage {
    pub(crate) input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
    pub(crate) cache_creation_input_tokens: Option<u64>,
    pub(crate) cache_read_input_tokens: Option<u64>,
    output_tokens_details: Option<AnthropicOutputDetails>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AnthropicOutputDetails {
    thinking_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// The fields this snapshot carried.
    pub(crate) fn present(&self) -> UsageFields {
        UsageFields {
            input: self.input_tokens.is_some(),
            cache_read: self.cache_read_input_tokens.is_some(),
            cache_write: self.cache_creation_input_tokens.is_some(),
            output: self.output_tokens.is_some(),
            reasoning: self
                .output_tokens_details
                .as_ref()
                .is_some_and(|d| d.thinking_tokens.is_some()),
        }
    }
}

impl From<AnthropicUsage> for Usage {
    fn from(u: AnthropicUsage) -> Usage {
        Usage {
            input_tokens: u.input_tokens.unwrap_or(0),
            cache_read_tokens: u.cache_read_input_tokens.unwrap_or(0),
            cache_write_tokens: u.cache_creation_input_tokens.unwrap_or(0),
            output_tokens: u.output_tokens.unwrap_or(0),
            reasoning_tokens: u
                .output_tokens_details
                .and_then(|d| d.thinking_tokens)
                .unwrap_or(0),
        }
    }
}

/// Gemini `usageMetadata`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct GeminiUsage {
    #[serde(alias = "prompt_token_count")]
    #[serde(rename = "promptTokenCount")]
    prompt: Option<u64>,
    #[serde(alias = "tool_use_prompt_token_count")]
    #[serde(rename = "toolUsePromptTokenCount")]
    tool_use_prompt: Option<u64>,
    #[serde(alias = "cached_content_token_count")]
    #[serde(rename = "cachedContentTokenCount")]
    cached: Option<u64>,
    #[serde(alias = "candidates_token_count")]
    #[serde(rename = "candidatesTokenCount")]
    candidates: Option<u64>,
    #[serde(alias = "thoughts_token_count")]
    #[serde(rename = "thoughtsTokenCount")]
    thoughts: Option<u64>,
}

impl From<GeminiUsage> for Usage {
    fn from(u: GeminiUsage) -> Usage {
        let prompt = u
            .prompt
            .unwrap_or(0)
            .saturating_add(u.tool_use_prompt.unwrap_or(0));
        let cached = u.cached.unwrap_or(0);
        let thoughts = u.thoughts.unwrap_or(0);
        Usage {
            input_tokens: prompt.saturating_sub(cached),
            cache_read_tokens: cached,
            cache_write_tokens: 0,
            output_tokens: u.candidates.unwrap_or(0).saturating_add(thoughts),
            reasoning_tokens: thoughts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_saturate_on_absurd_upstream_counts() {
        let u = Usage {
            input_tokens: u64::MAX,
            cache_read_tokens: 5,
            output_tokens: u64::MAX,
            ..Usage::default()
        };
        assert_eq!(u.total_input_tokens(), u64::MAX);
        assert_eq!(u.total_tokens(), u64::MAX);
    }

    fn sample() -> Usage {
        Usage {
            input_tokens: 30,
            cache_read_tokens: 60,
            cache_write_tokens: 10,
            output_tokens: 25,
            reasoning_tokens: 5,
        }
    }

    #[test]
    fn every_protocol_round_trips() {
        let u = sample();
        assert_eq!(Usage::from_openai_chat(&u.to_openai_chat()), Some(u));
        assert_eq!(
            Usage::from_openai_responses(&u.to_openai_responses()),
            Some(u)
        );
        // Anthropic has no standard reasoning count: it stays inside the output tokens.
        let anthropic = Usage {
            reasoning_tokens: 0,
            ..u
        };
        assert_eq!(Usage::from_anthropic(&u.to_anthropic()), Some(anthropic));
        // Gemini has no cache-write count: writes become plain input.
        let g = Usage::from_gemini(&u.to_gemini()).unwrap();
        assert_eq!(g.total_input_tokens(), u.total_input_tokens());
        assert_eq!(g.cache_read_tokens, 60);
        assert_eq!((g.output_tokens, g.reasoning_tokens), (25, 5));
    }

    #[test]
    fn cached_tokens_are_never_counted_twice() {
        let u = Usage::from_anthropic(&json!({
            "input_tokens": 5, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 5,
            "output_tokens": 7
        }))
        .unwrap();
        let chat = u.to_openai_chat();
        assert_eq!(chat["prompt_tokens"], 100);
        assert_eq!(chat["prompt_tokens_details"]["cached_tokens"], 90);
        assert_eq!(chat["total_tokens"], 107);
        let g = Usage::from_gemini(&json!({
            "promptTokenCount": 100, "cachedContentTokenCount": 40,
            "candidatesTokenCount": 10, "thoughtsTokenCount": 6, "toolUsePromptTokenCount": 4
        }))
        .unwrap();
        assert_eq!(g.input_tokens, 64);
        assert_eq!(g.output_tokens, 16);
        assert_eq!(g.to_anthropic()["input_tokens"], 64);
        // Inconsistent upstream numbers saturate instead of wrapping.
        let odd = Usage::from_openai_chat(
            &json!({"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 5}}),
        )
        .unwrap();
        assert_eq!(odd.input_tokens, 0);
    }

    #[test]
    fn snapshots_overwrite_only_what_they_carry() {
        let mut u = Usage {
            input_tokens: 10,
            cache_read_tokens: 3,
            output_tokens: 1,
            ..Usage::default()
        };
        let delta: AnthropicUsage = serde_json::from_value(json!({"output_tokens": 40})).unwrap();
        let present = delta.present();
        u.merge_snapshot(&Usage::from(delta), present);
        assert_eq!(
            u,
            Usage {
                input_tokens: 10,
                cache_read_tokens: 3,
                output_tokens: 40,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn non_objects_are_none_and_snake_case_gemini_is_read() {
        assert_eq!(Usage::from_openai_chat(&json!(3)), None);
        let g = Usage::from_gemini(&json!({"prompt_token_count": 4, "candidates_token_count": 2}))
            .unwrap();
        assert_eq!((g.input_tokens, g.output_tokens), (4, 2));
    }
}
