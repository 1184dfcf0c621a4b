//! Who may call the admin listener, and how: bearer tokens (scripts, Prometheus) or a panel
//! session cookie (people), checked by `authenticate` before every route but the panel's static
//! files and the sign-in routes.
//!
//! - `Authorization: Bearer <token>`: an `admin.tokens` entry; the request acts as
//!   [`Actor::Token`]. No CSRF token is needed (a browser never adds this header by itself).
//! - The `octollm_session` cookie: a session opened by `POST /api/v1/login`; the request acts as
//!   the session's actor. A changing request (anything but `GET`/`HEAD`/`OPTIONS`) must carry the
//!   session's CSRF token in `x-octollm-csrf`, compared in constant time.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use octo_store::Store;

use super::sessions::{CSRF_HEADER, OnceTokens, Refused, Sessions, csrf_matches};
use super::users::UserConfig;
use super::{Actor, ApiError, Tokens};

/// The session a request was authenticated by (its id), for `logout` and `me`.
#[derive(Debug, Clone)]
pub struct SessionId(pub String);

/// The panel's sign-in state: config users, sessions, one-time links and the rate limiter.
#[derive(Debug)]
pub struct Auth {
    /// Users from `admin.users`.
    pub file_users: Vec<UserConfig>,
    /// The config file's name, for errors about file users.
    pub source: String,
    /// The database holding API users and sessions (when storage is on and it has answered).
    pub store: super::sessions::StoreCell,
    /// Open sessions.
    pub sessions: Sessions,
    /// One-time sign-in links.
    pub once: OnceTokens,
    /// Sign-in rate limits.
    pub limiter: super::limiter::Limiter,
}

impl Auth {
    /// Sign-in state over `file_users` (from `source`), keeping API users and sessions in `store`.
    pub fn new(
        file_users: Vec<UserConfig>,
        source: String,
        store: Option<Store>,
        ttl: std::time::Duration,
        secure_cookies: bool,
    ) -> Arc<Self> {
        let store = super::sessions::StoreCell::new(store);
        Arc::new(Auth {
            file_users,
            source,
            sessions: Sessions::new(store.clone(), ttl, secure_cookies),
            store,
            once: OnceTokens::default(),
            limiter: super::limiter::Limiter::default(),
        })
    }

    /// The position of file user `name` in `admin.users`.
    pub fn file_user(&self, name: &str) -> Option<usize> {
        self.file_users.iter().position(|u| u.name == name)
    }

    /// The store, or a 503 saying storage is off or not open yet.
    pub(super) fn store_or_503(&self) -> Result<&Store, ApiError> {
        self.store.get().ok_or_else(|| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "users made through the API live in the database, which is off (`storage: off`: users can only be configured in `admin.users`) or has not answered since the gateway started (try again once it does)"
                    .into(),
            )
        })
    }

    /// Takes the database that did not answer at startup, once it does: API users can sign in
    /// and sessions are kept there from then on (a name both in `admin.users` and in the
    /// database is logged as an error; the file's user wins, as at sign-in).
    pub async fn database_opened(&self, store: Store) {
        self.store.set(store);
        if let Err((at, m)) = self.check_conflicts().await {
            tracing::error!("admin users: at `{at}`: {m}");
        }
    }

    /// Startup check: a name both in `admin.users` and in the database is an error naming both.
    ///
    /// # Errors
    /// `(key path, message)`.
    pub async fn check_conflicts(&self) -> Result<(), (String, String)> {
        let Some(store) = self.store.get() else {
            return Ok(());
        };
        let stored = store.users().await.map_err(|e| {
            (
                "storage.url".to_owned(),
                format!("cannot read admin users: {}", e.message()),
            )
        })?;
        for u in stored {
            if let Some(i) = self.file_user(&u.name) {
                return Err((
                    format!("admin.users[{i}].name"),
                    format!(
                        "user `{}` is defined both in {} and in the database (created through the API); delete one (`DELETE /api/v1/users/{}` with an admin token, or remove it from the file)",
                        u.name, self.source, u.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The stored hash of user `name` (file users first), if any.
    pub async fn password_hash(&self, name: &str) -> Result<Option<String>, ApiError> {
        if let Some(i) = self.file_user(name) {
            return Ok(Some(self.file_users[i].password.clone()));
        }
        match self.store.get() {
            Some(store) => Ok(store
                .user(name)
                .await
                .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.message().to_owned()))?
                .map(|u| u.password_hash)),
            None => Ok(None),
        }
    }
}

/// Paths served without credentials: the panel's files and the sign-in routes. Everything else,
/// unknown paths included, needs a token or a session (a route added later is never public by
/// accident).
fn is_public(method: &Method, path: &str) -> bool {
    match path {
        "/api/v1/login" => method == Method::POST,
        "/" | "/index.html" => true,
        _ if path.starts_with("/assets/") => true,
        _ => path.starts_with("/api/v1/login/once/") && method == Method::GET,
    }
}

fn unauthorized(msg: &str) -> Response {
    let mut r = ApiError(StatusCode::UNAUTHORIZED, msg.into()).into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// How a request authenticated, or the answer refusing it.
pub(super) enum Outcome {
    /// Let through as this actor (and session).
    Pass(Option<Actor>, Option<SessionId>),
    /// Refused with this answer.
    Refuse(Response),
}

/// Decides who `req` acts as; see the [module docs](self).
pub(super) async fn authenticate(
    tokens: &Tokens,
    metrics_without_token: bool,
    auth: &Auth,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Outcome {
    if metrics_without_token && path == "/metrics" {
        return Outcome::Pass(None, None);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    if let Some(t) = bearer {
        return match tokens.position(t.trim()) {
            Some(i) => Outcome::Pass(Some(Actor::Token(i)), None),
            None => Outcome::Refuse(unauthorized("the admin token is not valid")),
        };
    }
    let session = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(super::sessions::from_cookie_header);
    let public = is_public(method, path);
    let Some(id) = session else {
        if public {
            return Outcome::Pass(None, None);
        }
        return Outcome::Refuse(unauthorized(
            "send `Authorization: Bearer <admin token>` (tokens are set in `admin.tokens`) or sign in to the panel",
        ));
    };
    match auth.sessions.find(id).await {
        Ok(found) => {
            let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
            if !safe && !public {
                let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
                if !presented.is_some_and(|p| csrf_matches(id, p)) {
                    return Outcome::Refuse(
                        ApiError(
                            StatusCode::FORBIDDEN,
                            format!(
                                "{} CSRF token: a request changing something with a session cookie must send the session's token in the `{CSRF_HEADER}` header (from POST /api/v1/login or GET /api/v1/me)",
                                if presented.is_some() { "wrong" } else { "missing" }
                            ),
                        )
                        .into_response(),
                    );
                }
            }
            Outcome::Pass(Some(found.actor), Some(SessionId(id.to_owned())))
        }
        Err(Ok(_)) if public => Outcome::Pass(None, None),
        Err(Ok(why)) => {
            let mut r = unauthorized(match why {
                Refused::Expired => "your session has expired: sign in again",
                Refused::Unknown => "not signed in (the session has ended): sign in again",
            });
            r.headers_mut()
                .insert(header::SET_COOKIE, auth.sessions.clear_cookie());
            Outcome::Refuse(r)
        }
        Err(Err(msg)) => {
            Outcome::Refuse(ApiError(StatusCode::SERVICE_UNAVAILABLE, msg).into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_panel_and_sign_in_are_public() {
        assert!(is_public(&Method::GET, "/"));
        assert!(is_public(&Method::GET, "/assets/app.js"));
        assert!(is_public(&Method::POST, "/api/v1/login"));
        assert!(!is_public(&Method::GET, "/api/v1/login"));
        assert!(is_public(&Method::GET, "/api/v1/login/once/abc"));
        assert!(!is_public(&Method::GET, "/api/v1/logs"));
        assert!(!is_public(&Method::GET, "/api"));
        assert!(!is_public(&Method::GET, "/metrics"));
        assert!(!is_public(&Method::POST, "/api/v1/logout"));
        assert!(!is_public(&Method::GET, "/debug/anything"));
        assert!(is_public(&Method::GET, "/index.html"));
    }
}
