//! The replica session behind the bindings: a [`Replica`] plus what a JavaScript host
//! needs around it — an outgoing frame queue, the write ids of each pushed batch (so an
//! ack settles the right promises), the local changes and changed records to persist,
//! and which live queries moved.

use std::collections::{BTreeSet, HashMap, VecDeque};

use weft_core::codec::{DecodeError, DecodeLimits, Writer};
use weft_core::hlc::{ClockDriftError, ClockSource, NodeId};
use weft_core::key::{CollectionName, KeyError, RecordKey};
use weft_core::protocol::{BatchId, ClientMessage, ErrorCode, ServerMessage, Shape, decode_envelope, encode_envelope};
use weft_core::query::{Query, QueryJsonError, Row, predicate_from_json};
use weft_core::replica::{Handled, ProtocolError, Replica, WriteError};
use weft_core::value::{Document, Value, document_to_json};

use crate::events::{error_json, event_json, write_id};
use crate::persist::{decode_change, decode_cursors, encode_change, encode_cursors, unpack};

/// First byte of a stored "forgotten" marker; a stored record (a MessagePack array)
/// never starts with it.
const FORGOTTEN: u8 = 0xff;

/// The stored value that says record `id` (`collection/key`) left this replica's view.
pub fn forgotten_marker(id: &str) -> Vec<u8> {
    let mut marker = vec![FORGOTTEN];
    marker.extend_from_slice(id.as_bytes());
    marker
}

fn parse_record_id(id: &[u8]) -> Result<(CollectionName, RecordKey), SessionError> {
    let text = std::str::from_utf8(id).map_err(|_| SessionError::Stored("record id is not UTF-8".to_owned()))?;
    let (c, key) =
        text.split_once('/').ok_or_else(|| SessionError::Stored(format!("record id {text:?} has no collection")))?;
    Ok((collection(c)?, record_key(key)?))
}

/// Why a call into the session failed; the message names what was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The node id is not 16 hex digits (or is zero).
    #[error("node id {0:?}: expected 16 hex digits, not all zero")]
    NodeId(String),
    /// A collection name, key or field name breaks its rules.
    #[error(transparent)]
    Name(#[from] KeyError),
    /// A document is not valid JSON or not an object.
    #[error("document: {0}")]
    Document(String),
    /// A write the replica refuses.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A query in JSON form that cannot be read.
    #[error(transparent)]
    Query(#[from] QueryJsonError),
    /// A frame or stored entry that does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A server message this replica cannot accept.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A change from another tab that drifted too far ahead.
    #[error(transparent)]
    Drift(#[from] ClockDriftError),
    /// Stored data that is not what this module wrote.
    #[error("stored data: {0}")]
    Stored(String),
}

/// A replica and its host-facing queues.
pub struct Session<C> {
    replica: Replica<C>,
    outgoing: VecDeque<Vec<u8>>,
    batches: HashMap<BatchId, Vec<String>>,
    local: Vec<(String, Option<Vec<u8>>)>,
    live_changed: BTreeSet<u32>,
    limits: DecodeLimits,
}

fn collection(name: &str) -> Result<CollectionName, SessionError> {
    Ok(CollectionName::new(name)?)
}

fn record_key(key: &str) -> Result<RecordKey, SessionError> {
    Ok(RecordKey::new(key)?)
}

fn parse_json(text: &str, what: &str) -> Result<serde_json::Value, SessionError> {
    serde_json::from_str(text).map_err(|e| SessionError::Document(format!("{what} is not valid JSON: {e}")))
}

fn document(json: &str) -> Result<Document, SessionError> {
    match Value::from_json(&parse_json(json, "the document")?) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(SessionError::Document(format!("expected an object, got {}", other.type_name()))),
        Err(error) => Err(SessionError::Document(error.to_string())),
    }
}

fn rows_json(rows: &[Row]) -> String {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| serde_json::json!({ "key": row.key.as_str(), "doc": document_to_json(&row.document) }))
        .collect();
    serde_json::Value::Array(rows).to_string()
}

impl<C: ClockSource> Session<C> {
    /// A session for the replica `node_hex` reading time from `clock`.
    pub fn new(node_hex: &str, clock: C) -> Result<Session<C>, SessionError> {
        let node = u64::from_str_radix(node_hex, 16)
            .ok()
            .filter(|n| node_hex.len() == 16 && *n != 0)
            .ok_or_else(|| SessionError::NodeId(node_hex.to_owned()))?;
        let mut replica = Replica::new(NodeId(node), clock);
        replica.track_changed_keys();
        Ok(Session {
            replica,
            outgoing: VecDeque::new(),
            batches: HashMap::new(),
            local: Vec::new(),
            live_changed: BTreeSet::new(),
            limits: DecodeLimits::default(),
        })
    }

    /// The replica inside.
    pub fn replica(&self) -> &Replica<C> {
        &self.replica
    }

    // ----- local writes -------------------------------------------------------------

    fn committed(&mut self) -> String {
        let id = match self.replica.outbox().last() {
            Some(change) => {
                let id = write_id(change.hlc);
                self.local.push((id.clone(), Some(encode_change(change))));
                id
            }
            None => String::new(),
        };
        self.settle();
        id
    }

    /// Replaces a record.
    pub fn put(&mut self, collection_name: &str, key: &str, json: &str) -> Result<String, SessionError> {
        let (c, k, doc) = (collection(collection_name)?, record_key(key)?, document(json)?);
        self.replica.put(&c, &k, doc)?;
        Ok(self.committed())
    }

    /// Sets some fields.
    pub fn update(&mut self, collection_name: &str, key: &str, json: &str) -> Result<String, SessionError> {
        let (c, k, doc) = (collection(collection_name)?, record_key(key)?, document(json)?);
        self.replica.update(&c, &k, doc)?;
        Ok(self.committed())
    }

    /// Deletes a record.
    pub fn delete(&mut self, collection_name: &str, key: &str) -> Result<String, SessionError> {
        let (c, k) = (collection(collection_name)?, record_key(key)?);
        self.replica.delete(&c, &k);
        Ok(self.committed())
    }

    /// Adds to a counter field (`by` must be a whole number).
    pub fn increment(
        &mut self,
        collection_name: &str,
        key: &str,
        field: &str,
        by: f64,
    ) -> Result<String, SessionError> {
        let (c, k) = (collection(collection_name)?, record_key(key)?);
        if by.fract() != 0.0 || !(-9.0e15..=9.0e15).contains(&by) {
            return Err(SessionError::Document(format!("increment by {by}: expected a whole number")));
        }
        self.replica.increment(&c, &k, field, by as i64)?;
        Ok(self.committed())
    }

    /// Local writes since the last call, encoded.
    pub fn take_local_changes(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        std::mem::take(&mut self.local)
    }

    /// Applies a change another tab of the same origin made.
    pub fn apply_shared(&mut self, bytes: &[u8]) -> Result<bool, SessionError> {
        let change = decode_change(bytes, &self.limits)?;
        let changed = self.replica.apply_remote(change)?;
        self.settle();
        Ok(changed)
    }

    /// Number of unacknowledged local writes.
    pub fn pending_writes(&self) -> usize {
        self.replica.outbox().len()
    }

    // ----- reads and live queries ---------------------------------------------------

    /// A record's fields as JSON.
    pub fn get(&self, collection_name: &str, key: &str) -> Result<Option<String>, SessionError> {
        let c = collection(collection_name)?;
        Ok(self.replica.get(&c, key).map(|doc| document_to_json(&doc).to_string()))
    }

    /// Runs a query given in its JSON form.
    pub fn query(&self, query_json: &str) -> Result<String, SessionError> {
        let query = Query::from_json(&parse_json(query_json, "the query")?)?;
        let rows = match self.replica.collection(&query.collection) {
            Some(target) => query.run_on(target).rows,
            None => Vec::new(),
        };
        Ok(rows_json(&rows))
    }

    /// Starts a live query.
    pub fn watch(&mut self, query_json: &str) -> Result<u32, SessionError> {
        let query = Query::from_json(&parse_json(query_json, "the query")?)?;
        let (id, _) = self.replica.watch(query);
        Ok(id.0)
    }

    /// Stops a live query.
    pub fn unwatch(&mut self, id: u32) -> bool {
        self.live_changed.remove(&id);
        self.replica.unwatch(weft_core::replica::LiveQueryId(id))
    }

    /// A live query's rows.
    pub fn live_rows(&self, id: u32) -> Option<String> {
        self.replica.live_rows(weft_core::replica::LiveQueryId(id)).map(|rows| rows_json(&rows))
    }

    /// Live queries whose results moved since the last call.
    pub fn take_live_changed(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.live_changed).into_iter().collect()
    }

    /// Collects which live queries moved (their fine-grained events are not needed by
    /// the host, which re-reads the rows of the queries that moved).
    fn settle(&mut self) {
        for (id, _) in self.replica.take_live_events() {
            self.live_changed.insert(id.0);
        }
    }

    // ----- protocol -----------------------------------------------------------------

    /// The hello frame.
    pub fn hello(&self, token: Option<String>) -> Vec<u8> {
        self.replica.hello(token).encode()
    }

    /// Subscribes to a collection (optionally a shape of it).
    pub fn subscribe(&mut self, collection_name: &str, shape_json: Option<&str>) -> Result<(), SessionError> {
        let c = collection(collection_name)?;
        let shape = match shape_json {
            Some(text) => Some(Shape { predicate: predicate_from_json(&parse_json(text, "the shape")?)? }),
            None => None,
        };
        if let Some(message) = self.replica.subscribe_shape(&c, shape) {
            self.queue(message);
        }
        Ok(())
    }

    fn queue(&mut self, message: ClientMessage) {
        self.remember_batch(&message);
        self.outgoing.push_back(message.encode());
    }

    fn remember_batch(&mut self, message: &ClientMessage) {
        if let ClientMessage::Push { batch_id, changes } = message {
            self.batches.insert(*batch_id, changes.iter().map(|c| write_id(c.hlc)).collect());
        }
    }

    /// The next frame to send.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        if let Some(frame) = self.outgoing.pop_front() {
            return Some(frame);
        }
        let push = self.replica.next_push()?;
        self.remember_batch(&push);
        Some(push.encode())
    }

    /// Queues what the replica wants sent and turns its events into JSON (acks with
    /// the write ids of their batch).
    fn events(&mut self, handled: Handled) -> Vec<serde_json::Value> {
        let Handled { send, events } = handled;
        for message in send {
            self.queue(message);
        }
        events
            .into_iter()
            .map(|event| {
                let acked = match &event {
                    weft_core::replica::ReplicaEvent::Acknowledged { batch_id, .. } => self.batches.remove(batch_id),
                    _ => None,
                };
                event_json(event, acked)
            })
            .collect()
    }

    /// Handles one server frame.
    pub fn handle(&mut self, frame: &[u8]) -> Result<String, SessionError> {
        let message = ServerMessage::decode(frame, &self.limits)?;
        let handled = self.replica.handle(message);
        // Whatever was applied before a failure still moves live queries.
        self.settle();
        Ok(serde_json::Value::Array(self.events(handled?)).to_string())
    }

    /// The WebSocket dropped.
    pub fn disconnected(&mut self) {
        self.replica.disconnected();
        self.outgoing.clear();
        self.batches.clear();
    }

    /// The body of one `POST /v1/sync` exchange.
    pub fn exchange_request(&mut self, token: Option<String>) -> Vec<u8> {
        let messages = self.replica.exchange_request(token);
        for message in &messages {
            self.remember_batch(message);
        }
        let frames: Vec<Vec<u8>> = messages.iter().map(ClientMessage::encode).collect();
        encode_envelope(&frames)
    }

    /// Handles the response of an exchange.
    pub fn exchange_response(&mut self, body: &[u8]) -> Result<String, SessionError> {
        let frames = decode_envelope(body, &self.limits)?;
        let messages = frames
            .into_iter()
            .map(|frame| ServerMessage::decode(frame, &self.limits))
            .collect::<Result<Vec<_>, _>>()?;
        let (handled, result) = self.replica.exchange_response(messages);
        self.settle();
        let mut events = self.events(handled);
        // Unacknowledged batches went back to the queue and get new ids next time.
        self.batches.clear();
        // Reconciliation answers cannot reach a stateless server session: drop them.
        self.outgoing.clear();
        if let Err(error) = result {
            // Report the refusal after the acks that came before it.
            events.push(error_json(ErrorCode::Malformed, format!("response refused: {error}"), false));
        }
        Ok(serde_json::Value::Array(events).to_string())
    }

    // ----- persistence --------------------------------------------------------------

    /// Records changed since the last call: `collection/key` → whole state (or a
    /// [`forgotten_marker`] when the record left this replica).
    pub fn take_dirty(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        self.replica
            .take_changed_keys()
            .into_iter()
            .map(|(c, key)| {
                let bytes = self.replica.collection(&c).and_then(|target| {
                    let mut writer = Writer::new();
                    target.encode_record(&key, &mut writer).then(|| writer.into_bytes())
                });
                let id = format!("{c}/{key}");
                // A record that left the view is stored as a marker, so a compacted
                // snapshot that still holds it is corrected at load.
                let bytes = bytes.or_else(|| Some(forgotten_marker(&id)));
                (id, bytes)
            })
            .collect()
    }

    /// Loads stored records: whole record states, and "forgotten" markers
    /// ([`forgotten_marker`]) for records that left this replica's view.
    pub fn load_records(&mut self, packed: &[u8]) -> Result<usize, SessionError> {
        let mut changes = Vec::new();
        let mut forgotten = Vec::new();
        for item in unpack(packed)? {
            match item.split_first() {
                Some((&FORGOTTEN, id)) => forgotten.push(parse_record_id(id)?),
                _ => changes.push(decode_change(item, &self.limits)?),
            }
        }
        let count = self.replica.restore_records(changes);
        for (c, key) in forgotten {
            self.replica.restore_forgotten(&c, &key);
        }
        self.settle();
        Ok(count)
    }

    /// Every record this replica holds, packed as [`Session::load_records`] reads them:
    /// the compacted snapshot a host stores instead of one entry per record.
    pub fn export_records(&self) -> Vec<u8> {
        // Packed in place: each record is encoded straight after its length prefix.
        let mut packed = Vec::new();
        let mut writer = Writer::new();
        for target in self.replica.collections() {
            for (key, _) in target.iter() {
                writer.clear();
                if target.encode_record(key, &mut writer) {
                    packed.extend_from_slice(&(writer.len() as u32).to_le_bytes());
                    packed.extend_from_slice(writer.as_bytes());
                }
            }
        }
        packed
    }

    /// Restores stored unacknowledged local changes, oldest first.
    pub fn load_outbox(&mut self, packed: &[u8]) -> Result<usize, SessionError> {
        let mut changes =
            unpack(packed)?.into_iter().map(|item| decode_change(item, &self.limits)).collect::<Result<Vec<_>, _>>()?;
        changes.sort_by_key(|c| c.hlc);
        changes.dedup_by_key(|c| c.hlc);
        let count = changes.len();
        self.replica.restore_outbox(changes);
        self.settle();
        Ok(count)
    }

    /// The cursors, encoded.
    pub fn export_cursors(&self) -> Vec<u8> {
        let cursors: Vec<_> = self.replica.cursors().collect();
        encode_cursors(cursors.into_iter())
    }

    /// Restores stored cursors.
    pub fn import_cursors(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        for (c, cursor) in decode_cursors(bytes)? {
            self.replica.restore_cursor(&c, cursor);
        }
        Ok(())
    }
}
