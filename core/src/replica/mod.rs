//! The client replica: local state, clock, outbox and sync cursors, sans-IO.
//!
//! A [`Replica`] applies local writes at once (no network wait), queues them in its
//! [`Outbox`], and speaks the sync protocol by producing [`ClientMessage`]s and consuming
//! [`ServerMessage`]s. It never touches a socket: a transport (WebSocket, HTTP, a test
//! harness) moves the frames, calls [`Replica::disconnected`] when the link drops, and
//! feeds replies to [`Replica::handle`].
//!
//! ```
//! use weft_core::hlc::{ManualClock, NodeId};
//! use weft_core::key::{CollectionName, RecordKey};
//! use weft_core::replica::Replica;
//! use weft_core::value::{Document, Value};
//!
//! let clock = ManualClock::new(1_700_000_000_000);
//! let mut phone = Replica::new(NodeId(1), clock.clone());
//! let mut laptop = Replica::new(NodeId(2), clock.clone());
//! let todos = CollectionName::new("todos").unwrap();
//! let key = RecordKey::new("t1").unwrap();
//!
//! phone.put(&todos, &key, Document::from([("title".into(), Value::from("milk"))])).unwrap();
//! laptop.update(&todos, &key, Document::from([("done".into(), Value::from(true))])).unwrap();
//! // Exchange the changes in any order: both converge.
//! let from_phone: Vec<_> = phone.outbox().unacknowledged().cloned().collect();
//! let from_laptop: Vec<_> = laptop.outbox().unacknowledged().cloned().collect();
//! for change in from_phone { laptop.apply_remote(change).unwrap(); }
//! for change in from_laptop { phone.apply_remote(change).unwrap(); }
//! assert_eq!(phone.get(&todos, "t1"), laptop.get(&todos, "t1"));
//! ```

mod collection;
mod exchange;
mod live;
mod outbox;

use std::collections::BTreeMap;

pub use collection::Collection;
pub use live::LiveQueryId;
pub use outbox::{InFlight, Outbox};

use crate::change::Change;
use crate::crdt::{RecordState, ops};
use crate::hlc::{ClockDriftError, ClockSource, Hlc, HlcClock, MAX_DRIFT_MS_DEFAULT, NodeId, OffsetClock};
use crate::key::{CollectionName, KeyError, RecordKey, validate_field_name};
use crate::merkle::{ReconcileError, ReconcileStep, respond};
use crate::protocol::{
    BatchId, ClientMessage, Cursor, ErrorCode, PROTOCOL_VERSION, ServerMessage, SessionId, Shape, SubscriptionId,
};
use crate::query::{LiveEvent, Query, Row};
use crate::value::{Document, Value};

/// Deepest nesting a written value may have; peers refuse deeper ones when decoding
/// (the decoder's limit leaves room for the message's own levels).
pub const VALUE_DEPTH_MAX: usize = 32;
const _: () = assert!(VALUE_DEPTH_MAX + 8 <= crate::codec::DEPTH_MAX_DEFAULT);

/// Settings of a replica.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// Largest accepted lead of a remote HLC over this replica's clock.
    pub max_drift_ms: u64,
    /// Most changes per pushed batch.
    pub push_batch_max: usize,
}

impl Default for ReplicaConfig {
    fn default() -> ReplicaConfig {
        ReplicaConfig { max_drift_ms: MAX_DRIFT_MS_DEFAULT, push_batch_max: 500 }
    }
}

/// A local write that cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// A field name breaks its rules.
    #[error(transparent)]
    Name(#[from] KeyError),
    /// A value nested deeper than [`VALUE_DEPTH_MAX`].
    #[error("field {field:?}: value nested deeper than {VALUE_DEPTH_MAX} levels")]
    TooDeep {
        /// The field.
        field: String,
    },
}

/// A server message this replica cannot accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The server speaks another protocol version.
    #[error("server speaks protocol version {server}, this replica speaks {PROTOCOL_VERSION}")]
    UnsupportedVersion {
        /// The server's version.
        server: u32,
    },
    /// Changes for a subscription this replica does not have.
    #[error("changes for unknown subscription {0:?}")]
    UnknownSubscription(SubscriptionId),
    /// Changes for another collection than the subscription's.
    #[error("subscription to {subscription} received a change to {collection}")]
    ForeignChange {
        /// The subscription's collection.
        subscription: CollectionName,
        /// The collection of the stray change.
        collection: CollectionName,
    },
    /// A reconciliation step that cannot be answered.
    #[error("reconciliation of {collection}: {source}")]
    Reconcile {
        /// The collection.
        collection: CollectionName,
        /// Why.
        source: ReconcileError,
    },
}

/// Something the application may want to know after [`Replica::handle`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ReplicaEvent {
    /// The server accepted the hello.
    Connected {
        /// The server node.
        node_id: NodeId,
    },
    /// A batch of local changes is durable on the server.
    Acknowledged {
        /// The batch.
        batch_id: BatchId,
        /// Its number of changes.
        changes: usize,
    },
    /// The server refused a batch for good; its changes stay applied locally but will not
    /// reach the server.
    Rejected {
        /// The batch.
        batch_id: BatchId,
        /// Why.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
        /// The refused changes.
        changes: Vec<Change>,
    },
    /// Records changed because of remote changes.
    RemoteChanges {
        /// The collection.
        collection: CollectionName,
        /// The records that changed.
        keys: Vec<RecordKey>,
    },
    /// Records left a subscription's view (its shape, or what the rules let this client
    /// read); their local copies were dropped.
    Removed {
        /// The collection.
        collection: CollectionName,
        /// The records dropped.
        keys: Vec<RecordKey>,
    },
    /// The answer to a one-shot query sent with [`ClientMessage::Query`].
    QueryResult {
        /// The query's request id.
        request_id: u32,
        /// The rows.
        rows: Vec<Document>,
        /// Where the next page starts (JSON text), if any.
        next: Option<String>,
    },
    /// A subscription finished catching up.
    CaughtUp {
        /// The collection.
        collection: CollectionName,
    },
    /// A reconciliation exchange finished.
    Reconciled {
        /// The collection.
        collection: CollectionName,
    },
    /// An error not tied to a batch.
    ServerError {
        /// Stable code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
        /// The server closes the connection.
        fatal: bool,
    },
}

/// What [`Replica::handle`] produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Handled {
    /// Messages to send to the server, in order.
    pub send: Vec<ClientMessage>,
    /// Events for the application.
    pub events: Vec<ReplicaEvent>,
}

/// An in-memory replica of some collections.
#[derive(Debug)]
pub struct Replica<C> {
    clock: HlcClock<OffsetClock<C>>,
    config: ReplicaConfig,
    collections: BTreeMap<CollectionName, Collection>,
    outbox: Outbox,
    cursors: BTreeMap<CollectionName, Cursor>,
    subscriptions: BTreeMap<SubscriptionId, (CollectionName, Option<Shape>)>,
    next_subscription_id: u32,
    reconciliations: BTreeMap<SessionId, CollectionName>,
    next_session_id: u32,
    connected: bool,
    live: live::LiveQueries,
    /// Records changed since [`Replica::take_changed_keys`], when a host persists them
    /// (a list, deduplicated when taken: cheaper than a set on the apply path).
    changed: Option<Vec<(CollectionName, RecordKey)>>,
}

impl<C: ClockSource> Replica<C> {
    /// A replica identified by `id` (its HLC node id), reading time from `source`.
    pub fn new(id: NodeId, source: C) -> Replica<C> {
        Replica::with_config(id, source, ReplicaConfig::default())
    }

    /// A replica with explicit settings.
    pub fn with_config(id: NodeId, source: C, config: ReplicaConfig) -> Replica<C> {
        Replica {
            clock: HlcClock::new(id, OffsetClock::new(source)).with_max_drift_ms(config.max_drift_ms),
            config,
            collections: BTreeMap::new(),
            outbox: Outbox::default(),
            cursors: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            next_subscription_id: 0,
            reconciliations: BTreeMap::new(),
            next_session_id: 0,
            connected: false,
            live: live::LiveQueries::default(),
            changed: None,
        }
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.clock.node()
    }

    /// The replica's clock.
    pub fn clock(&self) -> &HlcClock<OffsetClock<C>> {
        &self.clock
    }

    // ----- local writes -------------------------------------------------------------

    /// Replaces the record with `document` (fields not in it disappear).
    pub fn put(&mut self, collection: &CollectionName, key: &RecordKey, document: Document) -> Result<Hlc, WriteError> {
        validate_document(&document)?;
        let hlc = self.clock.now();
        let delta = ops::put(self.state(collection, key), document, hlc);
        Ok(self.commit_local(collection, key, hlc, delta))
    }

    /// Sets the named top-level fields, leaving the others as they are.
    pub fn update(
        &mut self,
        collection: &CollectionName,
        key: &RecordKey,
        partial: Document,
    ) -> Result<Hlc, WriteError> {
        validate_document(&partial)?;
        let hlc = self.clock.now();
        let delta = ops::update(self.state(collection, key), partial, hlc);
        Ok(self.commit_local(collection, key, hlc, delta))
    }

    /// Deletes the record (a later write brings it back).
    pub fn delete(&mut self, collection: &CollectionName, key: &RecordKey) -> Hlc {
        let hlc = self.clock.now();
        let delta = ops::delete(self.state(collection, key), hlc);
        self.commit_local(collection, key, hlc, delta)
    }

    /// Adds `by` (negative: subtracts) to the counter field `field`.
    pub fn increment(
        &mut self,
        collection: &CollectionName,
        key: &RecordKey,
        field: &str,
        by: i64,
    ) -> Result<Hlc, WriteError> {
        validate_field_name(field)?;
        let hlc = self.clock.now();
        let delta = ops::increment(self.state(collection, key), field, by, self.id(), hlc);
        Ok(self.commit_local(collection, key, hlc, delta))
    }

    /// Adds `element` to the record's set.
    pub fn set_add(&mut self, collection: &CollectionName, key: &RecordKey, element: Value) -> Result<Hlc, WriteError> {
        if depth(&element) > VALUE_DEPTH_MAX {
            return Err(WriteError::TooDeep { field: "(set element)".to_owned() });
        }
        let hlc = self.clock.now();
        Ok(self.commit_local(collection, key, hlc, ops::set_add(element, hlc)))
    }

    /// Removes `element` from the record's set (the adds this replica has seen; a
    /// concurrent add elsewhere survives). `None` when the element is not present.
    pub fn set_remove(&mut self, collection: &CollectionName, key: &RecordKey, element: &Value) -> Option<Hlc> {
        let delta = ops::set_remove(self.state(collection, key), element)?;
        let hlc = self.clock.now();
        Some(self.commit_local(collection, key, hlc, delta))
    }

    fn state(&self, collection: &CollectionName, key: &RecordKey) -> Option<&RecordState> {
        self.collections.get(collection)?.state(key.as_str())
    }

    fn commit_local(&mut self, collection: &CollectionName, key: &RecordKey, hlc: Hlc, delta: RecordState) -> Hlc {
        let change = Change { collection: collection.clone(), key: key.clone(), hlc, state: delta };
        self.collection_mut(collection).apply(key.clone(), change.state.clone());
        self.notify(collection, std::slice::from_ref(key));
        self.outbox.push(change);
        hlc
    }

    /// Feeds changed records to the live queries of their collection (and to the
    /// changed-key set, when tracked).
    fn notify(&mut self, collection: &CollectionName, keys: &[RecordKey]) {
        if let Some(changed) = &mut self.changed {
            changed.extend(keys.iter().map(|key| (collection.clone(), key.clone())));
        }
        if let Some(target) = self.collections.get(collection) {
            self.live.notify(target, keys);
        }
    }

    // ----- live queries -------------------------------------------------------------

    /// Starts a live query; returns its id and its current result. From now on every
    /// change to its collection — local writes and synced changes alike — produces
    /// events, collected by [`Replica::take_live_events`].
    pub fn watch(&mut self, query: Query) -> (LiveQueryId, Vec<Row>) {
        let collection = self.collections.get(&query.collection);
        self.live.start(query, collection)
    }

    /// Stops a live query (its pending events are dropped).
    pub fn unwatch(&mut self, id: LiveQueryId) -> bool {
        self.live.stop(id)
    }

    /// The events produced since the last call, in order, per live query.
    pub fn take_live_events(&mut self) -> Vec<(LiveQueryId, LiveEvent)> {
        self.live.take()
    }

    /// A live query's current result.
    pub fn live_rows(&self, id: LiveQueryId) -> Option<Vec<Row>> {
        self.live.rows(id)
    }

    fn collection_mut(&mut self, name: &CollectionName) -> &mut Collection {
        // Looked up before inserting so the hot path (an existing collection) does not
        // allocate a copy of the name.
        if !self.collections.contains_key(name) {
            self.collections.insert(name.clone(), Collection::new(name.clone()));
        }
        match self.collections.get_mut(name) {
            Some(collection) => collection,
            None => unreachable!("collection {name} inserted above"),
        }
    }

    // ----- reads --------------------------------------------------------------------

    /// The record's visible fields, or `None` if absent or deleted.
    pub fn get(&self, collection: &CollectionName, key: &str) -> Option<Document> {
        self.collections.get(collection)?.document(key)
    }

    /// The record's visible set members.
    pub fn members(&self, collection: &CollectionName, key: &str) -> Vec<Value> {
        self.collections.get(collection).map(|c| c.members(key)).unwrap_or_default()
    }

    /// A collection, if this replica holds any record of it.
    pub fn collection(&self, name: &CollectionName) -> Option<&Collection> {
        self.collections.get(name)
    }

    /// Every collection held.
    pub fn collections(&self) -> impl Iterator<Item = &Collection> {
        self.collections.values()
    }

    /// Local changes not yet acknowledged.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Restores unacknowledged changes persisted by the host (after a restart): they are
    /// applied locally again (harmless if already there) and queued for the server.
    pub fn restore_outbox(&mut self, changes: Vec<Change>) {
        for change in changes {
            self.clock.advance_to(change.hlc);
            if self.collection_mut(&change.collection).apply(change.key.clone(), change.state.clone()) {
                self.notify(&change.collection, std::slice::from_ref(&change.key));
            }
            self.outbox.push(change);
        }
    }

    /// Loads records the host persisted earlier (whole record states, as
    /// [`Collection::record_change`] gives them). No drift check: they were accepted
    /// before. They do not count as changed for [`Replica::take_changed_keys`].
    pub fn restore_records(&mut self, changes: Vec<Change>) -> usize {
        if let Some(latest) = changes.iter().map(|c| c.hlc).max() {
            self.clock.advance_to(latest);
        }
        let applied = self.apply_grouped_quietly(changes);
        let mut count = 0;
        for (collection, keys) in &applied {
            count += keys.len();
            if let Some(target) = self.collections.get(collection) {
                self.live.notify(target, keys);
            }
        }
        count
    }

    /// Drops a record the host's storage marks as gone from this replica's view (it
    /// left a subscription's shape in an earlier session). Live queries see it go; it
    /// does not count as changed for [`Replica::take_changed_keys`].
    pub fn restore_forgotten(&mut self, collection: &CollectionName, key: &RecordKey) -> bool {
        let Some(target) = self.collections.get_mut(collection) else { return false };
        if !target.forget(key) {
            return false;
        }
        self.live.notify(target, std::slice::from_ref(key));
        true
    }

    /// Restores a collection's sync cursor persisted by the host, so the next
    /// subscription resumes where the persisted records end.
    pub fn restore_cursor(&mut self, collection: &CollectionName, cursor: Cursor) {
        self.cursors.entry(collection.clone()).or_insert_with(|| Cursor::new(cursor.log)).merge(&cursor);
    }

    /// Every sync cursor, per collection.
    pub fn cursors(&self) -> impl Iterator<Item = (&CollectionName, &Cursor)> {
        self.cursors.iter()
    }

    /// Starts recording which records change (local writes, synced changes, removals,
    /// reconciliation), for a host that persists records one by one.
    pub fn track_changed_keys(&mut self) {
        self.changed.get_or_insert_with(Default::default);
    }

    /// The records changed since the last call (empty unless tracking was started).
    pub fn take_changed_keys(&mut self) -> Vec<(CollectionName, RecordKey)> {
        match &mut self.changed {
            Some(changed) => {
                let mut keys = std::mem::take(changed);
                keys.sort_unstable();
                keys.dedup();
                keys
            }
            None => Vec::new(),
        }
    }

    /// The sync cursor of a collection.
    pub fn cursor(&self, collection: &CollectionName) -> Option<&Cursor> {
        self.cursors.get(collection)
    }

    // ----- remote changes -----------------------------------------------------------

    /// Applies a change from a peer, after the drift check. Returns whether it changed
    /// anything.
    pub fn apply_remote(&mut self, change: Change) -> Result<bool, ClockDriftError> {
        self.clock.observe(change.hlc)?;
        let changed = self.collection_mut(&change.collection).apply(change.key.clone(), change.state);
        if changed {
            self.notify(&change.collection, std::slice::from_ref(&change.key));
        }
        Ok(changed)
    }

    /// Applies a batch of changes from a peer. The drift check covers the whole batch
    /// first: if any change drifted, nothing is applied and the error names its index.
    /// Returns the number of records that changed.
    pub fn apply_remote_batch(&mut self, changes: Vec<Change>) -> Result<usize, (usize, ClockDriftError)> {
        for (index, change) in changes.iter().enumerate() {
            self.clock.check_drift(change.hlc).map_err(|error| (index, error))?;
        }
        if let Some(latest) = changes.iter().map(|c| c.hlc).max() {
            self.clock.advance_to(latest);
        }
        Ok(self.apply_grouped(changes).iter().map(|(_, keys)| keys.len()).sum())
    }

    /// Applies changes collection by collection (changes to different collections are
    /// independent; within one collection the order is kept); returns the changed keys
    /// per collection.
    fn apply_grouped(&mut self, changes: Vec<Change>) -> Vec<(CollectionName, Vec<RecordKey>)> {
        let applied = self.apply_grouped_quietly(changes);
        for (collection, keys) in &applied {
            self.notify(collection, keys);
        }
        applied
    }

    fn apply_grouped_quietly(&mut self, changes: Vec<Change>) -> Vec<(CollectionName, Vec<RecordKey>)> {
        let Some(first) = changes.first().map(|c| c.collection.clone()) else {
            return Vec::new();
        };
        if changes.iter().all(|c| c.collection == first) {
            let keys = self.collection_mut(&first).apply_batch(changes);
            return vec![(first, keys)];
        }
        let mut groups: BTreeMap<CollectionName, Vec<Change>> = BTreeMap::new();
        for change in changes {
            groups.entry(change.collection.clone()).or_default().push(change);
        }
        groups
            .into_iter()
            .map(|(collection, changes)| {
                let keys = self.collection_mut(&collection).apply_batch(changes);
                (collection, keys)
            })
            .collect()
    }

    /// Drops tombstones older than `horizon` in every collection (see docs/semantics.md).
    pub fn prune(&mut self, horizon: Hlc) -> usize {
        self.collections.values_mut().map(|c| c.prune(horizon)).sum()
    }

    // ----- protocol -----------------------------------------------------------------

    /// The hello that opens a connection.
    pub fn hello(&self, token: Option<String>) -> ClientMessage {
        ClientMessage::Hello { protocol_version: PROTOCOL_VERSION, replica_id: self.id(), token }
    }

    /// Whether a welcome has been received since the last disconnect.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Subscribes to a collection. Returns the message to send now if connected;
    /// otherwise it is sent after the next welcome.
    pub fn subscribe(&mut self, collection: &CollectionName) -> Option<ClientMessage> {
        self.subscribe_shape(collection, None)
    }

    /// Subscribes to the records of a collection inside `shape` (`None`: all of them).
    /// One subscription per collection: subscribing again replaces the shape.
    pub fn subscribe_shape(&mut self, collection: &CollectionName, shape: Option<Shape>) -> Option<ClientMessage> {
        if let Some((id, entry)) = self.subscriptions.iter_mut().find(|(_, (c, _))| c == collection) {
            let id = *id;
            entry.1 = shape;
            return self.connected.then(|| self.subscribe_message(id));
        }
        self.next_subscription_id += 1;
        let id = SubscriptionId(self.next_subscription_id);
        self.subscriptions.insert(id, (collection.clone(), shape));
        self.connected.then(|| self.subscribe_message(id))
    }

    fn subscribe_message(&self, id: SubscriptionId) -> ClientMessage {
        let (collection, shape) =
            self.subscriptions.get(&id).cloned().unwrap_or_else(|| unreachable!("known subscription"));
        let cursor = self.cursors.get(&collection).cloned();
        ClientMessage::Subscribe { subscription_id: id, collection, cursor, shape }
    }

    /// The next batch of local changes to push, if connected and any are pending.
    pub fn next_push(&mut self) -> Option<ClientMessage> {
        if !self.connected {
            return None;
        }
        let batch = self.outbox.take_batch(self.config.push_batch_max)?;
        Some(ClientMessage::Push { batch_id: batch.batch_id, changes: batch.changes.clone() })
    }

    /// The link dropped: in-flight batches will be pushed again after reconnecting.
    pub fn disconnected(&mut self) {
        self.connected = false;
        self.outbox.requeue();
        self.reconciliations.clear();
    }

    /// Starts a merkle reconciliation of `collection` with the server.
    pub fn start_reconcile(&mut self, collection: &CollectionName) -> ClientMessage {
        self.next_session_id += 1;
        let session_id = SessionId(self.next_session_id);
        self.reconciliations.insert(session_id, collection.clone());
        let step = ReconcileStep::start(self.collection_mut(collection).merkle());
        ClientMessage::Reconcile { session_id, collection: collection.clone(), step }
    }

    /// Takes in a reconciliation step from any peer: merges its records, then answers
    /// it unless it asks nothing (`Ok(None)`: the exchange is over).
    pub fn reconcile_step(
        &mut self,
        collection: &CollectionName,
        step: ReconcileStep,
    ) -> Result<Option<ReconcileStep>, ReconcileError> {
        let asks_nothing = step.asks_nothing();
        // Records from a peer are checked like any remote change, all before any merges.
        for record in &step.records {
            self.clock.check_drift(record.hlc).map_err(ReconcileError::ClockDrift)?;
        }
        for record in &step.records {
            self.clock.advance_to(record.hlc);
            if self.collection_mut(collection).apply(record.key.clone(), record.state.clone()) {
                self.notify(collection, std::slice::from_ref(&record.key));
            }
        }
        if asks_nothing {
            return Ok(None);
        }
        let target = self.collection_mut(collection);
        respond(target.merkle(), &step, target).map(Some)
    }

    /// Handles one server message; returns what to send back and what happened.
    pub fn handle(&mut self, message: ServerMessage) -> Result<Handled, ProtocolError> {
        let mut out = Handled::default();
        match message {
            ServerMessage::Welcome { protocol_version, server_time_ms, node_id, .. } => {
                if protocol_version != PROTOCOL_VERSION {
                    return Err(ProtocolError::UnsupportedVersion { server: protocol_version });
                }
                self.clock.source_mut().align_to(server_time_ms);
                self.connected = true;
                self.outbox.requeue();
                out.events.push(ReplicaEvent::Connected { node_id });
                let ids: Vec<SubscriptionId> = self.subscriptions.keys().copied().collect();
                out.send.extend(ids.into_iter().map(|id| self.subscribe_message(id)));
                while let Some(push) = self.next_push() {
                    out.send.push(push);
                }
            }
            ServerMessage::Ack { batch_id } => {
                if let Some(batch) = self.outbox.acknowledge(batch_id) {
                    out.events.push(ReplicaEvent::Acknowledged { batch_id, changes: batch.changes.len() });
                }
            }
            ServerMessage::Changes { subscription_id, changes, cursor, caught_up } => {
                let collection = self
                    .subscriptions
                    .get(&subscription_id)
                    .map(|(collection, _)| collection.clone())
                    .ok_or(ProtocolError::UnknownSubscription(subscription_id))?;
                if let Some(stray) = changes.iter().find(|c| c.collection != collection) {
                    return Err(ProtocolError::ForeignChange {
                        subscription: collection,
                        collection: stray.collection.clone(),
                    });
                }
                // The server checked drift when it accepted the writes.
                if let Some(latest) = changes.iter().map(|c| c.hlc).max() {
                    self.clock.advance_to(latest);
                }
                let keys: Vec<RecordKey> = self.apply_grouped(changes).into_iter().flat_map(|(_, keys)| keys).collect();
                self.cursors.entry(collection.clone()).or_insert_with(|| Cursor::new(cursor.log)).merge(&cursor);
                if !keys.is_empty() {
                    out.events.push(ReplicaEvent::RemoteChanges { collection: collection.clone(), keys });
                }
                if caught_up {
                    out.events.push(ReplicaEvent::CaughtUp { collection });
                }
            }
            ServerMessage::Reconcile { session_id, collection, step } => {
                let mut truncated = step.truncated;
                let reply = self
                    .reconcile_step(&collection, step)
                    .map_err(|source| ProtocolError::Reconcile { collection: collection.clone(), source })?;
                // A step that asked something always gets an answer, even an empty one, so
                // the peer knows the exchange is over.
                let done = reply.as_ref().is_none_or(ReconcileStep::asks_nothing);
                if let Some(step) = reply {
                    truncated |= step.truncated;
                    out.send.push(ClientMessage::Reconcile { session_id, collection: collection.clone(), step });
                }
                if done {
                    self.reconciliations.remove(&session_id);
                    if truncated {
                        // Steps were bounded and left differences out: go again.
                        out.send.push(self.start_reconcile(&collection));
                    } else {
                        out.events.push(ReplicaEvent::Reconciled { collection });
                    }
                }
            }
            ServerMessage::Error { code, message, batch_id: Some(batch_id), fatal, .. } if code.is_retryable() => {
                // The batch and every batch pushed after it go back to the queue, in
                // write order: requeued alone, it would be pushed again after later
                // writes — an edit before the create it depends on, which row rules
                // refuse (found by the simulation, tests/simulation seed 851). Later
                // batches the server still acks are pushed again: merging is idempotent.
                if !self.outbox.requeue_from(batch_id) {
                    out.events.push(ReplicaEvent::ServerError { code, message, fatal });
                }
                if fatal {
                    self.disconnected();
                }
            }
            ServerMessage::Error { code, message, batch_id, fatal, .. } => {
                let batch = batch_id.and_then(|id| self.outbox.acknowledge(id));
                match batch {
                    Some(batch) => out.events.push(ReplicaEvent::Rejected {
                        batch_id: batch.batch_id,
                        code,
                        message,
                        changes: batch.changes,
                    }),
                    None => out.events.push(ReplicaEvent::ServerError { code, message, fatal }),
                }
                if fatal {
                    self.disconnected();
                }
            }
            ServerMessage::Removed { subscription_id, keys, cursor } => {
                let collection = self
                    .subscriptions
                    .get(&subscription_id)
                    .map(|(collection, _)| collection.clone())
                    .ok_or(ProtocolError::UnknownSubscription(subscription_id))?;
                let target = self.collection_mut(&collection);
                let keys: Vec<RecordKey> = keys.into_iter().filter(|key| target.forget(key)).collect();
                self.notify(&collection, &keys);
                self.cursors.entry(collection.clone()).or_insert_with(|| Cursor::new(cursor.log)).merge(&cursor);
                if !keys.is_empty() {
                    out.events.push(ReplicaEvent::Removed { collection, keys });
                }
            }
            ServerMessage::QueryResult { request_id, rows, next } => {
                out.events.push(ReplicaEvent::QueryResult { request_id, rows, next });
            }
            ServerMessage::Pong { .. } => {}
        }
        Ok(out)
    }
}

/// Checks a document a writer is about to write: field names and nesting depth.
pub fn validate_document(document: &Document) -> Result<(), WriteError> {
    for (name, value) in document {
        validate_field_name(name)?;
        if depth(value) > VALUE_DEPTH_MAX {
            return Err(WriteError::TooDeep { field: name.clone() });
        }
    }
    Ok(())
}

/// Checks a change's state as [`validate_document`] checks a document: field names, and
/// the depth of every value (field values and set elements). A server applies it to
/// changes pushed in the binary protocol, so both transports accept the same values.
pub fn validate_state(state: &RecordState) -> Result<(), WriteError> {
    for (name, field) in state.fields.iter() {
        validate_field_name(name)?;
        if field.register.as_ref().is_some_and(|register| depth(&register.value) > VALUE_DEPTH_MAX) {
            return Err(WriteError::TooDeep { field: name.to_owned() });
        }
    }
    if state.members.values().any(|member| depth(&member.value) > VALUE_DEPTH_MAX) {
        return Err(WriteError::TooDeep { field: "(set element)".to_owned() });
    }
    Ok(())
}

/// Nesting depth of a value (scalars: 0). Iterative, so hostile depth cannot overflow
/// the stack.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, level)) = stack.pop() {
        deepest = deepest.max(level);
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, level + 1))),
            Value::Object(fields) => stack.extend(fields.values().map(|v| (v, level + 1))),
            _ => {}
        }
    }
    deepest
}
