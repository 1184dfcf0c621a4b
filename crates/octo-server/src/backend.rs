//! The engine a target points at: one backend, reached in the client's protocol when the backend
//! speaks it.
//!
//! A backend lists the protocols it speaks. A request in one of them goes straight through
//! (byte for byte, apart from the model name). A request in another protocol cannot be served by
//! this backend in this release: the error is marked retryable so a `TargetSet` moves on to a
//! target that does speak it.

use async_trait::async_trait;
use octo_core::{ApiFormat, ArcEngine, Engine, Error, Request, Response, format_list};

/// One backend behind its protocol check.
pub struct BackendEngine {
    name: String,
    protocols: Vec<ApiFormat>,
    inner: ArcEngine,
}

impl BackendEngine {
    /// `inner` (rewrites and the HTTP client) for backend `name`, speaking `protocols`.
    pub fn new(name: impl Into<String>, protocols: Vec<ApiFormat>, inner: ArcEngine) -> Self {
        BackendEngine {
            name: name.into(),
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
        if self.protocols.contains(&req.format) {
            return self.inner.process(req).await;
        }
        Err(Error::unsupported(format!(
            "backend `{}` speaks {}, not {}; this release passes requests through only when the client's protocol matches the backend's",
            self.name,
            format_list(&self.protocols),
            req.format
        ))
        .with_code("protocol_not_supported")
        .with_retryable(true))
    }
}
