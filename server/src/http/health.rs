//! Liveness, readiness (only after recovery) and Prometheus metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// `GET /health/live`: the process serves requests.
pub async fn live() -> &'static str {
    "ok\n"
}

/// `GET /health/ready`: 200 once recovery is done and until shutdown starts, else 503 —
/// also while the storage engine refuses writes after a failed WAL write or sync (only a
/// restart recovers; a supervisor or load balancer should move traffic away).
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if let Some(reason) = state.engine_if_open().and_then(|engine| engine.failure()) {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("storage failed, restart to recover: {reason}\n"))
            .into_response();
    }
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else if *state.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "recovering\n").into_response()
    }
}

/// `GET /metrics`: OpenMetrics text; with `metrics_token` set, only for a request that
/// carries it as a bearer token (401 otherwise).
pub async fn metrics(State(state): State<Arc<AppState>>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &state.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        // Compared in full whatever the first difference.
        let matches = given.is_some_and(|given| {
            given.len() == expected.len()
                && given.bytes().zip(expected.bytes()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
        });
        if !matches {
            return (StatusCode::UNAUTHORIZED, "metrics need `Authorization: Bearer <metrics_token>`\n")
                .into_response();
        }
    }
    let wal = state.engine_if_open().map(|engine| engine.wal_sync_stats()).unwrap_or_default();
    let body = state.metrics.render(&wal);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}
