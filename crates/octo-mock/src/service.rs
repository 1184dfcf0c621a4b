//! Per-request handling: collects the body, serves the `/_mock/*` introspection routes, records
//! every other request, routes it to a protocol and applies the directives (delays, faults,
//! stream shaping) around the protocol renderers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::body::{BoxError, MockBody, PendingGuard};
use crate::directives::Directives;
use crate::embeddings::{self, EmbedRoute};
use crate::protocols::{Mode, Protocol, shape_stream};
use crate::record::{RecordedRequest, State};
use crate::reply::{CREATED, DEFAULT_MODEL, Plan};

/// Models listed by `GET /v1/models`.
const MODELS: [&str; 4] = [
    DEFAULT_MODEL,
    "mock-gpt-4o",
    "mock-claude-sonnet",
    "mock-gemini-flash",
];

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Llm {
        protocol: Protocol,
        /// Gemini's model, from the path.
        model: Option<String>,
        /// Set by Gemini's path; otherwise the body's `stream` decides.
        mode: Option<Mode>,
    },
    /// Anthropic `count_tokens` or Gemini `countTokens`.
    CountTokens(Protocol),
    /// OpenAI `/v1/embeddings`, Gemini `embedContent` / `batchEmbedContents`.
    Embeddings(EmbedRoute),
    /// OpenAI `POST /v1/moderations`.
    Moderations,
    Models,
    GeminiModels,
    NotFound,
    MethodNotAllowed(Method),
}

fn route(method: &Method, path: &str, query: Option<&str>) -> Route {
    let llm = |protocol| Route::Llm {
        protocol,
        model: None,
        mode: None,
    };
    let (allowed, target) = match path {
        "/v1/chat/completions" => (Method::POST, llm(Protocol::OpenAiChat)),
        "/v1/responses" => (Method::POST, llm(Protocol::OpenAiResponses)),
        "/v1/messages" => (Method::POST, llm(Protocol::Anthropic)),
        "/v1/messages/count_tokens" => (Method::POST, Route::CountTokens(Protocol::Anthropic)),
        "/v1/moderations" => (Method::POST, Route::Moderations),
        "/v1/models" => (Method::GET, Route::Models),
        "/v1/embeddings" => (Method::POST, Route::Embeddings(EmbedRoute::OpenAi)),
        "/v1beta/models" | "/v1beta/models/" => (Method::GET, Route::GeminiModels),
        _ => match gemini_route(path, query) {
            Some(target) => (Method::POST, target),
            None => return Route::NotFound,
        },
    };
    if *method == allowed {
        target
    } else {
        Route::MethodNotAllowed(allowed)
    }
}

/// `/{v1,v1beta}/models/{model}:{generateContent,streamGenerateContent}`.
fn gemini_route(path: &str, query: Option<&str>) -> Option<Route> {
    let rest = path
        .strip_prefix("/v1/models/")
        .or_else(|| path.strip_prefix("/v1beta/models/"))?;
    let (model, action) = rest.rsplit_once(':')?;
    if model.is_empty() {
        return None;
    }
    let sse = query.is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
    let mode = match action {
        "generateContent" => Mode::Unary,
        "streamGenerateContent" if sse => Mode::Sse,
        "streamGenerateContent" => Mode::JsonArray,
        "countTokens" => return Some(Route::CountTokens(Protocol::Gemini)),
        "embedContent" | "batchEmbedContents" => {
            return Some(Route::Embeddings(EmbedRoute::Gemini {
                model: model.to_owned(),
                batch: action == "batchEmbedContents",
            }));
        }
        _ => return None,
    };
    Some(Route::Llm {
        protocol: Protocol::Gemini,
        model: Some(model.to_owned()),
        mode: Some(mode),
    })
}

/// The hyper service.
pub(crate) async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, BoxError> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts.uri.path();
    if let Some(action) = path.strip_prefix("/_mock/") {
        return Ok(introspect(&state, &parts.method, action, parts.uri.query()));
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| path.to_owned(), |pq| pq.as_str().to_owned());
    state.record(RecordedRequest {
        method: parts.method.clone(),
        path_and_query,
        headers: parts.headers.clone(),
        body: body.clone(),
        version: parts.version,
    });
    match route(&parts.method, path, parts.uri.query()) {
        Route::Llm {
            protocol,
            model,
            mode,
        } => {
            llm(
                &state,
                protocol,
                model.as_deref(),
                mode,
                &parts.headers,
                &body,
            )
            .await
        }
        Route::CountTokens(protocol) => count_tokens(&state, protocol, &parts.headers, &body).await,
        Route::Embeddings(embed) => embed_answer(&state, &embed, &parts.headers, &body).await,
        // Anthropic's SDKs and the gateway send `anthropic-version`: answer in its list shape.
        Route::Models if parts.headers.contains_key("anthropic-version") => {
            Ok(json_response(StatusCode::OK, anthropic_models()))
        }
        Route::Moderations => moderations(&state, &parts.headers, &body).await,
        Route::Models => Ok(json_response(StatusCode::OK, models())),
        Route::GeminiModels => Ok(json_response(StatusCode::OK, gemini_models())),
        Route::NotFound => Ok(not_found(&parts.method, path)),
        Route::MethodNotAllowed(allowed) => Ok(method_not_allowed(&parts.method, path, &allowed)),
    }
}

/// What happens before a reply is rendered: the delay, `timeout`, `reset`, an injected `status`,
/// and parsing the body. `Err` is the early answer (or the connection failure).
async fn prelude(
    state: &Arc<State>,
    protocol: Protocol,
    directives: &Directives,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Value, Result<Response<MockBody>, BoxError>> {
    // Until the head is ready, a dropped future means the client went away.
    let mut pending = PendingGuard::new(state);
    let latency = directives
        .latency_ms
        .map_or(state.config.latency, Duration::from_millis);
    let jitter_max = directives
        .jitter_ms
        .unwrap_or_else(|| u64::try_from(state.config.jitter.as_millis()).unwrap_or(u64::MAX));
    let delay = latency + Duration::from_millis(state.jitter_ms(jitter_max));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if directives.timeout {
        std::future::pending::<()>().await;
    }
    pending.disarm();

    if directives.reset {
        return Err(Err(
            "octo-mock: connection reset by the reset directive".into()
        ));
    }
    if let Some(status) = directives.error_status() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = format!(
            "octo-mock: injected HTTP {}{}",
            status.as_u16(),
            echoed_key(directives, headers)
        );
        let retry_after = directives
            .retry_after
            .or(
                (status == StatusCode::TOO_MANY_REQUESTS && !directives.no_retry_after)
                    .then_some(1),
            );
        return Err(Ok(error_response(protocol, status, &message, retry_after)));
    }
    serde_json::from_slice(body).map_err(|e| {
        let message = format!("octo-mock: request body is not valid JSON: {e}");
        Ok(error_response(
            protocol,
            StatusCode::BAD_REQUEST,
            &message,
            None,
        ))
    })
}

/// With the `echo_key` directive, `"; Incorrect API key provided: KEY"` naming the credential
/// the request presented (`authorization: Bearer`, `x-api-key`, `x-goog-api-key`), as providers
/// echo it in their error messages; otherwise nothing.
fn echoed_key(directives: &Directives, headers: &HeaderMap) -> String {
    if !directives.echo_key {
        return String::new();
    }
    let key = ["authorization", "x-api-key", "x-goog-api-key"]
        .into_iter()
        .find_map(|name| headers.get(name).and_then(|v| v.to_str().ok()))
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v))
        .unwrap_or("(none)");
    format!("; Incorrect API key provided: {key}")
}

/// `count_tokens` / `countTokens`: `body_len / 4 + 1` input tokens (what a generation request of
/// the same size reports), after the same delays and injected faults as generation.
async fn count_tokens(
    state: &Arc<State>,
    protocol: Protocol,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<MockBody>, BoxError> {
    let directives = Directives::parse(headers, body);
    if let Err(early) = prelude(state, protocol, &directives, headers, body).await {
        return early;
    }
    let tokens = body.len() as u64 / 4 + 1;
    let answer = match protocol {
        Protocol::Gemini => {
            json!({"totalTokens": tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}]})
        }
        _ => json!({"input_tokens": tokens}),
    };
    Ok(json_response(StatusCode::OK, crate::sse::to_vec(&answer)))
}

/// Embeddings (see [`crate::embeddings`]), after the same delays and injected faults as
/// generation.
async fn embed_answer(
    state: &Arc<State>,
    route: &EmbedRoute,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<MockBody>, BoxError> {
    let protocol = match route {
        EmbedRoute::OpenAi => Protocol::OpenAiChat,
        EmbedRoute::Gemini { .. } => Protocol::Gemini,
    };
    let directives = Directives::parse(headers, body);
    let json = match prelude(state, protocol, &directives, headers, body).await {
        Ok(json) => json,
        Err(early) => return early,
    };
    Ok(match embeddings::answer(route, &json) {
        Ok(answer) => json_response(StatusCode::OK, crate::sse::to_vec(&answer)),
        Err(message) => error_response(
            protocol,
            StatusCode::BAD_REQUEST,
            &format!("octo-mock: {message}"),
            None,
        ),
    })
}

/// `POST /v1/moderations` (see [`crate::moderation`]); only header directives apply.
async fn moderations(
    state: &Arc<State>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<MockBody>, BoxError> {
    let directives = Directives::parse(headers, b"");
    let json = match prelude(state, Protocol::OpenAiChat, &directives, headers, body).await {
        Ok(json) => json,
        Err(early) => return early,
    };
    match crate::moderation::answer(&json, state.next_id()) {
        Ok(answer) => Ok(json_response(StatusCode::OK, crate::sse::to_vec(&answer))),
        Err(message) => Ok(error_response(
            Protocol::OpenAiChat,
            StatusCode::BAD_REQUEST,
            &format!("octo-mock: {message}"),
            None,
        )),
    }
}

async fn llm(
    state: &Arc<State>,
    protocol: Protocol,
    path_model: Option<&str>,
    mode: Option<Mode>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<MockBody>, BoxError> {
    let directives = Directives::parse(headers, body);
    let json = match prelude(state, protocol, &directives, headers, body).await {
        Ok(json) => json,
        Err(early) => return early,
    };
    if let Some(message) = crate::rules::violation(protocol, &json) {
        return Ok(error_response(
            protocol,
            StatusCode::BAD_REQUEST,
            &message,
            None,
        ));
    }
    let mut summary = protocol.summarize(&json, path_model);
    summary.output = crate::rules::output_format(protocol, &json);
    let mode = mode.unwrap_or(if summary.stream {
        Mode::Sse
    } else {
        Mode::Unary
    });
    let plan = Plan::new(summary, &directives, body.len(), state);
    if mode == Mode::Unary {
        return Ok(json_response(StatusCode::OK, protocol.render_unary(&plan)));
    }
    let events = protocol.render_stream(&plan, mode);
    let (frames, ending) = shape_stream(events, &directives, |seq| {
        protocol.stream_error(mode, seq, &echoed_key(&directives, headers))
    });
    let interval = directives
        .interval_ms
        .map_or(state.config.event_interval, Duration::from_millis);
    let content_type = if mode == Mode::JsonArray {
        "application/json"
    } else {
        "text/event-stream"
    };
    let mut response = Response::new(MockBody::events(
        frames,
        ending,
        interval,
        Arc::clone(state),
    ));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<MockBody> {
    let mut response = Response::new(MockBody::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(
    protocol: Protocol,
    status: StatusCode,
    message: &str,
    retry_after: Option<u64>,
) -> Response<MockBody> {
    let mut response = json_response(status, protocol.error_body(status, message));
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// `GET /v1/models` with `anthropic-version`: Anthropic's list shape.
fn anthropic_models() -> Vec<u8> {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|id| json!({"type": "model", "id": id, "display_name": id, "created_at": "2025-01-01T00:00:00Z"}))
        .collect();
    crate::sse::to_vec(&json!({
        "data": data,
        "has_more": false,
        "first_id": MODELS[0],
        "last_id": MODELS[MODELS.len() - 1],
    }))
}

/// `GET /v1beta/models`: Gemini's list shape.
fn gemini_models() -> Vec<u8> {
    let models: Vec<Value> = MODELS
        .iter()
        .map(|id| {
            json!({
                "name": format!("models/{id}"),
                "displayName": id,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            })
        })
        .collect();
    crate::sse::to_vec(&json!({"models": models}))
}

fn models() -> Vec<u8> {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": CREATED, "owned_by": "octo-mock"}))
        .collect();
    crate::sse::to_vec(&json!({"object": "list", "data": data}))
}

/// `GET /_mock/requests[?body=1]`, `GET /_mock/stats`, `POST /_mock/reset`.
fn introspect(
    state: &State,
    method: &Method,
    action: &str,
    query: Option<&str>,
) -> Response<MockBody> {
    let allowed = match action {
        "requests" | "stats" => Method::GET,
        "reset" => Method::POST,
        _ => return not_found(method, &format!("/_mock/{action}")),
    };
    if *method != allowed {
        return method_not_allowed(method, &format!("/_mock/{action}"), &allowed);
    }
    let body = match action {
        "requests" => state.requests_json(wants_body(query)),
        "stats" => state.stats().to_json(),
        _ => {
            state.reset();
            json!({"ok": true})
        }
    };
    json_response(StatusCode::OK, crate::sse::to_vec(&body))
}

/// `body=1` (or `true`) in the query of `/_mock/requests`.
fn wants_body(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "body" | "body=1" | "body=true"))
    })
}

/// 404 in OpenAI's error shape.
fn not_found(method: &Method, path: &str) -> Response<MockBody> {
    let message = format!("octo-mock: unknown request URL: {method} {path}");
    error_response(Protocol::OpenAiChat, StatusCode::NOT_FOUND, &message, None)
}

/// 405 in OpenAI's error shape, with `allow`.
fn method_not_allowed(method: &Method, path: &str, allowed: &Method) -> Response<MockBody> {
    let message = format!("octo-mock: method {method} not allowed on {path}");
    let mut response = error_response(
        Protocol::OpenAiChat,
        StatusCode::METHOD_NOT_ALLOWED,
        &message,
        None,
    );
    let allow = if *allowed == Method::GET {
        "GET"
    } else {
        "POST"
    };
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llm(protocol: Protocol, model: Option<&str>, mode: Option<Mode>) -> Route {
        Route::Llm {
            protocol,
            model: model.map(str::to_owned),
            mode,
        }
    }

    #[test]
    fn body_query() {
        assert!(wants_body(Some("body=1")));
        assert!(wants_body(Some("x=2&body=true")));
        assert!(wants_body(Some("body")));
        assert!(!wants_body(Some("body=0")));
        assert!(!wants_body(None));
    }

    #[test]
    fn routes() {
        let post = Method::POST;
        assert_eq!(
            route(&post, "/v1/chat/completions", None),
            llm(Protocol::OpenAiChat, None, None)
        );
        assert_eq!(
            route(&post, "/v1/responses", None),
            llm(Protocol::OpenAiResponses, None, None)
        );
        assert_eq!(
            route(&post, "/v1/messages", Some("beta=true")),
            llm(Protocol::Anthropic, None, None)
        );
        assert_eq!(route(&Method::GET, "/v1/models", None), Route::Models);
        assert_eq!(
            route(&Method::GET, "/v1beta/models", None),
            Route::GeminiModels
        );
        assert_eq!(
            route(
                &post,
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                Some("key=k&alt=sse")
            ),
            llm(Protocol::Gemini, Some("gemini-2.5-flash"), Some(Mode::Sse))
        );
        assert_eq!(
            route(&post, "/v1/models/g:streamGenerateContent", None),
            llm(Protocol::Gemini, Some("g"), Some(Mode::JsonArray))
        );
        assert_eq!(
            route(&post, "/v1/models/g:generateContent", None),
            llm(Protocol::Gemini, Some("g"), Some(Mode::Unary))
        );
        assert_eq!(
            route(&post, "/v1/models/g:countTokens", None),
            Route::CountTokens(Protocol::Gemini)
        );
        assert_eq!(
            route(&post, "/v1/messages/count_tokens", None),
            Route::CountTokens(Protocol::Anthropic)
        );
        assert_eq!(route(&post, "/v1/models/g:embed", None), Route::NotFound);
        assert_eq!(
            route(&post, "/v1/embeddings", None),
            Route::Embeddings(EmbedRoute::OpenAi)
        );
        assert_eq!(
            route(&post, "/v1beta/models/e:batchEmbedContents", None),
            Route::Embeddings(EmbedRoute::Gemini {
                model: "e".into(),
                batch: true
            })
        );
        assert_eq!(route(&post, "/v2/chat", None), Route::NotFound);
        assert_eq!(
            route(&Method::GET, "/v1/messages", None),
            Route::MethodNotAllowed(Method::POST)
        );
        assert_eq!(
            route(&post, "/v1/models", None),
            Route::MethodNotAllowed(Method::GET)
        );
    }
}
