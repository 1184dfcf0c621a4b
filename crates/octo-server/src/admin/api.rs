//! The admin API's read routes: the request log, statistics and Prometheus metrics.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/logs?model=&backend=&org=&user=&status=&since=&until=&limit=&before=` | `{"data": [record, …], "next": cursor or null}`, newest first |
//! | `GET /api/v1/logs/{id}` | one record, or 404 |
//! | `GET /api/v1/stats?since=&until=&bucket=minute\|hour\|day&group_by=model\|backend\|org\|user\|status` | `{"buckets": [...], "totals": {...}}` |
//! | `GET /metrics` | Prometheus text format |
//!
//! The log and statistics answer 503 when storage is off (`storage: off`) or its database has not
//! answered yet (the gateway started during an outage).

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use octo_store::{ErrorKind, LogQuery, StatsQuery, Store, StoreError};

use super::{AdminState, ApiError};

/// The routes, before authentication is layered on.
pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/logs", get(logs))
        .route("/api/v1/logs/{id}", get(log))
        .route("/api/v1/stats", get(stats))
        .route("/metrics", get(metrics))
}

fn store(state: &AdminState) -> Result<Store, ApiError> {
    state.ops.store().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            state.ops.store_unavailable(),
        )
    })
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))
}

fn store_error(e: StoreError) -> ApiError {
    let status = match e.kind() {
        ErrorKind::InvalidQuery | ErrorKind::Config => StatusCode::BAD_REQUEST,
        ErrorKind::Unavailable | ErrorKind::Closed => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(status, e.message().to_owned())
}

async fn logs(
    State(state): State<AdminState>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let page = store(&state)?.logs(&q).await.map_err(store_error)?;
    Ok(axum::Json(page).into_response())
}

async fn log(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match store(&state)?.log(&id).await.map_err(store_error)? {
        Some(record) => Ok(axum::Json(record).into_response()),
        None => Err(ApiError::not_found(format!(
            "no request `{id}` in the log (it may be older than `storage.retention`)"
        ))),
    }
}

async fn stats(
    State(state): State<AdminState>,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let stats = store(&state)?.stats(&q).await.map_err(store_error)?;
    Ok(axum::Json(stats).into_response())
}

async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.ops.metrics().render(),
    )
        .into_response()
}
