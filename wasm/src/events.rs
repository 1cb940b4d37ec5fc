//! Replica events as the JSON objects `@weft/client` reads (`{"type": ...}`, typed as
//! `ReplicaEvent` in client-js/src/events.ts); acks and refusals name the writes they
//! cover so per-write promises can settle, and every event with an error code says
//! whether it is retryable, so the retry rule stays in [`ErrorCode::is_retryable`].

use serde_json::{Value as Json, json};
use weft_core::hlc::Hlc;
use weft_core::protocol::ErrorCode;
use weft_core::replica::ReplicaEvent;

/// The id of a local write as JavaScript sees it: its HLC, `wall.counter@node`.
pub fn write_id(hlc: Hlc) -> String {
    hlc.to_string()
}

fn code_json(code: ErrorCode) -> Json {
    json!({ "code": code.as_u16(), "codeName": code.name(), "retryable": code.is_retryable() })
}

/// An `error` event not tied to a batch: the server's, or one the session raises itself
/// (a refused exchange response).
pub fn error_json(code: ErrorCode, message: String, fatal: bool) -> Json {
    let mut out = code_json(code);
    out["type"] = "error".into();
    out["message"] = message.into();
    out["fatal"] = fatal.into();
    out
}

/// Every known code as `[{"code", "codeName", "retryable"}, ...]`: how `@weft/client`
/// names and judges codes that reach it outside an event (HTTP error bodies).
pub fn code_table_json() -> String {
    Json::Array(ErrorCode::ALL.into_iter().map(code_json).collect()).to_string()
}

/// One event; `acked` holds the write ids of an acknowledged batch (looked up by the
/// caller, which remembers what each batch carried).
pub fn event_json(event: ReplicaEvent, acked: Option<Vec<String>>) -> Json {
    match event {
        ReplicaEvent::Connected { node_id } => json!({ "type": "connected", "node": node_id.to_string() }),
        ReplicaEvent::Acknowledged { changes, .. } => {
            json!({ "type": "ack", "count": changes, "writes": acked.unwrap_or_default() })
        }
        ReplicaEvent::Rejected { code, message, changes, .. } => {
            let mut out = code_json(code);
            out["type"] = "rejected".into();
            out["message"] = message.into();
            out["writes"] = changes.iter().map(|c| write_id(c.hlc)).collect();
            out
        }
        // The count, not the keys: live queries and storage get the keys inside the
        // module, and a catch-up page of thousands of keys would cost more to encode and
        // parse than to apply.
        ReplicaEvent::RemoteChanges { collection, keys } => json!({
            "type": "changes",
            "collection": collection.as_str(),
            "count": keys.len(),
        }),
        ReplicaEvent::Removed { collection, keys } => json!({
            "type": "removed",
            "collection": collection.as_str(),
            "keys": keys.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        }),
        ReplicaEvent::CaughtUp { collection } => json!({ "type": "caughtUp", "collection": collection.as_str() }),
        ReplicaEvent::Reconciled { collection } => json!({ "type": "reconciled", "collection": collection.as_str() }),
        ReplicaEvent::QueryResult { request_id, rows, next } => json!({
            "type": "queryResult",
            "requestId": request_id,
            "rows": rows.iter().map(weft_core::value::document_to_json).collect::<Vec<_>>(),
            "next": next,
        }),
        ReplicaEvent::ServerError { code, message, fatal } => error_json(code, message, fatal),
        // The enum is non-exhaustive: a newer core's event reaches JavaScript by name.
        other => json!({ "type": "other", "debug": format!("{other:?}") }),
    }
}
