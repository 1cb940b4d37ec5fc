//! The protocol session driven directly — no runtime, no sockets, a manual clock — the
//! way a deterministic simulation drives it: the hello, acks in batch order whatever
//! order durability is reported in, live changes held during catch-up, the one read
//! view on every read path, and token expiry on the server clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use weft_core::change::Change;
use weft_core::crdt::ops;
use weft_core::hlc::{Hlc, ManualClock, NodeId};
use weft_core::key::{CollectionName, RecordKey};
use weft_core::protocol::{BatchId, ClientMessage, ErrorCode, LogId, ServerMessage, SubscriptionId};
use weft_core::value::{Document, Value};
use weft_server::auth::Principal;
use weft_server::config::Config;
use weft_server::hub::Listener;
use weft_server::session::{Effect, PendingPush, Session};
use weft_server::state::AppState;
use weft_storage::engine::{Engine, EngineConfig};
use weft_storage::feed::FeedReceiver;
use weft_storage::store::MemoryStore;

/// The simulated time the server starts at (ms since the epoch).
const START_MS: u64 = 1_700_000_000_000;

struct Server {
    state: Arc<AppState>,
    engine: Arc<Engine>,
    clock: ManualClock,
    feed: FeedReceiver,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(config: Config) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START_MS);
        let state = Arc::new(AppState::with_clock(config, None, LogId(7), Arc::new(clock.clone())).unwrap());
        let (engine, _) =
            Engine::open(&dir.path().join("wal"), Box::new(MemoryStore::new()), EngineConfig::default()).unwrap();
        let engine = Arc::new(engine);
        // The publisher thread's work, done by hand: feed → durable → hub.
        let feed = engine.set_feed(state.hub.feed_filter(), 1024);
        state.set_engine(Arc::clone(&engine));
        Server { state, engine, clock, feed, _dir: dir }
    }

    fn dev() -> Server {
        Server::start(Config { dev: true, ..Config::default() })
    }

    /// Users read and write their own rows of `todos`.
    fn with_rules() -> Server {
        Server::start(
            Config::from_toml(
                r#"
                [collections.todos]
                read = [{ role = "user", when = "owner == auth.sub" }]
                write = [{ role = "user", when = "owner == auth.sub" }]
                "#,
            )
            .unwrap(),
        )
    }

    /// Publishes every batch the engine fed so far, once durable.
    fn publish(&self) {
        while let Ok(batch) = self.feed.receiver.try_recv() {
            self.engine.wait_durable(batch.receipt).unwrap();
            self.state.hub.publish(batch);
        }
    }

    /// A change of `todos/id` stamped by the simulated clock.
    fn put(&self, id: &str, owner: &str, counter: u32) -> Change {
        let hlc = Hlc::new(self.clock_ms(), counter, NodeId(5));
        let document = Document::from([("owner".to_owned(), Value::from(owner))]);
        Change { collection: todos(), key: RecordKey::new(id).unwrap(), hlc, state: ops::put(None, document, hlc) }
    }

    fn clock_ms(&self) -> u64 {
        use weft_core::hlc::ClockSource;
        self.clock.now_ms()
    }
}

fn todos() -> CollectionName {
    CollectionName::new("todos").unwrap()
}

fn user(sub: &str) -> Principal {
    Principal { sub: sub.to_owned(), roles: vec!["user".to_owned()], claims: BTreeMap::new(), expires_at_s: None }
}

fn hello(version: u32) -> ClientMessage {
    ClientMessage::Hello { protocol_version: version, replica_id: NodeId(1), token: None }
}

/// A session past its hello.
fn open(state: &Arc<AppState>, principal: Principal) -> Session {
    let mut session = Session::new(Arc::clone(state), principal);
    let effects = session.handle(hello(1));
    assert!(matches!(effects.as_slice(), [Effect::Send(ServerMessage::Welcome { .. })]), "{effects:?}");
    session
}

fn sent(effects: Vec<Effect>) -> Vec<ServerMessage> {
    effects
        .into_iter()
        .map(|effect| match effect {
            Effect::Send(message) => message,
            other => panic!("expected only messages, got {other:?}"),
        })
        .collect()
}

fn pending(effects: Vec<Effect>) -> PendingPush {
    match <[Effect; 1]>::try_from(effects) {
        Ok([Effect::AwaitDurable(pending)]) => pending,
        Ok([other]) => panic!("expected a pending batch, got {other:?}"),
        Err(effects) => panic!("expected one effect, got {effects:?}"),
    }
}

fn push(session: &mut Session, batch: u64, changes: Vec<Change>) -> Vec<Effect> {
    session.handle(ClientMessage::Push { batch_id: BatchId(batch), changes })
}

/// Pushes and settles at once: the batch's answer.
fn write(server: &Server, session: &mut Session, batch: u64, changes: Vec<Change>) -> Vec<ServerMessage> {
    let (ticket, outcome) = pending(push(session, batch, changes)).wait(&server.engine);
    sent(session.push_settled(ticket, outcome))
}

fn subscribe(session: &mut Session, id: u32) -> Vec<Effect> {
    session.handle(ClientMessage::Subscribe {
        subscription_id: SubscriptionId(id),
        collection: todos(),
        cursor: None,
        shape: None,
    })
}

/// Takes every catch-up page of subscription `id`; returns every message, in order.
fn catch_up(session: &mut Session, id: u32, mut effects: Vec<Effect>) -> Vec<ServerMessage> {
    let mut messages = Vec::new();
    while let Some(effect) = (!effects.is_empty()).then(|| effects.remove(0)) {
        match effect {
            Effect::Send(message) => messages.push(message),
            Effect::CatchUp(next) => {
                assert_eq!(next, SubscriptionId(id));
                assert!(effects.is_empty(), "CatchUp comes last");
                effects = session.catch_up(next);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    messages
}

fn keys(messages: &[ServerMessage]) -> Vec<String> {
    messages
        .iter()
        .flat_map(|message| match message {
            ServerMessage::Changes { changes, .. } => changes.iter().map(|c| c.key.to_string()).collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_hello_of_another_version_is_refused_by_name_and_closes() {
    let server = Server::dev();
    let mut session = Session::new(Arc::clone(&server.state), user("alice"));
    let effects = session.handle(hello(99));
    match effects.as_slice() {
        [
            Effect::Send(ServerMessage::Error { code: ErrorCode::UnsupportedVersion, fatal: true, message, .. }),
            Effect::Close,
        ] => {
            assert!(message.contains("99"), "{message}")
        }
        other => panic!("expected a fatal UnsupportedVersion then Close, got {other:?}"),
    }
    assert!(session.is_closed());
    assert!(session.handle(ClientMessage::Ping { nonce: 1 }).is_empty(), "nothing after a fatal error");

    // Anything but a hello first is fatal too; a connection's hello asks for its token.
    let mut early = Session::new(Arc::clone(&server.state), user("alice"));
    let effects = early.handle(ClientMessage::Ping { nonce: 1 });
    assert!(matches!(
        effects.as_slice(),
        [Effect::Send(ServerMessage::Error { code: ErrorCode::UnexpectedMessage, fatal: true, .. }), Effect::Close]
    ));
    let mut connecting = Session::connect(Arc::clone(&server.state));
    let token = Some("a-token".to_owned());
    let effects =
        connecting.handle(ClientMessage::Hello { protocol_version: 1, replica_id: NodeId(1), token: token.clone() });
    assert!(matches!(effects.as_slice(), [Effect::Authenticate { token: t }] if *t == token), "{effects:?}");
    let effects = connecting.authenticated(Ok(user("alice")));
    match sent(effects).as_slice() {
        [ServerMessage::Welcome { server_time_ms, .. }] => assert_eq!(*server_time_ms, START_MS, "the server clock"),
        other => panic!("expected Welcome, got {other:?}"),
    }
}

#[test]
fn a_push_is_acknowledged_once_settled() {
    let server = Server::dev();
    let mut session = open(&server.state, user("alice"));
    let pending = pending(push(&mut session, 1, vec![server.put("t1", "alice", 0)]));
    assert_eq!(pending.ticket.batch_id(), Some(BatchId(1)));
    assert_eq!(session.pushes_in_flight(), 1);
    // Merged already (readable), acknowledged only once the driver reports it durable.
    assert!(server.engine.read(&todos(), &RecordKey::new("t1").unwrap()).unwrap().is_some());
    let (ticket, outcome) = pending.wait(&server.engine);
    assert_eq!(sent(session.push_settled(ticket.clone(), outcome)), [ServerMessage::Ack { batch_id: BatchId(1) }]);
    assert_eq!(session.pushes_in_flight(), 0);
    assert!(session.push_settled(ticket, Ok(())).is_empty(), "a ticket settles once");
}

#[test]
fn acks_and_refusals_leave_in_batch_order_whatever_order_durability_comes_in() {
    let server = Server::dev();
    let mut session = open(&server.state, user("alice"));
    let first = pending(push(&mut session, 1, vec![server.put("a", "alice", 0)]));
    let second = pending(push(&mut session, 2, vec![server.put("b", "alice", 1)]));
    // Refused at once (its clock is an hour ahead), but batches 1 and 2 came first.
    let mut late = server.put("c", "alice", 0);
    late.hlc = Hlc::new(server.clock_ms() + 3_600_000, 0, NodeId(5));
    late.state = ops::put(None, Document::new(), late.hlc);
    assert!(push(&mut session, 3, vec![late]).is_empty(), "a refusal waits behind pending batches");
    let third = pending(push(&mut session, 4, vec![server.put("d", "alice", 2)]));
    assert_eq!(session.pushes_in_flight(), 4);

    let (ticket, outcome) = second.wait(&server.engine);
    assert!(session.push_settled(ticket, outcome).is_empty(), "batch 2 waits for batch 1");
    let (ticket, outcome) = first.wait(&server.engine);
    let answers = sent(session.push_settled(ticket, outcome));
    match answers.as_slice() {
        [
            ServerMessage::Ack { batch_id: BatchId(1) },
            ServerMessage::Ack { batch_id: BatchId(2) },
            ServerMessage::Error { code: ErrorCode::ClockDrift, batch_id: Some(BatchId(3)), .. },
        ] => {}
        other => panic!("expected acks 1, 2 then the refusal of 3, got {other:?}"),
    }
    let (ticket, outcome) = third.wait(&server.engine);
    assert_eq!(sent(session.push_settled(ticket, outcome)), [ServerMessage::Ack { batch_id: BatchId(4) }]);
    assert_eq!(session.pushes_in_flight(), 0);
}

#[test]
fn live_changes_arriving_during_catch_up_are_held_until_it_is_sent() {
    let server = Server::dev();
    let mut writer = open(&server.state, user("bob"));
    write(&server, &mut writer, 1, vec![server.put("before", "bob", 0)]);

    let mut reader = open(&server.state, user("alice"));
    let Listener { mut receiver, .. } = server.state.hub.connect(reader.id(), 16);
    let started = subscribe(&mut reader, 1);
    assert!(matches!(started.as_slice(), [Effect::CatchUp(SubscriptionId(1))]), "{started:?}");

    // A write lands while the subscription is catching up: it arrives live, and is held.
    write(&server, &mut writer, 2, vec![server.put("during", "bob", 1)]);
    server.publish();
    let live = receiver.try_recv().unwrap();
    assert!(reader.live(live).is_empty(), "held while catching up");

    let messages = catch_up(&mut reader, 1, started);
    let caught_up = messages.iter().position(|m| matches!(m, ServerMessage::Changes { caught_up: true, .. })).unwrap();
    let during = messages.iter().position(|m| keys(std::slice::from_ref(m)).contains(&"during".to_owned())).unwrap();
    assert!(keys(&messages[..=caught_up]).contains(&"before".to_owned()), "{messages:?}");
    assert!(during > caught_up, "the held change comes after the catch-up: {messages:?}");

    // Caught up: the next live change is delivered at once, and not to its writer.
    let mut listener_of_writer = server.state.hub.connect(writer.id(), 16);
    subscribe(&mut writer, 1);
    write(&server, &mut writer, 3, vec![server.put("after", "bob", 2)]);
    server.publish();
    let frames = sent(reader.live(receiver.try_recv().unwrap()));
    assert_eq!(keys(&frames), ["after"]);
    assert!(listener_of_writer.receiver.try_recv().is_err(), "no echo to the writer");
}

#[test]
fn a_record_the_rules_deny_is_in_no_page_no_live_change_and_no_read() {
    let server = Server::with_rules();
    let mut alice = open(&server.state, user("alice"));
    let mut bob = open(&server.state, user("bob"));
    assert!(matches!(
        write(&server, &mut alice, 1, vec![server.put("a1", "alice", 0)]).as_slice(),
        [ServerMessage::Ack { .. }]
    ));
    let bobs: Vec<Change> = (0..30).map(|i| server.put(&format!("b{i:02}"), "bob", i)).collect();
    assert!(matches!(write(&server, &mut bob, 1, bobs).as_slice(), [ServerMessage::Ack { .. }]));
    // Bob may not write alice's row.
    match sent(push(&mut bob, 2, vec![server.put("a1", "bob", 40)])).as_slice() {
        [ServerMessage::Error { code: ErrorCode::Forbidden, batch_id: Some(BatchId(2)), op_index: Some(0), .. }] => {}
        other => panic!("expected Forbidden, got {other:?}"),
    }

    let Listener { mut receiver, .. } = server.state.hub.connect(alice.id(), 16);
    let started = subscribe(&mut alice, 1);
    let messages = catch_up(&mut alice, 1, started);
    assert_eq!(keys(&messages), ["a1"], "catch-up pages hold only alice's row");
    write(&server, &mut bob, 3, vec![server.put("b99", "bob", 50)]);
    server.publish();
    assert!(reader_frames(&mut alice, &mut receiver).is_empty(), "bob's new row is not sent live");

    // The HTTP reads and queries go through the same view.
    let http = Session::stateless(Arc::clone(&server.state), user("alice"));
    assert!(http.get_record("todos", "b01").unwrap().is_none());
    assert_eq!(http.get_record("todos", "a1").unwrap().unwrap()["owner"], "alice");
    let page = http.list_records("todos", None, 100).unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 1, "{page}");
    let parsed = weft_server::sync::query::parse_text("SELECT * FROM todos").unwrap();
    assert_eq!(http.query(&parsed).unwrap()["rows"].as_array().unwrap().len(), 1);
    let effects = alice.handle(ClientMessage::Query { request_id: 4, query: "SELECT * FROM todos".into() });
    let [Effect::Query(task)] = <[Effect; 1]>::try_from(effects).unwrap() else { panic!("expected a query task") };
    match task.run() {
        ServerMessage::QueryResult { request_id: 4, rows, .. } => assert_eq!(rows.len(), 1),
        other => panic!("{other:?}"),
    }
    // Someone with no read grant is refused outright.
    let mut stranger = open(&server.state, Principal { roles: Vec::new(), ..user("eve") });
    match sent(subscribe(&mut stranger, 1)).as_slice() {
        [ServerMessage::Error { code: ErrorCode::Forbidden, fatal: false, .. }] => {}
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

fn reader_frames(
    session: &mut Session,
    receiver: &mut tokio::sync::mpsc::Receiver<Arc<weft_server::hub::LiveBatch>>,
) -> Vec<ServerMessage> {
    let mut frames = Vec::new();
    while let Ok(batch) = receiver.try_recv() {
        frames.extend(sent(session.live(batch)));
    }
    frames
}

#[test]
fn a_session_ends_when_its_token_expires_by_the_server_clock() {
    let server = Server::dev();
    let expires_at_s = START_MS / 1_000 + 5;
    let mut session = open(&server.state, Principal { expires_at_s: Some(expires_at_s), ..user("alice") });
    assert_eq!(session.expires_in_ms(), Some(5_000));
    assert!(session.tick().is_empty());
    server.clock.advance(5_000);
    match session.tick().as_slice() {
        [Effect::Send(ServerMessage::Error { code: ErrorCode::TokenExpired, fatal: true, .. }), Effect::Close] => {}
        other => panic!("expected a fatal TokenExpired, got {other:?}"),
    }
}

#[test]
fn shutdown_is_announced_after_the_answers_of_batches_already_read() {
    let server = Server::dev();
    let mut session = open(&server.state, user("alice"));
    let first = pending(push(&mut session, 1, vec![server.put("a", "alice", 0)]));
    assert!(session.shutdown().is_empty(), "waits for batch 1");
    let (ticket, outcome) = first.wait(&server.engine);
    match session.push_settled(ticket, outcome).as_slice() {
        [
            Effect::Send(ServerMessage::Ack { batch_id: BatchId(1) }),
            Effect::Send(ServerMessage::Error { code: ErrorCode::Unavailable, fatal: true, .. }),
            Effect::Close,
        ] => {}
        other => panic!("expected the ack, then Unavailable, then Close, got {other:?}"),
    }
}

#[test]
fn holding_more_live_batches_than_the_queue_allows_makes_a_slow_consumer() {
    let mut config = Config { dev: true, ..Config::default() };
    config.limits.outbound_queue_frames = 2;
    let server = Server::start(config);
    let mut session = open(&server.state, user("alice"));
    assert!(matches!(subscribe(&mut session, 1).as_slice(), [Effect::CatchUp(_)]));
    // Live batches can be made by hand too (a simulation's own feed).
    let batch = || Arc::new(weft_server::hub::LiveBatch { collection: todos(), records: Arc::new(Vec::new()) });
    assert!(session.live(batch()).is_empty());
    assert!(session.live(batch()).is_empty());
    match session.live(batch()).as_slice() {
        [Effect::Send(ServerMessage::Error { code: ErrorCode::SlowConsumer, fatal: true, .. }), Effect::Close] => {}
        other => panic!("expected a fatal SlowConsumer, got {other:?}"),
    }
}

/// Found by the simulation (seed 0): a batch that creates a record and then edits it —
/// an offline create + edit — was refused, each change being judged on the store's
/// record, which the batch had not created yet.
#[test]
fn a_batch_that_creates_a_record_then_edits_it_passes_row_rules() {
    let server = Server::with_rules();
    let mut alice = open(&server.state, user("alice"));
    let hlc = Hlc::new(server.clock_ms() + 1, 0, NodeId(5));
    let edit = Change {
        collection: todos(),
        key: RecordKey::new("a1").unwrap(),
        hlc,
        state: ops::update(None, Document::from([("title".to_owned(), Value::from("x"))]), hlc),
    };
    let answer = write(&server, &mut alice, 1, vec![server.put("a1", "alice", 0), edit.clone()]);
    assert!(matches!(answer.as_slice(), [ServerMessage::Ack { .. }]), "{answer:?}");
    // The same edit alone, on a record nobody created, is still refused.
    let orphan = Change { key: RecordKey::new("a2").unwrap(), ..edit };
    match sent(push(&mut alice, 2, vec![orphan])).as_slice() {
        [ServerMessage::Error { code: ErrorCode::Forbidden, .. }] => {}
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

/// Found by the simulation (seed 851): after a retryable refusal, batches the client
/// sent before it heard of it must not be applied before the refused one is pushed
/// again, or an edit overtakes its create.
#[test]
fn batches_sent_behind_a_retryable_refusal_wait_until_it_is_pushed_again() {
    let config = Config::from_toml(
        r#"
        [limits]
        ops_per_second = 2
        ops_burst = 2
        [collections.todos]
        read = [{ role = "user", when = "owner == auth.sub" }]
        write = [{ role = "user", when = "owner == auth.sub" }]
        "#,
    )
    .unwrap();
    let server = Server::start(config);
    let mut alice = open(&server.state, user("alice"));
    let ack = |answer: Vec<ServerMessage>, id: u64| {
        assert!(
            matches!(answer.as_slice(), [ServerMessage::Ack { batch_id }] if *batch_id == BatchId(id)),
            "{answer:?}"
        );
    };
    ack(write(&server, &mut alice, 1, vec![server.put("a1", "alice", 0), server.put("a2", "alice", 1)]), 1);
    let refused = vec![server.put("a1", "alice", 2)];
    match sent(push(&mut alice, 2, refused.clone())).as_slice() {
        [ServerMessage::Error { code: ErrorCode::RateLimited, batch_id: Some(BatchId(2)), fatal: false, .. }] => {}
        other => panic!("expected RateLimited, got {other:?}"),
    }
    server.clock.advance(10_000);
    // Sent before the client heard: refused the same way, although tokens are back.
    match sent(push(&mut alice, 3, vec![server.put("a3", "alice", 3)])).as_slice() {
        [ServerMessage::Error { code: ErrorCode::RateLimited, batch_id: Some(BatchId(3)), .. }] => {}
        other => panic!("expected the earlier batch's refusal, got {other:?}"),
    }
    // The refused batch again, first: accepted, and what follows it too.
    ack(write(&server, &mut alice, 4, refused), 4);
    ack(write(&server, &mut alice, 5, vec![server.put("a3", "alice", 3)]), 5);
}
