//! `GET /v1/models` (and one model by id) in the shape each client expects.
//!
//! OpenAI and Anthropic share the path `/v1/models`; Gemini uses `/v1beta/models` and `/v1/models`
//! too. The caller is recognised by what it sends: a Gemini key (`x-goog-api-key` or `?key=`) or
//! a `/v1beta/` path gets Gemini's list, an Anthropic request (`anthropic-version` or `x-api-key`)
//! gets Anthropic's, everyone else OpenAI's. When orgs are configured, only the models the caller's
//! key may use are listed.

use std::sync::Arc;

use async_trait::async_trait;
use octo_core::{Body, Engine, Error, Request, Response};
use octo_engines::auth::Authenticator;
use serde_json::{Value, json};

/// Lists the configured models.
pub struct ModelList {
    models: Vec<String>,
    auth: Option<Arc<Authenticator>>,
}

impl std::fmt::Debug for ModelList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelList")
            .field("models", &self.models)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    OpenAi,
    Anthropic,
    Gemini,
}

/// When the models were "created", for shapes that require a time (the gateway has no better one).
const CREATED_UNIX: u64 = 1_735_689_600;
const CREATED_RFC3339: &str = "2025-01-01T00:00:00Z";

impl ModelList {
    /// Lists `models`, filtered through `auth` when given.
    pub fn new(models: Vec<String>, auth: Option<Arc<Authenticator>>) -> Self {
        ModelList { models, auth }
    }

    fn shape(req: &Request) -> Shape {
        let h = &req.headers;
        let query_key = req
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("key=")));
        if req.uri.path().starts_with("/v1beta/") || h.contains_key("x-goog-api-key") || query_key {
            Shape::Gemini
        } else if h.contains_key("anthropic-version") || h.contains_key("x-api-key") {
            Shape::Anthropic
        } else {
            Shape::OpenAi
        }
    }

    fn entry(shape: Shape, id: &str) -> Value {
        match shape {
            Shape::OpenAi => {
                json!({"id": id, "object": "model", "created": CREATED_UNIX, "owned_by": "octollm"})
            }
            Shape::Anthropic => {
                json!({"type": "model", "id": id, "display_name": id, "created_at": CREATED_RFC3339})
            }
            Shape::Gemini => json!({
                "name": format!("models/{id}"),
                "baseModelId": id,
                "version": "octollm",
                "displayName": id,
                "description": "Served by OctoLLM",
                "supportedGenerationMethods": ["generateContent", "streamGenerateContent"],
            }),
        }
    }
}

#[async_trait]
impl Engine for ModelList {
    async fn process(&self, req: Request) -> Result<Response, Error> {
        let identity = match &self.auth {
            Some(auth) => auth.authenticate(&req.headers, &req.uri)?,
            None => None,
        };
        let visible: Vec<&str> = self
            .models
            .iter()
            .map(String::as_str)
            .filter(|m| {
                self.auth
                    .as_ref()
                    .is_none_or(|a| a.may_use(identity.as_ref(), m))
            })
            .collect();
        let shape = Self::shape(&req);
        let path = req.uri.path();
        let one = path
            .strip_prefix("/v1/models/")
            .or_else(|| path.strip_prefix("/v1beta/models/"))
            .filter(|id| !id.is_empty());
        let body = match one {
            Some(id) => {
                let id = id.strip_prefix("models/").unwrap_or(id);
                if !visible.contains(&id) {
                    return Err(Error::not_found(format!(
                        "model `{id}` is not configured on this gateway"
                    ))
                    .with_code("model_not_found"));
                }
                Self::entry(shape, id)
            }
            None => {
                let entries: Vec<Value> = visible.iter().map(|m| Self::entry(shape, m)).collect();
                match shape {
                    Shape::OpenAi => json!({"object": "list", "data": entries}),
                    Shape::Anthropic => json!({
                        "data": entries,
                        "has_more": false,
                        "first_id": visible.first(),
                        "last_id": visible.last(),
                    }),
                    Shape::Gemini => json!({"models": entries}),
                }
            }
        };
        Ok(Response::json(200, Body::from_json(body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Method};
    use octo_core::Protocol;

    fn get(path: &str, header: Option<(&'static str, &'static str)>) -> Request {
        let mut req = Request::new(
            Method::GET,
            path.parse().unwrap(),
            Protocol::ModelList,
            Body::empty(),
        );
        if let Some((k, v)) = header {
            req.headers.insert(k, HeaderValue::from_static(v));
        }
        req
    }

    async fn body(list: &ModelList, req: Request) -> Value {
        let resp = list.process(req).await.unwrap();
        match resp.body {
            octo_core::ResponseBody::Full(mut b) => b.json().unwrap().clone(),
            octo_core::ResponseBody::Stream(_) => panic!("stream"),
        }
    }

    #[tokio::test]
    async fn each_client_gets_its_shape() {
        let list = ModelList::new(vec!["a".into(), "b".into()], None);
        let oa = body(&list, get("/v1/models", None)).await;
        assert_eq!(oa["object"], "list");
        assert_eq!(oa["data"][1]["id"], "b");
        let an = body(
            &list,
            get("/v1/models", Some(("anthropic-version", "2023-06-01"))),
        )
        .await;
        assert_eq!(an["data"][0]["type"], "model");
        assert_eq!(an["last_id"], "b");
        let ge = body(&list, get("/v1beta/models", None)).await;
        assert_eq!(ge["models"][0]["name"], "models/a");
        let one = body(&list, get("/v1/models/b", None)).await;
        assert_eq!(one["id"], "b");
        let err = list.process(get("/v1/models/zzz", None)).await.unwrap_err();
        assert_eq!(err.status(), 404);
    }
}
