//! Anthropic `POST /v1/messages/count_tokens` and Gemini `:countTokens`, answered by estimate.
//!
//! The gateway has no tokenizer for every upstream model, so it estimates: the characters of every
//! string in the request (message text, system prompt, tool definitions; not the model name and not
//! base64 `data`) divided by four, rounded up, plus four tokens per message for role framing. This
//! is the usual rule of thumb for English text with BPE tokenizers; expect it within about 20% for
//! prose, worse for code and non-Latin scripts. Clients use these counts to decide when to compact
//! a conversation, for which an estimate serves. Passing the call through to an upstream that
//! speaks the protocol is not done yet.

use std::collections::BTreeSet;

use async_trait::async_trait;
use octo_core::{ApiFormat, Body, Engine, Error, Request, Response};
use serde_json::{Value, json};

/// Answers token-count requests for the configured models.
#[derive(Debug)]
pub struct TokenCounter {
    models: BTreeSet<String>,
}

impl TokenCounter {
    /// Counts for `models`; other names get 404.
    pub fn new(models: impl IntoIterator<Item = String>) -> Self {
        TokenCounter {
            models: models.into_iter().collect(),
        }
    }
}

/// The estimate described in the [module docs](self).
pub fn estimate_tokens(body: &Value) -> u64 {
    fn walk(v: &Value, key: Option<&str>, chars: &mut u64, messages: &mut u64) {
        match v {
            Value::String(s)
                if !matches!(
                    key,
                    Some("model" | "data" | "signature" | "thoughtSignature")
                ) =>
            {
                *chars += s.chars().count() as u64;
            }
            Value::Array(items) => {
                if matches!(key, Some("messages" | "contents")) {
                    *messages += items.len() as u64;
                }
                for item in items {
                    walk(item, None, chars, messages);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    walk(item, Some(k), chars, messages);
                }
            }
            _ => {}
        }
    }
    let (mut chars, mut messages) = (0, 0);
    walk(body, None, &mut chars, &mut messages);
    chars.div_ceil(4) + 4 * messages
}

#[async_trait]
impl Engine for TokenCounter {
    async fn process(&self, mut req: Request) -> Result<Response, Error> {
        let model = req.peek()?.model.unwrap_or_default();
        if !self.models.contains(&model) {
            return Err(Error::not_found(format!(
                "model `{model}` is not configured on this gateway"
            ))
            .with_param("model")
            .with_code("model_not_found"));
        }
        let tokens = estimate_tokens(req.body.json()?);
        let body = match req.format {
            ApiFormat::GenerateContent => json!({"totalTokens": tokens}),
            _ => json!({"input_tokens": tokens}),
        };
        Ok(Response::json(200, Body::from_json(body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_from_text_and_messages() {
        let body = json!({"model": "m", "system": "abcd", "messages": [
            {"role": "user", "content": "abcdefgh"},
            {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "QUFBQUFBQUFB"}}]}
        ]});
        // "abcd" + "user" + "abcdefgh" + "user" + "image" + "base64" = 4+4+8+4+5+6 = 31 chars → 8, plus 2×4.
        assert_eq!(estimate_tokens(&body), 16);
    }

    #[tokio::test]
    async fn answers_in_each_protocol() {
        let counter = TokenCounter::new(["m".to_owned()]);
        let req = Request::post(
            ApiFormat::Messages,
            "/v1/messages/count_tokens",
            Body::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#),
        );
        let resp = counter.process(req).await.unwrap();
        let octo_core::ResponseBody::Full(mut b) = resp.body else {
            panic!()
        };
        assert!(b.json().unwrap()["input_tokens"].as_u64().unwrap() > 0);
        let mut req = Request::post(
            ApiFormat::GenerateContent,
            "/v1beta/models/m:countTokens",
            Body::from_static(br#"{"contents":[]}"#),
        );
        req.route.model = Some("m".into());
        let resp = counter.process(req).await.unwrap();
        let octo_core::ResponseBody::Full(mut b) = resp.body else {
            panic!()
        };
        assert_eq!(b.json().unwrap()["totalTokens"], 0);
        let req = Request::post(
            ApiFormat::Messages,
            "/v1/messages/count_tokens",
            Body::from_static(br#"{"model":"x"}"#),
        );
        assert_eq!(counter.process(req).await.unwrap_err().status(), 404);
    }
}
