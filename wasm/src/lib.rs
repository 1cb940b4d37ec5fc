//! wasm-bindgen bindings of the Weft client replica: the same Rust core as the server,
//! compiled to WASM, driven by the `@weft/client` TypeScript package.
//!
//! Everything crosses the boundary as JSON text (documents, queries, events) or bytes
//! (protocol frames, persisted records): the package owns sockets, IndexedDB and
//! timers; this module owns state, merge rules and protocol rules (which error codes
//! are retryable, what they are called). The logic lives in [`session`] and [`events`]
//! so native tests exercise it; this file only adapts types.

pub mod clock;
pub mod events;
pub mod persist;
pub mod session;

use wasm_bindgen::prelude::*;

use crate::clock::HostClock;
use crate::session::{Session, SessionError};

impl From<SessionError> for JsValue {
    fn from(error: SessionError) -> JsValue {
        JsError::new(&error.to_string()).into()
    }
}

/// Every known error code as JSON, `[{"code", "codeName", "retryable"}, ...]`: how the
/// package names and judges a code that reaches it outside an event (an HTTP error
/// body), so the rule is never copied into JavaScript.
#[wasm_bindgen]
pub fn error_codes() -> String {
    events::code_table_json()
}

/// A list of encoded items, each with a string id (records to persist, local changes
/// to share): returned as one object so JavaScript makes two calls per item, not a copy
/// of every array.
#[wasm_bindgen]
pub struct EncodedList {
    items: Vec<(String, Option<Vec<u8>>)>,
}

#[wasm_bindgen]
impl EncodedList {
    /// Number of items.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.items.len()
    }

    /// The id of item `index`.
    pub fn id(&self, index: usize) -> Option<String> {
        self.items.get(index).map(|(id, _)| id.clone())
    }

    /// The bytes of item `index` (`undefined`: the item was removed).
    pub fn bytes(&self, index: usize) -> Option<Vec<u8>> {
        self.items.get(index).and_then(|(_, bytes)| bytes.clone())
    }
}

/// The client replica as JavaScript sees it.
#[wasm_bindgen]
pub struct WeftReplica {
    session: Session<HostClock>,
}

#[wasm_bindgen]
impl WeftReplica {
    /// A replica whose writes carry the node id `node_hex` (16 hex digits; one per tab
    /// or process, never shared by two live writers).
    #[wasm_bindgen(constructor)]
    pub fn new(node_hex: &str) -> Result<WeftReplica, JsValue> {
        Ok(WeftReplica { session: Session::new(node_hex, HostClock)? })
    }

    /// Replaces a record; returns the write id (its HLC).
    pub fn put(&mut self, collection: &str, key: &str, json: &str) -> Result<String, JsValue> {
        Ok(self.session.put(collection, key, json)?)
    }

    /// Sets some fields of a record; returns the write id.
    pub fn update(&mut self, collection: &str, key: &str, json: &str) -> Result<String, JsValue> {
        Ok(self.session.update(collection, key, json)?)
    }

    /// Deletes a record; returns the write id.
    pub fn delete(&mut self, collection: &str, key: &str) -> Result<String, JsValue> {
        Ok(self.session.delete(collection, key)?)
    }

    /// Adds `by` to a counter field; returns the write id.
    pub fn increment(&mut self, collection: &str, key: &str, field: &str, by: f64) -> Result<String, JsValue> {
        Ok(self.session.increment(collection, key, field, by)?)
    }

    /// A record's fields as JSON, or `undefined`.
    pub fn get(&self, collection: &str, key: &str) -> Result<Option<String>, JsValue> {
        Ok(self.session.get(collection, key)?)
    }

    /// Runs a query (JSON form); returns `[{"key": ..., "doc": {...}}, ...]`.
    pub fn query(&self, query_json: &str) -> Result<String, JsValue> {
        Ok(self.session.query(query_json)?)
    }

    /// Starts a live query; returns its id. Its rows: [`WeftReplica::live_rows`].
    pub fn watch(&mut self, query_json: &str) -> Result<u32, JsValue> {
        Ok(self.session.watch(query_json)?)
    }

    /// Stops a live query.
    pub fn unwatch(&mut self, id: u32) -> bool {
        self.session.unwatch(id)
    }

    /// A live query's current rows, as [`WeftReplica::query`] returns them.
    pub fn live_rows(&self, id: u32) -> Option<String> {
        self.session.live_rows(id)
    }

    /// The live queries whose results changed since the last call.
    pub fn take_live_changed(&mut self) -> Vec<u32> {
        self.session.take_live_changed()
    }

    /// The hello frame that opens a WebSocket session.
    pub fn hello(&self, token: Option<String>) -> Vec<u8> {
        self.session.hello(token)
    }

    /// Subscribes to a collection, optionally to the records matching `shape_json` (a
    /// `where` predicate). The frame is queued if connected, else sent after welcome.
    pub fn subscribe(&mut self, collection: &str, shape_json: Option<String>) -> Result<(), JsValue> {
        Ok(self.session.subscribe(collection, shape_json.as_deref())?)
    }

    /// The next frame to send on the WebSocket, if any (pushes included).
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        self.session.next_frame()
    }

    /// Handles one server frame; returns the events as a JSON array.
    pub fn handle(&mut self, frame: &[u8]) -> Result<String, JsValue> {
        Ok(self.session.handle(frame)?)
    }

    /// The WebSocket dropped: in-flight writes will be pushed again.
    pub fn disconnected(&mut self) {
        self.session.disconnected();
    }

    /// The body of a `POST /v1/sync` exchange (hello, subscriptions, pending writes).
    pub fn exchange_request(&mut self, token: Option<String>) -> Vec<u8> {
        self.session.exchange_request(token)
    }

    /// Handles the response body of an exchange; returns the events as a JSON array.
    pub fn exchange_response(&mut self, body: &[u8]) -> Result<String, JsValue> {
        Ok(self.session.exchange_response(body)?)
    }

    /// Local writes made since the last call: id = write id, bytes = the change (to
    /// persist in the outbox store and to share with other tabs).
    pub fn take_local_changes(&mut self) -> EncodedList {
        EncodedList { items: self.session.take_local_changes() }
    }

    /// Applies a change another tab made (bytes from [`WeftReplica::take_local_changes`]).
    pub fn apply_shared(&mut self, bytes: &[u8]) -> Result<bool, JsValue> {
        Ok(self.session.apply_shared(bytes)?)
    }

    /// Records changed since the last call: id = storage key, bytes = whole record
    /// state, or a "forgotten" marker when the record left this replica's view.
    pub fn take_dirty(&mut self) -> EncodedList {
        EncodedList { items: self.session.take_dirty() }
    }

    /// The merge of two stored states of one record (stored copies written by several
    /// tabs are merged, never overwritten).
    pub fn merge_stored(a: &[u8], b: &[u8]) -> Result<Vec<u8>, JsValue> {
        Ok(persist::merge_stored(a, b)?)
    }

    /// Every record held, packed as `load_records` reads them (the compacted snapshot).
    pub fn export_records(&self) -> Vec<u8> {
        self.session.export_records()
    }

    /// Loads stored records: `[u32 length][record]...` as `take_dirty` or
    /// `export_records` gave them.
    pub fn load_records(&mut self, packed: &[u8]) -> Result<usize, JsValue> {
        Ok(self.session.load_records(packed)?)
    }

    /// Restores unacknowledged local changes (`[u32 length][change]...`) from storage;
    /// they are pushed on the next connection.
    pub fn load_outbox(&mut self, packed: &[u8]) -> Result<usize, JsValue> {
        Ok(self.session.load_outbox(packed)?)
    }

    /// The sync cursors to persist with the records.
    pub fn export_cursors(&self) -> Vec<u8> {
        self.session.export_cursors()
    }

    /// Restores persisted cursors.
    pub fn import_cursors(&mut self, bytes: &[u8]) -> Result<(), JsValue> {
        Ok(self.session.import_cursors(bytes)?)
    }

    /// The merge of two persisted cursor sets.
    pub fn merge_cursors(a: &[u8], b: &[u8]) -> Result<Vec<u8>, JsValue> {
        Ok(persist::merge_cursors(a, b)?)
    }

    /// Number of local writes not yet acknowledged by the server.
    pub fn pending_writes(&self) -> usize {
        self.session.pending_writes()
    }
}
