//! A backend's health, a test request, and its upstream's model list.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/backends/{name}/health` | per key: cooldown, per model breaker state and latency average, recent errors; per upstream model the `lowest_latency` average |
//! | `POST /api/v1/backends/{name}/test` | `{model?}` → a one-token request through the backend: `{ok, status, latency_ms, model, protocol, error?, reply?}` |
//! | `POST /api/v1/backends/{name}/models/sync` | the upstream's model list (`GET /v1/models`, Gemini `GET /v1beta/models`) with which are exposed, and as which models |
//!
//! Upstream keys never appear: keys are numbered (`#1`), and any key text in an error message is
//! masked.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use octo_core::{Body, Protocol, Request, ResponseBody, RouteParams};
use octo_engines::breaker::BreakerState;
use serde_json::{Value, json};

use super::{AdminState, ApiError};
use crate::config::{BackendConfig, MaxTokensField};
use crate::control::objects::mask;
use crate::registry::BackendEntry;

/// How long a test request or a model list may take.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// The routes, before authentication is layered on.
pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/backends/{name}/health", get(health))
        .route("/api/v1/backends/{name}/test", post(test))
        .route("/api/v1/backends/{name}/models/sync", post(sync))
}

fn backend(
    state: &AdminState,
    name: &str,
) -> Result<(BackendConfig, std::sync::Arc<BackendEntry>), ApiError> {
    let view = state.control.view();
    let config = view
        .config
        .backends
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no backend `{name}`")))?;
    let entry = state.control.registry().get(name).ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("backend `{name}` is not built yet; try again"),
        )
    })?;
    Ok((config, entry))
}

/// `text` with every key of `config` masked.
fn redact(text: &str, config: &BackendConfig) -> String {
    let mut out = text.to_owned();
    for k in config.keys() {
        if k.len() >= 4 {
            out = out.replace(&k, &mask(&k));
        }
    }
    out
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn breaker(state: BreakerState) -> Value {
    match state {
        BreakerState::Closed { failures } => json!({"state": "closed", "failures": failures}),
        BreakerState::Open { remaining } => {
            json!({"state": "open", "retry_in_ms": remaining.as_millis() as u64})
        }
        BreakerState::HalfOpen { probing } => json!({"state": "half_open", "probing": probing}),
    }
}

async fn health(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (config, entry) = backend(&state, &name)?;
    let keys: Vec<Value> = entry
        .endpoint
        .keys()
        .health()
        .into_iter()
        .map(|k| {
            json!({
                "key": format!("#{}", k.index + 1),
                "cooling_for_ms": k.cooling_for.map(|d| d.as_millis() as u64),
                "models": k.models.iter().map(|m| json!({
                    "model": m.model,
                    "breaker": m.breaker.map(breaker),
                    "latency_ms": m.latency.map(ms),
                })).collect::<Vec<_>>(),
                "recent_errors": k.recent_errors.iter().map(|e| json!({
                    "at": unix_ms(e.at),
                    "model": e.model,
                    "status": e.status,
                    "message": redact(&e.message, &config),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let latency: Vec<Value> = entry
        .latencies()
        .into_iter()
        .map(|(m, d)| json!({"model": m, "ttfb_ms": ms(d)}))
        .collect();
    let available = entry.endpoint.keys().is_available("");
    Ok(axum::Json(json!({
        "backend": name,
        "protocols": entry.protocols.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "keyed": !entry.endpoint.keys().is_empty(),
        "available": available,
        "keys": keys,
        "latency": latency,
    }))
    .into_response())
}

/// The upstream model a test uses: the one asked for, else the first a model routes to on this
/// backend.
fn test_model(state: &AdminState, name: &str, asked: Option<&str>) -> Option<String> {
    if let Some(m) = asked {
        return Some(m.to_owned());
    }
    let view = state.control.view();
    view.config.models.iter().find_map(|(exposed, m)| {
        m.targets
            .iter()
            .find(|t| t.backend == name)
            .map(|t| t.model.clone().unwrap_or_else(|| exposed.clone()))
    })
}

/// A minimal request of `protocol` for `model` asking for one token.
fn one_token(protocol: Protocol, model: &str, config: &BackendConfig) -> Request {
    let m = serde_json::to_string(model).unwrap_or_default();
    let openai_field = match config
        .conversion
        .as_ref()
        .and_then(|c| c.openai_max_tokens_field)
    {
        Some(MaxTokensField::MaxTokens) => "max_tokens",
        _ => "max_completion_tokens",
    };
    let (path, body) = match protocol {
        Protocol::OpenAiChat => (
            "/v1/chat/completions".to_owned(),
            format!(
                r#"{{"model":{m},"messages":[{{"role":"user","content":"ping"}}],"{openai_field}":1}}"#
            ),
        ),
        Protocol::OpenAiResponses => (
            "/v1/responses".to_owned(),
            format!(r#"{{"model":{m},"input":"ping","max_output_tokens":16}}"#),
        ),
        Protocol::Anthropic => (
            "/v1/messages".to_owned(),
            format!(
                r#"{{"model":{m},"max_tokens":1,"messages":[{{"role":"user","content":"ping"}}]}}"#
            ),
        ),
        _ => (
            "/v1beta/models/test:generateContent".to_owned(),
            r#"{"contents":[{"role":"user","parts":[{"text":"ping"}]}],"generationConfig":{"maxOutputTokens":1}}"#.to_owned(),
        ),
    };
    let mut req = Request::post(protocol, &path, Body::from_bytes(body));
    if protocol == Protocol::Gemini {
        req.route = RouteParams {
            model: Some(model.to_owned()),
            stream: Some(false),
        };
    }
    req
}

async fn test(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (config, entry) = backend(&state, &name)?;
    let asked: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?
    };
    let model = match asked.get("model") {
        None | Some(Value::Null) => test_model(&state, &name, None),
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(ApiError::bad_request("at `model`: must be a string")),
    }
    .ok_or_else(|| {
        ApiError::bad_request(format!(
            "at `model`: no model routes to backend `{name}`; give the upstream model to try"
        ))
    })?;
    let protocol = entry.protocols[0];
    let req = one_token(protocol, &model, &config);
    let started = Instant::now();
    let outcome = tokio::time::timeout(UPSTREAM_TIMEOUT, entry.engine.process(req)).await;
    let elapsed = started.elapsed();
    let mut out = json!({
        "backend": name,
        "model": model,
        "protocol": protocol.to_string(),
        "latency_ms": ms(elapsed),
    });
    let m = out.as_object_mut().expect("an object");
    match outcome {
        Err(_) => {
            m.insert("ok".into(), Value::Bool(false));
            m.insert(
                "error".into(),
                Value::from(format!("no answer within {UPSTREAM_TIMEOUT:?}")),
            );
        }
        Ok(Err(e)) => {
            m.insert("ok".into(), Value::Bool(false));
            m.insert("status".into(), Value::from(e.status().as_u16()));
            let mut text = e.message().to_owned();
            if let Some(b) = e.upstream_body()
                && !b.body.is_empty()
            {
                text.push_str(": ");
                text.push_str(&String::from_utf8_lossy(&b.body[..b.body.len().min(500)]));
            }
            m.insert("error".into(), Value::from(redact(&text, &config)));
        }
        Ok(Ok(resp)) => {
            m.insert("ok".into(), Value::Bool(resp.status.is_success()));
            m.insert("status".into(), Value::from(resp.status.as_u16()));
            if let ResponseBody::Full(b) = &resp.body {
                let bytes = b.to_bytes();
                m.insert(
                    "reply".into(),
                    Value::from(redact(
                        &String::from_utf8_lossy(&bytes[..bytes.len().min(500)]),
                        &config,
                    )),
                );
            }
        }
    }
    Ok(axum::Json(out).into_response())
}

/// The upstream's model ids from a list answer: OpenAI and Anthropic `data[].id`, Gemini
/// `models[].name` without its `models/` prefix.
fn model_ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v
        .get("data")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(a) = v.get("models").and_then(Value::as_array) {
        ids.extend(a.iter().filter_map(|m| {
            m.get("name")
                .and_then(Value::as_str)
                .map(|n| n.strip_prefix("models/").unwrap_or(n).to_owned())
        }));
    }
    ids
}

async fn sync(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (config, entry) = backend(&state, &name)?;
    let protocol = entry.protocols[0];
    let base = config.base_url.trim_end_matches('/');
    let url = match protocol {
        Protocol::Gemini => format!("{base}/v1beta/models"),
        _ => format!("{base}/v1/models"),
    };
    let client = reqwest::Client::builder()
        .timeout(UPSTREAM_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut req = client.get(&url).headers(config.headers.clone());
    if let Some(key) = config.keys().first() {
        req = match protocol {
            Protocol::Anthropic => req
                .header("x-api-key", key)
                .header("anthropic-version", "2023-06-01"),
            Protocol::Gemini => req.header("x-goog-api-key", key),
            _ => req.bearer_auth(key),
        };
    } else if protocol == Protocol::Anthropic {
        req = req.header("anthropic-version", "2023-06-01");
    }
    let fail = |status: StatusCode, msg: String| {
        ApiError(
            StatusCode::BAD_GATEWAY,
            format!(
                "backend `{name}`: {url} answered {status}: {}",
                redact(&msg, &config)
            ),
        )
    };
    let resp = req.send().await.map_err(|e| {
        ApiError(
            StatusCode::BAD_GATEWAY,
            format!(
                "backend `{name}`: cannot read {url}: {}",
                redact(&e.to_string(), &config)
            ),
        )
    })?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(fail(status, text.chars().take(500).collect()));
    }
    let v: Value =
        serde_json::from_str(&text).map_err(|e| fail(status, format!("not a model list: {e}")))?;
    let view = state.control.view();
    let models: Vec<Value> = model_ids(&v)
        .into_iter()
        .map(|id| {
            let exposed_as: Vec<&String> = view
                .config
                .models
                .iter()
                .filter(|(exposed, m)| {
                    m.targets.iter().any(|t| {
                        t.backend == name && t.model.as_deref().unwrap_or(exposed.as_str()) == id
                    })
                })
                .map(|(exposed, _)| exposed)
                .collect();
            json!({"id": id, "exposed": !exposed_as.is_empty(), "exposed_as": exposed_as})
        })
        .collect();
    Ok(axum::Json(json!({"backend": name, "url": url, "models": models})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_read_every_list_shape() {
        let openai = json!({"object": "list", "data": [{"id": "gpt-4o"}, {"id": "o3"}]});
        assert_eq!(model_ids(&openai), ["gpt-4o", "o3"]);
        let anthropic = json!({"data": [{"id": "claude-x", "type": "model"}], "has_more": false});
        assert_eq!(model_ids(&anthropic), ["claude-x"]);
        let gemini = json!({"models": [{"name": "models/gemini-2.5-flash"}]});
        assert_eq!(model_ids(&gemini), ["gemini-2.5-flash"]);
    }
}
