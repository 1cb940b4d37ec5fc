//! The deltas that local writes produce.
//!
//! Each function reads the record's current state (what the writer observed) and returns
//! the [`RecordState`] delta that expresses the write; the caller merges it locally and
//! ships it as a change. Observation matters for counters (a reset records the totals it
//! saw) and sets (a remove tombstones the tags it saw).

use std::collections::BTreeSet;

use super::counter::{CounterState, NodeTotal};
use super::record::{FieldState, MemberState, RecordState, Register, encoding_of};
use crate::hlc::{Hlc, NodeId};
use crate::value::{Document, Value};

/// `put(doc)` at `hlc`: delete at `hlc`, then set every field of `doc` at `hlc`.
pub fn put(current: Option<&RecordState>, document: Document, hlc: Hlc) -> RecordState {
    let mut delta = RecordState { presence: Some(hlc), deleted: Some(hlc), ..RecordState::default() };
    reset_counters(current, &mut delta, hlc, |_| true);
    for (name, value) in document {
        delta.fields.get_or_default(name).register = Some(Register { value, hlc });
    }
    delta
}

/// `update(partial)` at `hlc`: set only the named top-level fields.
pub fn update(current: Option<&RecordState>, partial: Document, hlc: Hlc) -> RecordState {
    let mut delta = RecordState { presence: Some(hlc), ..RecordState::default() };
    reset_counters(current, &mut delta, hlc, |name| partial.contains_key(name));
    for (name, value) in partial {
        delta.fields.get_or_default(name).register = Some(Register { value, hlc });
    }
    delta
}

/// `delete()` at `hlc`.
pub fn delete(current: Option<&RecordState>, hlc: Hlc) -> RecordState {
    let mut delta = RecordState { deleted: Some(hlc), ..RecordState::default() };
    reset_counters(current, &mut delta, hlc, |_| true);
    delta
}

/// `increment(field, by)` by `node` at `hlc` (negative `by` decrements). The delta
/// carries the node's new running totals, so redelivery is harmless.
pub fn increment(current: Option<&RecordState>, field: &str, by: i64, node: NodeId, hlc: Hlc) -> RecordState {
    let previous = current
        .and_then(|state| state.fields.get(field))
        .and_then(|f| f.counter.as_ref())
        .and_then(|c| c.totals.get(&node))
        .copied();
    let (increments, decrements) = previous.map_or((0, 0), |t| (t.increments, t.decrements));
    let total = if by >= 0 {
        NodeTotal { increments: increments.saturating_add(by as u64), decrements, hlc }
    } else {
        NodeTotal { increments, decrements: decrements.saturating_add(by.unsigned_abs()), hlc }
    };
    let mut counter = CounterState::default();
    counter.totals.insert(node, total);
    let mut delta = RecordState { presence: Some(hlc), ..RecordState::default() };
    delta.fields.insert(field.to_owned(), FieldState { register: None, counter: Some(Box::new(counter)) });
    delta
}

/// `set_add(element)` at `hlc`: a new tag for the element.
pub fn set_add(element: Value, hlc: Hlc) -> RecordState {
    let mut delta = RecordState::default();
    let encoding = encoding_of(&element);
    delta
        .members
        .insert(encoding, MemberState { value: element, adds: BTreeSet::from([hlc]), removes: BTreeSet::new() });
    delta
}

/// `set_remove(element)`: tombstones the tags of the element this replica has seen.
/// Returns `None` when the element is not in the set (nothing to remove).
pub fn set_remove(current: Option<&RecordState>, element: &Value) -> Option<RecordState> {
    let state = current?;
    let encoding = encoding_of(element);
    let member = state.members.get(&encoding)?;
    let observed: BTreeSet<Hlc> = member.live_tags(state.deleted).collect();
    if observed.is_empty() {
        return None;
    }
    let mut delta = RecordState::default();
    delta.members.insert(encoding, MemberState { value: element.clone(), adds: BTreeSet::new(), removes: observed });
    Some(delta)
}

/// Adds a base (observed totals at `hlc`) for every counter field selected by `select`.
fn reset_counters(current: Option<&RecordState>, delta: &mut RecordState, hlc: Hlc, select: impl Fn(&str) -> bool) {
    let Some(current) = current else { return };
    for (name, field) in current.fields.iter() {
        if let Some(counter) = &field.counter
            && select(name)
        {
            let base = CounterState { totals: Default::default(), base: Some(counter.observe(hlc)) };
            delta.fields.get_or_default(name).counter = Some(Box::new(base));
        }
    }
}
