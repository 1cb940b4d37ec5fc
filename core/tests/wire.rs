//! The wire format: round trips of every message, canonical value encoding, and hostile
//! input (truncated, oversized, deeply nested, lying lengths, random and mutated bytes)
//! that must produce errors, never panics or unbounded allocations.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and benchmarks fail loudly on bad setup")]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use weft_core::change::Change;
use weft_core::codec::{DecodeError, DecodeLimits, Reader, Writer};
use weft_core::crdt::{MemberState, RecordState, ops};
use weft_core::hlc::{Hlc, NodeId};
use weft_core::key::{CollectionName, PartitionId, RecordKey};
use weft_core::merkle::{ChildDigests, LeafItem, LeafList, NodePath, ReconcileStep};
use weft_core::protocol::{
    BatchId, ClientMessage, Cursor, ErrorCode, LogId, PROTOCOL_VERSION, ServerMessage, SessionId, Shape, SubscriptionId,
};
use weft_core::value::{Document, Value};

const T0: u64 = 1_700_000_000_000;

fn hlc(ms: u64, node: u64) -> Hlc {
    Hlc::new(T0 + ms, 0, NodeId(node))
}

fn sample_change() -> Change {
    let at = hlc(10, 3);
    let mut document = Document::new();
    document.insert("title".into(), "milk ü".into());
    document.insert("n".into(), Value::Int(-200));
    document.insert("f".into(), Value::Float(1.5));
    document.insert("bytes".into(), Value::Bytes(vec![0, 255, 7]));
    document.insert("list".into(), Value::Array(vec![Value::Null, Value::Bool(true)]));
    let mut state = ops::put(None, document, at);
    let counter = ops::increment(Some(&state), "likes", 7, NodeId(3), at);
    state.fields.extend(counter.fields);
    state.members.insert(
        Value::from("red").to_bytes(),
        MemberState {
            value: "red".into(),
            adds: BTreeSet::from([hlc(1, 2), at]),
            removes: BTreeSet::from([hlc(1, 2)]),
        },
    );
    Change { collection: CollectionName::new("todos").unwrap(), key: RecordKey::new("t/1").unwrap(), hlc: at, state }
}

fn sample_cursor() -> Cursor {
    let mut cursor = Cursor::new(LogId(42));
    cursor.advance(PartitionId::new(0).unwrap(), 17);
    cursor.advance(PartitionId::new(270).unwrap(), 1 << 40);
    cursor
}

fn sample_step() -> ReconcileStep {
    let p = PartitionId::new(5).unwrap();
    ReconcileStep {
        compare: vec![(NodePath::ROOT, 99)],
        children: vec![ChildDigests { parent: NodePath::partition_root(p), digests: (0..16).collect() }],
        leaves: vec![
            LeafList {
                path: NodePath::new(2, 5, 0xa000_0000_0000_0000).unwrap(),
                items: vec![LeafItem { partition: p, bucket: 0xa123_0000_0000_0000, version: 7 }],
            },
            LeafList {
                path: NodePath::ROOT,
                items: vec![LeafItem { partition: PartitionId::new(9).unwrap(), bucket: 1, version: 2 }],
            },
        ],
        want: vec![(p, 12345)],
        records: vec![sample_change()],
        truncated: true,
    }
}

fn client_messages() -> Vec<ClientMessage> {
    vec![
        ClientMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            replica_id: NodeId(u64::MAX),
            token: Some("jwt".into()),
        },
        ClientMessage::Hello { protocol_version: PROTOCOL_VERSION, replica_id: NodeId(1), token: None },
        ClientMessage::Push { batch_id: BatchId(9), changes: vec![sample_change(), sample_change()] },
        ClientMessage::Subscribe {
            subscription_id: SubscriptionId(3),
            collection: CollectionName::new("todos").unwrap(),
            cursor: Some(sample_cursor()),
            shape: None,
        },
        ClientMessage::Subscribe {
            subscription_id: SubscriptionId(4),
            collection: CollectionName::new("todos").unwrap(),
            cursor: None,
            shape: Some(Shape::from([("owner", Value::from("alice")), ("done", Value::from(false))])),
        },
        ClientMessage::Subscribe {
            subscription_id: SubscriptionId(5),
            collection: CollectionName::new("todos").unwrap(),
            cursor: None,
            shape: Some(Shape::from(weft_core::query::Predicate::Or(vec![
                weft_core::query::Predicate::And(vec![
                    weft_core::query::Predicate::Ge(
                        weft_core::query::FieldPath::parse("meta.priority").unwrap(),
                        Value::Int(3),
                    ),
                    weft_core::query::Predicate::Not(Box::new(weft_core::query::Predicate::Exists(
                        weft_core::query::FieldPath::field("archived"),
                    ))),
                ]),
                weft_core::query::Predicate::In(
                    weft_core::query::FieldPath::field("tag"),
                    vec![Value::from("a"), Value::Null],
                ),
                weft_core::query::Predicate::Prefix(weft_core::query::FieldPath::field("title"), "buy".into()),
                weft_core::query::Predicate::True,
            ]))),
        },
        ClientMessage::Unsubscribe { subscription_id: SubscriptionId(3) },
        ClientMessage::Query { request_id: 2, query: "SELECT * FROM todos".into() },
        ClientMessage::Reconcile {
            session_id: SessionId(1),
            collection: CollectionName::new("todos").unwrap(),
            step: sample_step(),
        },
        ClientMessage::Ping { nonce: 77 },
    ]
}

fn server_messages() -> Vec<ServerMessage> {
    vec![
        ServerMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
            server_time_ms: T0,
            node_id: NodeId(5),
            partition_map_version: 0,
        },
        ServerMessage::Ack { batch_id: BatchId(9) },
        ServerMessage::Changes {
            subscription_id: SubscriptionId(3),
            changes: vec![sample_change()],
            cursor: sample_cursor(),
            caught_up: true,
        },
        ServerMessage::Reconcile {
            session_id: SessionId(1),
            collection: CollectionName::new("todos").unwrap(),
            step: ReconcileStep::default(),
        },
        ServerMessage::Error {
            code: ErrorCode::ClockDrift,
            message: "change 2: clock drift".into(),
            batch_id: Some(BatchId(9)),
            op_index: Some(2),
            fatal: false,
        },
        ServerMessage::Error {
            code: ErrorCode::Other(999),
            message: String::new(),
            batch_id: None,
            op_index: None,
            fatal: true,
        },
        ServerMessage::Pong { nonce: 77 },
        ServerMessage::QueryResult {
            request_id: 9,
            rows: vec![Document::from([("id".to_string(), Value::from("t1")), ("n".to_string(), Value::Int(3))])],
            next: Some("{\"key\":\"t1\",\"values\":[3]}".into()),
        },
        ServerMessage::QueryResult { request_id: 10, rows: Vec::new(), next: None },
        ServerMessage::Removed {
            subscription_id: SubscriptionId(2),
            keys: vec![RecordKey::new("t1").unwrap(), RecordKey::new("t2").unwrap()],
            cursor: sample_cursor(),
        },
    ]
}

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

#[test]
fn every_message_round_trips() {
    for message in client_messages() {
        let bytes = message.encode();
        assert_eq!(ClientMessage::decode(&bytes, &limits()).unwrap(), message);
    }
    for message in server_messages() {
        let bytes = message.encode();
        assert_eq!(ServerMessage::decode(&bytes, &limits()).unwrap(), message);
    }
}

#[test]
fn every_error_code_round_trips_and_is_stable() {
    for code in 0..=300u16 {
        assert_eq!(ErrorCode::from_u16(code).as_u16(), code);
    }
    assert_eq!(ErrorCode::Malformed.as_u16(), 1);
    assert_eq!(ErrorCode::ClockDrift.as_u16(), 7);
    assert_eq!(ErrorCode::Unavailable.as_u16(), 18);
    // The table clients are given: every known code once, in wire order, named as
    // `Debug` spells it (the names HTTP error bodies carry).
    let numbers: Vec<u16> = ErrorCode::ALL.iter().map(|code| code.as_u16()).collect();
    assert_eq!(numbers, (1..=24).collect::<Vec<u16>>());
    for code in ErrorCode::ALL {
        assert_eq!(code.name(), format!("{code:?}"));
    }
    assert_eq!(ErrorCode::from_u16(999).name(), "Other");
}

#[test]
fn retryable_codes_are_the_transient_ones() {
    let retryable: Vec<ErrorCode> = ErrorCode::ALL.into_iter().filter(|code| code.is_retryable()).collect();
    assert_eq!(
        retryable,
        [
            ErrorCode::RateLimited,
            ErrorCode::SlowConsumer,
            ErrorCode::Internal,
            ErrorCode::Unavailable,
            ErrorCode::Timeout
        ]
    );
    assert!(!ErrorCode::from_u16(999).is_retryable(), "an unknown code is not retried blindly");
}

#[test]
fn values_encode_canonically() {
    let cases: Vec<(Value, &[u8])> = vec![
        (Value::Null, &[0xc0]),
        (Value::Bool(true), &[0xc3]),
        (Value::Int(5), &[0x05]),
        (Value::Int(-1), &[0xff]),
        (Value::Int(200), &[0xcc, 200]),
        (Value::Int(-200), &[0xd1, 0xff, 0x38]),
        (Value::Float(1.0), &[0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
        (Value::from("ab"), &[0xa2, b'a', b'b']),
        (Value::Bytes(vec![1]), &[0xc4, 1, 1]),
    ];
    for (value, bytes) in cases {
        assert_eq!(value.to_bytes(), bytes, "{value:?}");
    }
    // Object keys sort by bytes, whatever the insertion order.
    let mut object = BTreeMap::new();
    object.insert("b".to_string(), Value::Int(1));
    object.insert("a".to_string(), Value::Int(2));
    assert_eq!(Value::Object(object).to_bytes(), [0x82, 0xa1, b'a', 2, 0xa1, b'b', 1]);
}

#[test]
fn non_canonical_input_decodes_to_the_same_value() {
    // uint64 0x05 and float32 1.0 are accepted and re-encode canonically.
    let mut reader_bytes = vec![0xcf, 0, 0, 0, 0, 0, 0, 0, 5];
    let limits = limits();
    let mut reader = Reader::new(&reader_bytes, &limits).unwrap();
    assert_eq!(Value::decode(&mut reader).unwrap(), Value::Int(5));
    reader_bytes = vec![0xca, 0x3f, 0x80, 0, 0];
    let mut reader = Reader::new(&reader_bytes, &limits).unwrap();
    assert_eq!(Value::decode(&mut reader).unwrap(), Value::Float(1.0));
}

#[test]
fn json_conversion_round_trips() {
    let json = serde_json::json!({
        "title": "milk", "n": 3, "f": 2.5, "ok": true, "none": null,
        "list": [1, "x", {"deep": [false]}], "raw": {"$bytes": "AAEC"}
    });
    let value = Value::from_json(&json).unwrap();
    let Value::Object(fields) = &value else { panic!("object expected") };
    assert_eq!(fields["raw"], Value::Bytes(vec![0, 1, 2]));
    assert_eq!(fields["n"], Value::Int(3));
    assert_eq!(value.to_json(), json);
    assert!(Value::from_json(&serde_json::json!(u64::MAX)).is_err(), "u64 beyond i64 is refused");
    assert!(Value::from_json(&serde_json::json!({"$bytes": "***"})).is_err());
}

fn assert_error(frame: &[u8], expect: impl Fn(&DecodeError) -> bool) {
    match ClientMessage::decode(frame, &limits()) {
        Ok(message) => panic!("hostile frame decoded: {message:?}"),
        Err(error) => assert!(expect(&error), "unexpected error: {error}"),
    }
}

#[test]
fn every_truncation_of_every_message_is_an_error() {
    for message in client_messages() {
        let bytes = message.encode();
        for len in 0..bytes.len() {
            assert!(ClientMessage::decode(&bytes[..len], &limits()).is_err(), "prefix {len} of {message:?}");
        }
    }
    for message in server_messages() {
        let bytes = message.encode();
        for len in 0..bytes.len() {
            assert!(ServerMessage::decode(&bytes[..len], &limits()).is_err(), "prefix {len} of {message:?}");
        }
    }
}

#[test]
fn oversized_frames_are_refused_before_parsing() {
    let limits = DecodeLimits { frame_bytes_max: 100, ..DecodeLimits::default() };
    let frame = ClientMessage::Push { batch_id: BatchId(1), changes: vec![sample_change(); 3] }.encode();
    let error = ClientMessage::decode(&frame, &limits).unwrap_err();
    assert!(matches!(error, DecodeError::FrameTooLarge { max: 100, .. }), "{error}");
    assert_eq!(ErrorCode::from(&error), ErrorCode::FrameTooLarge);
}

#[test]
fn deep_nesting_is_refused_without_recursion_overflow() {
    // A push whose change holds a value nested 100,000 levels deep.
    let mut frame = Writer::new();
    frame.array_len(3);
    frame.uint(2);
    frame.uint(1);
    frame.array_len(1);
    frame.array_len(4);
    frame.str("todos");
    frame.str("k");
    frame.array_len(3);
    frame.uint(T0);
    frame.uint(0);
    frame.uint(1);
    frame.array_len(4);
    frame.uint(0);
    frame.nil();
    frame.map_len(1);
    frame.str("f");
    frame.array_len(2);
    frame.array_len(2);
    let mut bytes = frame.into_bytes();
    bytes.extend(std::iter::repeat_n(0x91u8, 100_000));
    bytes.push(0xc0);
    assert_error(&bytes, |e| matches!(e, DecodeError::TooDeep { .. }));
    assert_eq!(ErrorCode::from(&ClientMessage::decode(&bytes, &limits()).unwrap_err()), ErrorCode::NestingTooDeep);
}

#[test]
fn lying_lengths_are_refused_before_allocating() {
    // A push announcing 4 billion changes in a 20-byte frame.
    let frame = [0x93, 0x02, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0];
    assert_error(&frame, |e| matches!(e, DecodeError::Truncated { .. }));
    // A string announcing 4 GB.
    let frame = [0x94, 0x01, 0x01, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff];
    assert_error(&frame, |e| matches!(e, DecodeError::TooLong { .. } | DecodeError::Truncated { .. }));
}

#[test]
fn batches_over_the_limit_are_refused_with_their_size() {
    let limits = DecodeLimits { batch_len_max: 2, ..DecodeLimits::default() };
    let frame = ClientMessage::Push { batch_id: BatchId(1), changes: vec![sample_change(); 3] }.encode();
    let error = ClientMessage::decode(&frame, &limits).unwrap_err();
    assert!(matches!(error, DecodeError::BatchTooLarge { len: 3, max: 2, .. }), "{error}");
    assert_eq!(ErrorCode::from(&error), ErrorCode::BatchTooLarge);
}

#[test]
fn invalid_utf8_keys_are_named() {
    let mut change = sample_change().clone();
    change.key = RecordKey::new("KEY").unwrap();
    let mut frame = ClientMessage::Push { batch_id: BatchId(1), changes: vec![change] }.encode();
    let at = frame.windows(3).position(|w| w == b"KEY").unwrap();
    frame[at] = 0xff;
    assert_error(&frame, |e| matches!(e, DecodeError::InvalidUtf8 { what: "change key", .. }));
}

#[test]
fn semantic_violations_are_refused() {
    // A timestamp inside the state later than the change's own: a way to smuggle drift.
    let mut change = sample_change();
    change.state.presence = Some(Hlc::new(T0 + 999_999, 0, NodeId(3)));
    let frame = ClientMessage::Push { batch_id: BatchId(1), changes: vec![change] }.encode();
    assert_error(&frame, |e| e.to_string().contains("later than its change"));

    // An over-long key.
    let mut writer = Writer::new();
    writer.array_len(3);
    writer.uint(2);
    writer.uint(1);
    writer.array_len(1);
    writer.array_len(4);
    writer.str("todos");
    writer.str(&"k".repeat(2000));
    assert_error(&writer.into_bytes(), |e| matches!(e, DecodeError::TooLong { what: "change key", .. }));

    // A bad collection name.
    let mut bad = ClientMessage::Unsubscribe { subscription_id: SubscriptionId(1) }.encode();
    bad[1] = 3; // turn it into a subscribe with too few fields
    assert_error(&bad, |e| matches!(e, DecodeError::Invalid { .. }));
}

#[test]
fn unknown_and_misdirected_message_types_are_named() {
    assert_error(&[0x91, 0x63], |e| matches!(e, DecodeError::UnknownMessageType { tag: 99 }));
    // A server message sent to the server.
    let pong = ServerMessage::Pong { nonce: 1 }.encode();
    assert_error(&pong, |e| matches!(e, DecodeError::UnknownMessageType { tag: 69 }));
}

#[test]
fn trailing_fields_are_ignored_but_trailing_bytes_are_not() {
    // A ping with an extra field from a future revision.
    let frame = [0x93, 0x06, 0x07, 0xa1, b'x'];
    assert_eq!(ClientMessage::decode(&frame, &limits()).unwrap(), ClientMessage::Ping { nonce: 7 });
    let frame = [0x92, 0x06, 0x07, 0xc0];
    assert_error(&frame, |e| matches!(e, DecodeError::TrailingBytes { count: 1, .. }));
}

#[test]
fn shapes_with_unknown_operators_or_too_many_conditions_are_refused() {
    use weft_core::query::{FieldPath, Predicate};
    let subscribe = |predicate: Predicate| {
        ClientMessage::Subscribe {
            subscription_id: SubscriptionId(1),
            collection: CollectionName::new("todos").unwrap(),
            cursor: None,
            shape: Some(Shape::from(predicate)),
        }
        .encode()
    };
    let many = Predicate::Or((0..100).map(|i| Predicate::Eq(FieldPath::field("n"), Value::Int(i))).collect());
    let error = ClientMessage::decode(&subscribe(many), &limits()).unwrap_err().to_string();
    assert!(error.contains("more than the limit of 64"), "{error}");
    // Operator 99 does not exist: patch the encoded `[13, ...]` (not) into `[99, ...]`.
    let mut frame = subscribe(Predicate::Not(Box::new(Predicate::True)));
    let at = frame.windows(2).position(|w| w == [0x92, 13]).unwrap();
    frame[at + 1] = 99;
    let error = ClientMessage::decode(&frame, &limits()).unwrap_err().to_string();
    assert!(error.contains("unknown shape operator 99"), "{error}");
}

#[test]
fn fuzz_regressions_decode_without_panicking() {
    // Inputs the fuzzer (fuzz/) found or that once crashed a decoder: kept forever.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let _ = ClientMessage::decode(&bytes, &limits());
        let _ = ServerMessage::decode(&bytes, &limits());
        let _ = weft_core::protocol::decode_envelope(&bytes, &limits());
        n += 1;
    }
    assert!(n > 0, "no regression inputs found in {}", dir.display());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = ClientMessage::decode(&bytes, &limits());
        let _ = ServerMessage::decode(&bytes, &limits());
        let _ = weft_core::protocol::decode_envelope(&bytes, &limits());
    }

    #[test]
    fn mutated_frames_never_panic_and_valid_ones_re_encode(
        which in 0usize..8,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let messages = client_messages();
        let mut frame = messages[which % messages.len()].encode();
        for (index, byte) in flips {
            let i = index.index(frame.len());
            frame[i] = byte;
        }
        if let Ok(message) = ClientMessage::decode(&frame, &limits()) {
            let again = message.encode();
            prop_assert_eq!(ClientMessage::decode(&again, &limits()).unwrap(), message);
        }
    }

    #[test]
    fn record_states_round_trip(
        fields in prop::collection::btree_map("[a-z]{1,8}", any::<i64>(), 0..6),
        delete in any::<bool>(),
        tags in prop::collection::btree_set(0u64..1000, 0..5),
    ) {
        let at = hlc(5_000, 4);
        let document: Document = fields.into_iter().map(|(k, v)| (k, Value::Int(v))).collect();
        let mut state: RecordState = if delete { ops::put(None, document, at) } else { ops::update(None, document, at) };
        for tag in tags {
            let add = ops::set_add(Value::Int(tag as i64), Hlc::new(T0 + tag, 0, NodeId(1)));
            state.members.extend(add.members);
        }
        let change = Change { collection: CollectionName::new("c").unwrap(), key: RecordKey::new("k").unwrap(), hlc: at, state };
        let mut writer = Writer::new();
        change.encode(&mut writer);
        let bytes = writer.into_bytes();
        let limits = limits();
        let mut reader = Reader::new(&bytes, &limits).unwrap();
        prop_assert_eq!(Change::decode(&mut reader).unwrap(), change);
        prop_assert!(reader.finish().is_ok());
    }
}
