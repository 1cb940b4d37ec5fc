//! `POST /v1/query`: one-shot queries — the query model as JSON, or SQL `SELECT` text
//! (`{"sql": "..."}` or a `text/plain` / `application/sql` body), parsed by
//! [`crate::sync::query`] and answered by the caller's session over what it may read.
//! Answers `{"rows": [...], "next": cursor | null}`; rows are records with their key in
//! `id` (aggregate rows carry group fields and aggregate names).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use weft_core::protocol::ErrorCode;

use super::{error_response, principal};
use crate::error::OpError;
use crate::session::Session;
use crate::state::AppState;
use crate::sync::query::parse_request;

/// The handler.
pub async fn query(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let body = super::read_body(&state, &headers, body).await?;
        let session = Session::stateless(Arc::clone(&state), principal(&state, &headers)?);
        let content_type =
            headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
        let content_type = content_type.to_owned();
        tokio::task::spawn_blocking(move || {
            let parsed = parse_request(&content_type, &body)?;
            session.query(&parsed)
        })
        .await
        .map_err(|_| OpError::new(ErrorCode::Internal, "query failed inside the server"))?
    }
    .await;
    match result {
        Ok(json) => axum::Json(json).into_response(),
        Err(error) => error_response(&state, &error),
    }
}
