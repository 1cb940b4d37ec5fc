//! The hub: which connections subscribe to which collections, and the fan-out of the
//! change feed to them.
//!
//! The storage engine reports every batch that changes a watched collection (see
//! `weft_storage::feed`); the publisher thread waits until each is durable, in WAL
//! order, and hands it to every connection registered for its collection except the
//! one that wrote it. Each connection has a bounded queue: when it is full the
//! connection is marked a slow consumer, told, and closed — one slow reader never makes
//! the server buffer without bound or slows the others.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use std::sync::mpsc::RecvTimeoutError;
use tokio::sync::{Notify, mpsc};
use weft_core::key::CollectionName;
use weft_storage::engine::Engine;
use weft_storage::feed::{FEED_QUEUE_BATCHES, FeedBatch, FeedReceiver, FeedRecord};

/// Changed records of one collection, as a subscriber's connection receives them.
#[derive(Debug)]
pub struct LiveBatch {
    /// The collection.
    pub collection: CollectionName,
    /// The records (shared by every receiving connection).
    pub records: Arc<Vec<FeedRecord>>,
}

/// A connection's side of the hub.
#[derive(Debug)]
pub struct Listener {
    /// Live batches for this connection.
    pub receiver: mpsc::Receiver<Arc<LiveBatch>>,
    /// Set and notified when the queue overflowed.
    pub overflow: Arc<Overflow>,
}

/// The slow-consumer signal of one connection.
#[derive(Debug, Default)]
pub struct Overflow {
    flag: AtomicBool,
    /// Woken when the flag is set.
    pub notify: Notify,
}

impl Overflow {
    /// Whether the connection fell behind.
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

struct Registration {
    sender: mpsc::Sender<Arc<LiveBatch>>,
    overflow: Arc<Overflow>,
    collections: HashMap<CollectionName, usize>,
}

/// Subscriptions of every connection.
#[derive(Default)]
pub struct Hub {
    connections: RwLock<HashMap<u64, Registration>>,
    /// Collections with at least one subscriber (read by the engine's feed filter).
    watched: Arc<RwLock<HashMap<CollectionName, usize>>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// Registers a connection; its queue holds `capacity` batches.
    pub fn connect(&self, connection: u64, capacity: usize) -> Listener {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let overflow = Arc::new(Overflow::default());
        let registration = Registration { sender, overflow: Arc::clone(&overflow), collections: HashMap::new() };
        self.connections.write().unwrap_or_else(|p| p.into_inner()).insert(connection, registration);
        Listener { receiver, overflow }
    }

    /// Starts sending `collection`'s changes to `connection` (counted: subscribe twice,
    /// unsubscribe twice).
    pub fn watch(&self, connection: u64, collection: &CollectionName) {
        let mut connections = self.connections.write().unwrap_or_else(|p| p.into_inner());
        let Some(registration) = connections.get_mut(&connection) else { return };
        let count = registration.collections.entry(collection.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            *self.watched.write().unwrap_or_else(|p| p.into_inner()).entry(collection.clone()).or_insert(0) += 1;
        }
    }

    /// Undoes one [`Hub::watch`].
    pub fn unwatch(&self, connection: u64, collection: &CollectionName) {
        let mut connections = self.connections.write().unwrap_or_else(|p| p.into_inner());
        let Some(registration) = connections.get_mut(&connection) else { return };
        if let Some(count) = registration.collections.get_mut(collection) {
            *count -= 1;
            if *count == 0 {
                registration.collections.remove(collection);
                self.release(collection);
            }
        }
    }

    /// Forgets a connection and its subscriptions.
    pub fn disconnect(&self, connection: u64) {
        let removed = self.connections.write().unwrap_or_else(|p| p.into_inner()).remove(&connection);
        if let Some(registration) = removed {
            for collection in registration.collections.keys() {
                self.release(collection);
            }
        }
    }

    fn release(&self, collection: &CollectionName) {
        let mut watched = self.watched.write().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = watched.get_mut(collection) {
            *count -= 1;
            if *count == 0 {
                watched.remove(collection);
            }
        }
    }

    /// The filter the engine's change feed uses.
    pub fn feed_filter(&self) -> weft_storage::feed::FeedFilter {
        let watched = Arc::clone(&self.watched);
        Arc::new(move |collection: &CollectionName| {
            watched.read().unwrap_or_else(|p| p.into_inner()).contains_key(collection)
        })
    }

    /// Marks every connection a slow consumer: the live feed lost changes, so each must
    /// reconnect and catch up from its cursor.
    pub fn overflow_all(&self) {
        let connections = self.connections.read().unwrap_or_else(|p| p.into_inner());
        for registration in connections.values() {
            registration.overflow.flag.store(true, Ordering::Release);
            registration.overflow.notify.notify_one();
        }
    }

    /// Sends a durable batch to every subscriber but its writer; returns how many
    /// records were delivered in all.
    pub fn publish(&self, batch: FeedBatch) -> u64 {
        let mut by_collection: HashMap<CollectionName, Vec<FeedRecord>> = HashMap::new();
        for record in batch.records {
            by_collection.entry(record.collection.clone()).or_default().push(record);
        }
        let connections = self.connections.read().unwrap_or_else(|p| p.into_inner());
        let mut delivered = 0;
        let mut overflowed = HashSet::new();
        for (collection, records) in by_collection {
            let live = Arc::new(LiveBatch { collection, records: Arc::new(records) });
            for (id, registration) in connections.iter() {
                if *id == batch.origin || !registration.collections.contains_key(&live.collection) {
                    continue;
                }
                match registration.sender.try_send(Arc::clone(&live)) {
                    Ok(()) => delivered += live.records.len() as u64,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        overflowed.insert(*id);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        for id in overflowed {
            if let Some(registration) = connections.get(&id) {
                registration.overflow.flag.store(true, Ordering::Release);
                registration.overflow.notify.notify_one();
            }
        }
        delivered
    }
}

/// Runs the publisher on its own thread: takes the engine's feed, waits for each batch to
/// be durable, updates the secondary indexes, publishes it. Ends when the engine drops
/// the feed's sender.
///
/// The feed queue is bounded ([`FEED_QUEUE_BATCHES`]); when it overflowed, changes were
/// dropped, so every subscriber is disconnected as a slow consumer (it reconnects and
/// catches up from its cursor, which the store serves in full) and the indexes are
/// rebuilt from the store.
pub fn start_publisher(
    engine: Arc<Engine>,
    hub: Arc<Hub>,
    metrics: Arc<crate::metrics::Metrics>,
    indexes: Arc<crate::indexes::ServerIndexes>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let watched = hub.feed_filter();
    let indexed = Arc::clone(&indexes);
    let feed = engine.set_feed(
        Arc::new(move |collection: &CollectionName| watched(collection) || indexed.is_indexed(collection)),
        FEED_QUEUE_BATCHES,
    );
    std::thread::Builder::new().name("weft-publisher".to_owned()).spawn(move || {
        loop {
            let batch = match feed.receiver.recv_timeout(LOSS_CHECK) {
                Ok(batch) => Some(batch),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let lost = feed.take_lost();
            if lost > 0 {
                resynchronize(&feed, &engine, &hub, &indexes, lost);
                continue;
            }
            let Some(batch) = batch else { continue };
            if let Err(error) = engine.wait_durable(batch.receipt) {
                // The WAL failed: the batch will not be acknowledged; nothing to publish.
                tracing::error!(%error, "change feed: WAL failed; live updates stop");
                return;
            }
            indexes.apply(&batch);
            metrics.live_changes.inc_by(hub.publish(batch));
        }
    })
}

/// How often the publisher looks for dropped batches when the feed is quiet.
const LOSS_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// After dropped batches: what is still queued is dropped too (the store holds all of
/// it), every subscriber is told it fell behind, and the indexes are rebuilt from the
/// store — after the queue was emptied, so no older batch is applied over the rebuild.
fn resynchronize(feed: &FeedReceiver, engine: &Engine, hub: &Hub, indexes: &crate::indexes::ServerIndexes, lost: u64) {
    while feed.receiver.try_recv().is_ok() {}
    tracing::warn!(lost, "change feed queue overflowed: subscribers resume from their cursors, indexes rebuilt");
    hub.overflow_all();
    if let Err(error) = indexes.rebuild(engine) {
        tracing::error!(%error, "rebuilding the secondary indexes failed; queries fall back to scans");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_all_marks_every_connection_a_slow_consumer() {
        let hub = Hub::default();
        let first = hub.connect(1, 4);
        let second = hub.connect(2, 4);
        assert!(!first.overflow.is_set() && !second.overflow.is_set());
        hub.overflow_all();
        assert!(first.overflow.is_set() && second.overflow.is_set());
    }
}
