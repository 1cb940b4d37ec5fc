//! The sync protocol's messages and their MessagePack frames.
//!
//! A frame is one MessagePack array `[type, field, ...]`. Client and server messages
//! have disjoint type numbers, so a frame sent the wrong way is refused as an unknown
//! type. Receivers ignore trailing fields they do not know, which is how later revisions
//! add fields without a version bump. The byte-level layout is in docs/protocol.md.

use crate::change::Change;
use crate::codec::{DecodeError, DecodeLimits, Reader, Writer};
use crate::hlc::NodeId;
use crate::key::{COLLECTION_NAME_BYTES_MAX, CollectionName};
use crate::merkle::ReconcileStep;

use super::cursor::Cursor;
use super::error_code::ErrorCode;
use super::shape::Shape;
use crate::key::RecordKey;
use crate::value::{Document, decode_document, encode_document};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest auth token accepted in a hello, in bytes.
pub const TOKEN_BYTES_MAX: usize = 16 * 1024;
/// Longest error message, in bytes.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 4 * 1024;

/// Identifies a subscription on one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriptionId(pub u32);

/// Identifies a pushed batch on one connection (acks name it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchId(pub u64);

/// Identifies one reconciliation exchange on one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u32);

/// Messages a client sends.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientMessage {
    /// Type 1. Opens a connection; must come first.
    Hello {
        /// [`PROTOCOL_VERSION`] of the client.
        protocol_version: u32,
        /// The client replica's identity (its HLC node id).
        replica_id: NodeId,
        /// Auth token (a JWT), if any.
        token: Option<String>,
    },
    /// Type 2. A batch of changes; acknowledged once durable.
    Push {
        /// Connection-unique batch number.
        batch_id: BatchId,
        /// The changes.
        changes: Vec<Change>,
    },
    /// Type 3. Subscribes to a collection: catch-up since `cursor`, then live changes.
    Subscribe {
        /// Connection-unique subscription number.
        subscription_id: SubscriptionId,
        /// The collection.
        collection: CollectionName,
        /// Where the client's copy is; `None` for everything.
        cursor: Option<Cursor>,
        /// Only records inside this shape; `None` for the whole collection.
        shape: Option<Shape>,
    },
    /// Type 4. Ends a subscription.
    Unsubscribe {
        /// The subscription.
        subscription_id: SubscriptionId,
    },
    /// Type 5. One step of a merkle reconciliation.
    Reconcile {
        /// The exchange.
        session_id: SessionId,
        /// The collection reconciled.
        collection: CollectionName,
        /// The step.
        step: ReconcileStep,
    },
    /// Type 6. Liveness check; answered by a pong with the same nonce.
    Ping {
        /// Echoed back.
        nonce: u64,
    },
    /// Type 7. A one-shot query: SQL `SELECT` text, or the query model as JSON text
    /// (docs/queries.md). Answered by a query result with the same id, or an error.
    Query {
        /// Connection-unique request number.
        request_id: u32,
        /// SQL or JSON text.
        query: String,
    },
}

/// Messages a server sends.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerMessage {
    /// Type 64. Accepts a hello.
    Welcome {
        /// [`PROTOCOL_VERSION`] of the server.
        protocol_version: u32,
        /// The server's wall clock (ms since the epoch), to align the client's HLC.
        server_time_ms: u64,
        /// The server node's identity.
        node_id: NodeId,
        /// Version of the cluster's partition map (0 on a single node).
        partition_map_version: u64,
    },
    /// Type 65. The batch is durable.
    Ack {
        /// The batch.
        batch_id: BatchId,
    },
    /// Type 66. Changes for a subscription (catch-up pages, then live changes).
    Changes {
        /// The subscription.
        subscription_id: SubscriptionId,
        /// The changes.
        changes: Vec<Change>,
        /// The cursor after these changes.
        cursor: Cursor,
        /// True once catch-up is complete (every later message is live).
        caught_up: bool,
    },
    /// Type 67. One step of a merkle reconciliation.
    Reconcile {
        /// The exchange.
        session_id: SessionId,
        /// The collection reconciled.
        collection: CollectionName,
        /// The step.
        step: ReconcileStep,
    },
    /// Type 68. Something the client sent was refused.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// Human-readable reason naming the offending operation.
        message: String,
        /// The batch concerned, if any.
        batch_id: Option<BatchId>,
        /// Index of the offending change within the batch, if any.
        op_index: Option<u32>,
        /// True when the server closes the connection after this error.
        fatal: bool,
    },
    /// Type 69. Answers a ping.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Type 71. The answer to a query.
    QueryResult {
        /// The query's request id.
        request_id: u32,
        /// The rows: records with their key in `id`, or aggregate rows.
        rows: Vec<Document>,
        /// Where the next page starts (JSON text of the keyset cursor), if the limit cut
        /// the result short.
        next: Option<String>,
    },
    /// Type 70. Records that left a subscription's view (they no longer match its shape,
    /// or the rules no longer let this client read them): drop the local copies.
    Removed {
        /// The subscription.
        subscription_id: SubscriptionId,
        /// The records.
        keys: Vec<RecordKey>,
        /// The cursor after these removals.
        cursor: Cursor,
    },
}

const HELLO: u64 = 1;
const PUSH: u64 = 2;
const SUBSCRIBE: u64 = 3;
const UNSUBSCRIBE: u64 = 4;
const CLIENT_RECONCILE: u64 = 5;
const PING: u64 = 6;
const QUERY: u64 = 7;
const WELCOME: u64 = 64;
const ACK: u64 = 65;
const CHANGES: u64 = 66;
const SERVER_RECONCILE: u64 = 67;
const ERROR: u64 = 68;
const PONG: u64 = 69;
const REMOVED: u64 = 70;
const QUERY_RESULT: u64 = 71;
/// Longest query text, in bytes.
pub const QUERY_BYTES_MAX: usize = 64 * 1024;

fn encode_changes(changes: &[Change], writer: &mut Writer) {
    writer.array_len(changes.len());
    for change in changes {
        change.encode(writer);
    }
}

fn decode_changes(reader: &mut Reader<'_>) -> Result<Vec<Change>, DecodeError> {
    let len = reader.array_max(reader.limits().batch_len_max, "changes")?;
    let mut changes = Vec::with_capacity(len);
    for _ in 0..len {
        changes.push(Change::decode(reader)?);
    }
    reader.leave();
    Ok(changes)
}

fn decode_collection(reader: &mut Reader<'_>) -> Result<CollectionName, DecodeError> {
    let at = reader.position();
    let name = reader.str_max(COLLECTION_NAME_BYTES_MAX, "collection")?;
    CollectionName::new(name).map_err(|error| DecodeError::Invalid {
        at,
        what: "collection",
        reason: error.to_string(),
    })
}

/// Reads the frame header; returns the message type and the field count after it.
fn open_frame(reader: &mut Reader<'_>) -> Result<(u64, usize), DecodeError> {
    let len = reader.record(1, "message")?;
    let tag = reader.u64("message type")?;
    Ok((tag, len - 1))
}

fn require(fields: usize, min: usize, reader: &Reader<'_>, what: &'static str) -> Result<(), DecodeError> {
    if fields < min {
        return Err(DecodeError::Invalid {
            at: reader.position(),
            what,
            reason: format!("expected at least {min} fields, found {fields}"),
        });
    }
    Ok(())
}

fn close_frame(reader: &mut Reader<'_>, extra: usize) -> Result<(), DecodeError> {
    reader.skip_extra(extra)?;
    reader.finish()
}

impl ClientMessage {
    /// Encodes one frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_capacity(64);
        match self {
            ClientMessage::Hello { protocol_version, replica_id, token } => {
                writer.array_len(4);
                writer.uint(HELLO);
                writer.uint(*protocol_version as u64);
                writer.uint(replica_id.0);
                match token {
                    Some(token) => writer.str(token),
                    None => writer.nil(),
                }
            }
            ClientMessage::Push { batch_id, changes } => {
                writer.array_len(3);
                writer.uint(PUSH);
                writer.uint(batch_id.0);
                encode_changes(changes, &mut writer);
            }
            ClientMessage::Subscribe { subscription_id, collection, cursor, shape } => {
                writer.array_len(if shape.is_some() { 5 } else { 4 });
                writer.uint(SUBSCRIBE);
                writer.uint(subscription_id.0 as u64);
                writer.str(collection.as_str());
                match cursor {
                    Some(cursor) => cursor.encode(&mut writer),
                    None => writer.nil(),
                }
                if let Some(shape) = shape {
                    shape.encode(&mut writer);
                }
            }
            ClientMessage::Unsubscribe { subscription_id } => {
                writer.array_len(2);
                writer.uint(UNSUBSCRIBE);
                writer.uint(subscription_id.0 as u64);
            }
            ClientMessage::Reconcile { session_id, collection, step } => {
                writer.array_len(4);
                writer.uint(CLIENT_RECONCILE);
                writer.uint(session_id.0 as u64);
                writer.str(collection.as_str());
                step.encode(&mut writer);
            }
            ClientMessage::Ping { nonce } => {
                writer.array_len(2);
                writer.uint(PING);
                writer.uint(*nonce);
            }
            ClientMessage::Query { request_id, query } => {
                writer.array_len(3);
                writer.uint(QUERY);
                writer.uint(*request_id as u64);
                writer.str(query);
            }
        }
        writer.into_bytes()
    }

    /// The batch id of a frame that starts like a `Push`, even if the rest of it does not
    /// decode: a server refusing such a frame names the batch, so the client can settle
    /// it, and orders the refusal among the batch acks.
    pub fn push_batch_id(frame: &[u8], limits: &DecodeLimits) -> Option<BatchId> {
        let mut reader = Reader::new(frame, limits).ok()?;
        let (tag, fields) = open_frame(&mut reader).ok()?;
        (tag == PUSH && fields >= 2).then_some(())?;
        reader.u64("batch id").ok().map(BatchId)
    }

    /// Decodes one frame under `limits`.
    pub fn decode(frame: &[u8], limits: &DecodeLimits) -> Result<ClientMessage, DecodeError> {
        let mut reader = Reader::new(frame, limits)?;
        let (tag, fields) = open_frame(&mut reader)?;
        let (message, used) = match tag {
            HELLO => {
                require(fields, 3, &reader, "hello")?;
                let protocol_version = reader.u32("protocol version")?;
                let replica_id = NodeId(reader.u64("replica id")?);
                let token =
                    if reader.take_nil() { None } else { Some(reader.str_max(TOKEN_BYTES_MAX, "token")?.to_owned()) };
                (ClientMessage::Hello { protocol_version, replica_id, token }, 3)
            }
            PUSH => {
                require(fields, 2, &reader, "push")?;
                let batch_id = BatchId(reader.u64("batch id")?);
                (ClientMessage::Push { batch_id, changes: decode_changes(&mut reader)? }, 2)
            }
            SUBSCRIBE => {
                require(fields, 3, &reader, "subscribe")?;
                let subscription_id = SubscriptionId(reader.u32("subscription id")?);
                let collection = decode_collection(&mut reader)?;
                let cursor = if reader.take_nil() { None } else { Some(Cursor::decode(&mut reader)?) };
                let shape = if fields >= 4 && !reader.take_nil() { Some(Shape::decode(&mut reader)?) } else { None };
                (ClientMessage::Subscribe { subscription_id, collection, cursor, shape }, 3 + usize::from(fields >= 4))
            }
            UNSUBSCRIBE => {
                require(fields, 1, &reader, "unsubscribe")?;
                (ClientMessage::Unsubscribe { subscription_id: SubscriptionId(reader.u32("subscription id")?) }, 1)
            }
            CLIENT_RECONCILE => {
                require(fields, 3, &reader, "reconcile")?;
                let session_id = SessionId(reader.u32("session id")?);
                let collection = decode_collection(&mut reader)?;
                (ClientMessage::Reconcile { session_id, collection, step: ReconcileStep::decode(&mut reader)? }, 3)
            }
            PING => {
                require(fields, 1, &reader, "ping")?;
                (ClientMessage::Ping { nonce: reader.u64("nonce")? }, 1)
            }
            QUERY => {
                require(fields, 2, &reader, "query")?;
                let request_id = reader.u32("request id")?;
                let query = reader.str_max(QUERY_BYTES_MAX, "query text")?.to_owned();
                (ClientMessage::Query { request_id, query }, 2)
            }
            tag => return Err(DecodeError::UnknownMessageType { tag }),
        };
        close_frame(&mut reader, fields - used)?;
        Ok(message)
    }
}

impl ServerMessage {
    /// Encodes one frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_capacity(64);
        match self {
            ServerMessage::Welcome { protocol_version, server_time_ms, node_id, partition_map_version } => {
                writer.array_len(5);
                writer.uint(WELCOME);
                writer.uint(*protocol_version as u64);
                writer.uint(*server_time_ms);
                writer.uint(node_id.0);
                writer.uint(*partition_map_version);
            }
            ServerMessage::Ack { batch_id } => {
                writer.array_len(2);
                writer.uint(ACK);
                writer.uint(batch_id.0);
            }
            ServerMessage::Changes { subscription_id, changes, cursor, caught_up } => {
                writer.array_len(5);
                writer.uint(CHANGES);
                writer.uint(subscription_id.0 as u64);
                encode_changes(changes, &mut writer);
                cursor.encode(&mut writer);
                writer.bool(*caught_up);
            }
            ServerMessage::Reconcile { session_id, collection, step } => {
                writer.array_len(4);
                writer.uint(SERVER_RECONCILE);
                writer.uint(session_id.0 as u64);
                writer.str(collection.as_str());
                step.encode(&mut writer);
            }
            ServerMessage::Error { code, message, batch_id, op_index, fatal } => {
                writer.array_len(6);
                writer.uint(ERROR);
                writer.uint(code.as_u16() as u64);
                writer.str(message);
                match batch_id {
                    Some(batch_id) => writer.uint(batch_id.0),
                    None => writer.nil(),
                }
                match op_index {
                    Some(index) => writer.uint(*index as u64),
                    None => writer.nil(),
                }
                writer.bool(*fatal);
            }
            ServerMessage::Pong { nonce } => {
                writer.array_len(2);
                writer.uint(PONG);
                writer.uint(*nonce);
            }
            ServerMessage::QueryResult { request_id, rows, next } => {
                writer.array_len(4);
                writer.uint(QUERY_RESULT);
                writer.uint(*request_id as u64);
                writer.array_len(rows.len());
                for row in rows {
                    encode_document(row, &mut writer);
                }
                match next {
                    Some(next) => writer.str(next),
                    None => writer.nil(),
                }
            }
            ServerMessage::Removed { subscription_id, keys, cursor } => {
                writer.array_len(4);
                writer.uint(REMOVED);
                writer.uint(subscription_id.0 as u64);
                writer.array_len(keys.len());
                for key in keys {
                    writer.str(key.as_str());
                }
                cursor.encode(&mut writer);
            }
        }
        writer.into_bytes()
    }

    /// Decodes one frame under `limits`.
    pub fn decode(frame: &[u8], limits: &DecodeLimits) -> Result<ServerMessage, DecodeError> {
        let mut reader = Reader::new(frame, limits)?;
        let (tag, fields) = open_frame(&mut reader)?;
        let (message, used) = match tag {
            WELCOME => {
                require(fields, 4, &reader, "welcome")?;
                let protocol_version = reader.u32("protocol version")?;
                let server_time_ms = reader.u64("server time")?;
                let node_id = NodeId(reader.u64("node id")?);
                let partition_map_version = reader.u64("partition map version")?;
                (ServerMessage::Welcome { protocol_version, server_time_ms, node_id, partition_map_version }, 4)
            }
            ACK => {
                require(fields, 1, &reader, "ack")?;
                (ServerMessage::Ack { batch_id: BatchId(reader.u64("batch id")?) }, 1)
            }
            CHANGES => {
                require(fields, 4, &reader, "changes")?;
                let subscription_id = SubscriptionId(reader.u32("subscription id")?);
                let changes = decode_changes(&mut reader)?;
                let cursor = Cursor::decode(&mut reader)?;
                let caught_up = reader.bool("caught up")?;
                (ServerMessage::Changes { subscription_id, changes, cursor, caught_up }, 4)
            }
            SERVER_RECONCILE => {
                require(fields, 3, &reader, "reconcile")?;
                let session_id = SessionId(reader.u32("session id")?);
                let collection = decode_collection(&mut reader)?;
                (ServerMessage::Reconcile { session_id, collection, step: ReconcileStep::decode(&mut reader)? }, 3)
            }
            ERROR => {
                require(fields, 5, &reader, "error")?;
                let code = ErrorCode::from_u16(reader.u16("error code")?);
                let message = reader.str_max(ERROR_MESSAGE_BYTES_MAX, "error message")?.to_owned();
                let batch_id = if reader.take_nil() { None } else { Some(BatchId(reader.u64("batch id")?)) };
                let op_index = if reader.take_nil() { None } else { Some(reader.u32("op index")?) };
                let fatal = reader.bool("fatal")?;
                (ServerMessage::Error { code, message, batch_id, op_index, fatal }, 5)
            }
            PONG => {
                require(fields, 1, &reader, "pong")?;
                (ServerMessage::Pong { nonce: reader.u64("nonce")? }, 1)
            }
            QUERY_RESULT => {
                require(fields, 3, &reader, "query result")?;
                let request_id = reader.u32("request id")?;
                let len = reader.array_max(reader.limits().batch_len_max, "query rows")?;
                let mut rows = Vec::with_capacity(len);
                for _ in 0..len {
                    rows.push(decode_document(&mut reader)?);
                }
                reader.leave();
                let next = if reader.take_nil() {
                    None
                } else {
                    Some(reader.str_max(QUERY_BYTES_MAX, "next cursor")?.to_owned())
                };
                (ServerMessage::QueryResult { request_id, rows, next }, 3)
            }
            REMOVED => {
                require(fields, 3, &reader, "removed")?;
                let subscription_id = SubscriptionId(reader.u32("subscription id")?);
                let len = reader.array_max(reader.limits().batch_len_max, "removed keys")?;
                let mut keys = Vec::with_capacity(len);
                for _ in 0..len {
                    let at = reader.position();
                    let key = reader.str_max(crate::key::KEY_BYTES_MAX, "removed key")?;
                    keys.push(RecordKey::new(key).map_err(|error| DecodeError::Invalid {
                        at,
                        what: "removed key",
                        reason: error.to_string(),
                    })?);
                }
                reader.leave();
                let cursor = Cursor::decode(&mut reader)?;
                (ServerMessage::Removed { subscription_id, keys, cursor }, 3)
            }
            tag => return Err(DecodeError::UnknownMessageType { tag }),
        };
        close_frame(&mut reader, fields - used)?;
        Ok(message)
    }
}
