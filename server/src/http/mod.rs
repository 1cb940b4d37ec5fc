//! The HTTP side: routes, bearer-token auth, and errors as JSON with the protocol's
//! codes.
//!
//! - `GET /v1/ws` — the WebSocket sync endpoint: upgraded here ([`websocket`]), served by
//!   [`crate::ws`].
//! - `POST /v1/sync` — push and pull in one stateless request ([`sync`]).
//! - `GET /v1/collections/{c}/records/{id}`, `GET /v1/collections/{c}` ([`records`]).
//! - `POST /v1/query` — one-shot queries, JSON query model or SQL ([`query`]).
//! - `GET /health/live`, `GET /health/ready`, `GET /metrics` ([`health`]).
//! - everything else: files of `static_dir`, the example app ([`static_files`]).
//!
//! The `/v1` routes refuse browser requests from origins they do not trust ([`origin`]).

pub mod health;
pub mod origin;
pub mod query;
pub mod records;
pub mod static_files;
pub mod sync;
pub mod websocket;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use weft_core::protocol::ErrorCode;

use crate::auth::Principal;
use crate::error::OpError;
use crate::state::AppState;

/// Every route of the server.
pub fn router(state: Arc<AppState>) -> Router {
    // Every API route checks where a browser request comes from ([`origin`]).
    let api = Router::new()
        .route("/v1/ws", get(websocket::upgrade))
        .route("/v1/sync", post(sync::sync))
        .route("/v1/query", post(query::query))
        .route("/v1/collections/{collection}", get(records::list))
        .route("/v1/collections/{collection}/records/{id}", get(records::get_record))
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&state), origin::guard));
    Router::new()
        .merge(api)
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .fallback(static_files::serve)
        .with_state(state)
}

/// The HTTP status for a protocol error code.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Unauthenticated | ErrorCode::TokenExpired | ErrorCode::TokenInvalid | ErrorCode::TokenRejected => {
            StatusCode::UNAUTHORIZED
        }
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::UnknownCollection => StatusCode::NOT_FOUND,
        ErrorCode::FrameTooLarge | ErrorCode::RecordTooLarge | ErrorCode::ResultTooLarge => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::RateLimited | ErrorCode::TooManySubscriptions => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// `{"error": {"code": 9, "name": "Forbidden", "message": "...", "op_index": 0}}` with
/// the matching status.
pub fn error_response(state: &AppState, error: &OpError) -> Response {
    state.metrics.error(error.code);
    let body = serde_json::json!({
        "error": {
            "code": error.code.as_u16(),
            "name": format!("{:?}", error.code),
            "message": error.message,
            "op_index": error.op_index,
        }
    });
    (status_for(error.code), axum::Json(body)).into_response()
}

/// Reads a request body whole: refused at once when `Content-Length` announces more than
/// `limits.frame_bytes_max` (nothing is read), as soon as more arrives than that, and
/// with `Timeout` when it has not all arrived within `limits.request_body_timeout_ms` —
/// a client cannot hold a handler (and its memory) open by sending slowly.
pub async fn read_body(state: &AppState, headers: &HeaderMap, body: axum::body::Body) -> Result<Bytes, OpError> {
    let limits = &state.config.limits;
    let limit = limits.frame_bytes_max;
    let too_large = |size: String| {
        OpError::new(ErrorCode::FrameTooLarge, format!("request body of {size} bytes, at most {limit} allowed"))
    };
    let announced =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = announced
        && length > limit as u64
    {
        return Err(too_large(length.to_string()));
    }
    let timeout = std::time::Duration::from_millis(limits.request_body_timeout_ms.max(1));
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(OpError::new(
            ErrorCode::Timeout,
            format!("request body not received within {} ms (limits.request_body_timeout_ms)", timeout.as_millis()),
        )),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => {
            // `to_bytes` fails past the limit, or when the body itself fails (the client
            // went away mid-body); tell them apart by the length-limit error.
            let over =
                std::error::Error::source(&error).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if over {
                Err(too_large(format!("more than {limit}")))
            } else {
                Err(OpError::new(ErrorCode::Malformed, format!("request body: {error}")))
            }
        }
    }
}

/// The caller of an HTTP request, from its `Authorization: Bearer` header.
pub fn principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, OpError> {
    let token = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| OpError::new(ErrorCode::TokenInvalid, "Authorization header is not ASCII"))?;
            Some(value.strip_prefix("Bearer ").ok_or_else(|| {
                OpError::new(ErrorCode::TokenInvalid, "Authorization header must be `Bearer <token>`")
            })?)
        }
    };
    state.authenticate(token).map_err(|error| OpError::new(error.code(), error.to_string()))
}
