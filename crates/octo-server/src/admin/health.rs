//! A backend's health, a test request, and its upstream's model list.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/health` | the instance: `status` (`ok`, or `degraded` while the admin API's stored objects are not in force), `storage` (`configured`, `open`), `control_plane` (`api_objects`: `loaded` \| `pending` \| `off`; `follow`: how other instances' changes arrive, `notify` \| `poll` \| `off`; `notifications`; `applied` by way) |
//! | `GET /api/v1/backends/{name}/health` | per key: cooldown, per model breaker state and latency average, recent errors; per upstream model the `lowest_latency` average |
//! | `POST /api/v1/backends/{name}/test` | `{model?}` → a one-token request through the backend: `{ok, status, latency_ms, model, protocol, error?, reply?}` |
//! | `POST /api/v1/backends/{name}/models/sync` | the upstream's model list (`GET /v1/models`, Gemini `GET /v1beta/models`) with which are exposed, and as which models |
//! | `GET /api/v1/backends/{name}/models` | the last list read (by the route above or `models_sync_interval`) |
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
use crate::control::model_sync::{self, Synced, redact};
use crate::registry::BackendEntry;

/// How long a test request or a model list may take.
const UPSTREAM_TIMEOUT: Duration = model_sync::TIMEOUT;

/// The routes, before authentication is layered on.
pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/health", get(instance))
        .route("/api/v1/backends/{name}/health", get(health))
        .route("/api/v1/backends/{name}/test", post(test))
        .route("/api/v1/backends/{name}/models/sync", post(sync))
        .route("/api/v1/backends/{name}/models", get(last_sync))
}

/// `GET /api/v1/health`: see the [module docs](self).
async fn instance(State(state): State<AdminState>) -> Response {
    let follow = state.control.follow();
    let configured = state.ops.storage_configured();
    let api_objects = match (configured, follow.loaded()) {
        (false, _) => "off",
        (true, true) => "loaded",
        (true, false) => "pending",
    };
    let (notify, poll) = follow.applied();
    axum::Json(json!({
        "status": if api_objects == "pending" { "degraded" } else { "ok" },
        "generation": state.control.view().generation,
        "storage": {"configured": configured, "open": state.ops.store().is_some()},
        "control_plane": {
            "api_objects": api_objects,
            "follow": follow.mechanism(),
            "notifications": follow.notifications(),
            "applied": {"notify": notify, "poll": poll},
        },
    }))
    .into_response()
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
        "models_sync": state.control.syncs().get(&name).map(|s| json!({
            "synced_at": unix_ms(s.at),
            "models": s.result.as_ref().map(Vec::len).ok(),
            "error": s.result.err(),
        })),
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

/// The answer for one sync: ids with which are exposed, and as which models.
fn sync_answer(state: &AdminState, name: &str, synced: &Synced) -> Value {
    let view = state.control.view();
    let models: Vec<Value> = synced
        .result
        .as_deref()
        .unwrap_or_default()
        .iter()
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
    let mut out = json!({
        "backend": name,
        "url": synced.url,
        "synced_at": unix_ms(synced.at),
        "models": models,
    });
    if let Err(e) = &synced.result {
        out["error"] = Value::from(e.clone());
    }
    out
}

async fn sync(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (config, _) = backend(&state, &name)?;
    let synced = model_sync::fetch(&name, &config).await;
    state.control.syncs().put(&name, synced.clone());
    if let Err(e) = &synced.result {
        return Err(ApiError(StatusCode::BAD_GATEWAY, e.clone()));
    }
    Ok(axum::Json(sync_answer(&state, &name, &synced)).into_response())
}

async fn last_sync(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    backend(&state, &name)?;
    let synced = state.control.syncs().get(&name).ok_or_else(|| {
        ApiError::not_found(format!(
            "backend `{name}`'s model list was never read; `POST /api/v1/backends/{name}/models/sync`, or set `models_sync_interval`"
        ))
    })?;
    Ok(axum::Json(sync_answer(&state, &name, &synced)).into_response())
}
