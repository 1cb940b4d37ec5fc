//! Catch-up: the records of a collection changed since a cursor, in pages, filtered by
//! the caller's view.
//!
//! Each (collection, partition) has its own sequence numbers, and a record appears once,
//! at its latest one. A page walks the partitions in order from the cursor, so the
//! cursor it returns is exact: everything up to it per partition has been considered
//! (sent, announced as removed, or hidden). A cursor from another log (a replaced data
//! directory) is treated as no cursor: the whole view is sent again.

use weft_core::change::Change;
use weft_core::codec::Writer;
use weft_core::key::{CollectionName, PARTITION_COUNT, PartitionId, RecordKey};
use weft_core::protocol::{Cursor, LogId};
use weft_storage::engine::Engine;

use super::view::{View, Visibility};
use crate::error::OpError;

/// Most records in one page.
pub const PAGE_RECORDS_MAX: usize = 1_000;
/// A page stops growing once its encoded changes pass this many bytes.
pub const PAGE_BYTES_MAX: usize = 1 << 20;
/// A page stops after considering this many records, sent or not.
pub const PAGE_SCAN_MAX: usize = 10 * PAGE_RECORDS_MAX;

/// One page of catch-up.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// Records inside the view.
    pub changes: Vec<Change>,
    /// Records readable but outside the shape since the cursor: drop local copies.
    pub removed: Vec<RecordKey>,
    /// Where the next page starts.
    pub cursor: Cursor,
    /// True when nothing more was found.
    pub caught_up: bool,
}

/// The cursor catch-up starts from: `from` if it belongs to this log, else empty.
pub fn start_cursor(log: LogId, from: Option<&Cursor>) -> Cursor {
    match from {
        Some(cursor) if cursor.log == log => cursor.clone(),
        _ => Cursor::new(log),
    }
}

/// The next page after `cursor`. The caller flushed the collection
/// (`Engine::flush_collection`) once before the first page; records merged since are
/// delivered by the change feed, or by the next pull.
/// Blocking.
pub fn next_page(engine: &Engine, collection: &CollectionName, cursor: &Cursor, view: &View) -> Result<Page, OpError> {
    let latest = engine.seqs(collection);
    let mut cursor = cursor.clone();
    let mut changes = Vec::new();
    let mut removed = Vec::new();
    let mut scanned = 0usize;
    let mut encoded = Writer::new();
    for number in 0..PARTITION_COUNT {
        let Some(partition) = PartitionId::new(number) else { continue };
        if cursor.seq(partition) >= latest[partition.index()] {
            continue;
        }
        loop {
            let room = PAGE_RECORDS_MAX - changes.len() - removed.len();
            let records = engine.changes_since_flushed(collection, partition, cursor.seq(partition), room)?;
            let fetched = records.len();
            for (key, record) in records {
                cursor.advance(partition, record.seq);
                match view.classify(&record.state) {
                    Visibility::Inside => {
                        let Some(hlc) = record.state.max_hlc() else { continue };
                        let change = Change { collection: collection.clone(), key, hlc, state: record.state };
                        change.encode(&mut encoded);
                        changes.push(change);
                    }
                    Visibility::OutsideShape => removed.push(key),
                    Visibility::Hidden => {}
                }
                scanned += 1;
                // Bounded work per page, even when most records are hidden from this view.
                if encoded.len() >= PAGE_BYTES_MAX || scanned >= PAGE_SCAN_MAX {
                    return Ok(Page { changes, removed, cursor, caught_up: false });
                }
            }
            if changes.len() + removed.len() >= PAGE_RECORDS_MAX {
                return Ok(Page { changes, removed, cursor, caught_up: false });
            }
            if fetched < room {
                break;
            }
        }
    }
    Ok(Page { changes, removed, cursor, caught_up: true })
}
