//! The engine a target points at: one backend, reached in the client's protocol.
//!
//! A backend lists the protocols it speaks. A request in one of them goes straight through (byte
//! for byte, apart from the model name); a request in another protocol goes through a
//! [`ConvertEngine`] to the backend's first listed protocol. Backend rewrites run after conversion,
//! on the request as the backend receives it. A Responses client converted for another protocol
//! gets the Responses API's stored answers from the gateway (`octo_engines::responses`).

use async_trait::async_trait;
use octo_core::{ArcEngine, Engine, Error, Protocol, Request, Response};
use octo_engines::convert::{ConvertEngine, ConvertOptions};
use octo_engines::responses::ResponseState;

/// One backend, passing through or converting per request.
pub struct BackendEngine {
    name: String,
    protocols: Vec<Protocol>,
    inner: ArcEngine,
    convert: ConvertEngine,
    /// Stored answers for Responses clients when this backend does not speak the Responses API.
    responses: ResponseState,
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
