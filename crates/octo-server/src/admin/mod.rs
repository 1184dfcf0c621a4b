//! The admin listener: the admin API and `/metrics` on their own address, never on the proxy's,
//! behind bearer tokens.
//!
//! - `admin.listen` (default `127.0.0.1:8081`). A config that names it must bind it, or startup
//!   fails naming the key; without an `admin` section, a taken default address (another instance,
//!   parallel tests) is reported in one line and the gateway serves without the admin listener.
//! - Every route needs `Authorization: Bearer <token>` (`admin.tokens`: plaintext or
//!   `sha256:<hex>`, compared in constant time), except `/metrics` when
//!   `admin.metrics_without_token` is set. Without configured tokens a random one is made at first
//!   start and printed once ([`tokens`]); binding a non-loopback address without configured tokens
//!   is a startup error.
//! - Errors are JSON `{"error": {"message": …}}` with the right status.
//! - The web panel is served at `/` ([`panel`]); people sign in with a user name and password
//!   (`admin.users` or `POST /api/v1/users`) and get a session cookie ([`login`], [`sessions`]);
//!   [`auth`] decides who each request acts as.

pub mod actor;
pub mod api;
pub mod auth;
pub mod health;
pub mod limiter;
pub mod limits;
pub mod login;
pub mod objects;
pub mod panel;
pub mod password;
pub mod sessions;
pub mod tokens;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::net::TcpListener;

pub use self::actor::Actor;
pub use self::tokens::Tokens;

/// The `admin` section of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin listener.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Accepted bearer tokens (plaintext or `sha256:<hex>`).
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Serve `/metrics` without a token (for a Prometheus that cannot send one).
    #[serde(default)]
    pub metrics_without_token: bool,
    /// Users who may sign in to the web panel (`argon2:` password hashes).
    #[serde(default)]
    pub users: Vec<users::UserConfig>,
    /// How long a panel session lasts (`12h` by default).
    #[serde(default)]
    pub session_ttl: Option<String>,
    /// Mark the session cookie `Secure` (set it when the admin listener is reached over HTTPS).
    #[serde(default)]
    pub secure_cookies: bool,
}

impl AdminConfig {
    /// The session lifetime: `session_ttl`, or [`sessions::DEFAULT_TTL`].
    ///
    /// # Errors
    /// A `(key path, message)` for an invalid duration.
    pub fn session_ttl(&self) -> Result<std::time::Duration, (String, String)> {
        match &self.session_ttl {
            None => Ok(sessions::DEFAULT_TTL),
            Some(t) => {
                crate::config::parse_duration(t).map_err(|m| ("admin.session_ttl".to_owned(), m))
            }
        }
    }

    /// Problems with `users` and `session_ttl`, as `(key path, message)`.
    pub fn auth_problems(&self) -> Vec<(String, String)> {
        let mut p = users::problems(&self.users);
        if let Err(e) = self.session_ttl() {
            p.push(e);
        }
        p
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_listen(),
            tokens: Vec::new(),
            metrics_without_token: false,
            users: Vec::new(),
            session_ttl: None,
            secure_cookies: false,
        }
    }
}

/// The admin listener's default address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

fn default_listen() -> String {
    DEFAULT_LISTEN.to_owned()
}

/// An admin API error: a status and a message, rendered as `{"error": {"message": …}}`.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    /// A 400 naming what to fix.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }

    /// A 404.
    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"message": self.1}});
        (self.0, axum::Json(body)).into_response()
    }
}

/// Everything the admin routes read.
#[derive(Clone)]
pub struct AdminState {
    /// Accepted tokens.
    pub tokens: Arc<Tokens>,
    /// Whether `/metrics` is open.
    pub metrics_without_token: bool,
    /// The request log, statistics and metrics.
    pub ops: Arc<crate::ops::Ops>,
    /// Panel users, sessions and sign-in limits.
    pub auth: Arc<auth::Auth>,
    /// Config changes, keys, audit and backend state (`control.rs`).
    pub control: Arc<crate::control::ControlPlane>,
}

async fn require_token(State(state): State<AdminState>, mut req: Request, next: Next) -> Response {
    match auth::authenticate(
        &state.tokens,
        state.metrics_without_token,
        &state.auth,
        &req.method().clone(),
        req.uri().path(),
        &req.headers().clone(),
    )
    .await
    {
        auth::Outcome::Pass(actor, session) => {
            if let Some(actor) = actor {
                req.extensions_mut().insert(actor);
            }
            if let Some(session) = session {
                req.extensions_mut().insert(session);
            }
            next.run(req).await
        }
        auth::Outcome::Refuse(r) => r,
    }
}

/// The admin routes over `state`.
pub fn router(state: AdminState) -> Router {
    api::routes()
        .merge(login::routes())
        .merge(users::routes())
        .merge(panel::routes())
        .merge(limits::routes())
        .merge(objects::routes())
        .merge(health::routes())
        .fallback(|| async {
            ApiError::not_found("no such admin route; see docs/observability.md")
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state)
}

/// How the admin listener came up.
#[derive(Debug)]
pub enum Bound {
    /// Listening.
    Listening(TcpListener),
    /// Not started: why (one line, already logged).
    Skipped(String),
}

/// Binds the admin listener: `explicit` is whether the config has an `admin` section.
///
/// # Errors
/// A `(key path, message)` when an address written in the config cannot be bound or parsed, or a
/// non-loopback address has no configured tokens.
pub async fn bind(
    config: &AdminConfig,
    explicit: bool,
    configured_tokens: bool,
) -> Result<Bound, (String, String)> {
    let addr: SocketAddr = config.listen.parse().map_err(|e| {
        (
            "admin.listen".to_owned(),
            format!(
                "`{}` is not an address like 127.0.0.1:8081: {e}",
                config.listen
            ),
        )
    })?;
    if !addr.ip().is_loopback() && !configured_tokens {
        return Err((
            "admin.listen".into(),
            format!(
                "the admin listener on {addr} would be reachable from other machines without configured credentials: set `admin.tokens` (see `octollm-server hash-token`) or listen on 127.0.0.1"
            ),
        ));
    }
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(Bound::Listening(l)),
        Err(e) if !explicit => {
            let msg = format!(
                "admin listener not started: {addr} is taken ({e}); set `admin.listen` to serve the admin API and /metrics elsewhere"
            );
            tracing::warn!("{msg}");
            Ok(Bound::Skipped(msg))
        }
        Err(e) => Err((
            "admin.listen".into(),
            format!("cannot listen on {addr}: {e}; choose a free address"),
        )),
    }
}
