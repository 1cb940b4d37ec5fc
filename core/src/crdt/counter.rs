//! PN-counter fields with observed reset.
//!
//! Each node's increments and decrements are grow-only totals, merged by per-node max.
//! A write that replaces the field (`put`, `update` of that field, `delete` of the record)
//! records a [`CounterBase`]: the totals it observed. The counter's contribution is what
//! the totals grew beyond that base, so a reset forgets the increments it saw while
//! increments concurrent with it survive (add-wins). Bases merge last-writer-wins.

use std::collections::BTreeMap;

use super::version::{Component, Versioner};
use crate::hlc::{Hlc, NodeId};

/// One node's totals in a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeTotal {
    /// Sum of this node's positive increments.
    pub increments: u64,
    /// Sum of this node's decrements (as a positive number).
    pub decrements: u64,
    /// Timestamp of this node's latest increment.
    pub hlc: Hlc,
}

/// The totals a resetting write observed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CounterBase {
    /// Timestamp of the resetting write.
    pub hlc: Hlc,
    /// Per node `(increments, decrements)` observed when the write happened.
    pub observed: BTreeMap<NodeId, (u64, u64)>,
}

/// A PN-counter's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterState {
    /// Per-node totals.
    pub totals: BTreeMap<NodeId, NodeTotal>,
    /// The latest reset, if any.
    pub base: Option<CounterBase>,
}

impl CounterState {
    /// What the counter grew beyond its base: `Some(delta)` if any node went beyond it.
    pub fn delta_beyond_base(&self) -> Option<i128> {
        let mut beyond = false;
        let mut delta: i128 = 0;
        for (node, total) in &self.totals {
            let (base_inc, base_dec) = self.base.as_ref().and_then(|b| b.observed.get(node).copied()).unwrap_or((0, 0));
            // A base may have observed more than has reached this replica yet: those
            // increments are covered by the reset, so they count as zero, not negative.
            let inc = total.increments.saturating_sub(base_inc);
            let dec = total.decrements.saturating_sub(base_dec);
            if inc > 0 || dec > 0 {
                beyond = true;
                delta += inc as i128 - dec as i128;
            }
        }
        beyond.then_some(delta)
    }

    /// The totals as a base observed now.
    pub fn observe(&self, hlc: Hlc) -> CounterBase {
        CounterBase {
            hlc,
            observed: self.totals.iter().map(|(node, t)| (*node, (t.increments, t.decrements))).collect(),
        }
    }

    /// The latest timestamp in this state.
    pub fn max_hlc(&self) -> Option<Hlc> {
        let totals = self.totals.values().map(|t| t.hlc).max();
        totals.max(self.base.as_ref().map(|b| b.hlc))
    }

    pub(crate) fn merge(&mut self, name: &str, other: CounterState, versioner: &mut Versioner) -> bool {
        let mut changed = false;
        for (node, theirs) in other.totals {
            match self.totals.get_mut(&node) {
                Some(ours) => {
                    let merged = NodeTotal {
                        increments: ours.increments.max(theirs.increments),
                        decrements: ours.decrements.max(theirs.decrements),
                        hlc: ours.hlc.max(theirs.hlc),
                    };
                    if merged != *ours {
                        versioner.remove(total_hash(versioner, name, node, ours));
                        versioner.add(total_hash(versioner, name, node, &merged));
                        *ours = merged;
                        changed = true;
                    }
                }
                None => {
                    versioner.add(total_hash(versioner, name, node, &theirs));
                    self.totals.insert(node, theirs);
                    changed = true;
                }
            }
        }
        if let Some(theirs) = other.base {
            changed |= merge_base(&mut self.base, name, theirs, versioner);
        }
        changed
    }

    pub(crate) fn add_hashes(&self, name: &str, versioner: &mut Versioner) {
        for (node, total) in &self.totals {
            versioner.add(total_hash(versioner, name, *node, total));
        }
        if let Some(base) = &self.base {
            versioner.add(versioner.simple(Component::CounterBase, name.as_bytes(), base.hlc));
        }
    }
}

/// Last-writer-wins on the base timestamp; an exact tie (a hostile writer) is broken by
/// the greater observed map so that every replica picks the same one.
pub(crate) fn merge_base(
    ours: &mut Option<CounterBase>,
    name: &str,
    theirs: CounterBase,
    versioner: &mut Versioner,
) -> bool {
    let replace = match ours.as_ref() {
        None => true,
        Some(current) => (theirs.hlc, &theirs.observed) > (current.hlc, &current.observed),
    };
    if !replace {
        return false;
    }
    if let Some(current) = ours.as_ref() {
        versioner.remove(versioner.simple(Component::CounterBase, name.as_bytes(), current.hlc));
    }
    versioner.add(versioner.simple(Component::CounterBase, name.as_bytes(), theirs.hlc));
    *ours = Some(theirs);
    true
}

fn total_hash(versioner: &Versioner, name: &str, node: NodeId, total: &NodeTotal) -> u128 {
    versioner.counter_total(name.as_bytes(), node, total.increments, total.decrements, total.hlc)
}
