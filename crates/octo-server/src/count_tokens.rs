//! Anthropic `POST /v1/messages/count_tokens` and Gemini `:countTokens`: passed through to an
//! upstream that speaks the protocol, otherwise answered by estimate.
//!
//! **Passthrough.** The model's targets are tried in failover order (lowest `priority` first, then
//! list order); the first whose backend speaks the client's protocol (Anthropic Messages for
//! `count_tokens`, Gemini for `countTokens`) and is available (a key not resting, breakers closed)
//! gets the request, renamed to the target's upstream model, on the protocol's counting call
//! (`{messages path}/count_tokens`, `models/{model}:countTokens`). It goes out like any upstream
//! request of that backend: the backend's key (never the client's), the client's
//! `anthropic-version` / `anthropic-beta`, the backend's configured headers; backend rewrites are
//! not applied (they are written for generation requests, and the counting calls reject generation
//! fields such as `max_tokens`). The upstream's answer is returned as it came; an upstream error is
//! passed through with its status and body (already in the client's shape, the protocol being the
//! same). There is one attempt: no retry, no failover to another target. Model `rules` are not
//! evaluated here (gateway keys and model access are, by the `AuthEngine` in front).
//!
//! **Estimate.** When no target qualifies (the model's backends speak other protocols, or none is
//! available) the gateway has no tokenizer for the upstream model, so it estimates: the characters
//! of every string in the request (message text, system prompt, tool definitions; not the model
//! name and not base64 `data`) divided by four, rounded up, plus four tokens per message for role
//! framing. This is the usual rule of thumb for English text with BPE tokenizers; expect it within
//! about 20% for prose, worse for code and non-Latin scripts. Clients use these counts to decide
//! when to compact a conversation, for which an estimate serves.
//!
//! Every answer (not errors) carries `x-octollm-token-count: upstream` or `estimate`, and a `debug`
//! log line names the backend or says the estimate was used.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use http::HeaderValue;
use octo_core::{ArcEngine, Body, Engine, Error, Protocol, Request, Response};
use octo_engines::balance::Availability;
use octo_engines::endpoint::CountTokens;
use serde_json::{Value, json};

/// Response header saying how a count was made: `upstream` or `estimate`.
pub const TOKEN_COUNT_HEADER: &str = "x-octollm-token-count";

/// One target of a model, as the token counter sees it.
#[derive(Clone)]
pub struct CountUpstream {
    /// Backend name (for logs).
    pub backend: String,
    /// The model name the backend knows.
    pub model: String,
    /// The protocols the backend speaks.
    pub protocols: Vec<Protocol>,
    /// The engine that sends a request to the backend (the HTTP client, no conversion).
    pub engine: ArcEngine,
    /// Whether the backend can be tried now; `None` means always.
    pub availability: Option<Arc<dyn Availability>>,
}

impl std::fmt::Debug for CountUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountUpstream")
            .field("backend", &self.backend)
            .field("model", &self.model)
            .field("protocols", &self.protocols)
            .finish_non_exhaustive()
    }
}

/// Answers token-count requests for the configured models.
#[derive(Debug, Default)]
pub struct TokenCounter {
    /// Exposed model → its targets, in the order they are tried.
    models: BTreeMap<String, Vec<CountUpstream>>,
}

impl TokenCounter {
    /// Counts for `models` by estimate only; other names get 404.
    pub fn new(models: impl IntoIterator<Item = String>) -> Self {
        TokenCounter {
            models: models.into_iter().map(|m| (m, Vec::new())).collect(),
        }
    }

    /// Adds (or replaces) `model`, whose counts may be passed through to `upstreams`, tried in
    /// the order given.
    #[must_use]
    pub fn with_model(mut self, model: impl Into<String>, upstreams: Vec<CountUpstream>) -> Self {
        self.models.insert(model.into(), upstreams);
        self
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
        let Some(upstreams) = self.models.get(&model) else {
            return Err(Error::not_found(format!(
                "model `{model}` is not configured on this gateway"
            ))
            .with_param("model")
            .with_code("model_not_found"));
        };
        let chosen = upstreams.iter().find(|u| {
            u.protocols.contains(&req.protocol)
                && u.availability
                    .as_ref()
                    .is_none_or(|a| a.is_available(Some(&u.model)))
        });
        if let Some(up) = chosen {
            tracing::debug!(model = %model, backend = %up.backend, "token count passed through");
            req.set_model(&up.model)?;
            req.extensions.insert(CountTokens);
            let mut resp = up.engine.process(req).await?;
            resp.headers
                .insert(TOKEN_COUNT_HEADER, HeaderValue::from_static("upstream"));
            return Ok(resp);
        }
        tracing::debug!(model = %model, "token count estimated (no target speaks {})", req.protocol);
        let tokens = estimate_tokens(req.body.json()?);
        let body = match req.protocol {
            Protocol::Gemini => json!({"totalTokens": tokens}),
            _ => json!({"input_tokens": tokens}),
        };
        let mut resp = Response::json(200, Body::from_json(body));
        resp.headers
            .insert(TOKEN_COUNT_HEADER, HeaderValue::from_static("estimate"));
        Ok(resp)
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
            Protocol::Anthropic,
            "/v1/messages/count_tokens",
            Body::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#),
        );
        let resp = counter.process(req).await.unwrap();
        let octo_core::ResponseBody::Full(mut b) = resp.body else {
            panic!()
        };
        assert!(b.json().unwrap()["input_tokens"].as_u64().unwrap() > 0);
        let mut req = Request::post(
            Protocol::Gemini,
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
            Protocol::Anthropic,
            "/v1/messages/count_tokens",
            Body::from_static(br#"{"model":"x"}"#),
        );
        assert_eq!(counter.process(req).await.unwrap_err().status(), 404);
    }

    /// Answers `{"input_tokens": 7}` and records the model and whether `CountTokens` was set.
    #[derive(Default)]
    struct Upstream(std::sync::Mutex<Vec<(String, bool)>>);

    #[async_trait]
    impl Engine for Upstream {
        async fn process(&self, req: Request) -> Result<Response, Error> {
            let model = req.peek()?.model.unwrap_or_default();
            let counting = req.extensions.get::<CountTokens>().is_some();
            self.0.lock().unwrap().push((model, counting));
            Ok(Response::json(
                200,
                Body::from_static(br#"{"input_tokens":7}"#),
            ))
        }
    }

    struct Unavailable;
    impl Availability for Unavailable {
        fn is_available(&self, _: Option<&str>) -> bool {
            false
        }
    }

    fn upstream(
        backend: &str,
        protocols: &[Protocol],
        engine: &Arc<Upstream>,
        available: bool,
    ) -> CountUpstream {
        CountUpstream {
            backend: backend.into(),
            model: format!("up-{backend}"),
            protocols: protocols.to_vec(),
            engine: engine.clone(),
            availability: (!available).then(|| Arc::new(Unavailable) as Arc<dyn Availability>),
        }
    }

    fn header(resp: &Response) -> &str {
        resp.headers[TOKEN_COUNT_HEADER].to_str().unwrap()
    }

    #[tokio::test]
    async fn passes_through_to_the_first_available_target_speaking_the_protocol() {
        let engine = Arc::new(Upstream::default());
        let counter = TokenCounter::default().with_model(
            "m",
            vec![
                upstream("oa", &[Protocol::OpenAiChat], &engine, true),
                upstream("down", &[Protocol::Anthropic], &engine, false),
                upstream("anth", &[Protocol::Anthropic], &engine, true),
            ],
        );
        let req = Request::post(
            Protocol::Anthropic,
            "/v1/messages/count_tokens",
            Body::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#),
        );
        let resp = counter.process(req).await.unwrap();
        assert_eq!(header(&resp), "upstream");
        assert_eq!(*engine.0.lock().unwrap(), [("up-anth".to_owned(), true)]);

        // A Gemini client: no target speaks Gemini, so the estimate answers.
        let mut req = Request::post(
            Protocol::Gemini,
            "/v1beta/models/m:countTokens",
            Body::from_static(br#"{"contents":[{"parts":[{"text":"abcd"}]}]}"#),
        );
        req.route.model = Some("m".into());
        let resp = counter.process(req).await.unwrap();
        assert_eq!(header(&resp), "estimate");
        let octo_core::ResponseBody::Full(mut b) = resp.body else {
            panic!()
        };
        assert_eq!(b.json().unwrap()["totalTokens"], 5);
        assert_eq!(engine.0.lock().unwrap().len(), 1);
    }
}
