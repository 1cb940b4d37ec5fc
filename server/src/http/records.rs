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

use super::page_cursor::Start;
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

/// Most rows one page reads while looking for readable ones, per row asked for (at least
/// [`SCAN_BUDGET_MIN`]): a caller who may read few rows of a large collection gets short
/// pages with a sealed `next`, not one request that scans everything.
const SCAN_BUDGET_PER_ROW: usize = 10;
/// The smallest scan budget of a page.
const SCAN_BUDGET_MIN: usize = 10_000;

/// `GET /v1/collections/{c}?after=KEY&limit=N`: `{"records": [...], "next": CURSOR|null}`;
/// pass `next` as `after` for the following page. Rows the caller may not read are
/// skipped, and never named: `next` is a sealed cursor ([`super::page_cursor`]) of the
/// last row returned or, when the page's scan budget ran out among unreadable rows, of
/// where it stopped.
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
        let start = state
            .cursor_seal
            .start(query.get("after").map(String::as_str))
            .map_err(|reason| OpError::new(ErrorCode::Malformed, reason))?;
        let engine = Arc::clone(state.engine()?);
        let shared = Arc::clone(&state);
        tokio::task::spawn_blocking(move || {
            let mut after = match start {
                Start::First => None,
                Start::After(key) => Some(key),
            };
            // One flush for the whole page, not one per chunk read.
            engine.flush_collection(&collection)?;
            let budget = limit.saturating_mul(SCAN_BUDGET_PER_ROW).max(SCAN_BUDGET_MIN);
            let mut scanned = 0;
            let mut records = Vec::with_capacity(limit);
            let mut last_returned: Option<RecordKey> = None;
            let next = loop {
                let chunk = (limit - records.len()).max(100).min(budget - scanned);
                let rows = engine.scan_flushed(&collection, after.as_ref(), chunk)?;
                scanned += rows.len();
                let exhausted = rows.len() < chunk;
                for (key, record) in &rows {
                    after = Some(key.clone());
                    let Some(document) = record.state.document() else { continue };
                    if access.allows(Some(&document)) {
                        records.push(record_json(key, &document));
                        last_returned = Some(key.clone());
                        if records.len() == limit {
                            break;
                        }
                    }
                }
                if records.len() == limit {
                    // More may follow: continue after the last row returned (sealed too,
                    // so that `next` has one form, whatever the key looks like).
                    break last_returned.map(|key| shared.cursor_seal.seal(&key));
                }
                if exhausted {
                    break None;
                }
                if scanned >= budget {
                    // Stopped among rows the caller may not read: the position is sealed.
                    break after.as_ref().map(|key| shared.cursor_seal.seal(key));
                }
            };
            Ok::<_, OpError>(axum::Json(serde_json::json!({ "records": records, "next": next })).into_response())
        })
        .await
        .map_err(|_| OpError::new(ErrorCode::Internal, "scan failed inside the server"))?
    }
    .await;
    result.unwrap_or_else(|error| error_response(&state, &error))
}
