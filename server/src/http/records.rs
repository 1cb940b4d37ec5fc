//! Plain reads over HTTP: one record, or a collection in key-ordered pages. Records are
//! JSON objects with their key in `id` (a field named `id` is shadowed by the key). The
//! session applies the read rules: a row the caller may not read is reported as not
//! found, and a listing never names one (`next` is a sealed cursor).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use weft_core::protocol::ErrorCode;

use super::{error_response, principal};
use crate::error::OpError;
use crate::session::Session;
use crate::state::AppState;

pub use crate::sync::records::PAGE_LIMIT_MAX;

/// `GET /v1/collections/{c}/records/{id}`.
pub async fn get_record(
    State(state): State<Arc<AppState>>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let session = Session::stateless(Arc::clone(&state), principal(&state, &headers)?);
        let lookup = (collection.clone(), id.clone());
        tokio::task::spawn_blocking(move || session.get_record(&lookup.0, &lookup.1))
            .await
            .map_err(|_| OpError::new(ErrorCode::Internal, "read failed inside the server"))?
    }
    .await;
    match result {
        Ok(Some(record)) => axum::Json(record).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": {"message": format!("{collection}/{id}: not found")}})),
        )
            .into_response(),
        Err(error) => error_response(&state, &error),
    }
}

/// `GET /v1/collections/{c}?after=KEY&limit=N`: `{"records": [...], "next": CURSOR|null}`;
/// pass `next` as `after` for the following page (see [`Session::list_records`]).
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(collection): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let session = Session::stateless(Arc::clone(&state), principal(&state, &headers)?);
        let limit = match query.get("limit") {
            Some(text) => text
                .parse::<usize>()
                .map_err(|_| OpError::new(ErrorCode::Malformed, format!("limit {text:?} is not a number")))?,
            None => 100,
        };
        let after = query.get("after").cloned();
        tokio::task::spawn_blocking(move || session.list_records(&collection, after.as_deref(), limit))
            .await
            .map_err(|_| OpError::new(ErrorCode::Internal, "scan failed inside the server"))?
    }
    .await;
    match result {
        Ok(page) => axum::Json(page).into_response(),
        Err(error) => error_response(&state, &error),
    }
}
