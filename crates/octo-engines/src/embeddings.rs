//! Embeddings as an engine: serve an OpenAI `POST /v1/embeddings` or a Gemini `embedContent` /
//! `batchEmbedContents` client from an upstream speaking either.
//!
//! [`EmbeddingsEngine`] wraps an inner engine (the backend's HTTP client) whose embeddings API is
//! `upstream`. A request in that protocol passes through (a Gemini batch gets its
//! `requests[].model` pointed at the routed model, which the API requires to match the path); the
//! other embeddings protocol is converted on the way in and its answer on the way out, by
//! [`octo_convert::embeddings`] (mapping: `docs/conversion.md`, "Embeddings").
//!
//! Usage: the upstream client reads what the upstream reports (OpenAI `usage.prompt_tokens`); the
//! public Gemini API reports none, so for a Gemini upstream this engine records an estimate
//! (characters / 4 per text) in the request's record, and that is what an OpenAI client sees in
//! `usage` too. Cost follows from the record's usage and the model's price, as for chat.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use octo_core::{engine_fn, Body, Engine, Protocol, Request, Response, ResponseBody};
//! use octo_engines::embeddings::EmbeddingsEngine;
//!
//! // A Gemini upstream.
//! let upstream = Arc::new(engine_fn(|req: Request| async move {
//!     assert_eq!(req.protocol, Protocol::GeminiEmbeddings);
//!     assert!(req.uri.path().ends_with(":batchEmbedContents"));
//!     Ok(Response::json(200, Body::from_static(br#"{"embeddings":[{"values":[0.6,0.8]}]}"#)))
//! }));
//! let engine = EmbeddingsEngine::new(upstream, Protocol::GeminiEmbeddings);
//! let req = Request::post(Protocol::OpenAiEmbeddings, "/v1/embeddings",
//!     Body::from_static(br#"{"model":"gemini-embedding-001","input":"hello"}"#));
//! let resp = engine.process(req).await.unwrap();
//! let ResponseBody::Full(mut body) = resp.body else { unreachable!() };
//! let v = body.json().unwrap();
//! assert_eq!(v["data"][0]["embedding"][1], 0.8);
//! assert_eq!(v["usage"]["prompt_tokens"], 2);
//! # }
//! ```

use async_trait::async_trait;
use http::header;
use octo_convert::embeddings::{
    convert_embeddings_request, gemini_batch_set_model, gemini_estimated_tokens,
    merge_gemini_answers,
};
use octo_core::record::RequestRecord;
use octo_core::usage::Usage;
use octo_core::{ArcEngine, Body, Engine, Error, Protocol, Request, Response, ResponseBody};

/// Serves embeddings clients of either protocol from an inner engine speaking `upstream`.
pub struct EmbeddingsEngine {
    inner: ArcEngine,
    upstream: Protocol,
}

impl std::fmt::Debug for EmbeddingsEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingsEngine")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl EmbeddingsEngine {
    /// Wraps `inner`, whose embeddings API is `upstream` (`openai_embeddings` or
    /// `gemini_embeddings`).
    pub fn new(inner: ArcEngine, upstream: Protocol) -> Self {
        EmbeddingsEngine { inner, upstream }
    }
}

/// Records `tokens` of input as the request's usage (a Gemini upstream reports none).
fn record_estimate(record: Option<&RequestRecord>, tokens: u64) {
    if let Some(record) = record {
        let usage = Usage {
            input_tokens: tokens,
            ..Usage::default()
        };
        record.set_usage(Some(usage), None);
    }
}

#[async_trait]
impl Engine for EmbeddingsEngine {
    async fn process(&self, mut req: Request) -> Result<Response, Error> {
        let client = req.protocol;
        if !client.is_embeddings() {
            return self.inner.process(req).await;
        }
        let record = req.extensions.get::<RequestRecord>().cloned();
        let model = req.peek()?.model.unwrap_or_default();
        if client == self.upstream {
            if client != Protocol::GeminiEmbeddings {
                return self.inner.process(req).await;
            }
            // A Gemini batch names the model in every request too; the API wants the path's.
            let (estimate, renamed) = {
                let mut body = req.body.json()?.clone();
                let renamed = gemini_batch_set_model(&mut body, &model).then_some(body);
                (gemini_estimated_tokens(req.body.json()?), renamed)
            };
            if let Some(body) = renamed {
                req.body = Body::from_json(body);
            }
            let resp = self.inner.process(req).await?;
            let reported = match &resp.body {
                ResponseBody::Full(b) => memchr_usage(&b.to_bytes()),
                ResponseBody::Stream(_) => false,
            };
            if !reported {
                record_estimate(record.as_ref(), estimate);
            }
            return Ok(resp);
        }
        let conv = convert_embeddings_request(client, self.upstream, req.body.json()?, &model)?;
        req.protocol = self.upstream;
        if let Some(path) = &conv.path {
            req.uri = path.parse().map_err(|e| {
                Error::bad_request(format!("the model name makes an invalid path: {e}"))
            })?;
            req.route.model = Some(model.clone());
            req.route.stream = Some(false);
        } else {
            req.uri = http::Uri::from_static("/v1/embeddings");
            req.route = octo_core::RouteParams::default();
        }
        // Toward Gemini, more texts than one batch takes go as several calls, one after another.
        let bodies = conv.upstream_bodies();
        req.body = Body::empty();
        let mut answers = Vec::with_capacity(bodies.len());
        let mut last = None;
        for body in bodies {
            let mut part = req.clone();
            part.body = Body::from_json(body);
            let mut resp = self.inner.process(part).await?;
            let ResponseBody::Full(mut body) =
                std::mem::replace(&mut resp.body, ResponseBody::Full(Body::empty()))
            else {
                return Err(Error::upstream(
                    "the upstream answered an embeddings request with a stream",
                ));
            };
            let v = body.json_mut().map_err(|e| {
                Error::upstream(format!(
                    "the upstream answered with a body that is not JSON: {}",
                    e.message()
                ))
            })?;
            answers.push(v.take());
            last = Some(resp);
        }
        let Some(mut resp) = last else {
            return Err(Error::internal(
                "an embeddings request made no upstream call",
            ));
        };
        let v = &merge_gemini_answers(answers);
        if self.upstream == Protocol::GeminiEmbeddings && v.get("usageMetadata").is_none() {
            record_estimate(record.as_ref(), conv.answer.estimated_tokens());
        }
        let out = conv.answer.convert(v)?;
        resp.headers.remove(header::CONTENT_TYPE);
        resp.body = ResponseBody::Full(Body::from_json(out));
        Ok(resp)
    }
}

/// Whether a Gemini answer reports usage (a byte search: the vectors are not parsed).
fn memchr_usage(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"\"usageMetadata\"").is_some()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::{Value, json};

    use super::*;

    /// Answers like the mock, remembering what it was sent.
    fn upstream(
        answer: &'static str,
        seen: Arc<Mutex<Vec<(Protocol, String, Value)>>>,
    ) -> ArcEngine {
        Arc::new(octo_core::engine_fn(move |mut req: Request| {
            let seen = seen.clone();
            async move {
                let body = req.body.json()?.clone();
                seen.lock()
                    .unwrap()
                    .push((req.protocol, req.uri.path().to_owned(), body));
                Ok(Response::json(200, Body::from_static(answer.as_bytes())))
            }
        }))
    }

    async fn json_of(resp: Response) -> Value {
        let ResponseBody::Full(mut b) = resp.body else {
            panic!("a full body")
        };
        b.json().unwrap().clone()
    }

    #[tokio::test]
    async fn gemini_client_to_openai_upstream() {
        let seen = Arc::default();
        let engine = EmbeddingsEngine::new(
            upstream(
                r#"{"object":"list","data":[{"index":0,"embedding":[1.0,0.0]}],"usage":{"prompt_tokens":3,"total_tokens":3}}"#,
                Arc::clone(&seen),
            ),
            Protocol::OpenAiEmbeddings,
        );
        let mut req = Request::post(
            Protocol::GeminiEmbeddings,
            "/v1beta/models/emb:embedContent",
            Body::from_static(br#"{"content":{"parts":[{"text":"hi"}]}}"#),
        );
        req.route.model = Some("emb".into());
        let v = json_of(engine.process(req).await.unwrap()).await;
        assert_eq!(v, json!({"embedding": {"values": [1.0, 0.0]}}));
        let (protocol, path, body) = seen.lock().unwrap()[0].clone();
        assert_eq!(
            (protocol, path.as_str()),
            (Protocol::OpenAiEmbeddings, "/v1/embeddings")
        );
        assert_eq!(
            body,
            json!({"model": "emb", "input": ["hi"], "encoding_format": "float"})
        );
    }

    #[tokio::test]
    async fn gemini_passthrough_points_the_batch_at_the_routed_model() {
        let seen = Arc::default();
        let engine = EmbeddingsEngine::new(
            upstream(r#"{"embeddings":[{"values":[1.0]}]}"#, Arc::clone(&seen)),
            Protocol::GeminiEmbeddings,
        );
        let mut req = Request::post(
            Protocol::GeminiEmbeddings,
            "/v1beta/models/exposed:batchEmbedContents",
            Body::from_static(
                br#"{"requests":[{"model":"models/exposed","content":{"parts":[{"text":"hi"}]}}]}"#,
            ),
        );
        req.route.model = Some("upstream-name".into());
        engine.process(req).await.unwrap();
        let (_, path, body) = seen.lock().unwrap()[0].clone();
        assert!(path.ends_with(":batchEmbedContents"), "{path}");
        assert_eq!(body["requests"][0]["model"], "models/upstream-name");
    }

    #[tokio::test]
    async fn chat_requests_pass_by() {
        let seen = Arc::default();
        let engine = EmbeddingsEngine::new(
            upstream("{}", Arc::clone(&seen)),
            Protocol::OpenAiEmbeddings,
        );
        let req = Request::post(
            Protocol::OpenAiChat,
            "/v1/chat/completions",
            Body::from_static(br#"{"model":"m"}"#),
        );
        engine.process(req).await.unwrap();
        assert_eq!(seen.lock().unwrap()[0].0, Protocol::OpenAiChat);
    }
}
