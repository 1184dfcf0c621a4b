//! `GET /api/v1/limits`: every configured rate limit and budget with its state now — requests
//! and tokens left in the minute, requests in flight, a budget's spend, reserve, remainder and
//! the end of its period — read from Redis when the limits are shared (else this instance's own
//! counts; `store` says which).

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use octo_limits::local::CheckState;
use octo_limits::period::rfc3339;
use octo_limits::policy::Limit;
use serde_json::{Map, Value, json};

use super::AdminState;

/// The route, before authentication is layered on.
pub(super) fn routes() -> Router<AdminState> {
    Router::new().route("/api/v1/limits", get(limits))
}

/// The state now of every limited scope: `(scope, its entry without `now`, now)`, and the store
/// it was read from (`redis` or `local`).
pub(super) async fn states(
    limiter: &octo_limits::Limiter,
) -> (Vec<(String, Map<String, Value>, Value)>, &'static str) {
    let policy = limiter.policy();
    let (states, store) = limiter.states().await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    let mut out = Vec::new();
    for (scope, rate, budget) in policy.scopes() {
        let mut entry = Map::new();
        entry.insert("scope".into(), json!(scope.kind));
        entry.insert("name".into(), json!(scope.name));
        if !rate.is_empty() {
            entry.insert("rate_limit".into(), json!(rate));
        }
        if let Some(b) = budget {
            entry.insert("budget".into(), json!(b));
        }
        let mut now = Map::new();
        for (check, st) in states.iter().filter(|(c, _)| c.scope == *scope) {
            match (check.limit, st) {
                (Limit::Rpm(_), CheckState::Window(w)) => {
                    now.insert("requests".into(), json!(w));
                }
                (Limit::Tpm(_), CheckState::Window(w)) => {
                    now.insert("tokens".into(), json!(w));
                }
                (Limit::Concurrency(_), CheckState::InFlight { in_flight }) => {
                    now.insert("in_flight".into(), json!(in_flight));
                }
                (Limit::Budget(b), CheckState::Spend(s)) => {
                    let (start, end) = b.period.bounds(now_ms);
                    now.insert(
                        "budget".into(),
                        json!({
                            "spent_usd": s.spent,
                            "reserved_usd": s.reserved,
                            "remaining_usd": (b.usd - s.spent - s.reserved).max(0.0),
                            "period_start": rfc3339(start),
                            "resets_at": rfc3339(end),
                        }),
                    );
                }
                _ => {}
            }
        }
        out.push((scope.id(), entry, Value::Object(now)));
    }
    (out, store)
}

async fn limits(State(state): State<AdminState>) -> Response {
    let limiter = state.ops.limiter();
    let (scopes, store) = states(limiter).await;
    let data: Vec<Value> = scopes
        .into_iter()
        .map(|(_, mut entry, now)| {
            entry.insert("now".into(), now);
            Value::Object(entry)
        })
        .collect();
    axum::Json(json!({
        "store": store,
        "redis_fallback": limiter.in_fallback(),
        "data": data,
    }))
    .into_response()
}
