//! Request bodies of about a given size, in the OpenAI Chat and Anthropic Messages shapes.

use bytes::Bytes;
use serde_json::{Value, json};

/// The question every payload ends with (as TensorZero's 162-byte benchmark body).
const QUESTION: &str = "Is Santa real?";

/// `{"role":"assistant","content":""},` without the content.
const MESSAGE_OVERHEAD: usize = 36;

/// Builds `make(messages)` padded with earlier turns to about `target_len` bytes.
fn padded(target_len: usize, question: &str, make: impl Fn(Vec<Value>) -> Value) -> Bytes {
    let q = json!({"role": "user", "content": question});
    let base = serde_json::to_vec(&make(vec![q.clone()]))
        .map(|v| v.len())
        .unwrap_or(0);
    let mut remaining = target_len.saturating_sub(base);
    let mut sizes = Vec::new();
    while remaining > MESSAGE_OVERHEAD {
        let n = (remaining - MESSAGE_OVERHEAD).min(4000);
        sizes.push(n);
        remaining -= n + MESSAGE_OVERHEAD;
    }
    let count = sizes.len();
    let mut messages: Vec<Value> = sizes
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            // Alternate roles so that the turn before the question is the assistant's.
            let role = if (count - i) % 2 == 1 {
                "assistant"
            } else {
                "user"
            };
            let text: String = "the quick brown fox jumps over the lazy dog. "
                .chars()
                .cycle()
                .take(n)
                .collect();
            json!({"role": role, "content": text})
        })
        .collect();
    messages.push(q);
    Bytes::from(serde_json::to_vec(&make(messages)).unwrap_or_default())
}

/// An OpenAI Chat request for `model` of about `target_len` bytes (the last message is the
/// question; earlier turns pad the body). `directives` (e.g. `[mock:events=64]`) are appended to
/// the question for the mock.
pub fn chat(target_len: usize, model: &str, stream: bool, directives: &str) -> Bytes {
    padded(
        target_len,
        &format!("{QUESTION}{directives}"),
        |messages| json!({"model": model, "messages": messages, "stream": stream}),
    )
}

/// An Anthropic Messages request for `model` of about `target_len` bytes.
pub fn anthropic(target_len: usize, model: &str, stream: bool, directives: &str) -> Bytes {
    padded(
        target_len,
        &format!("{QUESTION}{directives}"),
        |messages| json!({"model": model, "max_tokens": 256, "messages": messages, "stream": stream}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_close_to_the_target() {
        for target in [160usize, 1024, 4096, 100 * 1024, 1024 * 1024] {
            let body = chat(target, "bench-model", false, "");
            let len = body.len();
            assert!(
                len <= target + 8 && len + 40 + target / 100 >= target,
                "{target}: {len}"
            );
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["model"], "bench-model");
            let last = v["messages"].as_array().unwrap().last().unwrap().clone();
            assert_eq!(last["role"], "user");
        }
        let a = anthropic(4096, "m", true, "[mock:events=3]");
        let v: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["stream"], true);
        assert!(
            v["messages"].as_array().unwrap().last().unwrap()["content"]
                .as_str()
                .unwrap()
                .ends_with("[mock:events=3]")
        );
    }
}
