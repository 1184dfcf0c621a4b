//! Sends a request to the engine of the model it names.
//!
//! The model comes from a cheap peek (`model` in the body, or Gemini's path), so a passthrough
//! request is never parsed into a tree. An unknown model is a 404 that lists the configured ones;
//! a request naming no model is a 400.

use std::collections::BTreeMap;

use async_trait::async_trait;
use octo_core::{ArcEngine, Engine, Error, Request, Response};

/// The engine behind every protocol route of `octollm-server`.
#[derive(Default)]
pub struct ModelRouter {
    models: BTreeMap<String, ArcEngine>,
}

impl std::fmt::Debug for ModelRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRouter")
            .field("models", &self.models.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ModelRouter {
    /// A router over `models` (exposed name → the model's engine).
    pub fn new(models: BTreeMap<String, ArcEngine>) -> Self {
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
        let Some(model) = req.peek_ref()?.model else {
            return Err(
                Error::bad_request("the request names no model; set `model`")
                    .with_param("model")
                    .with_code("model_required"),
            );
        };
        let Some(engine) = self.models.get(model) else {
            let known: Vec<&str> = self.model_names().collect();
            return Err(Error::not_found(format!(
                "model `{model}` is not configured on this gateway; available models: {}",
                known.join(", ")
            ))
            .with_param("model")
            .with_code("model_not_found"));
        };
        engine.process(req).await
    }
}
