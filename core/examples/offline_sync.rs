//! Offline-first sync, end to end, with the core alone.
//!
//! Run: `scripts/run.sh` (or `cargo run --release -p weft-core --example offline_sync --
//! --records 100000`).
//!
//! Three replicas edit a todo list while disconnected, exchange their outboxes as encoded
//! protocol frames in different orders, and converge. Then a replica that missed
//! everything catches up by merkle reconciliation, which sends only what differs.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a demo: any failure should stop it loudly")]

use std::time::Instant;

use weft_core::change::Change;
use weft_core::codec::DecodeLimits;
use weft_core::hlc::{ManualClock, NodeId};
use weft_core::key::{CollectionName, RecordKey};
use weft_core::protocol::{BatchId, ClientMessage, ServerMessage, SessionId};
use weft_core::replica::Replica;
use weft_core::value::{Document, Value, document_to_json};

const NOW: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn main() {
    let records = parse_records();
    let todos = CollectionName::new("todos").unwrap();
    let key = |k: &str| RecordKey::new(k).unwrap();
    let doc = |pairs: &[(&str, Value)]| -> Document { pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() };

    println!("Weft core demo: three replicas edit offline, then sync.\n");
    let clock = ManualClock::new(NOW);
    let mut phone = Replica::new(NodeId(1), clock.clone());
    let mut laptop = Replica::new(NodeId(2), clock.clone());
    let mut tablet = Replica::new(NodeId(3), clock.clone());

    phone.put(&todos, &key("milk"), doc(&[("title", "Buy milk".into()), ("done", false.into())])).unwrap();
    phone.put(&todos, &key("call"), doc(&[("title", "Call mum".into()), ("done", false.into())])).unwrap();
    clock.advance(1_000);
    laptop.update(&todos, &key("milk"), doc(&[("done", true.into())])).unwrap(); // a different field
    laptop.update(&todos, &key("call"), doc(&[("title", "Call mum tonight".into())])).unwrap();
    tablet.increment(&todos, &key("milk"), "votes", 2).unwrap();
    tablet.set_add(&todos, &key("milk"), "groceries".into()).unwrap();
    clock.advance(1_000);
    phone.delete(&todos, &key("call")); // concurrent with the laptop's edit, but later
    phone.increment(&todos, &key("milk"), "votes", 1).unwrap();

    // Each replica's outbox travels as one push frame.
    let frames: Vec<(&str, Vec<u8>)> = [("phone", &phone), ("laptop", &laptop), ("tablet", &tablet)]
        .into_iter()
        .map(|(name, replica)| {
            let changes: Vec<Change> = replica.outbox().unacknowledged().cloned().collect();
            (name, ClientMessage::Push { batch_id: BatchId(1), changes }.encode())
        })
        .collect();
    for (name, frame) in &frames {
        println!("{name:>6} pushes {} bytes", frame.len());
    }

    // Deliver every frame to every replica, each in a different order.
    let orders: [[usize; 3]; 3] = [[1, 2, 0], [2, 0, 1], [0, 1, 2]];
    for (replica, order) in [&mut phone, &mut laptop, &mut tablet].into_iter().zip(orders) {
        for index in order {
            let ClientMessage::Push { changes, .. } =
                ClientMessage::decode(&frames[index].1, &DecodeLimits::default()).unwrap()
            else {
                unreachable!()
            };
            replica.apply_remote_batch(changes).unwrap();
        }
    }

    println!("\nAfter exchanging outboxes in three different orders:");
    for (name, replica) in [("phone", &phone), ("laptop", &laptop), ("tablet", &tablet)] {
        let milk = replica.get(&todos, "milk").map(|d| document_to_json(&d));
        let tags: Vec<String> = replica.members(&todos, "milk").iter().map(|v| v.to_json().to_string()).collect();
        let call = replica.get(&todos, "call").map(|d| document_to_json(&d));
        let root = replica.collection(&todos).unwrap().merkle().root();
        println!(
            "{name:>6}: milk = {} tags = [{}], call = {}, merkle root {:08x}…",
            milk.map_or("(none)".into(), |j| j.to_string()),
            tags.join(", "),
            call.map_or("(deleted)".into(), |j| j.to_string()),
            (root >> 96) as u32
        );
    }
    println!("  - `done` (laptop) and `title` (phone) both survive: per-field last writer wins");
    println!("  - votes = 3: counter increments from every replica add up");
    println!("  - `call` stays deleted: the delete was later than the laptop's edit");

    // A fourth replica missed everything; so that reconciliation has real work, the
    // laptop also holds `records` more records.
    let mut desktop = Replica::new(NodeId(4), clock.clone());
    let started = Instant::now();
    let mut bulk = Vec::with_capacity(records);
    for i in 0..records {
        clock.advance(1);
        laptop.put(&todos, &key(&format!("bulk-{i:07}")), doc(&[("n", Value::Int(i as i64))])).unwrap();
        bulk.push(laptop.outbox().unacknowledged().last().cloned().unwrap());
    }
    desktop.apply_remote_batch(bulk).unwrap(); // the desktop already had the bulk records...
    println!(
        "\nThe desktop holds {records} records in common with the laptop (loaded in {:.0} ms) but missed the 3 todos.",
        started.elapsed().as_secs_f64() * 1e3
    );

    let started = Instant::now();
    let mut messages = 0;
    let mut bytes = 0;
    let mut step = match desktop.start_reconcile(&todos) {
        ClientMessage::Reconcile { step, .. } => step,
        _ => unreachable!(),
    };
    let mut to_laptop = true;
    loop {
        let frame =
            ServerMessage::Reconcile { session_id: SessionId(1), collection: todos.clone(), step: step.clone() }
                .encode();
        messages += 1;
        bytes += frame.len();
        let receiver = if to_laptop { &mut laptop } else { &mut desktop };
        match receiver.reconcile_step(&todos, step).unwrap() {
            None => break,
            Some(reply) => step = reply,
        }
        to_laptop = !to_laptop;
    }
    println!(
        "Merkle reconciliation: {messages} messages, {bytes} bytes, {:.1} ms — only the differing records travelled.",
        started.elapsed().as_secs_f64() * 1e3
    );
    let same =
        desktop.collection(&todos).unwrap().merkle().root() == laptop.collection(&todos).unwrap().merkle().root();
    println!(
        "Desktop and laptop roots equal: {same}; desktop sees milk = {}",
        document_to_json(&desktop.get(&todos, "milk").unwrap())
    );
}

fn parse_records() -> usize {
    let mut args = std::env::args().skip(1);
    let mut records = 20_000;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--records" => records = args.next().and_then(|v| v.parse().ok()).unwrap_or(records),
            "-h" | "--help" => {
                println!("offline_sync [--records N]   demo of offline edits, sync and merkle reconciliation");
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other:?} (try --help)");
                std::process::exit(2);
            }
        }
    }
    records
}
