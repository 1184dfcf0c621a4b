//! Stateful Responses API in front of upstreams that keep no state.
//!
//! The Responses API stores every answer by default (`store: true`) and chains turns with
//! `previous_response_id`: the client sends only its new input and the id of the last answer. An
//! upstream that speaks the Responses API does that itself (requests to it pass through
//! untouched). For any other upstream the gateway does it, with a [`ResponseStore`]:
//!
//! - [`ResponseState::prepare`] (before conversion) loads the previous answer, of the caller's
//!   org only, and replaces `input` with the whole history: the previous answer's input, its
//!   output, then the new input. `instructions` are not carried over, as in the API. An unknown
//!   id, or another org's, is a 404 in the Responses error shape; without a store (`storage: off`)
//!   the request is refused with a 400 naming the fix.
//! - [`ResponseState::finish`] (after conversion) stores the answer with that history, unless
//!   the client sent `store: false`; a stream is stored when its `response.completed` (or
//!   `response.incomplete`) event passes, before the client sees it, so the next turn always
//!   finds it.
//! - [`ResponsesApi`] serves `GET /v1/responses/{id}`, `GET /v1/responses/{id}/input_items` and
//!   `DELETE /v1/responses/{id}` from the store.
//!
//! Store calls are bounded by [`STORE_TIMEOUT`]: a slow database fails the lookup (503) or skips
//! the save (logged), never hangs a request.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use http::Method;
use octo_core::{Body, Engine, Error, ErrorKind, EventStream, Request, Response, ResponseBody};
use serde_json::{Map, Value, json};

use crate::auth::{Authenticator, Identity};

/// How long one store call may take before the request goes on without it.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// One stored answer: what the client received and the history it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    /// The caller's org (empty without orgs).
    pub org: String,
    /// The response id (`resp_…`).
    pub id: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// The model the client asked for.
    pub model: String,
    /// The whole input history (Responses input items).
    pub input: Vec<Value>,
    /// The Responses `response` object the client received.
    pub response: Value,
}

/// Where answers are kept (the server implements it over its database).
#[async_trait]
pub trait ResponseStore: Send + Sync + fmt::Debug {
    /// The answer `id` of `org`, if stored.
    async fn load(&self, org: &str, id: &str) -> Result<Option<StoredAnswer>, Error>;
    /// Keeps an answer.
    async fn save(&self, answer: StoredAnswer) -> Result<(), Error>;
    /// Deletes the answer `id` of `org`; whether there was one.
    async fn delete(&self, org: &str, id: &str) -> Result<bool, Error>;
}

/// The gateway's response state: a store, or none (`storage: off`). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ResponseState {
    store: Option<Arc<dyn ResponseStore>>,
}

/// What [`ResponseState::prepare`] learnt about a request, for [`ResponseState::finish`].
#[derive(Debug)]
pub struct Pending {
    /// The id the client's answer gets: unique per request (upstream ids are not: they may repeat
    /// across upstreams or restart with a mock), so a stored answer is never overwritten.
    id: String,
    org: String,
    model: String,
    previous: Option<String>,
    /// The whole history sent upstream; `None` when the answer is not stored.
    input: Option<Vec<Value>>,
}

/// The caller's org as the store keys it (empty without orgs).
fn org_of(req: &Request) -> String {
    req.extensions
        .get::<Identity>()
        .map(|i| i.org.to_string())
        .unwrap_or_default()
}

/// The 404 of an id that is not stored for this org.
fn not_found(id: &str, param: Option<&str>) -> Error {
    let e = Error::not_found(format!("Response with id '{id}' not found."))
        .with_code("response_not_found");
    match param {
        Some(p) => e.with_param(p),
        None => e,
    }
}

fn unavailable(e: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("the gateway's response store is unavailable: {e}"),
    )
    .with_status(http::StatusCode::SERVICE_UNAVAILABLE)
    .with_retryable(false)
}

/// A response id unique to this request: from its record's id (a UUID) when it has one.
fn fresh_id(req: &Request) -> String {
    match req.extensions.get::<octo_core::record::RequestRecord>() {
        Some(record) => format!("resp_{}", record.id().to_string().replace('-', "")),
        None => {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!(
                "resp_{:x}{}",
                now_ms(),
                item_hash("local", usize::try_from(n).unwrap_or(0))
            )
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A request's `input` as a list of items (a string is one user message).
fn input_items(input: Option<&Value>) -> Vec<Value> {
    match input {
        Some(Value::String(text)) => {
            vec![json!({"type": "message", "role": "user", "content": text})]
        }
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// An answer's output items as input items of the next turn.
fn output_as_input(response: &Value) -> impl Iterator<Item = Value> + '_ {
    response
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .cloned()
}

impl ResponseState {
    /// State kept in `store`.
    pub fn new(store: Arc<dyn ResponseStore>) -> Self {
        ResponseState { store: Some(store) }
    }

    /// No state (`storage: off`): `previous_response_id` is refused, nothing is stored.
    pub fn off() -> Self {
        ResponseState::default()
    }

    /// Whether answers are kept.
    pub fn is_on(&self) -> bool {
        self.store.is_some()
    }

    /// Expands `previous_response_id` in a Responses request bound for a non-Responses upstream
    /// (see the [module docs](self)).
    ///
    /// # Errors
    /// 400 when the body is not a JSON object, or `previous_response_id` is given without a store
    /// or is not a string; 404 for an id not stored for this org; 503 when the store fails.
    pub async fn prepare(&self, req: &mut Request) -> Result<Pending, Error> {
        let org = org_of(req);
        let body = req.body.json()?;
        let Some(obj) = body.as_object() else {
            return Err(Error::bad_request("request body must be a JSON object"));
        };
        let model = obj
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let store_flag = obj.get("store").and_then(Value::as_bool).unwrap_or(true);
        let previous = match obj.get("previous_response_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id.clone()),
            Some(_) => {
                return Err(
                    Error::bad_request("`previous_response_id` must be a string")
                        .with_param("previous_response_id"),
                );
            }
        };
        let Some(store) = &self.store else {
            if previous.is_some() {
                return Err(Error::bad_request(
                    "`previous_response_id` needs the response store, and this gateway keeps no responses for this model's upstream (`storage: off`): turn `storage` on (e.g. `storage: {url: sqlite://octollm.db}`), or send the whole conversation as `input` with `store: false`",
                )
                .with_param("previous_response_id")
                .with_code("unsupported_parameter"));
            }
            return Ok(Pending {
                id: String::new(),
                org,
                model,
                previous: None,
                input: None,
            });
        };
        let mut history = Vec::new();
        if let Some(id) = &previous {
            let found = tokio::time::timeout(STORE_TIMEOUT, store.load(&org, id))
                .await
                .map_err(|_| unavailable("it did not answer in time"))?
                .map_err(|e| unavailable(e.message()))?;
            let Some(found) = found else {
                return Err(not_found(id, Some("previous_response_id")));
            };
            history = found.input;
            history.extend(output_as_input(&found.response));
        }
        let own = input_items(obj.get("input"));
        if previous.is_some() {
            history.extend(own);
            let body = req.body.json_mut()?;
            if let Some(o) = body.as_object_mut() {
                o.remove("previous_response_id");
                o.insert("input".into(), Value::Array(history.clone()));
            }
        } else {
            history = own;
        }
        Ok(Pending {
            id: fresh_id(req),
            org,
            model,
            previous,
            input: store_flag.then_some(history),
        })
    }

    /// Stores the answer of a prepared request (see the [module docs](self)) and gives the client
    /// its `previous_response_id` back. A complete answer is stored before it is returned, a
    /// streamed one before its final event is handed out, so the client's next turn finds it.
    pub async fn finish(&self, pending: Pending, mut resp: Response) -> Response {
        let Some(store) = self.store.clone() else {
            return resp;
        };
        if !resp.status.is_success() {
            return resp;
        }
        let keep = Keep {
            store,
            id: pending.id,
            org: pending.org,
            model: pending.model,
            previous: pending.previous,
            input: pending.input,
        };
        resp.body = match resp.body {
            ResponseBody::Full(mut body) => {
                let answer = body.json_mut().ok().map(|v| {
                    keep.annotate(v);
                    v.clone()
                });
                if let Some(answer) = answer {
                    keep.save(answer).await;
                }
                ResponseBody::Full(body)
            }
            ResponseBody::Stream(events) => ResponseBody::Stream(keep.stream(events)),
        };
        resp
    }
}

/// What saving one answer needs.
#[derive(Clone)]
struct Keep {
    store: Arc<dyn ResponseStore>,
    id: String,
    org: String,
    model: String,
    previous: Option<String>,
    input: Option<Vec<Value>>,
}

impl Keep {
    /// Gives the answer object its gateway id and `previous_response_id` (and `store`).
    fn annotate(&self, response: &mut Value) {
        if let Some(o) = response.as_object_mut() {
            o.insert("id".into(), self.id.clone().into());
            o.insert(
                "previous_response_id".into(),
                self.previous.clone().map_or(Value::Null, Value::String),
            );
            o.insert("store".into(), Value::Bool(self.input.is_some()));
        }
    }

    /// Saves `response` (a final Responses object), bounded by [`STORE_TIMEOUT`]; failures are
    /// logged (the client already has, or is about to have, its answer).
    async fn save(&self, response: Value) {
        let Some(input) = self.input.clone() else {
            return;
        };
        let Some(id) = response
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return;
        };
        let answer = StoredAnswer {
            org: self.org.clone(),
            id,
            created_at_ms: now_ms(),
            model: self.model.clone(),
            input,
            response,
        };
        match tokio::time::timeout(STORE_TIMEOUT, self.store.save(answer)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e.message(), "responses: could not store an answer; previous_response_id will not find it")
            }
            Err(_) => tracing::warn!(
                "responses: the store did not answer in time; the answer is not stored"
            ),
        }
    }

    /// The stream with its final answer saved before the final event is handed out.
    fn stream(self, events: EventStream) -> EventStream {
        let keep = Arc::new(self);
        EventStream::new(events.then(move |item| {
            let keep = keep.clone();
            async move {
                let Ok(mut ev) = item else {
                    return item;
                };
                // Only the events that carry the response object are parsed (`response.created`,
                // `.in_progress`, `.completed`, `.incomplete`, `.failed`), not the deltas.
                let carries_response = matches!(
                    ev.name(),
                    Some(
                        "response.created"
                            | "response.in_progress"
                            | "response.completed"
                            | "response.incomplete"
                            | "response.failed"
                    )
                );
                let final_answer = if carries_response {
                    match ev.data_mut().json_mut() {
                        Ok(v) => {
                            let done = matches!(
                                v.get("type").and_then(Value::as_str),
                                Some("response.completed" | "response.incomplete")
                            );
                            v.get_mut("response").and_then(|r| {
                                keep.annotate(r);
                                done.then(|| r.clone())
                            })
                        }
                        Err(_) => None,
                    }
                } else {
                    None
                };
                if let Some(answer) = final_answer {
                    keep.save(answer).await;
                }
                Ok(ev)
            }
        }))
    }
}

impl fmt::Debug for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keep")
            .field("org", &self.org)
            .finish_non_exhaustive()
    }
}

/// `GET /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`, `DELETE /v1/responses/{id}`
/// over a [`ResponseState`], for the caller's org (see the [module docs](self)).
pub struct ResponsesApi {
    state: ResponseState,
    auth: Option<Arc<Authenticator>>,
}

impl fmt::Debug for ResponsesApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponsesApi")
            .field("stored", &self.state.is_on())
            .finish_non_exhaustive()
    }
}

impl ResponsesApi {
    /// Serves `state`; with `auth`, callers are identified by their gateway key (and refused
    /// without one when no model is public).
    pub fn new(state: ResponseState, auth: Option<Arc<Authenticator>>) -> Self {
        ResponsesApi { state, auth }
    }

    /// Mounted at this prefix (`{prefix}{id}` and `{prefix}{id}/input_items`).
    pub const PREFIX: &'static str = "/v1/responses/";
}

/// The query parameters of `input_items`.
struct ListQuery {
    limit: usize,
    ascending: bool,
    after: Option<String>,
}

fn list_query(query: Option<&str>) -> Result<ListQuery, Error> {
    let mut q = ListQuery {
        limit: 20,
        ascending: false,
        after: None,
    };
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "limit" => {
                q.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| {
                        Error::bad_request("`limit` must be an integer from 1 to 100")
                            .with_param("limit")
                    })?;
            }
            "order" => {
                q.ascending = match v {
                    "asc" => true,
                    "desc" => false,
                    _ => {
                        return Err(Error::bad_request("`order` must be `asc` or `desc`")
                            .with_param("order"));
                    }
                }
            }
            "after" if !v.is_empty() => q.after = Some(v.to_owned()),
            _ => {}
        }
    }
    Ok(q)
}

/// A stored input item as the API lists it: with an id, content as parts, a status.
fn listed_item(response_id: &str, index: usize, item: &Value) -> Value {
    let mut o: Map<String, Value> = item.as_object().cloned().unwrap_or_default();
    let kind = o
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message")
        .to_owned();
    o.insert("type".into(), kind.clone().into());
    if kind == "message" {
        let role = o
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user")
            .to_owned();
        if let Some(Value::String(text)) = o.get("content") {
            let part = if role == "assistant" {
                "output_text"
            } else {
                "input_text"
            };
            let mut p = json!({"type": part, "text": text});
            if role == "assistant" {
                p["annotations"] = json!([]);
            }
            o.insert("content".into(), json!([p]));
        }
        o.entry("status").or_insert_with(|| "completed".into());
    }
    if o.get("id")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        let prefix = match kind.as_str() {
            "message" => "msg",
            "function_call" => "fc",
            "function_call_output" => "fco",
            "reasoning" => "rs",
            _ => "item",
        };
        o.insert(
            "id".into(),
            format!("{prefix}_{}", item_hash(response_id, index)).into(),
        );
    }
    Value::Object(o)
}

/// A short stable hash naming an item that came without an id.
pub(crate) fn item_hash(response_id: &str, index: usize) -> String {
    // FNV-1a, 64 bits: stable across runs and builds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in response_id.bytes().chain(index.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[async_trait]
impl Engine for ResponsesApi {
    async fn process(&self, req: Request) -> Result<Response, Error> {
        let identity = match &self.auth {
            Some(auth) => {
                let id = auth.authenticate(&req.headers, &req.uri)?;
                if id.is_none() && !auth.any_public() {
                    return Err(Error::unauthorized(
                        "an API key is required; send it as `Authorization: Bearer <key>`",
                    )
                    .with_code("missing_api_key"));
                }
                id
            }
            None => None,
        };
        let org = identity.map(|i| i.org.to_string()).unwrap_or_default();
        let rest = req
            .uri
            .path()
            .strip_prefix(Self::PREFIX)
            .unwrap_or_default();
        let (id, items) = match rest.strip_suffix("/input_items") {
            Some(id) => (id, true),
            None => (rest, false),
        };
        if id.is_empty() || id.contains('/') {
            return Err(Error::not_found(format!(
                "no route for {} {}",
                req.method,
                req.uri.path()
            ))
            .with_code("unknown_route"));
        }
        let Some(store) = &self.state.store else {
            return Err(Error::not_found(format!(
                "Response with id '{id}' not found. This gateway stores no responses (`storage: off`); turn `storage` on to keep them, and find answers of Responses upstreams at those upstreams."
            ))
            .with_code("response_not_found"));
        };
        if req.method == Method::DELETE && !items {
            let deleted = tokio::time::timeout(STORE_TIMEOUT, store.delete(&org, id))
                .await
                .map_err(|_| unavailable("it did not answer in time"))?
                .map_err(|e| unavailable(e.message()))?;
            if !deleted {
                return Err(not_found(id, None));
            }
            return Ok(Response::json(
                200,
                Body::from_json(json!({"id": id, "object": "response.deleted", "deleted": true})),
            ));
        }
        if req.method != Method::GET {
            return Err(Error::method_not_allowed(format!(
                "{} is not allowed on {}",
                req.method,
                req.uri.path()
            )));
        }
        let found = tokio::time::timeout(STORE_TIMEOUT, store.load(&org, id))
            .await
            .map_err(|_| unavailable("it did not answer in time"))?
            .map_err(|e| unavailable(e.message()))?
            .ok_or_else(|| not_found(id, None))?;
        if !items {
            return Ok(Response::json(200, Body::from_json(found.response)));
        }
        let q = list_query(req.uri.query())?;
        let mut seen = std::collections::HashSet::new();
        let mut all: Vec<Value> = found
            .input
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let mut listed = listed_item(id, i, item);
                // Ids are the list's cursor: a repeated one (a history replayed twice) gets its own.
                let item_id = listed.get("id").and_then(Value::as_str).unwrap_or_default();
                if !seen.insert(item_id.to_owned()) {
                    let unique = format!("item_{}", item_hash(id, i));
                    seen.insert(unique.clone());
                    listed["id"] = unique.into();
                }
                listed
            })
            .collect();
        if !q.ascending {
            all.reverse();
        }
        let start = match &q.after {
            Some(after) => all
                .iter()
                .position(|it| it.get("id").and_then(Value::as_str) == Some(after.as_str()))
                .map_or(all.len(), |p| p + 1),
            None => 0,
        };
        let page: Vec<Value> = all.iter().skip(start).take(q.limit).cloned().collect();
        let has_more = start + page.len() < all.len();
        let first = page.first().and_then(|v| v.get("id")).cloned();
        let last = page.last().and_then(|v| v.get("id")).cloned();
        Ok(Response::json(
            200,
            Body::from_json(json!({
                "object": "list",
                "data": page,
                "first_id": first,
                "last_id": last,
                "has_more": has_more,
            })),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use octo_core::Protocol;

    use super::*;

    /// Answers kept in memory.
    #[derive(Debug, Default)]
    struct Memory(Mutex<Vec<StoredAnswer>>);

    #[async_trait]
    impl ResponseStore for Memory {
        async fn load(&self, org: &str, id: &str) -> Result<Option<StoredAnswer>, Error> {
            let all = self.0.lock().unwrap();
            Ok(all.iter().find(|a| a.org == org && a.id == id).cloned())
        }
        async fn save(&self, answer: StoredAnswer) -> Result<(), Error> {
            self.0.lock().unwrap().push(answer);
            Ok(())
        }
        async fn delete(&self, org: &str, id: &str) -> Result<bool, Error> {
            let mut all = self.0.lock().unwrap();
            let before = all.len();
            all.retain(|a| !(a.org == org && a.id == id));
            Ok(all.len() < before)
        }
    }

    fn request(body: Value, org: Option<&str>) -> Request {
        let mut req = Request::post(
            Protocol::OpenAiResponses,
            "/v1/responses",
            Body::from_json(body),
        );
        if let Some(org) = org {
            req.extensions.insert(Identity::new(org, "k"));
        }
        req
    }

    fn answer(text: &str) -> Response {
        Response::json(
            200,
            Body::from_json(json!({"id": "resp_upstream", "object": "response",
                "output": [{"type": "message", "role": "assistant", "id": "msg_1",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}]})),
        )
    }

    async fn turn(
        state: &ResponseState,
        body: Value,
        org: Option<&str>,
        text: &str,
    ) -> (Value, Value) {
        let mut req = request(body, org);
        let pending = state.prepare(&mut req).await.unwrap();
        let sent = req.body.json().unwrap().clone();
        let resp = state.finish(pending, answer(text)).await;
        let ResponseBody::Full(mut b) = resp.body else {
            panic!("a full body")
        };
        (sent, b.json().unwrap().clone())
    }

    #[tokio::test]
    async fn previous_response_id_expands_per_org_and_store_false_keeps_nothing() {
        let state = ResponseState::new(Arc::new(Memory::default()));
        let (sent, first) = turn(
            &state,
            json!({"model": "m", "input": "one"}),
            Some("acme"),
            "A1",
        )
        .await;
        assert_eq!(sent["input"], "one", "a first turn is sent as is");
        let id = first["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("resp_") && id != "resp_upstream", "{id}");
        assert_eq!(first["previous_response_id"], Value::Null);

        let (sent, second) = turn(
            &state,
            json!({"model": "m", "input": "two", "previous_response_id": id}),
            Some("acme"),
            "A2",
        )
        .await;
        assert!(sent.get("previous_response_id").is_none());
        let input = sent["input"].as_array().unwrap();
        assert_eq!(input.len(), 3);
        assert_eq!(input[0]["content"], "one");
        assert_eq!(input[1]["content"][0]["text"], "A1");
        assert_eq!(input[2]["content"], "two");
        assert_eq!(second["previous_response_id"], Value::String(id.clone()));

        // Another org, or no org, does not find it.
        for org in [Some("beta"), None] {
            let mut req = request(
                json!({"model": "m", "input": "x", "previous_response_id": id}),
                org,
            );
            let e = state.prepare(&mut req).await.unwrap_err();
            assert_eq!(e.status().as_u16(), 404);
            assert_eq!(e.param(), Some("previous_response_id"));
        }

        // `store: false`: answered, not kept.
        let (_, unstored) = turn(
            &state,
            json!({"model": "m", "input": "x", "store": false}),
            Some("acme"),
            "A3",
        )
        .await;
        assert_eq!(unstored["store"], false);
        let mut req = request(
            json!({"model": "m", "input": "y", "previous_response_id": unstored["id"]}),
            Some("acme"),
        );
        assert_eq!(
            state.prepare(&mut req).await.unwrap_err().status().as_u16(),
            404
        );
    }

    #[tokio::test]
    async fn without_a_store_previous_response_id_is_a_400_naming_storage() {
        let state = ResponseState::off();
        let mut req = request(
            json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
            None,
        );
        let e = state.prepare(&mut req).await.unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        assert!(e.message().contains("storage"), "{}", e.message());
        // Without the id, nothing changes.
        let mut req = request(json!({"model": "m", "input": "x"}), None);
        assert!(state.prepare(&mut req).await.is_ok());
    }

    #[tokio::test]
    async fn the_api_lists_pages_and_deletes_for_the_callers_org_only() {
        let memory = Arc::new(Memory::default());
        memory
            .save(StoredAnswer {
                org: String::new(),
                id: "resp_1".into(),
                created_at_ms: 1,
                model: "m".into(),
                input: (0..5)
                    .map(|i| json!({"role": "user", "content": format!("t{i}")}))
                    .collect(),
                response: json!({"id": "resp_1", "object": "response"}),
            })
            .await
            .unwrap();
        let api = ResponsesApi::new(ResponseState::new(memory), None);
        let call = |method: Method, uri: &str| {
            let mut req = Request::new(
                method,
                uri.parse().unwrap(),
                Protocol::OpenAiResponses,
                Body::empty(),
            );
            req.route = octo_core::RouteParams::default();
            api.process(req)
        };
        let body = |resp: Response| {
            let ResponseBody::Full(mut b) = resp.body else {
                panic!("full")
            };
            b.json().unwrap().clone()
        };
        let got = body(call(Method::GET, "/v1/responses/resp_1").await.unwrap());
        assert_eq!(got["id"], "resp_1");
        let page = body(
            call(Method::GET, "/v1/responses/resp_1/input_items?limit=2")
                .await
                .unwrap(),
        );
        assert_eq!(page["data"][0]["content"][0]["text"], "t4", "newest first");
        assert_eq!(page["has_more"], true);
        let after = page["last_id"].as_str().unwrap().to_owned();
        let next = body(
            call(
                Method::GET,
                &format!("/v1/responses/resp_1/input_items?limit=2&after={after}"),
            )
            .await
            .unwrap(),
        );
        assert_eq!(next["data"][0]["content"][0]["text"], "t2");
        let asc = body(
            call(Method::GET, "/v1/responses/resp_1/input_items?order=asc")
                .await
                .unwrap(),
        );
        assert_eq!(asc["data"][0]["content"][0]["type"], "input_text");
        assert_eq!(asc["data"][0]["content"][0]["text"], "t0");
        assert_eq!(asc["has_more"], false);
        let e = call(Method::GET, "/v1/responses/resp_1/input_items?limit=0")
            .await
            .unwrap_err();
        assert_eq!(e.param(), Some("limit"));
        let deleted = body(call(Method::DELETE, "/v1/responses/resp_1").await.unwrap());
        assert_eq!(deleted["deleted"], true);
        let e = call(Method::GET, "/v1/responses/resp_1").await.unwrap_err();
        assert_eq!(e.status().as_u16(), 404);
        assert!(e.message().contains("resp_1"));
    }
}
