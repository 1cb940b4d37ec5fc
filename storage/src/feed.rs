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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

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

/// Where the engine sends feed batches. The queue is bounded; the engine never waits on
/// it (it sends under its lock), so a full queue drops the batch and counts it: the
/// consumer then knows it missed changes and must resynchronize from the store (the
/// server disconnects its subscribers, who resume from their cursors, and rebuilds its
/// indexes).
pub(crate) struct Feed {
    pub(crate) filter: FeedFilter,
    sender: SyncSender<FeedBatch>,
    lost: Arc<AtomicU64>,
}

impl Feed {
    /// A feed whose queue holds `capacity` batches, and its receiving end.
    pub(crate) fn new(filter: FeedFilter, capacity: usize) -> (Feed, FeedReceiver) {
        let (sender, receiver) = std::sync::mpsc::sync_channel(capacity.max(1));
        let lost = Arc::new(AtomicU64::new(0));
        (Feed { filter, sender, lost: Arc::clone(&lost) }, FeedReceiver { receiver, lost })
    }

    /// Queues a batch, or drops and counts it when the queue is full.
    pub(crate) fn send(&self, batch: FeedBatch) {
        match self.sender.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.lost.fetch_add(1, Ordering::AcqRel);
            }
            // Nobody listens any more: nothing to do.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// The consuming end of the change feed.
#[derive(Debug)]
pub struct FeedReceiver {
    /// Batches in WAL order (with gaps where batches were dropped; see [`Self::take_lost`]).
    pub receiver: Receiver<FeedBatch>,
    lost: Arc<AtomicU64>,
}

impl FeedReceiver {
    /// How many batches were dropped because the queue was full since the last call.
    pub fn take_lost(&self) -> u64 {
        self.lost.swap(0, Ordering::AcqRel)
    }
}

/// Batches the server's feed queue holds (a burst of this many batches waiting for the
/// publisher is far past normal: it keeps up with the WAL by design).
pub const FEED_QUEUE_BATCHES: usize = 8192;
