//! The replica's side of the sync protocol, driven through encoded frames by a minimal
//! in-test server (the real server is `weft-server`): handshake, push and ack, resend
//! after disconnect, subscriptions with cursors, rejected and retried batches, and merkle
//! reconciliation over protocol messages.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and benchmarks fail loudly on bad setup")]

use weft_core::change::Change;
use weft_core::codec::DecodeLimits;
use weft_core::hlc::{ManualClock, NodeId};
use weft_core::key::{CollectionName, RecordKey};
use weft_core::merkle::respond;
use weft_core::protocol::{ClientMessage, Cursor, ErrorCode, LogId, PROTOCOL_VERSION, ServerMessage, SubscriptionId};
use weft_core::replica::{Collection, Replica, ReplicaEvent};
use weft_core::value::{Document, Value};

const T0: u64 = 1_700_000_000_000;

fn todos() -> CollectionName {
    CollectionName::new("todos").unwrap()
}

fn doc(title: &str) -> Document {
    Document::from([("title".to_string(), Value::from(title))])
}

/// Just enough server to exercise the client: one collection, an append-only log whose
/// index is the sequence number (all in partition 0 of the cursor, for simplicity).
struct TestServer {
    collection: Collection,
    log: Vec<Change>,
    subscribers: Vec<SubscriptionId>,
    reject_next: Option<ErrorCode>,
}

impl TestServer {
    fn new() -> TestServer {
        TestServer { collection: Collection::new(todos()), log: Vec::new(), subscribers: Vec::new(), reject_next: None }
    }

    fn cursor(&self) -> Cursor {
        let mut cursor = Cursor::new(LogId(7));
        cursor.advance(weft_core::key::PartitionId::new(0).unwrap(), self.log.len() as u64);
        cursor
    }

    /// Decodes a client frame and returns encoded replies.
    fn receive(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
        let message = ClientMessage::decode(frame, &DecodeLimits::default()).unwrap();
        let replies = match message {
            ClientMessage::Hello { protocol_version, .. } => {
                assert_eq!(protocol_version, PROTOCOL_VERSION);
                vec![ServerMessage::Welcome {
                    protocol_version: PROTOCOL_VERSION,
                    server_time_ms: T0,
                    node_id: NodeId(100),
                    partition_map_version: 0,
                }]
            }
            ClientMessage::Push { batch_id, changes } => {
                if let Some(code) = self.reject_next.take() {
                    vec![ServerMessage::Error {
                        code,
                        message: "change 0: no".into(),
                        batch_id: Some(batch_id),
                        op_index: Some(0),
                        fatal: false,
                    }]
                } else {
                    for change in changes {
                        self.collection.apply(change.key.clone(), change.state.clone());
                        self.log.push(change);
                    }
                    vec![ServerMessage::Ack { batch_id }]
                }
            }
            ClientMessage::Subscribe { subscription_id, cursor, .. } => {
                let from = cursor.map_or(0, |c| c.seq(weft_core::key::PartitionId::new(0).unwrap()) as usize);
                self.subscribers.push(subscription_id);
                vec![ServerMessage::Changes {
                    subscription_id,
                    changes: self.log[from..].to_vec(),
                    cursor: self.cursor(),
                    caught_up: true,
                }]
            }
            ClientMessage::Reconcile { session_id, collection, step } => {
                for record in &step.records {
                    self.collection.apply(record.key.clone(), record.state.clone());
                }
                if step.asks_nothing() {
                    vec![]
                } else {
                    let step = respond(self.collection.merkle(), &step, &self.collection).unwrap();
                    vec![ServerMessage::Reconcile { session_id, collection, step }]
                }
            }
            ClientMessage::Unsubscribe { .. } => vec![],
            ClientMessage::Ping { nonce } => vec![ServerMessage::Pong { nonce }],
            ClientMessage::Query { request_id, .. } => {
                vec![ServerMessage::QueryResult { request_id, rows: Vec::new(), next: None }]
            }
        };
        replies.iter().map(ServerMessage::encode).collect()
    }
}

/// Delivers frames back and forth until both sides are quiet; returns the client's events.
fn pump(replica: &mut Replica<ManualClock>, server: &mut TestServer, first: Vec<ClientMessage>) -> Vec<ReplicaEvent> {
    let mut to_server: Vec<Vec<u8>> = first.iter().map(ClientMessage::encode).collect();
    let mut events = Vec::new();
    for _ in 0..100 {
        if to_server.is_empty() {
            return events;
        }
        let mut to_client = Vec::new();
        for frame in to_server.drain(..) {
            to_client.extend(server.receive(&frame));
        }
        for frame in to_client {
            let message = ServerMessage::decode(&frame, &DecodeLimits::default()).unwrap();
            let handled = replica.handle(message).unwrap();
            to_server.extend(handled.send.iter().map(ClientMessage::encode));
            events.extend(handled.events);
        }
    }
    panic!("protocol did not settle");
}

fn connect(replica: &mut Replica<ManualClock>, server: &mut TestServer) -> Vec<ReplicaEvent> {
    let hello = replica.hello(Some("token".into()));
    pump(replica, server, vec![hello])
}

#[test]
fn offline_writes_are_pushed_on_connect_and_acknowledged() {
    let mut server = TestServer::new();
    let mut phone = Replica::new(NodeId(1), ManualClock::new(T0 - 3_600_000)); // clock an hour slow
    phone.put(&todos(), &RecordKey::new("t1").unwrap(), doc("offline")).unwrap();
    assert_eq!(phone.next_push(), None, "nothing is pushed before the welcome");
    let events = connect(&mut phone, &mut server);
    assert!(events.contains(&ReplicaEvent::Connected { node_id: NodeId(100) }));
    assert!(events.iter().any(|e| matches!(e, ReplicaEvent::Acknowledged { changes: 1, .. })));
    assert!(phone.outbox().is_empty());
    assert_eq!(server.collection.document("t1"), Some(doc("offline")));
    // After the welcome the client's HLCs follow the server's clock, not its own.
    phone.update(&todos(), &RecordKey::new("t1").unwrap(), doc("later")).unwrap();
    assert!(phone.clock().last().wall_ms >= T0);
}

#[test]
fn in_flight_batches_are_resent_after_a_disconnect() {
    let mut server = TestServer::new();
    let mut phone = Replica::new(NodeId(1), ManualClock::new(T0));
    connect(&mut phone, &mut server);
    phone.put(&todos(), &RecordKey::new("t1").unwrap(), doc("a")).unwrap();
    let lost = phone.next_push().unwrap(); // sent, but the link dies before the ack
    assert_eq!(phone.outbox().in_flight_batches(), 1);
    phone.disconnected();
    assert_eq!(phone.outbox().len(), 1, "an unacknowledged change is never dropped");
    drop(lost);
    connect(&mut phone, &mut server);
    assert!(phone.outbox().is_empty());
    assert_eq!(server.collection.document("t1"), Some(doc("a")));
}

#[test]
fn subscriptions_catch_up_then_resume_from_their_cursor() {
    let mut server = TestServer::new();
    let mut writer = Replica::new(NodeId(1), ManualClock::new(T0));
    connect(&mut writer, &mut server);
    for i in 0..5 {
        writer.put(&todos(), &RecordKey::new(format!("t{i}")).unwrap(), doc("x")).unwrap();
    }
    let push = writer.next_push().unwrap();
    pump(&mut writer, &mut server, vec![push]);

    let mut reader = Replica::new(NodeId(2), ManualClock::new(T0));
    assert_eq!(reader.subscribe(&todos()), None, "sent after the welcome");
    let events = connect(&mut reader, &mut server);
    assert!(events.contains(&ReplicaEvent::CaughtUp { collection: todos() }));
    assert_eq!(reader.get(&todos(), "t4"), Some(doc("x")));
    assert_eq!(reader.cursor(&todos()).unwrap().seq(weft_core::key::PartitionId::new(0).unwrap()), 5);

    // Reconnecting resubscribes with the cursor: only the new change comes back.
    reader.disconnected();
    writer.put(&todos(), &RecordKey::new("t9").unwrap(), doc("new")).unwrap();
    let push = writer.next_push().unwrap();
    pump(&mut writer, &mut server, vec![push]);
    let events = connect(&mut reader, &mut server);
    let remote: Vec<_> = events.iter().filter(|e| matches!(e, ReplicaEvent::RemoteChanges { .. })).collect();
    assert_eq!(
        remote,
        vec![&ReplicaEvent::RemoteChanges { collection: todos(), keys: vec![RecordKey::new("t9").unwrap()] }]
    );
}

#[test]
fn refused_batches_are_reported_and_retryable_ones_requeued() {
    let mut server = TestServer::new();
    let mut phone = Replica::new(NodeId(1), ManualClock::new(T0));
    connect(&mut phone, &mut server);

    server.reject_next = Some(ErrorCode::RateLimited);
    phone.put(&todos(), &RecordKey::new("t1").unwrap(), doc("a")).unwrap();
    let push = phone.next_push().unwrap();
    let events = pump(&mut phone, &mut server, vec![push]);
    assert!(events.is_empty(), "a retryable refusal is not an application event: {events:?}");
    assert_eq!(phone.outbox().len(), 1);
    let push = phone.next_push().unwrap();
    pump(&mut phone, &mut server, vec![push]);
    assert!(phone.outbox().is_empty());

    server.reject_next = Some(ErrorCode::Forbidden);
    phone.put(&todos(), &RecordKey::new("t2").unwrap(), doc("b")).unwrap();
    let push = phone.next_push().unwrap();
    let events = pump(&mut phone, &mut server, vec![push]);
    assert!(
        matches!(&events[..], [ReplicaEvent::Rejected { code: ErrorCode::Forbidden, changes, .. }] if changes.len() == 1)
    );
    assert!(phone.outbox().is_empty());
}

#[test]
fn fatal_errors_disconnect() {
    let mut phone = Replica::new(NodeId(1), ManualClock::new(T0));
    let mut server = TestServer::new();
    connect(&mut phone, &mut server);
    let handled = phone
        .handle(ServerMessage::Error {
            code: ErrorCode::Unauthenticated,
            message: "token expired".into(),
            batch_id: None,
            op_index: None,
            fatal: true,
        })
        .unwrap();
    assert!(!phone.is_connected());
    assert!(matches!(
        &handled.events[..],
        [ReplicaEvent::ServerError { code: ErrorCode::Unauthenticated, fatal: true, .. }]
    ));
}

#[test]
fn version_mismatch_is_refused() {
    let mut phone = Replica::new(NodeId(1), ManualClock::new(T0));
    let error = phone
        .handle(ServerMessage::Welcome {
            protocol_version: 99,
            server_time_ms: T0,
            node_id: NodeId(1),
            partition_map_version: 0,
        })
        .unwrap_err();
    assert!(error.to_string().contains("99"), "{error}");
}

#[test]
fn reconciliation_over_protocol_frames_converges_both_sides() {
    let mut server = TestServer::new();
    let mut phone = Replica::new(NodeId(1), ManualClock::new(T0));
    // Server and phone share 500 records, then each changes a few on its own.
    for i in 0..500 {
        phone.put(&todos(), &RecordKey::new(format!("k{i}")).unwrap(), doc("same")).unwrap();
    }
    for change in phone.outbox().unacknowledged() {
        server.collection.apply(change.key.clone(), change.state.clone());
    }
    let mut other = Replica::new(NodeId(2), ManualClock::new(T0 + 5));
    other.update(&todos(), &RecordKey::new("k7").unwrap(), doc("server-side")).unwrap();
    other.delete(&todos(), &RecordKey::new("k8").unwrap());
    for change in other.outbox().unacknowledged() {
        server.collection.apply(change.key.clone(), change.state.clone());
    }
    phone.update(&todos(), &RecordKey::new("k9").unwrap(), doc("phone-side")).unwrap();
    // A value at the deepest allowed nesting survives the trip inside a reconcile frame.
    let mut deep = Value::Null;
    for _ in 0..weft_core::replica::VALUE_DEPTH_MAX {
        deep = Value::Array(vec![deep]);
    }
    phone.update(&todos(), &RecordKey::new("deep").unwrap(), Document::from([("d".to_string(), deep)])).unwrap();

    let start = phone.start_reconcile(&todos());
    let events = pump(&mut phone, &mut server, vec![start]);
    assert!(events.contains(&ReplicaEvent::Reconciled { collection: todos() }), "{events:?}");
    assert_eq!(phone.collection(&todos()).unwrap().merkle().root(), server.collection.merkle().root());
    assert_eq!(phone.get(&todos(), "k7"), Some(doc("server-side")));
    assert_eq!(phone.get(&todos(), "k8"), None);
    assert_eq!(server.collection.document("k9"), Some(doc("phone-side")));
    assert!(server.collection.document("deep").is_some());
}

#[test]
fn changes_for_another_collection_are_refused() {
    let mut phone = Replica::new(NodeId(1), ManualClock::new(T0));
    let mut server = TestServer::new();
    phone.subscribe(&todos());
    connect(&mut phone, &mut server);
    let mut other = Replica::new(NodeId(2), ManualClock::new(T0));
    let secrets = CollectionName::new("secrets").unwrap();
    other.put(&secrets, &RecordKey::new("s").unwrap(), doc("x")).unwrap();
    let stray: Vec<Change> = other.outbox().unacknowledged().cloned().collect();
    let error = phone
        .handle(ServerMessage::Changes {
            subscription_id: SubscriptionId(1),
            changes: stray,
            cursor: Cursor::new(LogId(7)),
            caught_up: false,
        })
        .unwrap_err();
    assert!(error.to_string().contains("secrets"), "{error}");
    assert_eq!(phone.get(&secrets, "s"), None);
}

#[test]
fn reconciliation_records_are_drift_checked_before_any_is_merged() {
    let mut phone = Replica::new(NodeId(1), ManualClock::new(T0));
    let mut liar = Replica::new(NodeId(2), ManualClock::new(T0 + 600_000)); // 10 minutes ahead
    liar.put(&todos(), &RecordKey::new("a").unwrap(), doc("future")).unwrap();
    let start = match liar.start_reconcile(&todos()) {
        ClientMessage::Reconcile { step, .. } => step,
        other => panic!("unexpected {other:?}"),
    };
    // The phone answers with a leaf list; the liar replies with its record.
    let reply = phone.reconcile_step(&todos(), start).unwrap().unwrap();
    let records = liar.reconcile_step(&todos(), reply).unwrap().unwrap();
    assert_eq!(records.records.len(), 1);
    let error = phone.reconcile_step(&todos(), records).unwrap_err();
    assert!(error.to_string().contains("ahead"), "{error}");
    assert_eq!(phone.get(&todos(), "a"), None);
}

#[test]
fn reconciliation_that_needs_several_bounded_exchanges_restarts_until_done() {
    let mut server = TestServer::new();
    let mut other = Replica::new(NodeId(2), ManualClock::new(T0));
    for i in 0..3_000 {
        other.put(&todos(), &RecordKey::new(format!("s{i}")).unwrap(), doc("server")).unwrap();
    }
    for change in other.outbox().unacknowledged() {
        server.collection.apply(change.key.clone(), change.state.clone());
    }
    let mut phone = Replica::new(NodeId(1), ManualClock::new(T0));
    let start = phone.start_reconcile(&todos());
    let events = pump(&mut phone, &mut server, vec![start]);
    assert_eq!(events.iter().filter(|e| matches!(e, ReplicaEvent::Reconciled { .. })).count(), 1, "{events:?}");
    assert_eq!(phone.collection(&todos()).unwrap().len(), 3_000);
    assert_eq!(phone.collection(&todos()).unwrap().merkle().root(), server.collection.merkle().root());
}
