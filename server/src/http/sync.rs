//! `POST /v1/sync`: push and pull in one stateless request.
//!
//! - `Content-Type: application/msgpack`: the body is an envelope of protocol frames
//!   (`weft_core::protocol::encode_envelope`): `Push` (answered by `Ack` or `Error` once
//!   durable), `Subscribe` (a one-shot pull: up to [`PULL_PAGES_MAX`] `Changes` pages,
//!   the last one saying whether the client has caught up), `Reconcile` and `Ping`. The
//!   response is an envelope of server frames, in request order.
//! - `Content-Type: application/json`: for hosts and scripts without a replica.
//!   `{"writes": [{"collection", "id", "op": "put"|"update"|"delete", "fields"}],
//!   "pulls": [{"collection", "cursor", "shape"}]}`. Writes are stamped with the server's
//!   clock and applied as one all-or-nothing batch; pulls return documents
//!   (`{"id", "fields"}` or `{"id", "deleted": true}`) and an opaque cursor string.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use weft_core::change::Change;
use weft_core::codec::{Reader, Writer};
use weft_core::crdt::ops;
use weft_core::key::{CollectionName, RecordKey};
use weft_core::protocol::{
    BatchId, ClientMessage, Cursor, ErrorCode, ServerMessage, Shape, SubscriptionId, decode_envelope, encode_envelope,
};
use weft_core::value::{Document, Value};

use super::{error_response, principal};
use crate::auth::Principal;
use crate::error::OpError;
use crate::session::{Effect, PendingPush, Session};
use crate::state::AppState;
use crate::sync::pull;

pub use crate::session::PULL_PAGES_MAX;

/// The handler.
pub async fn sync(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let body = match super::read_body(&state, &headers, body).await {
        Ok(body) => body,
        Err(error) => return error_response(&state, &error),
    };
    state.metrics.bytes_received.inc_by(body.len() as u64);
    let principal = match principal(&state, &headers) {
        Ok(principal) => principal,
        Err(error) => return error_response(&state, &error),
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let response = if content_type.starts_with("application/json") {
        json_sync(&state, principal, body).await.map(|json| axum::Json(json).into_response())
    } else if content_type.starts_with("application/msgpack") || content_type.starts_with("application/x-msgpack") {
        msgpack_sync(&state, principal, body).await.map(|bytes| {
            state.metrics.bytes_sent.inc_by(bytes.len() as u64);
            ([(header::CONTENT_TYPE, "application/msgpack")], bytes).into_response()
        })
    } else {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            axum::Json(serde_json::json!({"error": {
                "code": ErrorCode::Malformed.as_u16(),
                "name": "Malformed",
                "message": format!("Content-Type {content_type:?}: use application/msgpack or application/json"),
            }})),
        )
            .into_response();
    };
    response.unwrap_or_else(|error| error_response(&state, &error))
}

async fn msgpack_sync(state: &Arc<AppState>, principal: Principal, body: Bytes) -> Result<Vec<u8>, OpError> {
    let task_state = Arc::clone(state);
    let replies = tokio::task::spawn_blocking(move || {
        let limits = task_state.decode_limits();
        let frames = decode_envelope(&body, &limits)
            .map_err(|error| OpError::new(ErrorCode::from(&error), format!("envelope refused: {error}")))?;
        let mut session = Session::stateless(Arc::clone(&task_state), principal);
        let mut replies = Vec::new();
        for frame in &frames {
            let effects = session.handle_frame(frame);
            replies.extend(run_to_end(&task_state, &mut session, effects));
        }
        Ok(replies)
    })
    .await
    .unwrap_or_else(|_| Err(OpError::new(ErrorCode::Internal, "sync failed inside the server")))?;
    let encoded: Vec<Vec<u8>> = replies
        .into_iter()
        .map(|reply| {
            if let ServerMessage::Error { code, .. } = &reply {
                state.metrics.error(*code);
            }
            reply.encode()
        })
        .collect();
    Ok(encode_envelope(&encoded))
}

/// Carries out a stateless session's effects to the end, in order — each batch waited
/// for, every page of a pull taken, each query run — and returns the messages to send.
/// Blocking.
fn run_to_end(state: &AppState, session: &mut Session, effects: Vec<Effect>) -> Vec<ServerMessage> {
    let mut replies = Vec::new();
    // A stack: what an effect leads to is carried out before the effects after it.
    let mut stack: Vec<Effect> = effects.into_iter().rev().collect();
    while let Some(effect) = stack.pop() {
        let more = match effect {
            Effect::Send(message) => {
                replies.push(message);
                continue;
            }
            Effect::AwaitDurable(PendingPush { ticket, appended }) => {
                let outcome = match state.engine() {
                    Ok(engine) => engine.wait(appended).map(drop).map_err(OpError::from),
                    Err(error) => Err(error),
                };
                session.push_settled(ticket, outcome)
            }
            Effect::CatchUp(id) => session.catch_up(id),
            Effect::Query(task) => vec![Effect::Send(task.run())],
            // Stateless sessions authenticate from the request's header and never close.
            Effect::Authenticate { .. } | Effect::Close => Vec::new(),
        };
        stack.extend(more.into_iter().rev());
    }
    replies
}

/// The error frame among `replies`, as the error it carries.
fn refusal(replies: &[ServerMessage]) -> Option<OpError> {
    replies.iter().find_map(|reply| match reply {
        ServerMessage::Error { code, message, op_index, .. } => {
            Some(OpError { code: *code, message: message.clone(), op_index: *op_index })
        }
        _ => None,
    })
}

// ----- JSON ---------------------------------------------------------------------------

fn bad(message: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::Malformed, message)
}

/// A cursor as an opaque URL-safe string.
pub fn cursor_to_string(cursor: &Cursor) -> String {
    let mut writer = Writer::new();
    cursor.encode(&mut writer);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(writer.into_bytes())
}

/// Parses [`cursor_to_string`]'s output.
pub fn cursor_from_string(text: &str) -> Result<Cursor, OpError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| bad("cursor: not a cursor string from this server"))?;
    let limits = weft_core::codec::DecodeLimits::default();
    let mut reader = Reader::new(&bytes, &limits).map_err(|e| bad(format!("cursor: {e}")))?;
    Cursor::decode(&mut reader).map_err(|e| bad(format!("cursor: {e}")))
}

fn document_from_json(value: Option<&serde_json::Value>, what: &str) -> Result<Document, OpError> {
    let Some(value) = value else { return Ok(Document::new()) };
    let serde_json::Value::Object(fields) = value else {
        return Err(bad(format!("{what}: `fields` must be an object")));
    };
    let mut document = Document::new();
    for (name, value) in fields {
        let value = Value::from_json(value).map_err(|e| bad(format!("{what}: field {name:?}: {e}")))?;
        document.insert(name.clone(), value);
    }
    weft_core::replica::validate_document(&document)
        .map_err(|e| OpError::new(ErrorCode::InvalidName, format!("{what}: {e}")))?;
    Ok(document)
}

/// Turns JSON writes into changes stamped by the server clock.
pub fn changes_from_json(state: &AppState, writes: &[serde_json::Value]) -> Result<Vec<Change>, OpError> {
    let engine = state.engine()?;
    let mut changes = Vec::with_capacity(writes.len());
    for (index, write) in writes.iter().enumerate() {
        // Every refusal of a write names it, in the message and in `op_index`.
        let change = change_from_json(state, engine, index, write).map_err(|mut error| {
            error.op_index = error.op_index.or(u32::try_from(index).ok());
            error
        })?;
        changes.push(change);
    }
    Ok(changes)
}

/// Keys a JSON write may have.
const WRITE_KEYS: [&str; 4] = ["collection", "id", "op", "fields"];
/// Keys a JSON pull may have.
const PULL_KEYS: [&str; 4] = ["collection", "cursor", "shape", "where"];
/// Keys a JSON sync request may have.
const REQUEST_KEYS: [&str; 2] = ["writes", "pulls"];

/// Refuses an object with keys outside `allowed` (a misspelt `fileds` would otherwise be
/// ignored and the write would silently do something else), or a non-object.
fn known_keys(value: &serde_json::Value, allowed: &[&str], what: &str) -> Result<(), OpError> {
    let serde_json::Value::Object(object) = value else {
        return Err(bad(format!("{what} must be an object")));
    };
    match object.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(bad(format!("{what}: unknown key {key:?} (expected one of {})", allowed.join(", ")))),
        None => Ok(()),
    }
}

fn change_from_json(
    state: &AppState,
    engine: &weft_storage::engine::Engine,
    index: usize,
    write: &serde_json::Value,
) -> Result<Change, OpError> {
    {
        let what = format!("write {index}");
        known_keys(write, &WRITE_KEYS, &what)?;
        let field = |name: &str| write.get(name).and_then(|v| v.as_str());
        let collection =
            CollectionName::new(field("collection").ok_or_else(|| bad(format!("{what}: `collection` missing")))?)
                .map_err(|e| OpError::at(ErrorCode::InvalidName, index, e.to_string()))?;
        let key = RecordKey::new(field("id").ok_or_else(|| bad(format!("{what}: `id` missing")))?)
            .map_err(|e| OpError::at(ErrorCode::InvalidName, index, e.to_string()))?;
        let current = engine.read(&collection, &key)?;
        let hlc = state.lock_clock().now();
        let state_delta = match field("op").unwrap_or("put") {
            "put" => ops::put(current.as_ref(), document_from_json(write.get("fields"), &what)?, hlc),
            "update" => ops::update(current.as_ref(), document_from_json(write.get("fields"), &what)?, hlc),
            "delete" => ops::delete(current.as_ref(), hlc),
            other => return Err(bad(format!("{what}: op {other:?}: expected put, update or delete"))),
        };
        Ok(Change { collection, key, hlc, state: state_delta })
    }
}

async fn json_sync(state: &Arc<AppState>, principal: Principal, body: Bytes) -> Result<serde_json::Value, OpError> {
    let task_state = Arc::clone(state);
    tokio::task::spawn_blocking(move || json_sync_blocking(&task_state, principal, &body))
        .await
        .unwrap_or_else(|_| Err(OpError::new(ErrorCode::Internal, "sync failed inside the server")))
}

/// The JSON form, on the same stateless session as the frames: writes become one pushed
/// batch, pulls become subscriptions. Blocking.
fn json_sync_blocking(state: &Arc<AppState>, principal: Principal, body: &[u8]) -> Result<serde_json::Value, OpError> {
    let request: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("request body is not JSON: {e}")))?;
    known_keys(&request, &REQUEST_KEYS, "the request")?;
    let list = |name: &str| match request.get(name) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => Ok(items.clone()),
        Some(_) => Err(bad(format!("`{name}` must be a list"))),
    };
    let (writes, pulls) = (list("writes")?, list("pulls")?);
    let mut session = Session::stateless(Arc::clone(state), principal);
    let mut written = 0;
    if !writes.is_empty() {
        let changes = changes_from_json(state, &writes)?;
        written = changes.len();
        let effects = session.handle(ClientMessage::Push { batch_id: BatchId(0), changes });
        if let Some(error) = refusal(&run_to_end(state, &mut session, effects)) {
            return Err(error);
        }
    }
    let mut results = Vec::new();
    for (index, pull) in pulls.iter().enumerate() {
        known_keys(pull, &PULL_KEYS, &format!("pull {index}"))?;
        let name = pull
            .get("collection")
            .and_then(|c| c.as_str())
            .ok_or_else(|| bad(format!("pull {index}: `collection` missing")))?;
        let collection = CollectionName::new(name)
            .map_err(|e| OpError::new(ErrorCode::InvalidName, format!("pull {index}: {e}")))?;
        let cursor = match pull.get("cursor").and_then(|c| c.as_str()) {
            Some(text) => Some(cursor_from_string(text)?),
            None => None,
        };
        // `shape`: field equalities; `where`: any predicate of the query model.
        let shape = match (pull.get("shape"), pull.get("where")) {
            (Some(_), Some(_)) => return Err(bad(format!("pull {index}: give `shape` or `where`, not both"))),
            (Some(shape), None) if !shape.is_null() => {
                Some(Shape::equals(document_from_json(Some(shape), &format!("pull {index} shape"))?))
            }
            (None, Some(predicate)) if !predicate.is_null() => Some(Shape::from(
                weft_core::query::predicate_from_json(predicate).map_err(|e| bad(format!("pull {index}: {e}")))?,
            )),
            _ => None,
        };
        let subscription_id = SubscriptionId(u32::try_from(index).unwrap_or(u32::MAX));
        let subscribe =
            ClientMessage::Subscribe { subscription_id, collection: collection.clone(), cursor: cursor.clone(), shape };
        let effects = session.handle(subscribe);
        let replies = run_to_end(state, &mut session, effects);
        if let Some(error) = refusal(&replies) {
            return Err(error);
        }
        let mut records = Vec::new();
        let mut removed = Vec::new();
        let mut last_cursor = pull::start_cursor(state.log_id, cursor.as_ref());
        let mut caught_up = true;
        for reply in replies {
            match reply {
                ServerMessage::Changes { changes, cursor, caught_up: done, .. } => {
                    for change in changes {
                        records.push(match change.state.document() {
                            Some(document) => serde_json::json!({
                                "id": change.key.as_str(),
                                "fields": weft_core::value::document_to_json(&document),
                            }),
                            None => serde_json::json!({"id": change.key.as_str(), "deleted": true}),
                        });
                    }
                    last_cursor = cursor;
                    caught_up = done;
                }
                ServerMessage::Removed { keys, .. } => removed.extend(keys.iter().map(|k| k.as_str().to_owned())),
                _ => {}
            }
        }
        results.push(serde_json::json!({
            "collection": collection.as_str(),
            "records": records,
            "removed": removed,
            "cursor": cursor_to_string(&last_cursor),
            "caught_up": caught_up,
        }));
    }
    Ok(serde_json::json!({ "written": written, "pulls": results }))
}
