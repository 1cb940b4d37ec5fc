//! End-to-end sync over real sockets: convergence, late joiners, offline outboxes,
//! shapes, HTTP and WebSocket on the same data, kill -9 under load, graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use weft_client::http::HttpClient;
use weft_client::{Client, ClientConfig};
use weft_core::protocol::{ClientMessage, Cursor, ServerMessage, Shape, SubscriptionId};
use weft_core::value::Value;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_converge_and_a_late_joiner_catches_up() {
    let server = InProcess::start(dev_config()).await;
    let alice = Client::connect(ClientConfig::new(server.url())).await.unwrap();
    let bob = Client::connect(ClientConfig::new(server.url())).await.unwrap();
    alice.subscribe(&todos(), None);
    bob.subscribe(&todos(), None);
    alice.caught_up(&todos()).await.unwrap();
    bob.caught_up(&todos()).await.unwrap();

    // Both write the same records, field by field, at the same time.
    for i in 0..50 {
        let k = key(&format!("t{}", i % 10));
        alice
            .update(&todos(), &k, doc(&[("title", Value::from(format!("alice {i}"))), ("a", Value::from(i))]))
            .unwrap();
        bob.update(&todos(), &k, doc(&[("title", Value::from(format!("bob {i}"))), ("b", Value::from(i))])).unwrap();
    }
    alice.synced().await.unwrap();
    bob.synced().await.unwrap();
    let converged = || {
        alice.documents(&todos()) == bob.documents(&todos()) && alice.merkle_root(&todos()) == bob.merkle_root(&todos())
    };
    assert!(eventually(WAIT, converged).await, "alice and bob did not converge");
    // The delete comes after bob has seen every write of alice's (his clock has observed
    // theirs), so it is later in HLC order too: deleted for everyone. Deleting before
    // that is a concurrent delete, which a write with a later timestamp may undo — two
    // clocks aligned to the server can differ by a millisecond.
    bob.delete(&todos(), &key("t3"));
    bob.synced().await.unwrap();
    assert!(
        eventually(WAIT, || alice.documents(&todos()).len() == 9 && converged()).await,
        "alice and bob did not converge on the delete"
    );
    let documents = alice.documents(&todos());
    assert_eq!(documents.len(), 9, "t3 deleted, nine left");
    assert!(documents.iter().all(|(_, d)| d.contains_key("a") && d.contains_key("b")), "both writers' fields kept");
    assert_eq!(server.state.engine().unwrap().merkle_root(&todos()), alice.merkle_root(&todos()));

    let carol = Client::connect(ClientConfig::new(server.url())).await.unwrap();
    carol.subscribe(&todos(), None);
    carol.caught_up(&todos()).await.unwrap();
    assert_eq!(carol.documents(&todos()), documents);
    assert_eq!(carol.merkle_root(&todos()), alice.merkle_root(&todos()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_writes_reach_the_server_and_other_subscribers_when_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    // The server is down: writes apply locally and wait in the outbox.
    let writer = Client::connect(ClientConfig::new(&url)).await.unwrap();
    for i in 0..20 {
        writer.put(&todos(), &key(&format!("offline-{i}")), doc(&[("n", Value::from(i))])).unwrap();
    }
    assert_eq!(writer.get(&todos(), "offline-7"), Some(doc(&[("n", Value::from(7))])));
    assert_eq!(writer.status().unacknowledged, 20);

    let server = Process::spawn(dir.path(), port);
    server.ready().await;
    let reader = Client::connect(ClientConfig::new(&url)).await.unwrap();
    reader.subscribe(&todos(), None);
    tokio::time::timeout(WAIT, writer.synced()).await.unwrap().unwrap();
    assert!(eventually(WAIT, || reader.documents(&todos()).len() == 20).await, "subscriber did not receive them");
    assert_eq!(reader.get(&todos(), "offline-7"), Some(doc(&[("n", Value::from(7))])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_write_load_loses_no_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Process::spawn(dir.path(), port);
    server.ready().await;
    let url = server.url();
    let clients: Vec<Client> = (0..3).map(|_| Client::start(ClientConfig::new(&url))).collect();
    // Writers keep writing while the server is killed; acks observed before the kill
    // must all be in the restarted server.
    let mut acknowledged: Vec<(String, i64)> = Vec::new();
    for round in 0..40i64 {
        for (c, client) in clients.iter().enumerate() {
            for i in 0..5 {
                let id = format!("c{c}-r{round}-{i}");
                client.put(&todos(), &key(&id), doc(&[("round", Value::from(round))])).unwrap();
            }
        }
        if round % 10 == 9 {
            for client in &clients {
                tokio::time::timeout(WAIT, client.synced()).await.unwrap().unwrap();
            }
            for (c, _) in clients.iter().enumerate() {
                for r in round - 9..=round {
                    for i in 0..5 {
                        acknowledged.push((format!("c{c}-r{r}-{i}"), r));
                    }
                }
            }
        }
        if round == 25 {
            server.kill9();
            server = Process::spawn(dir.path(), port);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.ready().await;
    for client in &clients {
        tokio::time::timeout(WAIT, client.synced()).await.unwrap().unwrap();
    }
    server.kill9();
    let mut server = Process::spawn(dir.path(), port);
    server.ready().await;
    let http = HttpClient::new(&server.url(), None);
    for (id, round) in &acknowledged {
        let record = http.get_record("todos", id).await.unwrap();
        assert_eq!(record.and_then(|r| r["round"].as_i64()), Some(*round), "acknowledged {id} lost");
    }
    // Everything written (all of it was acknowledged in the end) is there too.
    let mut all = 0;
    let mut after: Option<String> = None;
    loop {
        let (records, next) = http.list("todos", after.as_deref(), 1000).await.unwrap();
        all += records.len();
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(all, 3 * 40 * 5);
    assert!(server.terminate().success(), "SIGTERM shuts down cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sync_and_websocket_sync_converge_on_the_same_data() {
    let server = InProcess::start(dev_config()).await;
    let ws = Client::connect(ClientConfig::new(server.url())).await.unwrap();
    ws.subscribe(&todos(), None);
    ws.caught_up(&todos()).await.unwrap();
    ws.put(&todos(), &key("from-ws"), doc(&[("via", Value::from("ws"))])).unwrap();
    ws.synced().await.unwrap();

    // An HTTP replica: push its own changes, pull with a cursor, over MessagePack.
    let http = HttpClient::new(&server.url(), None);
    let mut replica = weft_core::replica::Replica::new(weft_core::hlc::NodeId(77), weft_core::hlc::SystemClock);
    replica.put(&todos(), &key("from-http"), doc(&[("via", Value::from("http"))])).unwrap();
    let changes: Vec<_> = replica.outbox().unacknowledged().cloned().collect();
    let push = ClientMessage::Push { batch_id: weft_core::protocol::BatchId(1), changes };
    let pull =
        ClientMessage::Subscribe { subscription_id: SubscriptionId(1), collection: todos(), cursor: None, shape: None };
    let (replies, _, _) = http.sync(&[push, pull]).await.unwrap();
    assert!(matches!(replies[0], ServerMessage::Ack { .. }), "{replies:?}");
    let mut cursor: Option<Cursor> = None;
    for reply in &replies[1..] {
        if let ServerMessage::Changes { changes, cursor: c, caught_up, .. } = reply {
            for change in changes {
                replica.apply_remote(change.clone()).unwrap();
            }
            cursor = Some(c.clone());
            assert!(caught_up);
        }
    }
    // The JSON form sees both, and so does the WebSocket client.
    let json = http.sync_json(&serde_json::json!({"pulls": [{"collection": "todos"}]})).await.unwrap();
    let ids: Vec<&str> =
        json["pulls"][0]["records"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{json}");
    assert!(eventually(WAIT, || ws.get(&todos(), "from-http").is_some()).await);
    let http_root = replica.collection(&todos()).unwrap().merkle().root();
    assert_eq!(http_root, ws.merkle_root(&todos()));
    assert_eq!(http_root, server.state.engine().unwrap().merkle_root(&todos()));

    // A pull with the cursor returns only what changed since.
    ws.update(&todos(), &key("from-ws"), doc(&[("seen", Value::from(true))])).unwrap();
    ws.synced().await.unwrap();
    let pull =
        ClientMessage::Subscribe { subscription_id: SubscriptionId(1), collection: todos(), cursor, shape: None };
    let (replies, _, _) = http.sync(&[pull]).await.unwrap();
    let keys: Vec<String> = replies
        .iter()
        .flat_map(|r| match r {
            ServerMessage::Changes { changes, .. } => changes.iter().map(|c| c.key.to_string()).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(keys, vec!["from-ws".to_owned()]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shape_subscription_gets_only_matching_rows_and_hears_when_one_leaves() {
    let server = InProcess::start(dev_config()).await;
    let writer = Client::connect(ClientConfig::new(server.url())).await.unwrap();
    for (id, list) in [("a", "home"), ("b", "work"), ("c", "home")] {
        writer.put(&todos(), &key(id), doc(&[("list", Value::from(list))])).unwrap();
    }
    writer.synced().await.unwrap();
    let home = Client::connect(ClientConfig::new(server.url())).await.unwrap();
    home.subscribe(&todos(), Some(Shape::from([("list", Value::from("home"))])));
    home.caught_up(&todos()).await.unwrap();
    let ids = |client: &Client| client.documents(&todos()).into_iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&home), vec!["a", "c"]);

    // Live: a row entering the shape arrives whole; one leaving is removed.
    writer.update(&todos(), &key("b"), doc(&[("list", Value::from("home"))])).unwrap();
    writer.update(&todos(), &key("a"), doc(&[("list", Value::from("work"))])).unwrap();
    writer.put(&todos(), &key("d"), doc(&[("list", Value::from("work"))])).unwrap();
    writer.synced().await.unwrap();
    assert!(eventually(WAIT, || ids(&home) == vec!["b", "c"]).await, "got {:?}", ids(&home));

    // Any predicate of the query model works as a shape.
    use weft_core::query::{FieldPath, Predicate};
    let urgent = Client::connect(ClientConfig::new(server.url())).await.unwrap();
    let predicate = Predicate::And(vec![
        Predicate::Ge(FieldPath::field("priority"), Value::Int(3)),
        Predicate::Not(Box::new(Predicate::Eq(FieldPath::field("list"), Value::from("work")))),
    ]);
    urgent.subscribe(&todos(), Some(Shape::from(predicate)));
    writer.update(&todos(), &key("c"), doc(&[("priority", Value::from(5))])).unwrap();
    writer.update(&todos(), &key("d"), doc(&[("priority", Value::from(9))])).unwrap();
    writer.synced().await.unwrap();
    urgent.caught_up(&todos()).await.unwrap();
    assert!(eventually(WAIT, || ids(&urgent) == vec!["c"]).await, "got {:?}", ids(&urgent));
    writer.update(&todos(), &key("c"), doc(&[("priority", Value::from(1))])).unwrap();
    writer.update(&todos(), &key("b"), doc(&[("priority", Value::from(4))])).unwrap();
    writer.synced().await.unwrap();
    assert!(eventually(WAIT, || ids(&urgent) == vec!["b"]).await, "got {:?}", ids(&urgent));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_are_not_sent_their_own_changes_but_everyone_else_is() {
    let server = InProcess::start(dev_config()).await;
    let (mut sender, mut receiver, _) =
        weft_client::raw::connect(&server.url(), weft_core::hlc::NodeId(5), None).await.unwrap();
    let other = Client::connect(ClientConfig::new(server.url())).await.unwrap();
    other.subscribe(&todos(), None);
    other.caught_up(&todos()).await.unwrap();
    sender
        .send(&ClientMessage::Subscribe {
            subscription_id: SubscriptionId(1),
            collection: todos(),
            cursor: None,
            shape: None,
        })
        .await
        .unwrap();
    assert!(matches!(receiver.recv().await.unwrap(), Some(ServerMessage::Changes { caught_up: true, .. })));
    let mut replica = weft_core::replica::Replica::new(weft_core::hlc::NodeId(5), weft_core::hlc::SystemClock);
    replica.put(&todos(), &key("mine"), doc(&[("x", Value::from(1))])).unwrap();
    let changes: Vec<_> = replica.outbox().unacknowledged().cloned().collect();
    sender.send(&ClientMessage::Push { batch_id: weft_core::protocol::BatchId(1), changes }).await.unwrap();
    assert!(matches!(receiver.recv().await.unwrap(), Some(ServerMessage::Ack { .. })));
    assert!(eventually(WAIT, || other.get(&todos(), "mine").is_some()).await);
    sender.send(&ClientMessage::Ping { nonce: 9 }).await.unwrap();
    // The next frame is the pong: no echo of its own change came before it.
    assert_eq!(receiver.recv().await.unwrap(), Some(ServerMessage::Pong { nonce: 9 }));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_from_another_log_catches_up_by_merkle_reconciliation_in_both_directions() {
    use weft_core::hlc::{NodeId, SystemClock};
    use weft_core::key::PartitionId;
    use weft_core::protocol::LogId;
    use weft_core::replica::{Replica, ReplicaEvent};

    let server = InProcess::start(dev_config()).await;
    let writer = Client::connect(ClientConfig::new(server.url())).await.unwrap();
    for i in 0..500 {
        writer.put(&todos(), &key(&format!("k{i:03}")), doc(&[("n", Value::from(i))])).unwrap();
    }
    writer.synced().await.unwrap();

    // A replica that synced with another server before: it holds 480 of the records and
    // 5 the server never saw, and a cursor from that other server's log.
    let http = HttpClient::new(&server.url(), None);
    let pull =
        ClientMessage::Subscribe { subscription_id: SubscriptionId(1), collection: todos(), cursor: None, shape: None };
    let (replies, _, full_bytes) = http.sync(&[pull]).await.unwrap();
    let mut replica = Replica::new(NodeId(99), SystemClock);
    assert_eq!(replica.subscribe(&todos()), None);
    for reply in replies {
        if let ServerMessage::Changes { changes, .. } = reply {
            for change in changes.into_iter().filter(|c| c.key.as_str() < "k480") {
                replica.apply_remote(change).unwrap();
            }
        }
    }
    let mut elsewhere = Replica::new(NodeId(98), SystemClock);
    for i in 0..5 {
        elsewhere.put(&todos(), &key(&format!("mine-{i}")), doc(&[("n", Value::from(i))])).unwrap();
    }
    for change in elsewhere.outbox().unacknowledged().cloned().collect::<Vec<_>>() {
        replica.apply_remote(change).unwrap();
    }
    let mut foreign = Cursor::new(LogId(424_242));
    foreign.advance(PartitionId::new(0).unwrap(), 1_000_000);
    replica
        .handle(ServerMessage::Changes {
            subscription_id: SubscriptionId(1),
            changes: Vec::new(),
            cursor: foreign,
            caught_up: true,
        })
        .unwrap();

    let (mut sender, mut receiver, welcome) = weft_client::raw::connect(&server.url(), NodeId(99), None).await.unwrap();
    let mut outgoing = replica.handle(welcome).unwrap().send;
    let mut received = 0usize;
    loop {
        for message in outgoing.drain(..) {
            sender.send(&message).await.unwrap();
        }
        let (message, size) = tokio::time::timeout(WAIT, receiver.recv_frame()).await.unwrap().unwrap().unwrap();
        received += size;
        let handled = replica.handle(message).unwrap();
        outgoing = handled.send;
        if handled.events.iter().any(|e| matches!(e, ReplicaEvent::CaughtUp { .. })) {
            break;
        }
    }
    let engine = server.state.engine().unwrap();
    assert_eq!(replica.collection(&todos()).unwrap().merkle().root(), engine.merkle_root(&todos()));
    assert_eq!(replica.collection(&todos()).unwrap().len(), 505);
    assert!(engine.read(&todos(), &key("mine-3")).unwrap().is_some(), "the client's records reached the server");
    assert!(
        received * 2 < full_bytes,
        "reconciliation moved {received} bytes; sending everything again is {full_bytes}"
    );
    server.stop().await;
}
