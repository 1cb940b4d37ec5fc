//! Plain reads over HTTP: one record, or a collection in key-ordered pages. Records are
//! JSON objects with their key in `id` (a field named `id` is shadowed by the key).
//! The read rules apply: a row the caller may not read is reported as not found.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use weft_core::key::{CollectionName, RecordKey};
use weft_core::protocol::ErrorCode;
use weft_core::value::{Document, document_to_json};

use super::{error_response, principal};
use crate::auth::rules::{Access, Operation};
use crate::state::AppState;
use crate::sync::OpError;

/// Largest page `GET /v1/collections/{c}` returns.
pub const PAGE_LIMIT_MAX: usize = 1_000;

/// A record as exported: its fields plus `id`.
pub fn record_json(key: &RecordKey, document: &Document) -> serde_json::Value {
    let mut json = document_to_json(document);
    if let serde_json::Value::Object(fields) = &mut json {
        fields.insert("id".to_owned(), serde_json::Value::String(key.as_str().to_owned()));
    }
    json
}

fn readable(state: &AppState, headers: &HeaderMap, collection: &str) -> Result<(CollectionName, Access), OpError> {
    let principal = principal(state, headers)?;
    let collection =
        CollectionName::new(collection).map_err(|e| OpError::new(ErrorCode::InvalidName, e.to_string()))?;
    let access = state.rules.access(&principal, collection.as_str(), Operation::Read);
    if access == Access::Denied {
        return Err(OpError::new(ErrorCode::Forbidden, format!("read of {collection} denied for {:?}", principal.sub)));
    }
    Ok((collection, access))
}

/// `GET /v1/collections/{c}/records/{id}`.
pub async fn get_record(
    State(state): State<Arc<AppState>>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let (collection, access) = readable(&state, &headers, &collection)?;
        let key = RecordKey::new(id).map_err(|e| OpError::new(ErrorCode::InvalidName, e.to_string()))?;
        let engine = Arc::clone(state.engine()?);
        let lookup = (collection.clone(), key.clone());
        let record = tokio::task::spawn_blocking(move || engine.read(&lookup.0, &lookup.1))
            .await
            .map_err(|_| OpError::new(ErrorCode::Internal, "read failed inside the server"))??;
        let document = record.and_then(|state| state.document()).filter(|document| access.allows(Some(document)));
        Ok::<_, OpError>(match document {
            Some(document) => axum::Json(record_json(&key, &document)).into_response(),
            None => (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"error": {"message": format!("{collection}/{key}: not found")}})),
            )
                .into_response(),
        })
    }
    .await;
    result.unwrap_or_else(|error| error_response(&state, &error))
}

/// `GET /v1/collections/{c}?after=KEY&limit=N`: `{"records": [...], "next": KEY|null}`;
/// pass `next` as `after` for the following page.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(collection): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let (collection, access) = readable(&state, &headers, &collection)?;
        let limit = match query.get("limit") {
            Some(text) => text
                .parse::<usize>()
                .map_err(|_| OpError::new(ErrorCode::Malformed, format!("limit {text:?} is not a number")))?,
            None => 100,
        }
        .clamp(1, PAGE_LIMIT_MAX);
        let after = match query.get("after") {
            Some(key) => {
                Some(RecordKey::new(key.as_str()).map_err(|e| OpError::new(ErrorCode::InvalidName, e.to_string()))?)
            }
            None => None,
        };
        let engine = Arc::clone(state.engine()?);
        let scan_collection = collection.clone();
        let rows = tokio::task::spawn_blocking(move || engine.scan(&scan_collection, after.as_ref(), limit))
            .await
            .map_err(|_| OpError::new(ErrorCode::Internal, "scan failed inside the server"))??;
        let next = (rows.len() == limit).then(|| rows.last().map(|(key, _)| key.as_str().to_owned())).flatten();
        let records: Vec<serde_json::Value> = rows
            .iter()
            .filter_map(|(key, record)| {
                let document = record.state.document()?;
                access.allows(Some(&document)).then(|| record_json(key, &document))
            })
            .collect();
        Ok::<_, OpError>(axum::Json(serde_json::json!({ "records": records, "next": next })).into_response())
    }
    .await;
    result.unwrap_or_else(|error| error_response(&state, &error))
}
