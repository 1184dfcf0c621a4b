//! Routes a request to the backend(s) serving the model it names.
//!
//! The model comes from a cheap peek (`model` in the body, or Gemini's path), so a passthrough
//! request is never parsed into a tree. The request is renamed to the target's upstream model by
//! splicing bytes and sent, unchanged otherwise, to the backend. With several targets, a retryable
//! failure (connect error, timeout, 408/429/5xx) moves on to the next target, in the listed order;
//! each attempt gets its own copy of the request, so none sees another's changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use octo_core::{ApiFormat, Engine, Error, Request, Response, format_list};
use octo_engines::client::HttpEndpoint;

/// One place a model is served.
#[derive(Debug, Clone)]
pub struct Target {
    /// The backend's name.
    pub backend: String,
    /// The model name the upstream expects.
    pub upstream_model: String,
    /// The backend's client.
    pub endpoint: Arc<HttpEndpoint>,
}

/// The engine behind every protocol route of `octollm-server`.
#[derive(Debug, Default)]
pub struct ModelRouter {
    models: BTreeMap<String, Vec<Target>>,
}

impl ModelRouter {
    /// A router over `models` (exposed name → targets in order).
    pub fn new(models: BTreeMap<String, Vec<Target>>) -> Self {
        ModelRouter { models }
    }

    /// The exposed model names.
    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }
}

#[async_trait]
impl Engine for ModelRouter {
    async fn process(&self, req: Request) -> Result<Response, Error> {
        let peek = req.peek()?;
        let Some(model) = peek.model else {
            return Err(
                Error::bad_request("the request names no model; set `model`")
                    .with_param("model")
                    .with_code("model_required"),
            );
        };
        let Some(targets) = self.models.get(&model) else {
            let known: Vec<&str> = self.model_names().collect();
            return Err(Error::not_found(format!(
                "model `{model}` is not configured on this gateway; available models: {}",
                known.join(", ")
            ))
            .with_param("model")
            .with_code("model_not_found"));
        };
        let eligible: Vec<&Target> = targets
            .iter()
            .filter(|t| t.endpoint.config().protocols.contains(&req.format))
            .collect();
        if eligible.is_empty() {
            return Err(no_protocol_match(&model, req.format, targets));
        }
        let mut last_err = None;
        for (i, target) in eligible.iter().enumerate() {
            let mut attempt = req.clone();
            attempt.set_model(&target.upstream_model)?;
            match target.endpoint.process(attempt).await {
                Ok(resp) => return Ok(resp),
                Err(e) if e.is_retryable() && i + 1 < eligible.len() => {
                    tracing::warn!(model = %model, backend = %target.backend, error = %e, "target failed; trying the next one");
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| Error::internal("no target was tried")))
    }
}

fn no_protocol_match(model: &str, format: ApiFormat, targets: &[Target]) -> Error {
    let served: Vec<String> = targets
        .iter()
        .map(|t| {
            format!(
                "`{}` ({})",
                t.backend,
                format_list(&t.endpoint.config().protocols)
            )
        })
        .collect();
    Error::unsupported(format!(
        "model `{model}` is served by {}, which do not speak {format}; this release passes requests through only when the client's protocol matches the backend's (protocol conversion is coming)",
        served.join(", ")
    ))
    .with_code("protocol_not_supported")
}
