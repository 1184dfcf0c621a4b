//! The admin API's write routes: backends, models, orgs and prices; gateway keys; the audit
//! trail. Every change goes through the [`ControlPlane`](crate::control::ControlPlane).
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/{kind}` | `{"data": [object, …]}`: file objects (`"source": "file"`) then API objects (`"source": "api"`), secrets masked |
//! | `POST /api/v1/{kind}` | `{"name": …, fields…}` → 201 and the object; 409 when the name exists |
//! | `GET /api/v1/{kind}/{name}` | the object, or 404 |
//! | `PUT /api/v1/{kind}/{name}` | the fields → 200 (replaced) or 201 (created); 409 for a file object |
//! | `DELETE /api/v1/{kind}/{name}` | 204; 409 for a file object; 404 when absent |
//! | `GET /api/v1/keys` | `{"data": [{org, name, source, models, expires, rate_limit, budget, created_at, created_by, last_used_at, spend_usd, requests}]}`, never a key |
//! | `POST /api/v1/keys` | `{org, name, models?, expires?, rate_limit?, budget?}` → 201, the record and `"key"` (shown once) |
//! | `DELETE /api/v1/keys/{org}/{name}` | 204: refused by the proxy from now on |
//! | `GET /api/v1/audit?limit=&before=` | `{"data": [entry, …], "next": id or null}`, newest first |
//!
//! `{kind}` is `backends`, `models`, `orgs` or `prices`. Bodies use the YAML's field names and are
//! validated exactly as the file is: a 400 names the key path (`backends.b.base_url`).

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Actor, AdminState, ApiError};
use crate::control::objects::{self, META_FIELDS};
use crate::control::{Change, ChangeError, KeySettings, Kind};

/// The routes, before authentication is layered on.
pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/keys", get(list_keys).post(create_key))
        .route("/api/v1/keys/{org}/{name}", delete(delete_key))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/{kind}", get(list).post(create))
        .route("/api/v1/{kind}/{name}", get(one).put(put).delete(remove))
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        let status = match &e {
            ChangeError::Invalid(_) => StatusCode::BAD_REQUEST,
            ChangeError::Conflict(_) => StatusCode::CONFLICT,
            ChangeError::NotFound(_) => StatusCode::NOT_FOUND,
            ChangeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    }
}

fn kind(s: &str) -> Result<Kind, ApiError> {
    Kind::parse(s).ok_or_else(|| {
        ApiError::not_found(format!(
            "no such admin route `/api/v1/{s}`; objects are `backends`, `models`, `orgs` and `prices`"
        ))
    })
}

fn actor(a: Option<Extension<Actor>>) -> String {
    a.map_or_else(|| "unknown".to_owned(), |Extension(a)| a.to_string())
}

/// Parses a JSON object body, naming the field a type error is at.
fn object_body(bytes: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad_request(
            "the body must be a JSON object with the YAML's field names",
        )),
    }
}

/// The object's fields without the answer-only ones.
fn fields(mut m: serde_json::Map<String, Value>) -> Value {
    for f in META_FIELDS {
        m.remove(f);
    }
    Value::Object(m)
}

/// The answer for one object, from the state in force.
fn render(state: &AdminState, kind: Kind, name: &str) -> Option<Value> {
    let view = state.control.view();
    if let Some(body) = view.file_object(kind, name) {
        return Some(objects::answer(kind, name, "file", &body, None));
    }
    view.objects.get(&(kind, name.to_owned())).map(|o| {
        objects::answer(
            kind,
            name,
            "api",
            &o.body,
            Some((o.updated_at, &o.updated_by)),
        )
    })
}

async fn list(
    State(state): State<AdminState>,
    Path(k): Path<String>,
) -> Result<Response, ApiError> {
    let kind = kind(&k)?;
    let view = state.control.view();
    let mut data: Vec<Value> = view
        .file_names(kind)
        .iter()
        .filter_map(|n| render(&state, kind, n))
        .collect();
    data.extend(
        view.objects
            .iter()
            .filter(|((kd, _), _)| *kd == kind)
            .map(|((_, name), o)| {
                objects::answer(
                    kind,
                    name,
                    "api",
                    &o.body,
                    Some((o.updated_at, &o.updated_by)),
                )
            }),
    );
    Ok(axum::Json(json!({ "data": data })).into_response())
}

async fn one(
    State(state): State<AdminState>,
    Path((k, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let kind = kind(&k)?;
    render(&state, kind, &name)
        .map(|v| axum::Json(v).into_response())
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no {} `{name}`",
                kind.section().trim_end_matches('s')
            ))
        })
}

async fn create(
    State(state): State<AdminState>,
    Path(k): Path<String>,
    a: Option<Extension<Actor>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let kind = kind(&k)?;
    let m = object_body(&body)?;
    let name = match m.get("name") {
        Some(Value::String(n)) => n.clone(),
        Some(_) => return Err(ApiError::bad_request("at `name`: must be a string")),
        None => {
            return Err(ApiError::bad_request(format!(
                "at `name`: missing; give the {}'s name",
                kind.section().trim_end_matches('s')
            )));
        }
    };
    let change = Change::Create {
        kind,
        name: name.clone(),
        body: fields(m),
    };
    state.control.apply(change, &actor(a)).await?;
    let v = render(&state, kind, &name).unwrap_or_default();
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

async fn put(
    State(state): State<AdminState>,
    Path((k, name)): Path<(String, String)>,
    a: Option<Extension<Actor>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let kind = kind(&k)?;
    let m = object_body(&body)?;
    if let Some(n) = m.get("name")
        && n.as_str() != Some(name.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "at `name`: the body names `{}` but the path `{name}`; rename by creating the new name and deleting the old",
            n.as_str().unwrap_or("?")
        )));
    }
    let change = Change::Put {
        kind,
        name: name.clone(),
        body: fields(m),
    };
    let applied = state.control.apply(change, &actor(a)).await?;
    let v = render(&state, kind, &name).unwrap_or_default();
    let status = if applied.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(v)).into_response())
}

async fn remove(
    State(state): State<AdminState>,
    Path((k, name)): Path<(String, String)>,
    a: Option<Extension<Actor>>,
) -> Result<Response, ApiError> {
    let kind = kind(&k)?;
    state
        .control
        .apply(Change::Delete { kind, name }, &actor(a))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_key(
    State(state): State<AdminState>,
    a: Option<Extension<Actor>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut m = object_body(&body)?;
    let mut text = |field: &str| match m.remove(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::bad_request(format!(
            "at `{field}`: must be a string"
        ))),
        None => Err(ApiError::bad_request(format!("at `{field}`: missing"))),
    };
    let org = text("org")?;
    let name = text("name")?;
    let settings: KeySettings =
        serde_path_to_error::deserialize(Value::Object(m)).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ApiError::bad_request(format!("{inner}"))
            } else {
                ApiError::bad_request(format!("at `{path}`: {inner}"))
            }
        })?;
    if let Some(t) = &settings.expires
        && let Err(e) = octo_engines::auth::parse_expiry(t)
    {
        return Err(ApiError::bad_request(format!("at `expires`: {e}")));
    }
    let applied = state
        .control
        .apply(
            Change::CreateKey {
                org: org.clone(),
                name: name.clone(),
                settings,
            },
            &actor(a),
        )
        .await?;
    let mut record = key_records(&state)
        .await
        .into_iter()
        .find(|r| r["org"] == org.as_str() && r["name"] == name.as_str())
        .unwrap_or_else(|| json!({"org": org, "name": name}));
    if let Some(m) = record.as_object_mut() {
        m.insert("key".into(), Value::from(applied.key));
    }
    Ok((StatusCode::CREATED, axum::Json(record)).into_response())
}

async fn delete_key(
    State(state): State<AdminState>,
    Path((org, name)): Path<(String, String)>,
    a: Option<Extension<Actor>>,
) -> Result<Response, ApiError> {
    state
        .control
        .apply(Change::DeleteKey { org, name }, &actor(a))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Every key in force: the file's and the API's, with spend and last use when storage is on.
async fn key_records(state: &AdminState) -> Vec<Value> {
    let view = state.control.view();
    let activity = match state.control.store() {
        Some(store) => store.key_activity().await.unwrap_or_default(),
        None => Default::default(),
    };
    // Each limited key's rate limits and budget now (`GET /api/v1/limits` has every scope).
    let limits: std::collections::HashMap<String, Value> =
        super::limits::states(state.ops.limiter())
            .await
            .0
            .into_iter()
            .map(|(id, _, now)| (id, now))
            .collect();
    let mut out = Vec::new();
    for (org, o) in &view.config.orgs {
        for (name, spec) in &o.api_keys {
            let api = view.keys.get(&(org.clone(), name.clone()));
            let mut r =
                json!({"org": org, "name": name, "source": if api.is_some() {"api"} else {"file"}});
            let m = r.as_object_mut().expect("an object");
            match api {
                Some(k) => {
                    if let Value::Object(s) = serde_json::to_value(&k.settings).unwrap_or_default()
                    {
                        m.extend(s);
                    }
                    m.insert("created_at".into(), Value::from(k.created_at));
                    m.insert("created_by".into(), Value::from(k.created_by.clone()));
                }
                None => {
                    if let crate::config::KeySpec::Detailed(d) = spec {
                        if let Some(models) = &d.models {
                            m.insert("models".into(), json!(models));
                        }
                        if let Some(t) = d.expires {
                            m.insert("expires".into(), Value::from(rfc3339(t)));
                        }
                        if let Some(r) = &d.rate_limit {
                            m.insert("rate_limit".into(), json!(r));
                        }
                        if let Some(b) = &d.budget {
                            m.insert("budget".into(), json!(b));
                        }
                    }
                }
            }
            let a = activity.get(&(org.clone(), name.clone()));
            m.insert(
                "last_used_at".into(),
                a.and_then(|a| a.last_used_at)
                    .map_or(Value::Null, Value::from),
            );
            m.insert(
                "spend_usd".into(),
                Value::from(a.map_or(0.0, |a| a.spend_usd)),
            );
            m.insert("requests".into(), Value::from(a.map_or(0, |a| a.requests)));
            if let Some(now) = limits.get(&format!("key:{org}/{name}")) {
                m.insert("limits".into(), now.clone());
            }
            out.push(r);
        }
    }
    out
}

async fn list_keys(State(state): State<AdminState>) -> Response {
    axum::Json(json!({ "data": key_records(&state).await })).into_response()
}

/// `GET /api/v1/audit` parameters.
#[derive(Debug, Deserialize)]
struct AuditQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

async fn audit(
    State(state): State<AdminState>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) =
        q.map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let store = state.control.store().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage is off (`storage: off`): there is no audit trail".into(),
        )
    })?;
    let limit = q.limit.unwrap_or(100);
    let page = store
        .audit_page(limit, q.before)
        .await
        .map_err(|e| match e.kind() {
            octo_store::ErrorKind::InvalidQuery => ApiError::bad_request(e.message().to_owned()),
            _ => ApiError(StatusCode::SERVICE_UNAVAILABLE, e.message().to_owned()),
        })?;
    let next = if page.len() == limit as usize {
        page.last().map(|e| e.id)
    } else {
        None
    };
    Ok(axum::Json(json!({"data": page, "next": next})).into_response())
}
