//! Reads that are not subscriptions: one-shot queries (the WebSocket `Query` message and
//! `POST /v1/query`) and the HTTP record endpoints — each through the caller's read view
//! from [`super::access::read_view`], like every other read.

use std::sync::Arc;

use weft_core::key::{CollectionName, RecordKey};
use weft_core::protocol::{ErrorCode, ServerMessage};
use weft_core::query::SqlQuery;

use super::Session;
use super::access::read_view;
use crate::auth::Principal;
use crate::error::OpError;
use crate::page_cursor::Start;
use crate::state::AppState;
use crate::sync::{query, records};

/// A `Query` message to answer. The session decides nothing yet: the collection, and so
/// the read view, is known only once the text is parsed, and parsing SQL runs on a
/// thread with a known stack (`sync::query`), which the session never starts itself.
pub struct QueryTask {
    state: Arc<AppState>,
    principal: Principal,
    request_id: u32,
    text: String,
}

impl std::fmt::Debug for QueryTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryTask").field("request_id", &self.request_id).finish_non_exhaustive()
    }
}

impl QueryTask {
    pub(super) fn new(state: Arc<AppState>, principal: Principal, request_id: u32, text: String) -> QueryTask {
        QueryTask { state, principal, request_id, text }
    }

    /// The request it answers.
    pub fn request_id(&self) -> u32 {
        self.request_id
    }

    /// The answer: a `QueryResult`, or an `Error` whose message starts with
    /// `query <id>:`. Blocking: parses (SQL on a thread of its own) and reads the store.
    pub fn run(self) -> ServerMessage {
        let answer = query::parse_text(&self.text).and_then(|parsed| answer(&self.state, &self.principal, &parsed));
        match answer {
            Ok(result) => query::result_message(self.request_id, &result),
            Err(mut error) => {
                error.message = format!("query {}: {}", self.request_id, error.message);
                error.to_message(None, false)
            }
        }
    }
}

/// A parsed query over what `principal` may read of its collection.
fn answer(state: &AppState, principal: &Principal, parsed: &SqlQuery) -> Result<serde_json::Value, OpError> {
    let collection = query::collection_of(parsed)?;
    let view = read_view(state, principal, collection, None)?;
    query::run(state, &view, parsed)
}

fn collection_name(name: &str) -> Result<CollectionName, OpError> {
    CollectionName::new(name).map_err(|e| OpError::new(ErrorCode::InvalidName, e.to_string()))
}

impl Session {
    /// Answers a parsed query (`POST /v1/query`): `{"rows": [...], "next": ...}` over
    /// the rows the caller may read. Blocking: reads the store.
    pub fn query(&self, parsed: &SqlQuery) -> Result<serde_json::Value, OpError> {
        answer(&self.state, self.caller()?, parsed)
    }

    /// One record as JSON (`id` plus fields), or `None` when it is absent, deleted or
    /// not readable — the three look the same to the caller. Blocking.
    pub fn get_record(&self, collection: &str, id: &str) -> Result<Option<serde_json::Value>, OpError> {
        let collection = collection_name(collection)?;
        let view = read_view(&self.state, self.caller()?, &collection, None)?;
        let key = RecordKey::new(id).map_err(|e| OpError::new(ErrorCode::InvalidName, e.to_string()))?;
        let engine = self.state.engine()?;
        Ok(records::get(engine, &collection, &key, &view)?.map(|document| records::record_json(&key, &document)))
    }

    /// A page of the records the caller may read, in key order, after `after` (a key,
    /// or a sealed cursor from an earlier page): `{"records": [...], "next": CURSOR |
    /// null}`. `next` is always sealed, so it never names a row the caller may not read.
    /// Blocking.
    pub fn list_records(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<serde_json::Value, OpError> {
        let collection = collection_name(collection)?;
        let view = read_view(&self.state, self.caller()?, &collection, None)?;
        let start = self.state.cursor_seal.start(after).map_err(|reason| OpError::new(ErrorCode::Malformed, reason))?;
        let after = match start {
            Start::First => None,
            Start::After(key) => Some(key),
        };
        let engine = self.state.engine()?;
        let listing = records::list(engine, &collection, after, limit, &view)?;
        let next = listing.next.map(|key| self.state.cursor_seal.seal(&key));
        Ok(serde_json::json!({ "records": listing.records, "next": next }))
    }
}
