//! The change feed: every applied batch's changed records, in WAL order, for whoever
//! pushes changes to subscribers (the server's live queries and subscriptions).
//!
//! The engine sends a [`FeedBatch`] while it still holds its lock, so batches arrive in
//! the order their WAL records were appended — which is also the order their sequence
//! numbers were assigned. A consumer that waits for each batch to be durable
//! ([`crate::engine::Engine::wait_durable`]) before passing it on therefore never shows a
//! subscriber sequence number N+1 before N, so a subscriber's cursor never skips a
//! change it has not seen.

use std::sync::Arc;

use weft_core::crdt::RecordState;
use weft_core::key::{CollectionName, PartitionId, RecordKey};

use crate::wal::Receipt;

/// Which collections the feed reports (called under the engine lock: keep it cheap).
pub type FeedFilter = Arc<dyn Fn(&CollectionName) -> bool + Send + Sync>;

/// One record changed by a batch.
#[derive(Clone, Debug)]
pub struct FeedRecord {
    /// The collection.
    pub collection: CollectionName,
    /// The record.
    pub key: RecordKey,
    /// Its partition.
    pub partition: PartitionId,
    /// Its new sequence number.
    pub seq: u64,
    /// Its state before the batch (`None` if it did not exist).
    pub before: Option<RecordState>,
    /// Its state after the batch.
    pub after: RecordState,
}

/// The records one applied batch changed in the collections the filter selects.
#[derive(Clone, Debug)]
pub struct FeedBatch {
    /// Wait for this before showing the records to anyone.
    pub receipt: Receipt,
    /// The tag the writer passed to [`crate::engine::Engine::append`] (a connection id,
    /// so that a writer is not sent its own changes back).
    pub origin: u64,
    /// The changed records, in batch order.
    pub records: Vec<FeedRecord>,
}

/// Where the engine sends feed batches.
pub(crate) struct Feed {
    pub(crate) filter: FeedFilter,
    pub(crate) sender: std::sync::mpsc::Sender<FeedBatch>,
}
