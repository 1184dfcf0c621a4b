//! Request features for rules: the prompt's text length and prefix/suffix hashes.

use serde_json::Value;

/// FNV-1a, 32 bits, over the concatenation of `parts`.
pub(crate) fn fnv1a32(parts: &[&[u8]]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for part in parts {
        for &b in *part {
            hash ^= u32::from(b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    hash
}

/// The text the features read from a request body.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct MessageTexts {
    /// The text of the first message, if there is a message.
    pub(crate) first: Option<String>,
    /// Characters (Unicode scalar values) of all message text.
    pub(crate) total_chars: usize,
}

/// Reads message text from a chat request of any of the four protocols.
pub(crate) fn message_texts(body: &Value) -> MessageTexts {
    let mut out = MessageTexts::default();
    let mut add = |text: String| {
        out.total_chars += text.chars().count();
        if out.first.is_none() {
            out.first = Some(text);
        }
    };
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        // OpenAI Chat, Anthropic Messages.
        for m in messages {
            add(content_text(m.get("content")));
        }
    } else if let Some(input) = body.get("input") {
        // OpenAI Responses: a string, or items (messages with content; other items carry no text).
        match input {
            Value::String(s) => add(s.clone()),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(s) => add(s.clone()),
                        Value::Object(o) if o.contains_key("content") => {
                            add(content_text(o.get("content")));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    } else if let Some(contents) = body.get("contents").and_then(Value::as_array) {
        // Gemini.
        for c in contents {
            add(content_text(c.get("parts")));
        }
    }
    out
}

/// A message's text: a string as is, else the concatenated `text` of its text parts.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                let is_text = match part.get("type").and_then(Value::as_str) {
                    None => true,
                    Some(t) => matches!(t, "text" | "input_text" | "output_text"),
                };
                if let (true, Some(t)) = (is_text, part.get("text").and_then(Value::as_str)) {
                    text.push_str(t);
                }
            }
            text
        }
        _ => String::new(),
    }
}

/// `%08x` of FNV-1a-32 over `model` followed by the first `n` characters of `text.trim()`.
pub(crate) fn prefix_hash(model: &str, text: &str, n: usize) -> String {
    let text = text.trim();
    let end = text.char_indices().nth(n).map_or(text.len(), |(i, _)| i);
    format!(
        "{:08x}",
        fnv1a32(&[model.as_bytes(), &text.as_bytes()[..end]])
    )
}

/// `%08x` of FNV-1a-32 over `model` followed by the last `n` characters of `text.trim()`.
pub(crate) fn suffix_hash(model: &str, text: &str, n: usize) -> String {
    let text = text.trim();
    let start = if n == 0 {
        text.len()
    } else {
        text.char_indices().rev().nth(n - 1).map_or(0, |(i, _)| i)
    };
    format!(
        "{:08x}",
        fnv1a32(&[model.as_bytes(), &text.as_bytes()[start..]])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEXT: &str = "who are you? I am testing the rule engine.";

    #[test]
    fn reference_values_from_octollm() {
        assert_eq!(prefix_hash("glm-4.7", TEXT, 20), "c6eec1e7");
        assert_eq!(suffix_hash("glm-4.7", TEXT, 20), "efc888e0");
        assert_eq!(
            format!("{:08x}", fnv1a32(&[b"glm-4.7who are you? I am te"])),
            "c6eec1e7"
        );
        let body = json!({"model": "glm-4.7", "messages": [{"role": "user", "content": TEXT}]});
        let t = message_texts(&body);
        assert_eq!(t.total_chars, 42);
        assert_eq!(t.first.as_deref(), Some(TEXT));
    }

    #[test]
    fn fnv_known_vectors() {
        assert_eq!(fnv1a32(&[b""]), 0x811c_9dc5);
        assert_eq!(fnv1a32(&[b"a"]), 0xe40c_292c);
        assert_eq!(fnv1a32(&[b"foo", b"bar"]), fnv1a32(&[b"foobar"]));
    }

    #[test]
    fn short_text_and_multibyte_characters() {
        // Shorter than N: the whole trimmed text.
        assert_eq!(prefix_hash("m", "  hé  ", 20), prefix_hash("m", "hé", 2));
        assert_eq!(suffix_hash("m", "  hé  ", 20), prefix_hash("m", "hé", 20));
        // N counts characters, not bytes.
        assert_eq!(
            suffix_hash("m", "aéü", 2),
            format!("{:08x}", fnv1a32(&[b"m", "éü".as_bytes()]))
        );
        assert_eq!(
            prefix_hash("m", "aéü", 2),
            format!("{:08x}", fnv1a32(&[b"m", "aé".as_bytes()]))
        );
    }

    #[test]
    fn text_of_each_protocol() {
        let parts = json!({"messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [
                {"type": "text", "text": "ab"},
                {"type": "image_url", "image_url": {"url": "data:xyz"}},
                {"type": "text", "text": "cd"}
            ]}
        ]});
        let t = message_texts(&parts);
        assert_eq!(t.first.as_deref(), Some("sys"));
        assert_eq!(t.total_chars, 7);
        let responses = json!({"input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hello"}]},
            {"type": "function_call_output", "output": "ignored"}
        ]});
        assert_eq!(message_texts(&responses).first.as_deref(), Some("hello"));
        assert_eq!(message_texts(&json!({"input": "hi"})).total_chars, 2);
        let gemini =
            json!({"contents": [{"role": "user", "parts": [{"text": "x"}, {"inlineData": {}}]}]});
        assert_eq!(message_texts(&gemini).first.as_deref(), Some("x"));
        assert_eq!(message_texts(&json!({})), MessageTexts::default());
    }
}
