//! What the simulation checks against: every change the server acknowledged (merged per
//! record, so "survived" is one join per record), and which records each client may
//! receive.

use std::collections::BTreeMap;

use weft_core::change::Change;
use weft_core::crdt::RecordState;
use weft_core::key::{CollectionName, RecordKey};
use weft_core::protocol::ServerMessage;
use weft_core::value::Value;
use weft_storage::engine::Engine;

/// Who a client is to the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Reads and writes its own todos; shares notes.
    User,
    /// Reads every todo; shares notes.
    Admin,
    /// Only tries what its rules deny: other users' todos, the `secret` collection.
    Attacker,
}

/// The acknowledged changes of every record, joined.
#[derive(Debug, Default)]
pub struct Acked {
    records: BTreeMap<(CollectionName, RecordKey), RecordState>,
    /// Changes acknowledged in all.
    pub changes: u64,
}

impl Acked {
    /// The server sent an ack covering `changes`.
    pub fn record(&mut self, changes: &[Change]) {
        for change in changes {
            let hash = change.key.hash();
            let state = self.records.entry((change.collection.clone(), change.key.clone())).or_default();
            let version = state.version(hash);
            state.join(hash, version, change.state.clone());
            self.changes += 1;
        }
    }

    /// Every acknowledged change is part of the engine's record (joining it changes
    /// nothing).
    pub fn check(&self, engine: &Engine, seed: u64) {
        for ((collection, key), acked) in &self.records {
            let hash = key.hash();
            let stored = engine
                .peek(collection, key)
                .unwrap_or_else(|e| panic!("seed {seed}: reading {collection}/{key}: {e}"))
                .unwrap_or_default();
            let mut joined = stored.clone();
            let version = joined.version(hash);
            if joined.join(hash, version, acked.clone()).is_some() {
                panic!(
                    "seed {seed}: acknowledged writes to {collection}/{key} are lost: the server holds {stored:?}, \
                     the acknowledged changes joined are {acked:?}"
                );
            }
        }
    }
}

/// Whether a client of `role` with subject `sub` may see this record of `collection`.
pub fn may_read(role: Role, sub: &str, collection: &str, state: &RecordState) -> bool {
    match collection {
        "notes" => true,
        "todos" => match role {
            Role::Admin => true,
            Role::User | Role::Attacker => {
                state.document().and_then(|d| d.get("owner").cloned()) == Some(Value::from(sub))
            }
        },
        _ => false,
    }
}

/// Fails the run if `message` carries a record the client may not read. Query answers
/// count too: even request ids ask `todos`, odd ones the unlisted `secret`.
pub fn check_received(seed: u64, client: &str, role: Role, sub: &str, message: &ServerMessage) {
    if let ServerMessage::QueryResult { request_id, rows, .. } = message {
        if request_id % 2 == 1 {
            assert!(rows.is_empty(), "seed {seed}: {client} read rows of a collection nobody may read: {rows:?}");
        } else if role != Role::Admin {
            // Every row, grouped ones included, names only the caller as owner.
            for row in rows {
                assert_eq!(
                    row.get("owner"),
                    Some(&Value::from(sub)),
                    "seed {seed}: {client} got a query row its rules deny: {row:?}"
                );
            }
        }
    }
    if let ServerMessage::Changes { changes, .. } = message {
        for change in changes {
            assert!(
                may_read(role, sub, change.collection.as_str(), &change.state),
                "seed {seed}: {client} received {}/{} which its rules deny: {:?}",
                change.collection,
                change.key,
                change.state.document()
            );
        }
    }
}
