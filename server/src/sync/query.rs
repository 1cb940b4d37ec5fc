//! One-shot queries, for both transports (`POST /v1/query` and the WebSocket `Query`
//! message): parse SQL or the JSON model, scan what the caller may read, evaluate.
//!
//! A select the planner can answer from a declared index ([`crate::indexes`]) reads only
//! the candidates; anything else scans the collection. Either way only rows the caller's
//! view (decided by the session from the rules) allows are considered, so aggregates
//! never count rows the rules hide.

use weft_core::key::{CollectionName, RecordKey};
use weft_core::protocol::{ErrorCode, ServerMessage};
use weft_core::query::{Plan, Query, SQL_PARSE_STACK_BYTES, SqlQuery, execute, keyset_to_json, parse_sql, plan};
use weft_core::value::{Document, Value, document_to_json};

use super::records::record_json;
use super::view::View;
use crate::error::OpError;
use crate::state::AppState;

/// Records read per store page while scanning.
const SCAN_PAGE: usize = 1_000;

fn bad(message: String) -> OpError {
    OpError::new(ErrorCode::Malformed, message)
}

/// Parses SQL on a thread of its own with the stack the parser is tested with
/// ([`SQL_PARSE_STACK_BYTES`]): every walk over a parse tree is bounded by the parser's
/// nesting limit, and this makes the stack that bound needs certain, whatever thread the
/// request arrived on. Blocking: call from a blocking thread.
fn parse_sql_text(sql: &str) -> Result<SqlQuery, OpError> {
    let sql = sql.to_owned();
    let parser = std::thread::Builder::new()
        .name("weft-sql-parse".to_owned())
        .stack_size(SQL_PARSE_STACK_BYTES)
        .spawn(move || parse_sql(&sql))
        .map_err(|e| OpError::new(ErrorCode::Unavailable, format!("cannot start a SQL parser thread: {e}")))?;
    let parsed =
        parser.join().map_err(|_| OpError::new(ErrorCode::Internal, "the SQL parser failed inside the server"))?;
    parsed.map_err(|e| bad(format!("SQL: {e}")))
}

/// Reads the request into a query (blocking: SQL is parsed on a thread of its own).
pub fn parse_request(content_type: &str, body: &[u8]) -> Result<SqlQuery, OpError> {
    if content_type.starts_with("text/plain") || content_type.starts_with("application/sql") {
        let sql = std::str::from_utf8(body).map_err(|_| bad("SQL text is not UTF-8".to_owned()))?;
        return parse_sql_text(sql);
    }
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("request body is not JSON: {e}")))?;
    match json.get("sql") {
        Some(serde_json::Value::String(sql)) => parse_sql_text(sql),
        Some(_) => Err(bad("`sql` must be a string".to_owned())),
        None => Query::from_json(&json).map(SqlQuery::Select).map_err(|e| bad(e.to_string())),
    }
}

/// Every readable document of `collection` (blocking: a scan of the store).
fn readable_documents(
    state: &AppState,
    collection: &CollectionName,
    view: &View,
) -> Result<Vec<(RecordKey, Document)>, OpError> {
    let engine = state.engine()?;
    let mut out = Vec::new();
    let mut after: Option<RecordKey> = None;
    loop {
        let page = engine.scan(collection, after.as_ref(), SCAN_PAGE)?;
        let full = page.len() == SCAN_PAGE;
        after = page.last().map(|(key, _)| key.clone());
        for (key, record) in page {
            if let Some(document) = record.state.document().filter(|d| view.allows(d)) {
                out.push((key, document));
            }
        }
        if !full {
            return Ok(out);
        }
    }
}

/// Runs a parsed query over `view` (the caller's view of [`collection_of`] the query;
/// blocking). An answer past
/// `limits.query_rows_max` rows or `limits.query_bytes_max` bytes (as JSON) is refused
/// with `ResultTooLarge`, naming the limit, so one request cannot make the server build
/// (or a socket queue) an unbounded answer.
pub fn run(state: &AppState, view: &View, query: &SqlQuery) -> Result<serde_json::Value, OpError> {
    let answer = run_unbounded(state, view, query)?;
    let limits = &state.config.limits;
    let rows = answer.get("rows").and_then(serde_json::Value::as_array).map_or(0, Vec::len);
    if rows > limits.query_rows_max {
        return Err(OpError::new(
            ErrorCode::ResultTooLarge,
            format!(
                "the query returns {rows} rows, at most {} allowed (limits.query_rows_max): add LIMIT and page with \
                 the returned cursor, or narrow WHERE",
                limits.query_rows_max
            ),
        ));
    }
    let bytes = json_len(&answer);
    if bytes > limits.query_bytes_max {
        return Err(OpError::new(
            ErrorCode::ResultTooLarge,
            format!(
                "the answer takes {bytes} bytes, at most {} allowed (limits.query_bytes_max): select fewer fields or \
                 rows",
                limits.query_bytes_max
            ),
        ));
    }
    Ok(answer)
}

/// The length of `value` as JSON text, counted without building the text.
fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// The collection a query reads.
pub fn collection_of(query: &SqlQuery) -> Result<&CollectionName, OpError> {
    Ok(match query {
        SqlQuery::Select(query) => &query.collection,
        SqlQuery::Aggregate(query) => &query.collection,
        SqlQuery::Explain(inner) => match inner.as_ref() {
            SqlQuery::Select(query) => &query.collection,
            SqlQuery::Aggregate(query) => &query.collection,
            SqlQuery::Explain(_) => return Err(bad("EXPLAIN EXPLAIN".to_owned())),
        },
    })
}

fn run_unbounded(state: &AppState, view: &View, query: &SqlQuery) -> Result<serde_json::Value, OpError> {
    let collection = collection_of(query)?;
    if let SqlQuery::Explain(inner) = query {
        let plan = match inner.as_ref() {
            SqlQuery::Select(query) => state.indexes.with(collection, |indexes| plan(query, indexes).explain()),
            _ => "full scan, then group".to_owned(),
        };
        let rows_rule = if view.sees_every_row() { "" } else { " (rows filtered by the read rules)" };
        return Ok(serde_json::json!({ "plan": format!("{plan}{rows_rule}"), "rows": [], "next": null }));
    }
    if let SqlQuery::Select(select) = query {
        // An index narrows the candidates; each is read and checked like any row.
        let engine = state.engine()?;
        let planned = state.indexes.with(collection, |indexes| {
            let chosen = plan(select, indexes);
            if chosen == Plan::FullScan {
                return Ok(None);
            }
            let failed = std::cell::Cell::new(None);
            let get = |key: &RecordKey| match engine.read(collection, key) {
                Ok(state) => state.and_then(|s| s.document()).filter(|d| view.allows(d)),
                Err(error) => {
                    failed.set(Some(error));
                    None
                }
            };
            let result = execute(select, &chosen, indexes, get, Vec::new);
            match failed.into_inner() {
                Some(error) => Err(OpError::from(error)),
                None => Ok(Some(result)),
            }
        })?;
        if let Some(result) = planned {
            let rows: Vec<serde_json::Value> =
                result.rows.iter().map(|row| record_json(&row.key, &row.document)).collect();
            return Ok(serde_json::json!({ "rows": rows, "next": result.next.as_ref().map(keyset_to_json) }));
        }
    }
    let documents = readable_documents(state, collection, view)?;
    let records = documents.iter().map(|(key, document)| (key, document.clone()));
    Ok(match query {
        SqlQuery::Select(query) => {
            // The scanned records are filtered on every core.
            let matching = super::scan::filter_records(&documents, &query.filter);
            let result = query.run(matching.into_iter().map(|(key, document)| (key, document.clone())));
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

/// Parses query text: the JSON model when it starts with `{`, else SQL.
pub fn parse_text(text: &str) -> Result<SqlQuery, OpError> {
    if text.trim_start().starts_with('{') {
        parse_request("application/json", text.as_bytes())
    } else {
        parse_sql_text(text)
    }
}

/// The protocol answer for a query result (rows as documents; the cursor as JSON text).
pub fn result_message(request_id: u32, result: &serde_json::Value) -> ServerMessage {
    let rows = result
        .get("rows")
        .and_then(|r| r.as_array())
        .map(|rows| {
            rows.iter()
                .filter_map(|row| match Value::from_json(row) {
                    Ok(Value::Object(document)) => Some(document),
                    _ => None,
                })
                .collect::<Vec<Document>>()
        })
        .unwrap_or_default();
    let next = result.get("next").filter(|n| !n.is_null()).map(|n| n.to_string());
    ServerMessage::QueryResult { request_id, rows, next }
}
