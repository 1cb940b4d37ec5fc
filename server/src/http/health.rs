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

/// `GET /health/ready`: 200 once recovery is done and until shutdown starts, else 503.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else if *state.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "recovering\n").into_response()
    }
}

/// `GET /metrics`: OpenMetrics text.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let wal = state.engine_if_open().map(|engine| engine.wal_sync_stats()).unwrap_or_default();
    let body = state.metrics.render(&wal);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}
