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

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use weft_core::change::Change;
use weft_core::codec::{Reader, Writer};
use weft_core::crdt::ops;
use weft_core::key::{CollectionName, RecordKey};
use weft_core::protocol::{
    ClientMessage, Cursor, ErrorCode, PROTOCOL_VERSION, ServerMessage, Shape, decode_envelope, encode_envelope,
};
use weft_core::value::{Document, Value};

use super::{error_response, principal};
use crate::auth::Principal;
use crate::auth::rules::{Access, Operation};
use crate::metrics::TransportLabels;
use crate::state::AppState;
use crate::sync::view::View;
use crate::sync::{OpError, pull, push, reconcile};

/// Most catch-up pages one pull returns.
pub const PULL_PAGES_MAX: usize = 10;

const HTTP: TransportLabels = TransportLabels { transport: "http" };

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
        json_sync(&state, &principal, &body).await.map(|json| axum::Json(json).into_response())
    } else if content_type.starts_with("application/msgpack") || content_type.starts_with("application/x-msgpack") {
        msgpack_sync(&state, &principal, &body).await.map(|bytes| {
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

async fn msgpack_sync(state: &Arc<AppState>, principal: &Principal, body: &[u8]) -> Result<Vec<u8>, OpError> {
    let limits = state.decode_limits();
    let frames = decode_envelope(body, &limits)
        .map_err(|error| OpError::new(ErrorCode::from(&error), format!("envelope refused: {error}")))?;
    let mut replies = Vec::new();
    for (index, frame) in frames.iter().enumerate() {
        let message = match ClientMessage::decode(frame, &limits) {
            Ok(message) => message,
            Err(error) => {
                let error = OpError::new(ErrorCode::from(&error), format!("frame {index} refused: {error}"));
                replies.push(error.to_message(None, false).encode());
                continue;
            }
        };
        for reply in handle(state, principal, message).await {
            if let ServerMessage::Error { code, .. } = &reply {
                state.metrics.error(*code);
            }
            replies.push(reply.encode());
        }
    }
    Ok(encode_envelope(&replies))
}

async fn handle(state: &Arc<AppState>, principal: &Principal, message: ClientMessage) -> Vec<ServerMessage> {
    match message {
        ClientMessage::Hello { protocol_version, .. } if protocol_version != PROTOCOL_VERSION => {
            vec![
                OpError::new(
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "protocol version {protocol_version} is not supported; this server speaks {PROTOCOL_VERSION}"
                    ),
                )
                .to_message(None, true),
            ]
        }
        ClientMessage::Hello { .. } => vec![ServerMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
            server_time_ms: now_ms(),
            node_id: state.node_id,
            partition_map_version: 0,
        }],
        ClientMessage::Push { batch_id, changes } => match apply(state, principal, changes).await {
            Ok(()) => vec![ServerMessage::Ack { batch_id }],
            Err(error) => vec![error.to_message(Some(batch_id), false)],
        },
        ClientMessage::Subscribe { subscription_id, collection, cursor, shape } => {
            match pull_pages(state, principal, &collection, cursor.as_ref(), shape).await {
                Ok(pages) => {
                    let mut out = Vec::new();
                    let mut previous = pull::start_cursor(state.log_id, cursor.as_ref());
                    for page in pages {
                        if !page.removed.is_empty() {
                            out.push(ServerMessage::Removed {
                                subscription_id,
                                keys: page.removed,
                                cursor: previous.clone(),
                            });
                        }
                        previous = page.cursor.clone();
                        out.push(ServerMessage::Changes {
                            subscription_id,
                            changes: page.changes,
                            cursor: page.cursor,
                            caught_up: page.caught_up,
                        });
                    }
                    out
                }
                Err(error) => vec![error.to_message(None, false)],
            }
        }
        ClientMessage::Unsubscribe { .. } => Vec::new(),
        ClientMessage::Reconcile { session_id, collection, step } => {
            match reconcile::answer(state, principal, &collection, step, 0).await {
                Ok(Some(step)) => vec![ServerMessage::Reconcile { session_id, collection, step }],
                Ok(None) => Vec::new(),
                Err(error) => vec![error.to_message(None, false)],
            }
        }
        ClientMessage::Ping { nonce } => vec![ServerMessage::Pong { nonce }],
        ClientMessage::Query { request_id, query } => {
            let task_state = Arc::clone(state);
            let principal = principal.clone();
            let answer = tokio::task::spawn_blocking(move || {
                let parsed = crate::sync::query::parse_text(&query)?;
                crate::sync::query::run(&task_state, &principal, &parsed)
            })
            .await
            .unwrap_or_else(|_| Err(OpError::new(ErrorCode::Internal, "query failed inside the server")));
            match answer {
                Ok(result) => vec![crate::sync::query::result_message(request_id, &result)],
                Err(mut error) => {
                    error.message = format!("query {request_id}: {}", error.message);
                    vec![error.to_message(None, false)]
                }
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Checks and applies a batch; returns once durable.
async fn apply(state: &Arc<AppState>, principal: &Principal, changes: Vec<Change>) -> Result<(), OpError> {
    let count = changes.len() as u64;
    let task_state = Arc::clone(state);
    let principal = principal.clone();
    let result = tokio::task::spawn_blocking(move || {
        let appended = push::check_and_append(&task_state, &principal, changes, 0)?;
        task_state.engine()?.wait(appended).map_err(OpError::from)
    })
    .await
    .unwrap_or_else(|_| Err(OpError::new(ErrorCode::Internal, "the write failed inside the server")));
    result.map(|_| {
        state.metrics.ops.get_or_create(&HTTP).inc_by(count);
        state.metrics.acks.get_or_create(&HTTP).inc();
    })
}

async fn pull_pages(
    state: &Arc<AppState>,
    principal: &Principal,
    collection: &CollectionName,
    cursor: Option<&Cursor>,
    shape: Option<Shape>,
) -> Result<Vec<pull::Page>, OpError> {
    let access = state.rules.access(principal, collection.as_str(), Operation::Read);
    if access == Access::Denied {
        return Err(OpError::new(ErrorCode::Forbidden, format!("read of {collection} denied for {:?}", principal.sub)));
    }
    let engine = Arc::clone(state.engine()?);
    let view = View { access, shape };
    let mut cursor = pull::start_cursor(state.log_id, cursor);
    let collection = collection.clone();
    tokio::task::spawn_blocking(move || {
        engine.flush_collection(&collection)?;
        let mut pages = Vec::new();
        for _ in 0..PULL_PAGES_MAX {
            let page = pull::next_page(&engine, &collection, &cursor, &view)?;
            cursor = page.cursor.clone();
            let done = page.caught_up;
            pages.push(page);
            if done {
                break;
            }
        }
        Ok(pages)
    })
    .await
    .unwrap_or_else(|_| Err(OpError::new(ErrorCode::Internal, "pull failed inside the server")))
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

async fn json_sync(state: &Arc<AppState>, principal: &Principal, body: &[u8]) -> Result<serde_json::Value, OpError> {
    let request: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("request body is not JSON: {e}")))?;
    known_keys(&request, &REQUEST_KEYS, "the request")?;
    let list = |name: &str| match request.get(name) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => Ok(items.clone()),
        Some(_) => Err(bad(format!("`{name}` must be a list"))),
    };
    let (writes, pulls) = (list("writes")?, list("pulls")?);
    let mut written = 0;
    if !writes.is_empty() {
        let task_state = Arc::clone(state);
        let writes = writes.clone();
        let changes = tokio::task::spawn_blocking(move || changes_from_json(&task_state, &writes))
            .await
            .unwrap_or_else(|_| Err(OpError::new(ErrorCode::Internal, "write failed inside the server")))?;
        written = changes.len();
        apply(state, principal, changes).await?;
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
        let pages = pull_pages(state, principal, &collection, cursor.as_ref(), shape).await?;
        let mut records = Vec::new();
        let mut removed = Vec::new();
        let mut last_cursor = pull::start_cursor(state.log_id, cursor.as_ref());
        let mut caught_up = true;
        for page in pages {
            for change in page.changes {
                records.push(match change.state.document() {
                    Some(document) => serde_json::json!({
                        "id": change.key.as_str(),
                        "fields": weft_core::value::document_to_json(&document),
                    }),
                    None => serde_json::json!({"id": change.key.as_str(), "deleted": true}),
                });
            }
            removed.extend(page.removed.iter().map(|k| k.as_str().to_owned()));
            last_cursor = page.cursor;
            caught_up = page.caught_up;
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
