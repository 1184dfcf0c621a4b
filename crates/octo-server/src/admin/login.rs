//! Signing in to the panel.
//!
//! | route | answer |
//! |---|---|
//! | `POST /api/v1/login` `{name, password}` or `{token}` | 200 `{actor, name, csrf_token, expires_at}` and the session cookie; 401 on a wrong name or password; 429 with `Retry-After` when rate-limited |
//! | `POST /api/v1/logout` | 204; ends the session and clears the cookie |
//! | `GET /api/v1/me` | `{actor, name, via: "session"\|"token", csrf_token?, expires_at?}` |
//! | `GET /api/v1/login/once/{token}` | a one-time link (`--demo` prints one): opens a session and redirects to `/` |
//!
//! The sign-in body must be JSON (`content-type: application/json`): a cross-site HTML form
//! cannot send that, and the cookie is `SameSite=Strict` besides.

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::auth::SessionId;
use super::limiter::Limited;
use super::{Actor, AdminState, ApiError};

/// The largest sign-in or user body read.
const MAX_BODY: usize = 64 * 1024;

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/login/once/{token}", get(once))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
}

/// Parses a JSON body, naming what is wrong in a 400.
pub(super) fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ApiError::bad_request(format!("invalid JSON body: {}", e.inner()))
        } else {
            ApiError::bad_request(format!("`{path}`: {}", e.inner()))
        }
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

fn too_many(limited: Limited) -> Response {
    let (wait, what) = match limited {
        Limited::Address(w) => (w, "from this address"),
        Limited::User(w) => (w, "for this user"),
    };
    let secs = wait.as_secs().max(1);
    let mut r = ApiError(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many sign-in attempts {what}; try again in {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn actor_name(actor: &Actor) -> String {
    match actor {
        Actor::User(n) => n.clone(),
        Actor::Token(i) => format!("admin token #{i}"),
    }
}

async fn open_session(state: &AdminState, actor: &Actor) -> Result<Response, ApiError> {
    let new = state
        .auth
        .sessions
        .open(actor)
        .await
        .map_err(|m| ApiError(StatusCode::SERVICE_UNAVAILABLE, m))?;
    let body = serde_json::json!({
        "actor": actor.to_string(),
        "name": actor_name(actor),
        "csrf_token": new.csrf_token,
        "expires_at": rfc3339(new.expires_at),
    });
    let mut r = axum::Json(body).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, state.auth.sessions.cookie(&new.id));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

async fn login(State(state): State<AdminState>, req: Request) -> Result<Response, ApiError> {
    let addr: IpAddr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the sign-in as JSON (`content-type: application/json`): {\"name\": …, \"password\": …}".into(),
        ));
    }
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| ApiError::bad_request("the sign-in body is too large"))?;
    let creds: Credentials = json_body(&body)?;
    let actor = match (creds.name, creds.password, creds.token) {
        (Some(name), Some(password), None) => {
            if let Err(l) = state.auth.limiter.attempt(addr, Some(&name)) {
                return Ok(too_many(l));
            }
            let stored = state.auth.password_hash(&name).await?;
            let ok = tokio::task::spawn_blocking(move || match stored {
                Some(h) => super::password::verify(&h, &password),
                None => {
                    // Same work as for a known user: no enumeration by timing.
                    let _ = super::password::verify(super::password::decoy(), &password);
                    false
                }
            })
            .await
            .unwrap_or(false);
            if !ok {
                state.auth.limiter.failed(&name);
                tracing::warn!(user = %name, %addr, "admin: failed sign-in");
                return Err(ApiError(
                    StatusCode::UNAUTHORIZED,
                    "wrong user name or password".into(),
                ));
            }
            state.auth.limiter.succeeded(&name);
            Actor::User(name)
        }
        (None, None, Some(token)) => {
            if let Err(l) = state.auth.limiter.attempt(addr, None) {
                return Ok(too_many(l));
            }
            match state.tokens.position(token.trim()) {
                Some(i) => Actor::Token(i),
                None => {
                    tracing::warn!(%addr, "admin: failed sign-in with a token");
                    return Err(ApiError(
                        StatusCode::UNAUTHORIZED,
                        "the admin token is not valid".into(),
                    ));
                }
            }
        }
        _ => {
            return Err(ApiError::bad_request(
                "send `{\"name\": …, \"password\": …}` or `{\"token\": <admin token>}`",
            ));
        }
    };
    tracing::info!(actor = %actor, %addr, "admin: signed in");
    open_session(&state, &actor).await
}

async fn once(State(state): State<AdminState>, Path(token): Path<String>) -> Response {
    let Some(actor) = state.auth.once.redeem(&token) else {
        return (
            StatusCode::GONE,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><meta charset=utf-8><title>OctoLLM</title><p>This sign-in link was already used or has expired. <a href=\"/\">Open the panel</a> and sign in.</p>",
        )
            .into_response();
    };
    match state.auth.sessions.open(&actor).await {
        Ok(new) => {
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, state.auth.sessions.cookie(&new.id));
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(m) => ApiError(StatusCode::SERVICE_UNAVAILABLE, m).into_response(),
    }
}

async fn logout(
    State(state): State<AdminState>,
    session: Option<axum::Extension<SessionId>>,
) -> Result<Response, ApiError> {
    if let Some(axum::Extension(SessionId(id))) = session {
        state
            .auth
            .sessions
            .close(&id)
            .await
            .map_err(|m| ApiError(StatusCode::SERVICE_UNAVAILABLE, m))?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, state.auth.sessions.clear_cookie());
    Ok(r)
}

async fn me(
    State(state): State<AdminState>,
    actor: Option<axum::Extension<Actor>>,
    session: Option<axum::Extension<SessionId>>,
) -> Result<Response, ApiError> {
    let Some(axum::Extension(actor)) = actor else {
        return Err(ApiError(StatusCode::UNAUTHORIZED, "not signed in".into()));
    };
    let mut body = serde_json::json!({
        "actor": actor.to_string(),
        "name": actor_name(&actor),
        "via": if session.is_some() { "session" } else { "token" },
    });
    if let Some(axum::Extension(SessionId(id))) = session {
        body["csrf_token"] = super::sessions::csrf_token(&id).into();
        if let Ok(found) = state.auth.sessions.find(&id).await {
            body["expires_at"] = rfc3339(found.expires_at).into();
        }
    }
    let mut r = axum::Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
