//! Admin users: who may sign in to the web panel. Users come from the config file
//! (`admin.users`, read-only through the API) and from the API (`POST /api/v1/users`, stored in
//! the database). A name in both places is a startup error naming both.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/users` | `{"data": [{name, source: "file"\|"api", created_at?, created_by?}]}` |
//! | `POST /api/v1/users` `{name, password}` (or `password_hash: "argon2:…"`) | 201 and the user; 409 when the name exists |
//! | `DELETE /api/v1/users/{name}` | 204; the user's sessions end; 409 for a file user |

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};

use super::{Actor, AdminState, ApiError};

/// One `admin.users` entry of the config file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The sign-in name.
    pub name: String,
    /// The password's hash, `argon2:$argon2id$…` (`octollm-server hash-password` makes one).
    pub password: String,
}

/// Checks a user name: 1 to 64 characters of letters, digits, `_`, `-`, `.` and `@`.
///
/// # Errors
/// A message naming the rule.
///
/// ```
/// use octo_server::admin::users::check_name;
/// assert!(check_name("ada.lovelace@example").is_ok());
/// assert!(check_name("").is_err());
/// assert!(check_name("a b").is_err());
/// ```
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().count() <= octo_store::admin::MAX_USER_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a user name: use 1 to {} letters, digits, `_`, `-`, `.` or `@`",
            octo_store::admin::MAX_USER_NAME_LEN
        ))
    }
}

/// The problems of `admin.users`, as `(key path, message)`.
pub fn problems(users: &[UserConfig]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, u) in users.iter().enumerate() {
        if let Err(m) = check_name(&u.name) {
            out.push((format!("admin.users[{i}].name"), m));
        }
        if let Err(m) = super::password::check(&u.password) {
            out.push((format!("admin.users[{i}].password"), m));
        }
        if users[..i].iter().any(|o| o.name == u.name) {
            out.push((
                format!("admin.users[{i}].name"),
                format!("`{}` is listed twice", u.name),
            ));
        }
    }
    out
}

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/users", get(list).post(create))
        .route("/api/v1/users/{name}", delete(remove))
}

/// A user as the API shows it.
#[derive(Debug, Serialize)]
struct UserView {
    name: String,
    source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<String>,
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn api_view(u: octo_store::AdminUser) -> UserView {
    UserView {
        name: u.name,
        source: "api",
        created_at: Some(rfc3339(u.created_at)),
        created_by: u.created_by,
    }
}

async fn list(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let mut data: Vec<UserView> = state
        .auth
        .file_users
        .iter()
        .map(|u| UserView {
            name: u.name.clone(),
            source: "file",
            created_at: None,
            created_by: None,
        })
        .collect();
    if let Some(store) = state.auth.store.get() {
        let stored = store
            .users()
            .await
            .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.message().to_owned()))?;
        data.extend(stored.into_iter().map(api_view));
    }
    Ok(axum::Json(serde_json::json!({ "data": data })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_hash: Option<String>,
}

async fn create(
    State(state): State<AdminState>,
    actor: Option<axum::Extension<Actor>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let new: NewUser = super::login::json_body(&body)?;
    check_name(&new.name).map_err(|m| ApiError::bad_request(format!("`name`: {m}")))?;
    let hash = match (new.password, new.password_hash) {
        (Some(p), None) => {
            if p.chars().count() < super::password::MIN_LEN {
                return Err(ApiError::bad_request(format!(
                    "`password`: use at least {} characters",
                    super::password::MIN_LEN
                )));
            }
            tokio::task::spawn_blocking(move || super::password::hash(&p))
                .await
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
                .map_err(|m| ApiError(StatusCode::INTERNAL_SERVER_ERROR, m))?
        }
        (None, Some(h)) => {
            super::password::check(&h)
                .map_err(|m| ApiError::bad_request(format!("`password_hash`: {m}")))?;
            h
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `password` (at least 12 characters) or `password_hash` (`argon2:…`)",
            ));
        }
    };
    if let Some(i) = state.auth.file_user(&new.name) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "user `{}` is defined in {} at admin.users[{i}]; choose another name",
                new.name, state.auth.source
            ),
        ));
    }
    let store = state.auth.store_or_503()?;
    let by = actor.map(|a| a.0.to_string());
    let created = store
        .create_user(&new.name, &hash, by.as_deref())
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.message().to_owned()))?;
    if !created {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("user `{}` already exists", new.name),
        ));
    }
    tracing::info!(user = %new.name, by = ?by, "admin: user created");
    let user = store
        .user(&new.name)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.message().to_owned()))?
        .ok_or_else(|| ApiError::not_found("the user was deleted meanwhile"))?;
    Ok((StatusCode::CREATED, axum::Json(api_view(user))).into_response())
}

async fn remove(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    actor: Option<axum::Extension<Actor>>,
) -> Result<Response, ApiError> {
    if let Some(i) = state.auth.file_user(&name) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "user `{name}` is defined in {} at admin.users[{i}]: remove it from the file",
                state.auth.source
            ),
        ));
    }
    let store = state.auth.store_or_503()?;
    let gone = store
        .delete_user(&name)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.message().to_owned()))?;
    if !gone {
        return Err(ApiError::not_found(format!("no user `{name}`")));
    }
    state.auth.sessions.forget_actor(&Actor::User(name.clone()));
    tracing::info!(user = %name, by = ?actor.map(|a| a.0.to_string()), "admin: user deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_users_are_checked() {
        let good = super::super::password::hash("a long enough pass").unwrap();
        let users = vec![
            UserConfig {
                name: "ada".into(),
                password: good.clone(),
            },
            UserConfig {
                name: "ada".into(),
                password: "hunter2".into(),
            },
            UserConfig {
                name: "x y".into(),
                password: good,
            },
        ];
        let p = problems(&users);
        let paths: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            paths,
            [
                "admin.users[1].password",
                "admin.users[1].name",
                "admin.users[2].name"
            ]
        );
    }
}
