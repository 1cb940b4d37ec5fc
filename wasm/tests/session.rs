//! The session behind the WASM bindings, natively: tab sharing, persistence round trips,
//! merging stored copies, refusal of damaged stored data, and the events JavaScript
//! reads (error events carry the core's retry rule).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value as Json, json};
use weft_core::codec::DecodeLimits;
use weft_core::hlc::{ManualClock, NodeId};
use weft_core::protocol::{ClientMessage, ErrorCode, PROTOCOL_VERSION, ServerMessage};
use weft_wasm::persist::{merge_stored, pack};
use weft_wasm::session::{Session, SessionError};

fn session(node: &str, clock: &ManualClock) -> Session<ManualClock> {
    Session::new(node, clock.clone()).unwrap()
}

#[test]
fn a_change_shared_with_another_tab_converges_both() {
    let clock = ManualClock::new(1_700_000_000_000);
    let mut a = session("00000000000000a1", &clock);
    let mut b = session("00000000000000b2", &clock);
    a.put("todos", "t1", r#"{"title":"milk","done":false}"#).unwrap();
    clock.advance(1);
    b.update("todos", "t1", r#"{"done":true}"#).unwrap();
    for (_, bytes) in a.take_local_changes() {
        b.apply_shared(&bytes.unwrap()).unwrap();
    }
    for (_, bytes) in b.take_local_changes() {
        a.apply_shared(&bytes.unwrap()).unwrap();
    }
    assert_eq!(a.get("todos", "t1").unwrap(), b.get("todos", "t1").unwrap());
    assert_eq!(a.get("todos", "t1").unwrap().unwrap(), r#"{"done":true,"title":"milk"}"#);
}

#[test]
fn stored_records_outbox_and_cursors_reload_into_a_new_session() {
    let clock = ManualClock::new(1_700_000_000_000);
    let mut a = session("00000000000000a1", &clock);
    let watched = a.watch(r#"{"collection":"todos","order_by":"title"}"#).unwrap();
    for i in 0..50 {
        a.put("todos", &format!("t{i:02}"), &format!(r#"{{"title":"item {i:02}"}}"#)).unwrap();
    }
    a.delete("todos", "t07").unwrap();
    assert_eq!(a.take_live_changed(), vec![watched]);
    let dirty = a.take_dirty();
    assert_eq!(dirty.len(), 50, "every written record is dirty once");
    let records: Vec<Vec<u8>> = dirty.into_iter().map(|(_, bytes)| bytes.unwrap()).collect();
    let outbox: Vec<Vec<u8>> = a.take_local_changes().into_iter().map(|(_, bytes)| bytes.unwrap()).collect();
    assert_eq!(outbox.len(), 51);

    let mut reopened = session("00000000000000c3", &clock);
    assert_eq!(reopened.load_records(&pack(records.iter().map(Vec::as_slice))).unwrap(), 50);
    assert_eq!(reopened.load_outbox(&pack(outbox.iter().map(Vec::as_slice))).unwrap(), 51);
    assert!(reopened.take_dirty().is_empty(), "loading stored records does not make them dirty");
    assert_eq!(reopened.pending_writes(), 51, "unsent writes are queued again");
    assert_eq!(reopened.query(r#"{"collection":"todos"}"#).unwrap(), a.query(r#"{"collection":"todos"}"#).unwrap());
    assert_eq!(reopened.get("todos", "t07").unwrap(), None);
    let cursors = reopened.export_cursors();
    reopened.import_cursors(&cursors).unwrap();
}

#[test]
fn stored_copies_from_two_tabs_merge_in_either_order() {
    let clock = ManualClock::new(1_700_000_000_000);
    let mut a = session("00000000000000a1", &clock);
    let mut b = session("00000000000000b2", &clock);
    a.put("todos", "t1", r#"{"title":"milk"}"#).unwrap();
    clock.advance(1);
    b.update("todos", "t1", r#"{"done":true}"#).unwrap();
    let from_a = a.take_dirty().remove(0).1.unwrap();
    let from_b = b.take_dirty().remove(0).1.unwrap();
    let ab = merge_stored(&from_a, &from_b).unwrap();
    let ba = merge_stored(&from_b, &from_a).unwrap();
    assert_eq!(ab, ba);
    let mut reader = session("00000000000000c3", &clock);
    reader.load_records(&pack([ab.as_slice()])).unwrap();
    assert_eq!(reader.get("todos", "t1").unwrap().unwrap(), r#"{"done":true,"title":"milk"}"#);
}

#[test]
fn damaged_stored_data_and_bad_input_are_refused_by_name() {
    let clock = ManualClock::new(1_700_000_000_000);
    let mut s = session("00000000000000a1", &clock);
    let error = s.load_records(&[9, 0, 0, 0, 1, 2]).unwrap_err();
    assert!(error.to_string().contains("past the end"), "{error}");
    let error = s.load_records(&pack([&[0xc1u8][..]])).unwrap_err();
    assert!(matches!(error, SessionError::Decode(_)), "{error}");
    assert!(s.put("todos", "k", "[1]").unwrap_err().to_string().contains("expected an object"));
    assert!(s.put("todos", "k", "{").unwrap_err().to_string().contains("not valid JSON"));
    assert!(s.query(r#"{"collection":"todos","limit":-1}"#).unwrap_err().to_string().contains("limit"));
    assert!(Session::new("xyz", clock.clone()).is_err());
    assert!(Session::new("0000000000000000", clock).is_err(), "node id zero is refused");
    assert_eq!(s.pending_writes(), 0);
}

#[test]
fn a_compacted_snapshot_plus_later_entries_and_markers_reload_exactly() {
    use weft_wasm::session::forgotten_marker;
    let clock = ManualClock::new(1_700_000_000_000);
    let mut a = session("00000000000000a1", &clock);
    for i in 0..20 {
        a.put("todos", &format!("t{i:02}"), &format!(r#"{{"n":{i}}}"#)).unwrap();
    }
    let snapshot = a.export_records();
    a.take_dirty();
    clock.advance(1);
    a.update("todos", "t03", r#"{"n":300}"#).unwrap();
    let later: Vec<Vec<u8>> = a.take_dirty().into_iter().map(|(_, b)| b.unwrap()).collect();
    let marker = forgotten_marker("todos/t05");

    let mut reopened = session("00000000000000c3", &clock);
    assert_eq!(reopened.load_records(&snapshot).unwrap(), 20);
    let mut items: Vec<&[u8]> = later.iter().map(Vec::as_slice).collect();
    items.push(&marker);
    reopened.load_records(&pack(items)).unwrap();
    assert_eq!(reopened.get("todos", "t03").unwrap().unwrap(), r#"{"n":300}"#);
    assert_eq!(reopened.get("todos", "t05").unwrap(), None, "the marker drops the snapshot's copy");
    assert!(reopened.take_dirty().is_empty());
    // The writer's own copy wins over a marker, in the order the store merges them.
    assert_eq!(merge_stored(&marker, &later[0]).unwrap(), later[0]);
    assert_eq!(merge_stored(&later[0], &marker).unwrap(), marker);
    assert!(
        reopened.load_records(&pack([&[0xffu8, b'n', b'o'][..]])).unwrap_err().to_string().contains("no collection")
    );
}

fn events(session: &mut Session<ManualClock>, message: ServerMessage) -> Vec<Json> {
    serde_json::from_str(&session.handle(&message.encode()).unwrap()).unwrap()
}

fn refuse(code: ErrorCode, batch: Option<weft_core::protocol::BatchId>, fatal: bool) -> ServerMessage {
    ServerMessage::Error { code, message: format!("{code:?} here"), batch_id: batch, op_index: None, fatal }
}

/// Pushes one new write and returns its write id and the batch that carried it.
fn push_one(s: &mut Session<ManualClock>, key: &str) -> (String, weft_core::protocol::BatchId) {
    let id = s.put("todos", key, r#"{"title":"milk"}"#).unwrap();
    let frame = s.next_frame().expect("a push");
    match ClientMessage::decode(&frame, &DecodeLimits::default()).unwrap() {
        ClientMessage::Push { batch_id, .. } => (id, batch_id),
        other => panic!("expected a push, got {other:?}"),
    }
}

#[test]
fn error_events_carry_the_code_its_name_and_whether_to_retry() {
    let clock = ManualClock::new(1_700_000_000_000);
    let mut s = session("00000000000000a1", &clock);
    s.hello(None);
    let welcome = ServerMessage::Welcome {
        protocol_version: PROTOCOL_VERSION,
        server_time_ms: 1_700_000_000_000,
        node_id: NodeId(7),
        partition_map_version: 0,
    };
    assert_eq!(events(&mut s, welcome), [json!({"type": "connected", "node": NodeId(7).to_string()})]);

    // A refusal for good names its write, and is not retryable.
    let (id, batch) = push_one(&mut s, "t1");
    assert_eq!(
        events(&mut s, refuse(ErrorCode::Forbidden, Some(batch), false)),
        [json!({
            "type": "rejected", "code": 9, "codeName": "Forbidden", "retryable": false,
            "message": "Forbidden here", "writes": [id],
        })]
    );
    // A retryable refusal of a batch is no event: the write goes again.
    let (_, batch) = push_one(&mut s, "t2");
    assert_eq!(events(&mut s, refuse(ErrorCode::Timeout, Some(batch), false)), Vec::<Json>::new());
    assert_eq!(s.pending_writes(), 1);

    // Errors not tied to a batch say the same, from the same rule.
    for code in ErrorCode::ALL {
        let event = events(&mut s, refuse(code, None, false)).remove(0);
        assert_eq!(event["type"], "error");
        assert_eq!(event["code"], code.as_u16());
        assert_eq!(event["codeName"], code.name());
        assert_eq!(event["retryable"], code.is_retryable(), "{code:?}");
        assert_eq!(event["fatal"], false);
    }
    let event = events(&mut s, refuse(ErrorCode::Unavailable, None, true)).remove(0);
    assert_eq!((&event["retryable"], &event["fatal"]), (&json!(true), &json!(true)));
}

#[test]
fn the_code_table_lists_every_known_code_once() {
    let table: Vec<Json> = serde_json::from_str(&weft_wasm::events::code_table_json()).unwrap();
    assert_eq!(table.len(), ErrorCode::ALL.len());
    assert_eq!(table[21], json!({"code": 22, "codeName": "Timeout", "retryable": true}));
    assert_eq!(table[8], json!({"code": 9, "codeName": "Forbidden", "retryable": false}));
}
