//! The engine a target points at: one backend, reached in the client's protocol.
//!
//! A backend lists the protocols it speaks. A request in one of them goes straight through (byte
//! for byte, apart from the model name); a request in another protocol goes through a
//! [`ConvertEngine`] to the backend's first listed protocol. Backend rewrites run after conversion,
//! on the request as the backend receives it.

use async_trait::async_trait;
use octo_core::{ArcEngine, Engine, Error, Protocol, Request, Response};
use octo_engines::convert::{ConvertEngine, ConvertOptions};

/// One backend, passing through or converting per request.
pub struct BackendEngine {
    name: String,
    protocols: Vec<Protocol>,
    inner: ArcEngine,
    convert: ConvertEngine,
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
        }
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
        } else {
            self.convert.process(req).await
        }
    }
}
