//! Property tests: replicas that see the same changes, in any order, with duplicates and
//! late redelivery, reach identical state and identical merkle roots; merkle
//! reconciliation transfers exactly the records that differ.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and benchmarks fail loudly on bad setup")]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use weft_core::change::Change;
use weft_core::crdt::RecordState;
use weft_core::hlc::{Hlc, ManualClock, NodeId};
use weft_core::key::{CollectionName, RecordKey};
use weft_core::merkle::ReconcileStep;
use weft_core::replica::Replica;
use weft_core::value::{Document, Value};

const T0: u64 = 1_700_000_000_000;
const KEYS: &[&str] = &["a", "b", "c", "d", "e"];
const FIELDS: &[&str] = &["title", "done", "n", "tags"];

#[derive(Clone, Debug)]
enum Op {
    Put(usize, Vec<(usize, i64)>),
    Update(usize, Vec<(usize, i64)>),
    Delete(usize),
    Increment(usize, usize, i64),
    SetAdd(usize, i64),
    SetRemove(usize, i64),
}

#[derive(Clone, Debug)]
enum Action {
    /// Replica does an op after its clock moved by `tick` ms (0 keeps HLCs in one ms).
    Local { replica: usize, tick: u64, op: Op },
    /// Replica receives the change at `pick` (modulo the log length) — maybe again.
    Deliver { replica: usize, pick: usize },
    /// Replica prunes nothing but re-reads: exercises no-op paths.
    Noop,
}

fn fields() -> impl Strategy<Value = Vec<(usize, i64)>> {
    prop::collection::vec((0..FIELDS.len(), -3i64..4), 0..3)
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    prop_oneof![
        (key.clone(), fields()).prop_map(|(k, f)| Op::Put(k, f)),
        (key.clone(), fields()).prop_map(|(k, f)| Op::Update(k, f)),
        key.clone().prop_map(Op::Delete),
        (key.clone(), 0..FIELDS.len(), -5i64..6).prop_map(|(k, f, by)| Op::Increment(k, f, by)),
        (key.clone(), 0i64..4).prop_map(|(k, e)| Op::SetAdd(k, e)),
        (key, 0i64..4).prop_map(|(k, e)| Op::SetRemove(k, e)),
    ]
}

fn action(n_replicas: usize) -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..n_replicas, 0u64..3, op()).prop_map(|(replica, tick, op)| Action::Local { replica, tick, op }),
        3 => (0..n_replicas, any::<usize>()).prop_map(|(replica, pick)| Action::Deliver { replica, pick }),
        1 => Just(Action::Noop),
    ]
}

fn coll() -> CollectionName {
    CollectionName::new("items").unwrap()
}

fn document(fields: &[(usize, i64)]) -> Document {
    fields.iter().map(|(f, v)| (FIELDS[*f].to_string(), Value::Int(*v))).collect()
}

struct Node {
    replica: Replica<ManualClock>,
    clock: ManualClock,
    /// How many of the replica's outbox entries were already copied to the shared log.
    published: usize,
}

fn apply_op(node: &mut Node, op: &Op) {
    let c = coll();
    let r = &mut node.replica;
    let key = |k: usize| RecordKey::new(KEYS[k]).unwrap();
    match op {
        Op::Put(k, f) => drop(r.put(&c, &key(*k), document(f)).unwrap()),
        Op::Update(k, f) => drop(r.update(&c, &key(*k), document(f)).unwrap()),
        Op::Delete(k) => drop(r.delete(&c, &key(*k))),
        Op::Increment(k, f, by) => drop(r.increment(&c, &key(*k), FIELDS[*f], *by).unwrap()),
        Op::SetAdd(k, e) => drop(r.set_add(&c, &key(*k), Value::Int(*e)).unwrap()),
        Op::SetRemove(k, e) => drop(r.set_remove(&c, &key(*k), &Value::Int(*e))),
    }
}

/// Moves a replica's new outbox entries to the shared log.
fn publish(node: &mut Node, log: &mut Vec<Change>) {
    let fresh: Vec<Change> = node.replica.outbox().unacknowledged().skip(node.published).cloned().collect();
    node.published += fresh.len();
    log.extend(fresh);
}

fn snapshot(replica: &Replica<ManualClock>) -> (BTreeMap<String, RecordState>, u128) {
    match replica.collection(&coll()) {
        None => (BTreeMap::new(), 0),
        Some(c) => (c.iter().map(|(k, s)| (k.to_string(), s.clone())).collect(), c.merkle().root()),
    }
}

/// A small deterministic shuffle (xorshift), so a failing case replays from its seed.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    seed |= 1;
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

fn run(n_replicas: usize, actions: &[Action], seeds: &[u64]) -> Vec<Node> {
    let mut nodes: Vec<Node> = (0..n_replicas)
        .map(|i| {
            let clock = ManualClock::new(T0 + (i as u64 % 2));
            Node { replica: Replica::new(NodeId(i as u64 + 1), clock.clone()), clock, published: 0 }
        })
        .collect();
    let mut log: Vec<Change> = Vec::new();
    for action in actions {
        match action {
            Action::Local { replica, tick, op } => {
                let node = &mut nodes[*replica];
                node.clock.advance(*tick);
                apply_op(node, op);
                publish(node, &mut log);
            }
            Action::Deliver { replica, pick } if !log.is_empty() => {
                let change = log[pick % log.len()].clone();
                nodes[*replica].replica.apply_remote(change).unwrap();
            }
            _ => {}
        }
    }
    // Final delivery: every change to every replica, shuffled, some twice.
    for (i, node) in nodes.iter_mut().enumerate() {
        let mut all: Vec<Change> = log.iter().chain(log.iter().step_by(3)).cloned().collect();
        shuffle(&mut all, seeds[i]);
        // Half the replicas take the final delivery as batches (the read-ahead path).
        if i % 2 == 1 {
            node.replica.apply_remote_batch(all).unwrap();
        } else {
            for change in all {
                node.replica.apply_remote(change).unwrap();
            }
        }
    }
    nodes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn replicas_converge_whatever_the_delivery_order(
        n_replicas in 3usize..=5,
        actions in prop::collection::vec(action(5), 1..80),
        seeds in prop::collection::vec(any::<u64>(), 5),
    ) {
        let actions: Vec<Action> = actions.into_iter().map(|a| match a {
            Action::Local { replica, tick, op } => Action::Local { replica: replica % n_replicas, tick, op },
            Action::Deliver { replica, pick } => Action::Deliver { replica: replica % n_replicas, pick },
            Action::Noop => Action::Noop,
        }).collect();
        let nodes = run(n_replicas, &actions, &seeds);
        let (state0, root0) = snapshot(&nodes[0].replica);
        for node in &nodes[1..] {
            let (state, root) = snapshot(&node.replica);
            prop_assert_eq!(&state, &state0);
            prop_assert_eq!(root, root0);
            for k in KEYS {
                prop_assert_eq!(node.replica.get(&coll(), k), nodes[0].replica.get(&coll(), k));
                prop_assert_eq!(node.replica.members(&coll(), k), nodes[0].replica.members(&coll(), k));
            }
        }
        // Pruning at a common horizon keeps them identical.
        let horizon = Hlc::new(T0 + 40, 0, NodeId(0));
        let mut pruned: Vec<_> = nodes.into_iter().map(|mut n| { n.replica.prune(horizon); snapshot(&n.replica) }).collect();
        let first = pruned.remove(0);
        for other in pruned {
            prop_assert_eq!(&other, &first);
        }
    }

    #[test]
    fn merkle_reconciliation_transfers_exactly_the_differing_records(
        actions in prop::collection::vec(action(2), 1..120),
        extra_keys in 0usize..300,
    ) {
        let mut nodes = run_partial(&actions, extra_keys);
        let (before_a, _) = snapshot(&nodes[0].replica);
        let (before_b, _) = snapshot(&nodes[1].replica);
        let all_keys: BTreeSet<&String> = before_a.keys().chain(before_b.keys()).collect();
        let differing: BTreeSet<String> =
            all_keys.into_iter().filter(|k| before_a.get(*k) != before_b.get(*k)).cloned().collect();

        let transferred = reconcile(&mut nodes);
        prop_assert_eq!(transferred, differing);
        let (after_a, root_a) = snapshot(&nodes[0].replica);
        let (after_b, root_b) = snapshot(&nodes[1].replica);
        prop_assert_eq!(after_a, after_b);
        prop_assert_eq!(root_a, root_b);
    }
}

/// Two replicas that each saw only some of the changes, plus `extra_keys` records known
/// to both (so trees split below partitions).
fn run_partial(actions: &[Action], extra_keys: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = (0..2)
        .map(|i| {
            let clock = ManualClock::new(T0);
            Node { replica: Replica::new(NodeId(i as u64 + 1), clock.clone()), clock, published: 0 }
        })
        .collect();
    for i in 0..extra_keys {
        let key = RecordKey::new(format!("shared-{i}")).unwrap();
        nodes[0].replica.put(&coll(), &key, document(&[(0, i as i64)])).unwrap();
    }
    let shared: Vec<Change> = nodes[0].replica.outbox().unacknowledged().cloned().collect();
    nodes[0].published = shared.len();
    for change in shared {
        nodes[1].replica.apply_remote(change).unwrap();
    }
    let mut log = Vec::new();
    for action in actions {
        match action {
            Action::Local { replica, tick, op } => {
                let node = &mut nodes[*replica % 2];
                node.clock.advance(*tick);
                apply_op(node, op);
                publish(node, &mut log);
            }
            Action::Deliver { replica, pick } if !log.is_empty() => {
                let change = log[pick % log.len()].clone();
                nodes[*replica % 2].replica.apply_remote(change).unwrap();
            }
            _ => {}
        }
    }
    nodes
}

/// Runs exchanges between nodes 0 and 1 until one ends untruncated; returns every key
/// transferred.
fn reconcile(nodes: &mut [Node]) -> BTreeSet<String> {
    let c = coll();
    for node in nodes.iter_mut() {
        // Make sure both hold the collection (maybe empty).
        let _ = node.replica.start_reconcile(&c);
    }
    let mut transferred = BTreeSet::new();
    for _exchange in 0..100 {
        let mut step = ReconcileStep::start(nodes[0].replica.collection(&c).unwrap().merkle());
        let mut truncated = false;
        let mut receiver = 1;
        loop {
            transferred.extend(step.records.iter().map(|r| r.key.to_string()));
            truncated |= step.truncated;
            match nodes[receiver].replica.reconcile_step(&c, step).unwrap() {
                None => break,
                Some(reply) => step = reply,
            }
            receiver = 1 - receiver;
        }
        if !truncated {
            return transferred;
        }
    }
    panic!("reconciliation did not finish in 100 exchanges");
}

#[test]
fn reconciliation_of_large_replicas_finds_each_single_difference() {
    // 20,000 shared keys (trees several levels deep), then 1, 7 and 50 differences on
    // either side, including deletes.
    let c = coll();
    let mut nodes: Vec<Node> = (0..2)
        .map(|i| {
            let clock = ManualClock::new(T0);
            Node { replica: Replica::new(NodeId(i + 1), clock.clone()), clock, published: 0 }
        })
        .collect();
    for i in 0..20_000 {
        let key = RecordKey::new(format!("k{i}")).unwrap();
        nodes[0].replica.put(&c, &key, document(&[(0, i)])).unwrap();
    }
    let shared: Vec<Change> = nodes[0].replica.outbox().unacknowledged().cloned().collect();
    for change in shared {
        nodes[1].replica.apply_remote(change).unwrap();
    }
    for n_diff in [1usize, 7, 50] {
        let mut expected = BTreeSet::new();
        for j in 0..n_diff {
            let side = j % 2;
            let key = format!("k{}", (j * 397 + n_diff) % 20_000);
            nodes[side].clock.advance(1);
            if j % 3 == 0 {
                nodes[side].replica.delete(&c, &RecordKey::new(key.clone()).unwrap());
            } else {
                nodes[side].replica.update(&c, &RecordKey::new(key.clone()).unwrap(), document(&[(1, 1)])).unwrap();
            }
            expected.insert(key);
        }
        assert_eq!(reconcile(&mut nodes), expected);
        let (a, root_a) = snapshot(&nodes[0].replica);
        let (b, root_b) = snapshot(&nodes[1].replica);
        assert_eq!(root_a, root_b);
        assert_eq!(a, b);
    }
}

#[test]
fn reconciliation_of_many_differences_runs_in_bounded_steps_and_converges() {
    use weft_core::codec::DecodeLimits;
    use weft_core::merkle::{STEP_NODES_MAX, STEP_RECORDS_MAX};
    use weft_core::protocol::{ServerMessage, SessionId};
    let c = coll();
    let mut a = Replica::new(NodeId(1), ManualClock::new(T0));
    let mut b = Replica::new(NodeId(2), ManualClock::new(T0));
    // 6,000 records only on A, 2,500 only on B: far more than one step may carry.
    for i in 0..6_000 {
        a.put(&c, &RecordKey::new(format!("a{i}")).unwrap(), document(&[(0, i)])).unwrap();
    }
    for i in 0..2_500 {
        b.put(&c, &RecordKey::new(format!("b{i}")).unwrap(), document(&[(0, i)])).unwrap();
    }
    let mut exchanges = 0;
    loop {
        exchanges += 1;
        assert!(exchanges < 50, "no convergence");
        let mut step = ReconcileStep::start(a.collection(&c).unwrap().merkle());
        let mut truncated = false;
        let mut a_receives = false;
        loop {
            assert!(step.records.len() <= STEP_RECORDS_MAX);
            assert!(step.children.len() + step.leaves.len() <= STEP_NODES_MAX);
            // Every step fits the default frame limits.
            let frame =
                ServerMessage::Reconcile { session_id: SessionId(1), collection: c.clone(), step: step.clone() }
                    .encode();
            assert!(ServerMessage::decode(&frame, &DecodeLimits::default()).is_ok(), "step of {} bytes", frame.len());
            truncated |= step.truncated;
            let receiver = if a_receives { &mut a } else { &mut b };
            match receiver.reconcile_step(&c, step).unwrap() {
                None => break,
                Some(reply) => step = reply,
            }
            a_receives = !a_receives;
        }
        if !truncated {
            break;
        }
    }
    assert!(exchanges > 1, "the budget should have split the work");
    assert_eq!(a.collection(&c).unwrap().merkle().root(), b.collection(&c).unwrap().merkle().root());
    assert_eq!(a.collection(&c).unwrap().len(), 8_500);
}
