//! `POST /v1/query`: one-shot queries — the query model as JSON, or SQL `SELECT` text
//! (`{"sql": "..."}` or a `text/plain` / `application/sql` body).
//!
//! Evaluation is a full scan of the collection (indexes come with the query planner),
//! restricted first to the rows the caller may read, so aggregates never count rows the
//! rules hide. Answers `{"rows": [...], "next": cursor | null}`; rows are records with
//! their key in `id` (aggregate rows carry group fields and aggregate names).

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use weft_core::key::{CollectionName, RecordKey};
use weft_core::protocol::ErrorCode;
use weft_core::query::{Query, SqlQuery, keyset_to_json, parse_sql};
use weft_core::value::{Document, document_to_json};

use super::records::record_json;
use super::{error_response, principal};
use crate::auth::rules::{Access, Operation};
use crate::state::AppState;
use crate::sync::OpError;

/// Records read per store page while scanning.
const SCAN_PAGE: usize = 1_000;

fn bad(message: String) -> OpError {
    OpError::new(ErrorCode::Malformed, message)
}

/// Reads the request into a query.
pub fn parse_request(content_type: &str, body: &[u8]) -> Result<SqlQuery, OpError> {
    if content_type.starts_with("text/plain") || content_type.starts_with("application/sql") {
        let sql = std::str::from_utf8(body).map_err(|_| bad("SQL text is not UTF-8".to_owned()))?;
        return parse_sql(sql).map_err(|e| bad(format!("SQL: {e}")));
    }
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("request body is not JSON: {e}")))?;
    match json.get("sql") {
        Some(serde_json::Value::String(sql)) => parse_sql(sql).map_err(|e| bad(format!("SQL: {e}"))),
        Some(_) => Err(bad("`sql` must be a string".to_owned())),
        None => Query::from_json(&json).map(SqlQuery::Select).map_err(|e| bad(e.to_string())),
    }
}

/// Every readable document of `collection` (blocking: a scan of the store).
fn readable_documents(
    state: &AppState,
    collection: &CollectionName,
    access: &Access,
) -> Result<Vec<(RecordKey, Document)>, OpError> {
    let engine = state.engine()?;
    let mut out = Vec::new();
    let mut after: Option<RecordKey> = None;
    loop {
        let page = engine.scan(collection, after.as_ref(), SCAN_PAGE)?;
        let full = page.len() == SCAN_PAGE;
        after = page.last().map(|(key, _)| key.clone());
        for (key, record) in page {
            if let Some(document) = record.state.document().filter(|d| access.allows(Some(d))) {
                out.push((key, document));
            }
        }
        if !full {
            return Ok(out);
        }
    }
}

/// Runs a parsed query for `principal`'s view (blocking).
pub fn run(
    state: &AppState,
    principal: &crate::auth::Principal,
    query: &SqlQuery,
) -> Result<serde_json::Value, OpError> {
    let collection = match query {
        SqlQuery::Select(query) => &query.collection,
        SqlQuery::Aggregate(query) => &query.collection,
        SqlQuery::Explain(inner) => match inner.as_ref() {
            SqlQuery::Select(query) => &query.collection,
            SqlQuery::Aggregate(query) => &query.collection,
            SqlQuery::Explain(_) => return Err(bad("EXPLAIN EXPLAIN".to_owned())),
        },
    };
    let access = state.rules.access(principal, collection.as_str(), Operation::Read);
    if access == Access::Denied {
        return Err(OpError::new(ErrorCode::Forbidden, format!("read of {collection} denied for {:?}", principal.sub)));
    }
    if let SqlQuery::Explain(inner) = query {
        // The server keeps no secondary indexes yet: every query is a scan of what the
        // caller may read.
        let plan = match inner.as_ref() {
            SqlQuery::Select(query) => weft_core::query::plan(query, &[]).explain(),
            _ => "full scan, then group".to_owned(),
        };
        let rows_rule = if access == Access::All { "" } else { " (rows filtered by the read rules)" };
        return Ok(serde_json::json!({ "plan": format!("{plan}{rows_rule}"), "rows": [], "next": null }));
    }
    let documents = readable_documents(state, collection, &access)?;
    let records = documents.iter().map(|(key, document)| (key, document.clone()));
    Ok(match query {
        SqlQuery::Select(query) => {
            let result = query.run(records);
            let rows: Vec<serde_json::Value> =
                result.rows.iter().map(|row| record_json(&row.key, &row.document)).collect();
            serde_json::json!({ "rows": rows, "next": result.next.as_ref().map(keyset_to_json) })
        }
        SqlQuery::Aggregate(query) => {
            let rows: Vec<serde_json::Value> = query.run(records).iter().map(document_to_json).collect();
            serde_json::json!({ "rows": rows, "next": null })
        }
        SqlQuery::Explain(_) => serde_json::json!({ "rows": [], "next": null }),
    })
}

/// The handler.
pub async fn query(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let limit = state.config.limits.frame_bytes_max;
    let result = async {
        let body = to_bytes(body, limit)
            .await
            .map_err(|_| OpError::new(ErrorCode::FrameTooLarge, format!("request body over {limit} bytes")))?;
        let principal = principal(&state, &headers)?;
        let content_type =
            headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
        let parsed = parse_request(content_type, &body)?;
        let task_state = Arc::clone(&state);
        tokio::task::spawn_blocking(move || run(&task_state, &principal, &parsed))
            .await
            .map_err(|_| OpError::new(ErrorCode::Internal, "query failed inside the server"))?
    }
    .await;
    match result {
        Ok(json) => axum::Json(json).into_response(),
        Err(error) => error_response(&state, &error),
    }
}
