//! The engine a target points at: one backend, reached in the client's protocol.
//!
//! A backend lists the protocols it speaks. A request in one of them goes straight through (byte
//! for byte, apart from the model name); a request in another protocol goes through a
//! [`ConvertEngine`] to the backend's first listed protocol. Backend rewrites run after conversion,
//! on the request as the backend receives it.
//!
//! Embeddings requests go through an [`EmbeddingsEngine`] to the backend's embeddings API: the one
//! of its protocols' provider (OpenAI protocols: `openai_embeddings`; Gemini: `gemini_embeddings`;
//! the first listed wins), or an embeddings protocol listed itself. A backend with none (Anthropic)
//! refuses them with a 400 naming the backend. They skip the backend's rewrites (written for
//! generation requests: a `set_keys: {temperature: …}` would make the embeddings API refuse the
//! request) when the gateway gives the bare upstream client ([`BackendEngine::embeddings_via`]).
//!
//! A Responses client converted for another protocol gets the Responses API's stored answers
//! from the gateway (`octo_engines::responses`).

use async_trait::async_trait;
use octo_core::{ArcEngine, Engine, Error, Protocol, Request, Response};
use octo_engines::convert::{ConvertEngine, ConvertOptions};
use octo_engines::embeddings::EmbeddingsEngine;
use octo_engines::responses::ResponseState;

/// One backend, passing through or converting per request.
pub struct BackendEngine {
    name: String,
    protocols: Vec<Protocol>,
    inner: ArcEngine,
    convert: ConvertEngine,
    /// Stored answers for Responses clients when this backend does not speak the Responses API.
    responses: ResponseState,
    /// Passthrough or conversion of embeddings requests, when the backend has an embeddings API.
    embeddings: Option<EmbeddingsEngine>,
}

/// The embeddings API of a backend speaking `protocols`: the first one's provider's.
pub fn embeddings_protocol(protocols: &[Protocol]) -> Option<Protocol> {
    protocols.iter().find_map(|p| p.embeddings())
}

impl BackendEngine {
    /// `inner` (rewrites and the HTTP client) for backend `name`, speaking `protocols` (the first
    /// is the one conversions target).
    ///
    /// # Panics
    /// If `protocols` is empty (the config loader refuses that).
    pub fn new(
        name: impl Into<String>,
        protocols: Vec<Protocol>,
        inner: ArcEngine,
        options: ConvertOptions,
    ) -> Self {
        let target = *protocols
            .first()
            .expect("a backend speaks at least one protocol");
        BackendEngine {
            name: name.into(),
            convert: ConvertEngine::new(inner.clone(), target).with_options(options),
            embeddings: embeddings_protocol(&protocols)
                .map(|p| EmbeddingsEngine::new(inner.clone(), p)),
            protocols,
            inner,
            responses: ResponseState::off(),
        }
    }

    /// Keeps Responses clients' answers in `state` (`previous_response_id` and the
    /// `/v1/responses/{id}` routes) when this backend does not speak the Responses API.
    pub fn with_responses(mut self, state: ResponseState) -> Self {
        self.responses = state;
        self
    }
}

impl BackendEngine {
    /// Sends embeddings requests through `upstream` (the backend's HTTP client without the
    /// rewrites, which are written for generation requests) instead of the engine given to
    /// [`BackendEngine::new`].
    #[must_use]
    pub fn embeddings_via(mut self, upstream: ArcEngine) -> Self {
        self.embeddings =
            embeddings_protocol(&self.protocols).map(|p| EmbeddingsEngine::new(upstream, p));
        self
    }
}

impl std::fmt::Debug for BackendEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendEngine")
            .field("name", &self.name)
            .field("protocols", &self.protocols)
            .finish()
    }
}

#[async_trait]
impl Engine for BackendEngine {
    async fn process(&self, req: Request) -> Result<Response, Error> {
        if req.protocol.is_embeddings() {
            // Embeddings APIs take no generation fields: see the module docs.
            return match &self.embeddings {
                Some(engine) => engine.process(req).await,
                None => Err(Error::bad_request(format!(
                    "backend `{}` speaks {}, which has no embeddings API; route this model to an OpenAI or Gemini backend",
                    self.name,
                    octo_core::protocol_list(&self.protocols)
                ))
                .with_code("embeddings_unsupported")),
            };
        }
        if self.protocols.contains(&req.protocol) {
            self.inner.process(req).await
        } else if req.protocol == Protocol::OpenAiResponses {
            let mut req = req;
            let pending = self.responses.prepare(&mut req).await?;
            let resp = self.convert.process(req).await?;
            Ok(self.responses.finish(pending, resp).await)
        } else {
            self.convert.process(req).await
        }
    }
}
