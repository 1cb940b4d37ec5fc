//! One test per merge rule of docs/semantics.md. Each builds replicas with
//! controlled clocks, makes concurrent writes, delivers them in both orders and checks
//! what a reader sees.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and benchmarks fail loudly on bad setup")]

use weft_core::change::Change;
use weft_core::hlc::{ClockDriftError, Hlc, HlcClock, ManualClock, NodeId};
use weft_core::key::{CollectionName, RecordKey};
use weft_core::replica::Replica;
use weft_core::value::{Document, Value};

const T0: u64 = 1_700_000_000_000;

fn coll() -> CollectionName {
    CollectionName::new("todos").unwrap()
}

fn key(k: &str) -> RecordKey {
    RecordKey::new(k).unwrap()
}

fn doc(fields: &[(&str, Value)]) -> Document {
    fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

struct Peer {
    replica: Replica<ManualClock>,
    clock: ManualClock,
}

fn peer(node: u64, now: u64) -> Peer {
    let clock = ManualClock::new(now);
    Peer { replica: Replica::new(NodeId(node), clock.clone()), clock }
}

fn drain(peer: &Peer) -> Vec<Change> {
    peer.replica.outbox().unacknowledged().cloned().collect()
}

/// Delivers `changes` to `to` in the given order.
fn deliver(to: &mut Peer, changes: &[Change]) {
    for change in changes {
        to.replica.apply_remote(change.clone()).unwrap();
    }
}

/// Applies a's and b's outboxes to fresh observers in both orders and checks they agree;
/// returns the converged document of `k`.
fn converge(a: &Peer, b: &Peer, k: &str) -> Option<Document> {
    let (ca, cb) = (drain(a), drain(b));
    let mut ab = peer(90, T0 + 10_000);
    deliver(&mut ab, &ca);
    deliver(&mut ab, &cb);
    let mut ba = peer(91, T0 + 10_000);
    deliver(&mut ba, &cb);
    deliver(&mut ba, &ca);
    let left = ab.replica.get(&coll(), k);
    assert_eq!(left, ba.replica.get(&coll(), k), "delivery order changed the result");
    let root = |p: &Peer| p.replica.collection(&coll()).map(|c| c.merkle().root());
    assert_eq!(root(&ab), root(&ba), "delivery order changed the merkle root");
    left
}

#[test]
fn concurrent_updates_of_different_fields_both_survive() {
    let mut a = peer(1, T0);
    let mut b = peer(2, T0);
    a.replica.update(&coll(), &key("t"), doc(&[("title", "milk".into())])).unwrap();
    b.replica.update(&coll(), &key("t"), doc(&[("done", true.into())])).unwrap();
    assert_eq!(converge(&a, &b, "t"), Some(doc(&[("done", true.into()), ("title", "milk".into())])));
}

#[test]
fn concurrent_writes_of_one_field_resolve_by_hlc() {
    let mut a = peer(1, T0);
    let mut b = peer(2, T0 + 5);
    a.replica.update(&coll(), &key("t"), doc(&[("title", "older".into())])).unwrap();
    b.replica.update(&coll(), &key("t"), doc(&[("title", "newer".into())])).unwrap();
    assert_eq!(converge(&a, &b, "t"), Some(doc(&[("title", "newer".into())])));
}

#[test]
fn equal_wall_time_ties_break_by_counter_then_node() {
    let mut a = peer(1, T0);
    let mut b = peer(2, T0);
    a.replica.update(&coll(), &key("t"), doc(&[("v", "from-node-1".into())])).unwrap();
    b.replica.update(&coll(), &key("t"), doc(&[("v", "from-node-2".into())])).unwrap();
    // Same wall time, same counter: the greater node id wins.
    assert_eq!(converge(&a, &b, "t"), Some(doc(&[("v", "from-node-2".into())])));
    // A second write in the same millisecond on node 1 has counter 1 and wins.
    a.replica.update(&coll(), &key("t"), doc(&[("v", "node-1-again".into())])).unwrap();
    assert_eq!(converge(&a, &b, "t"), Some(doc(&[("v", "node-1-again".into())])));
}

#[test]
fn exact_hlc_tie_is_broken_by_canonical_value_encoding() {
    // Only a buggy or hostile writer reuses a timestamp; replicas must still agree.
    let hlc = Hlc::new(T0, 0, NodeId(7));
    let mk = |v: &str| {
        let state = weft_core::crdt::ops::update(None, doc(&[("v", v.into())]), hlc);
        Change { collection: coll(), key: key("t"), hlc, state }
    };
    let mut x = peer(1, T0);
    let mut y = peer(2, T0);
    deliver(&mut x, &[mk("aaa"), mk("zzz")]);
    deliver(&mut y, &[mk("zzz"), mk("aaa")]);
    assert_eq!(x.replica.get(&coll(), "t"), Some(doc(&[("v", "zzz".into())])));
    assert_eq!(y.replica.get(&coll(), "t"), Some(doc(&[("v", "zzz".into())])));
}

#[test]
fn put_replaces_the_whole_record() {
    let mut a = peer(1, T0);
    a.replica.put(&coll(), &key("t"), doc(&[("title", "x".into()), ("tag", "y".into())])).unwrap();
    a.clock.advance(1);
    a.replica.put(&coll(), &key("t"), doc(&[("title", "z".into())])).unwrap();
    assert_eq!(a.replica.get(&coll(), "t"), Some(doc(&[("title", "z".into())])));
}

#[test]
fn delete_beats_older_concurrent_update() {
    let mut a = peer(1, T0);
    a.replica.put(&coll(), &key("t"), doc(&[("title", "x".into())])).unwrap();
    let mut b = peer(2, T0 + 10);
    deliver(&mut b, &drain(&a));
    a.clock.advance(20); // update at T0+20
    b.clock.advance(30); // delete at T0+40
    a.replica.update(&coll(), &key("t"), doc(&[("done", true.into())])).unwrap();
    b.replica.delete(&coll(), &key("t"));
    assert_eq!(converge(&a, &b, "t"), None);
}

#[test]
fn newer_update_resurrects_only_the_fields_it_writes() {
    let mut a = peer(1, T0);
    a.replica.put(&coll(), &key("t"), doc(&[("title", "x".into()), ("note", "n".into())])).unwrap();
    let mut b = peer(2, T0 + 10);
    deliver(&mut b, &drain(&a));
    b.replica.delete(&coll(), &key("t")); // delete at T0+10
    a.clock.advance(50); // update at T0+50, concurrent with the delete
    a.replica.update(&coll(), &key("t"), doc(&[("done", true.into())])).unwrap();
    // The record is visible again, but only with the field written after the delete.
    assert_eq!(converge(&a, &b, "t"), Some(doc(&[("done", true.into())])));
}

#[test]
fn put_after_delete_resurrects_the_record() {
    let mut a = peer(1, T0);
    a.replica.put(&coll(), &key("t"), doc(&[("title", "x".into())])).unwrap();
    a.clock.advance(1);
    a.replica.delete(&coll(), &key("t"));
    assert_eq!(a.replica.get(&coll(), "t"), None);
    a.clock.advance(1);
    a.replica.put(&coll(), &key("t"), doc(&[("title", "back".into())])).unwrap();
    assert_eq!(a.replica.get(&coll(), "t"), Some(doc(&[("title", "back".into())])));
}

#[test]
fn set_add_wins_over_concurrent_remove() {
    let mut a = peer(1, T0);
    a.replica.set_add(&coll(), &key("tags"), "red".into()).unwrap();
    let mut b = peer(2, T0 + 1);
    deliver(&mut b, &drain(&a));
    // b removes the add it saw; a concurrently adds "red" again (a new tag).
    b.replica.set_remove(&coll(), &key("tags"), &"red".into()).unwrap();
    a.clock.advance(5);
    a.replica.set_add(&coll(), &key("tags"), "red".into()).unwrap();
    let mut x = peer(9, T0 + 100);
    deliver(&mut x, &drain(&a));
    deliver(&mut x, &drain(&b));
    assert_eq!(x.replica.members(&coll(), "tags"), vec![Value::from("red")]);
    // A remove that observed every add removes the element.
    x.replica.set_remove(&coll(), &key("tags"), &"red".into()).unwrap();
    assert!(x.replica.members(&coll(), "tags").is_empty());
}

#[test]
fn set_remove_of_unseen_element_is_a_no_op() {
    let mut a = peer(1, T0);
    assert_eq!(a.replica.set_remove(&coll(), &key("tags"), &"red".into()), None);
    assert!(a.replica.outbox().is_empty());
}

#[test]
fn counter_increments_from_all_nodes_add_up() {
    let mut a = peer(1, T0);
    let mut b = peer(2, T0);
    a.replica.increment(&coll(), &key("c"), "likes", 3).unwrap();
    a.replica.increment(&coll(), &key("c"), "likes", 2).unwrap();
    b.replica.increment(&coll(), &key("c"), "likes", 10).unwrap();
    b.replica.increment(&coll(), &key("c"), "likes", -4).unwrap();
    assert_eq!(converge(&a, &b, "c"), Some(doc(&[("likes", Value::Int(11))])));
}

#[test]
fn counter_redelivery_does_not_double_count() {
    let mut a = peer(1, T0);
    a.replica.increment(&coll(), &key("c"), "n", 5).unwrap();
    let changes = drain(&a);
    let mut b = peer(2, T0);
    deliver(&mut b, &changes);
    deliver(&mut b, &changes);
    assert_eq!(b.replica.get(&coll(), "c"), Some(doc(&[("n", Value::Int(5))])));
}

#[test]
fn writing_a_counter_field_resets_it_but_concurrent_increments_survive() {
    let mut a = peer(1, T0);
    a.replica.increment(&coll(), &key("c"), "n", 5).unwrap();
    let mut b = peer(2, T0 + 1);
    deliver(&mut b, &drain(&a));
    // b resets the counter to 100 having seen +5; a concurrently adds 2 more.
    b.replica.update(&coll(), &key("c"), doc(&[("n", Value::Int(100))])).unwrap();
    a.replica.increment(&coll(), &key("c"), "n", 2).unwrap();
    assert_eq!(converge(&a, &b, "c"), Some(doc(&[("n", Value::Int(102))])));
}

#[test]
fn deleting_a_record_resets_its_counters() {
    let mut a = peer(1, T0);
    a.replica.increment(&coll(), &key("c"), "n", 5).unwrap();
    a.clock.advance(1);
    a.replica.delete(&coll(), &key("c"));
    assert_eq!(a.replica.get(&coll(), "c"), None);
    a.clock.advance(1);
    a.replica.increment(&coll(), &key("c"), "n", 1).unwrap();
    assert_eq!(a.replica.get(&coll(), "c"), Some(doc(&[("n", Value::Int(1))])));
}

#[test]
fn drifted_hlc_is_rejected_with_the_drift_named() {
    let mut a = peer(1, T0 + 120_000); // writer's clock is 2 minutes ahead
    a.replica.update(&coll(), &key("t"), doc(&[("v", 1.into())])).unwrap();
    let mut b = peer(2, T0);
    let change = drain(&a).remove(0);
    let error = b.replica.apply_remote(change).unwrap_err();
    assert_eq!(error.drift_ms, 120_000);
    assert_eq!(error.max_drift_ms, 60_000);
    assert!(error.to_string().contains("120000 ms ahead"), "{error}");
    assert_eq!(b.replica.get(&coll(), "t"), None, "a refused change must not be applied");
}

#[test]
fn hlc_is_monotonic_when_the_wall_clock_goes_back() {
    let source = ManualClock::new(T0);
    let mut clock = HlcClock::new(NodeId(1), source.clone());
    let first = clock.now();
    source.set(T0 - 5_000);
    let second = clock.now();
    assert!(second > first);
    assert_eq!(second.wall_ms, T0);
    assert_eq!(second.counter, 1);
}

#[test]
fn hlc_receive_rule_moves_past_remote_timestamps() {
    let source = ManualClock::new(T0);
    let mut clock = HlcClock::new(NodeId(1), source);
    let remote = Hlc::new(T0 + 30_000, 7, NodeId(2));
    clock.observe(remote).unwrap();
    let next = clock.now();
    assert!(next > remote);
    assert_eq!((next.wall_ms, next.counter), (T0 + 30_000, 8));
    let far = Hlc::new(T0 + 61_000, 0, NodeId(2));
    assert_eq!(
        clock.observe(far),
        Err(ClockDriftError { hlc: far, drift_ms: 61_000, max_drift_ms: 60_000 }),
        "the drift limit is configurable and defaults to 60 s"
    );
}

#[test]
fn hlc_counter_overflow_borrows_the_next_millisecond() {
    let source = ManualClock::new(T0);
    let mut clock = HlcClock::new(NodeId(1), source);
    clock.advance_to(Hlc::new(T0, u32::MAX, NodeId(2)));
    let next = clock.now();
    assert_eq!((next.wall_ms, next.counter), (T0 + 1, 0));
}

#[test]
fn offset_clock_aligns_a_wrong_client_clock_with_the_server() {
    use weft_core::hlc::{ClockSource, OffsetClock};
    let local = ManualClock::new(T0 - 3_600_000); // an hour behind
    let mut clock = OffsetClock::new(local.clone());
    clock.align_to(T0);
    assert_eq!(clock.now_ms(), T0);
    local.advance(10);
    assert_eq!(clock.now_ms(), T0 + 10);
}

#[test]
fn pruning_drops_old_tombstones_identically_on_every_replica() {
    let mut a = peer(1, T0);
    a.replica.put(&coll(), &key("gone"), doc(&[("x", 1.into())])).unwrap();
    a.replica.put(&coll(), &key("kept"), doc(&[("x", 1.into())])).unwrap();
    a.clock.advance(1);
    a.replica.delete(&coll(), &key("gone"));
    let mut b = peer(2, T0 + 5);
    deliver(&mut b, &drain(&a));
    let horizon = Hlc::new(T0 + 2, 0, NodeId(0));
    assert_eq!(a.replica.prune(horizon), 1);
    assert_eq!(b.replica.prune(horizon), 1);
    let ca = a.replica.collection(&coll()).unwrap();
    let cb = b.replica.collection(&coll()).unwrap();
    assert_eq!(ca.len(), 1);
    assert_eq!(ca.merkle().root(), cb.merkle().root());
    assert_eq!(ca.merkle().len(), 1);
    assert_eq!(a.replica.get(&coll(), "kept"), Some(doc(&[("x", 1.into())])));
}

#[test]
fn pruning_keeps_tombstones_newer_than_the_horizon() {
    let mut a = peer(1, T0);
    a.replica.put(&coll(), &key("t"), doc(&[("x", 1.into())])).unwrap();
    a.clock.advance(10);
    a.replica.delete(&coll(), &key("t"));
    assert_eq!(a.replica.prune(Hlc::new(T0 + 5, 0, NodeId(0))), 0);
    // The tombstone still wins against a late, older write.
    let late = Change {
        collection: coll(),
        key: key("t"),
        hlc: Hlc::new(T0 + 3, 0, NodeId(5)),
        state: weft_core::crdt::ops::update(None, doc(&[("x", 2.into())]), Hlc::new(T0 + 3, 0, NodeId(5))),
    };
    a.replica.apply_remote(late).unwrap();
    assert_eq!(a.replica.get(&coll(), "t"), None);
}

#[test]
fn field_names_and_depth_are_validated_on_write() {
    let mut a = peer(1, T0);
    assert!(a.replica.update(&coll(), &key("t"), doc(&[("", 1.into())])).is_err());
    let mut deep = Value::Null;
    for _ in 0..40 {
        deep = Value::Array(vec![deep]);
    }
    let error = a.replica.update(&coll(), &key("t"), doc(&[("deep", deep)])).unwrap_err();
    assert!(error.to_string().contains("deep"), "{error}");
    assert!(a.replica.outbox().is_empty());
}

#[test]
fn pruning_drops_a_set_whose_adds_and_removes_are_all_below_the_horizon() {
    let mut a = peer(1, T0);
    a.replica.set_add(&coll(), &key("tags"), "red".into()).unwrap();
    a.clock.advance(1);
    a.replica.set_remove(&coll(), &key("tags"), &"red".into()).unwrap();
    assert!(a.replica.members(&coll(), "tags").is_empty());
    assert_eq!(a.replica.prune(Hlc::new(T0 + 10, 0, NodeId(0))), 1, "the empty set record is gone");
    let collection = a.replica.collection(&coll()).unwrap();
    assert_eq!((collection.len(), collection.merkle().len(), collection.merkle().root()), (0, 0, 0));
}
