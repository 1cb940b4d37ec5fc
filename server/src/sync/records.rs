//! Plain record reads through a view: one record, or a collection in key order with a
//! bounded scan; and records as the JSON objects the HTTP reads, exports and query
//! answers return (key in `id`).

use weft_core::key::{CollectionName, RecordKey};
use weft_core::value::{Document, document_to_json};
use weft_storage::engine::Engine;

use super::view::View;
use crate::error::OpError;

/// Largest page a listing returns.
pub const PAGE_LIMIT_MAX: usize = 1_000;

/// Most rows one page reads while looking for readable ones, per row asked for (at least
/// [`SCAN_BUDGET_MIN`]): a caller who may read few rows of a large collection gets short
/// pages, not one request that scans everything.
const SCAN_BUDGET_PER_ROW: usize = 10;
/// The smallest scan budget of a page.
const SCAN_BUDGET_MIN: usize = 10_000;

/// A record as exported: its fields plus `id`.
pub fn record_json(key: &RecordKey, document: &Document) -> serde_json::Value {
    let mut json = document_to_json(document);
    if let serde_json::Value::Object(fields) = &mut json {
        fields.insert("id".to_owned(), serde_json::Value::String(key.as_str().to_owned()));
    }
    json
}

/// One record if it exists, is not deleted and `view` lets the caller read it. Blocking.
pub fn get(
    engine: &Engine,
    collection: &CollectionName,
    key: &RecordKey,
    view: &View,
) -> Result<Option<Document>, OpError> {
    let record = engine.read(collection, key)?;
    Ok(record.and_then(|state| state.document()).filter(|document| view.allows(document)))
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing {
    /// The readable records, in key order, as JSON.
    pub records: Vec<serde_json::Value>,
    /// Where the next page continues: the last row returned, or — when the scan budget
    /// ran out among unreadable rows — the row it stopped at, which the caller must not
    /// learn (seal it before handing it out).
    pub next: Option<RecordKey>,
}

/// Up to `limit` (at most [`PAGE_LIMIT_MAX`]) records after `after` that `view` allows.
/// Blocking.
pub fn list(
    engine: &Engine,
    collection: &CollectionName,
    mut after: Option<RecordKey>,
    limit: usize,
    view: &View,
) -> Result<Listing, OpError> {
    let limit = limit.clamp(1, PAGE_LIMIT_MAX);
    // One flush for the whole page, not one per chunk read.
    engine.flush_collection(collection)?;
    let budget = limit.saturating_mul(SCAN_BUDGET_PER_ROW).max(SCAN_BUDGET_MIN);
    let mut scanned = 0;
    let mut records = Vec::with_capacity(limit);
    let mut last_returned: Option<RecordKey> = None;
    let next = loop {
        let chunk = (limit - records.len()).max(100).min(budget - scanned);
        let rows = engine.scan_flushed(collection, after.as_ref(), chunk)?;
        scanned += rows.len();
        let exhausted = rows.len() < chunk;
        for (key, record) in &rows {
            after = Some(key.clone());
            let Some(document) = record.state.document() else { continue };
            if view.allows(&document) {
                records.push(record_json(key, &document));
                last_returned = Some(key.clone());
                if records.len() == limit {
                    break;
                }
            }
        }
        if records.len() == limit {
            break last_returned;
        }
        if exhausted {
            break None;
        }
        if scanned >= budget {
            break after;
        }
    };
    Ok(Listing { records, next })
}
