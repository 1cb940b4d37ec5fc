//! The state of one record, and the merge that makes replicas converge.
//!
//! [`RecordState`] is a delta-state CRDT: a whole record and the change one write makes
//! to it have the same type, and applying a change is a join (merge) of two states. The
//! join is commutative, associative and idempotent by construction: every component is
//! merged by max (timestamps, per-node totals), union (set tags), or last-writer-wins with
//! a total order on the winner (registers, counter bases).
//!
//! Visibility rules (docs/semantics.md): a field is visible when its timestamp is at or after the
//! record's `deleted`; a record is visible when its presence cell is, or when it holds a
//! visible set member.

use std::collections::{BTreeMap, BTreeSet};

use super::counter::CounterState;
use super::field_map::FieldMap;
use super::version::{Component, VersionHash, Versioner};
use crate::hlc::Hlc;
use crate::key::KeyHash;
use crate::value::{Document, Value};

/// A field's last-writer-wins register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Register {
    /// The value written.
    pub value: Value,
    /// When it was written.
    pub hlc: Hlc,
}

impl Register {
    /// Whether `self` wins over `other`: the greater timestamp, and on an exact tie (only a
    /// buggy or hostile writer reuses one) the greater canonical encoding.
    fn wins_over(&self, other: &Register) -> bool {
        match self.hlc.cmp(&other.hlc) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => self.value != other.value && self.value.to_bytes() > other.value.to_bytes(),
        }
    }
}

/// A field: a register, a counter, or both (a counter reset to a written value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldState {
    /// The last written value.
    pub register: Option<Register>,
    /// Increments, if the field was ever used as a counter (boxed: most fields never
    /// are, and the box halves the size of every field).
    pub counter: Option<Box<CounterState>>,
}

impl FieldState {
    /// The field's value as readers see it, given the record's delete timestamp.
    ///
    /// Without counter activity beyond the last reset it is the register's value (if not
    /// deleted). With it, the register's number (0 if absent, deleted or not a number)
    /// plus the counter's growth since the reset.
    pub fn value(&self, deleted: Option<Hlc>) -> Option<Value> {
        let register = self.register.as_ref().filter(|r| deleted.is_none_or(|d| r.hlc >= d));
        let delta = self.counter.as_deref().and_then(CounterState::delta_beyond_base);
        match (register, delta) {
            (register, None) => register.map(|r| r.value.clone()),
            (Some(Register { value: Value::Float(base), .. }), Some(delta)) => Some(Value::Float(base + delta as f64)),
            (Some(Register { value: Value::Int(base), .. }), Some(delta)) => {
                Some(Value::Int(clamp_i64(*base as i128 + delta)))
            }
            (_, Some(delta)) => Some(Value::Int(clamp_i64(delta))),
        }
    }

    fn max_hlc(&self) -> Option<Hlc> {
        let register = self.register.as_ref().map(|r| r.hlc);
        register.max(self.counter.as_deref().and_then(CounterState::max_hlc))
    }
}

fn clamp_i64(value: i128) -> i64 {
    value.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// A set member's observed-remove state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    /// The element.
    pub value: Value,
    /// Tags (timestamps) of the adds.
    pub adds: BTreeSet<Hlc>,
    /// Tags of adds that a remove observed.
    pub removes: BTreeSet<Hlc>,
}

impl MemberState {
    /// The tags still alive: added, not removed, not older than the record's delete.
    pub fn live_tags(&self, deleted: Option<Hlc>) -> impl Iterator<Item = Hlc> + '_ {
        self.adds.iter().copied().filter(move |tag| !self.removes.contains(tag) && deleted.is_none_or(|d| *tag >= d))
    }
}

/// The complete CRDT state of one record, or a change to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordState {
    /// Latest `put`/`update`/`increment`: the record exists from then.
    pub presence: Option<Hlc>,
    /// Latest `delete` (a `put` also deletes, at the same timestamp, then writes).
    pub deleted: Option<Hlc>,
    /// Fields by name.
    pub fields: FieldMap,
    /// Set members by canonical encoding of the element.
    pub members: BTreeMap<Vec<u8>, MemberState>,
}

/// What pruning did to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pruned {
    /// Nothing could be dropped.
    Unchanged,
    /// Some tombstoned components were dropped.
    Compacted,
    /// The record was a tombstone older than the horizon: drop it entirely.
    Gone,
}

impl RecordState {
    /// True when the state holds nothing (a change that changes nothing).
    pub fn is_empty(&self) -> bool {
        self.presence.is_none() && self.deleted.is_none() && self.fields.is_empty() && self.members.is_empty()
    }

    /// Whether readers see this record.
    pub fn is_visible(&self) -> bool {
        let present = self.presence.is_some_and(|p| self.deleted.is_none_or(|d| p >= d));
        present || self.members.values().any(|m| m.live_tags(self.deleted).next().is_some())
    }

    /// The visible fields, or `None` when the record is not visible.
    pub fn document(&self) -> Option<Document> {
        if !self.is_visible() {
            return None;
        }
        let mut document = Document::new();
        for (name, field) in self.fields.iter() {
            if let Some(value) = field.value(self.deleted) {
                document.insert(name.to_owned(), value);
            }
        }
        Some(document)
    }

    /// The fields as they were last written, even if the record is deleted since (what a
    /// tombstone "was": authorization rules judge deletes by it).
    pub fn last_document(&self) -> Document {
        let mut document = Document::new();
        for (name, field) in self.fields.iter() {
            if let Some(value) = field.value(None) {
                document.insert(name.to_owned(), value);
            }
        }
        document
    }

    /// The value of one visible field, borrowed when it is stored as is (a counter's
    /// value is computed): what query filters read without copying records.
    pub fn field_cow(&self, name: &str) -> Option<std::borrow::Cow<'_, Value>> {
        if !self.is_visible() {
            return None;
        }
        let field = self.fields.get(name)?;
        if field.counter.as_deref().and_then(CounterState::delta_beyond_base).is_none() {
            let register = field.register.as_ref().filter(|r| self.deleted.is_none_or(|d| r.hlc >= d))?;
            return Some(std::borrow::Cow::Borrowed(&register.value));
        }
        field.value(self.deleted).map(std::borrow::Cow::Owned)
    }

    /// The value of one visible field.
    pub fn field(&self, name: &str) -> Option<Value> {
        if !self.is_visible() {
            return None;
        }
        self.fields.get(name)?.value(self.deleted)
    }

    /// The visible set members, ordered by their canonical encoding.
    pub fn members(&self) -> Vec<&Value> {
        self.members.values().filter(|m| m.live_tags(self.deleted).next().is_some()).map(|m| &m.value).collect()
    }

    /// The latest timestamp anywhere in this state.
    pub fn max_hlc(&self) -> Option<Hlc> {
        let mut max = self.presence.max(self.deleted);
        for field in self.fields.values() {
            max = max.max(field.max_hlc());
        }
        for member in self.members.values() {
            max = max.max(member.adds.last().copied()).max(member.removes.last().copied());
        }
        max
    }

    /// Joins `delta` into this state of the record with key hash `key`, whose current
    /// version hash is `version`. Returns the new version if anything changed. This is
    /// the merge for callers that keep states themselves (the server's store); cost is
    /// proportional to what `delta` holds.
    pub fn join(&mut self, key: KeyHash, version: VersionHash, delta: RecordState) -> Option<VersionHash> {
        let mut versioner = Versioner::new(key, version);
        self.merge(delta, &mut versioner).then(|| versioner.version())
    }

    /// The version hash of this state for key hash `key`, computed from scratch.
    pub fn version(&self, key: KeyHash) -> VersionHash {
        let mut versioner = Versioner::new(key, VersionHash::default());
        self.add_hashes(&mut versioner);
        versioner.version()
    }

    /// Joins `other` into `self`, keeping the version hash current. Returns whether the
    /// state changed.
    pub(crate) fn merge(&mut self, other: RecordState, versioner: &mut Versioner) -> bool {
        let mut changed = merge_timestamp(&mut self.presence, other.presence, Component::Presence, versioner);
        changed |= merge_timestamp(&mut self.deleted, other.deleted, Component::Deleted, versioner);
        for (name, theirs) in other.fields {
            if theirs.register.is_none() && theirs.counter.is_none() {
                continue;
            }
            match self.fields.get_mut(&name) {
                Some(ours) => changed |= merge_field(ours, &name, theirs, versioner),
                None => {
                    add_field_hashes(&name, &theirs, versioner);
                    self.fields.insert(name, theirs);
                    changed = true;
                }
            }
        }
        for (encoding, theirs) in other.members {
            let MemberState { value, adds, removes } = theirs;
            if adds.is_empty() && removes.is_empty() {
                continue;
            }
            let ours = self.members.entry(encoding.clone()).or_insert_with(|| MemberState {
                value,
                adds: BTreeSet::new(),
                removes: BTreeSet::new(),
            });
            for tag in adds {
                if ours.adds.insert(tag) {
                    versioner.add(versioner.simple(Component::MemberAdd, &encoding, tag));
                    changed = true;
                }
            }
            for tag in removes {
                if ours.removes.insert(tag) {
                    versioner.add(versioner.simple(Component::MemberRemove, &encoding, tag));
                    changed = true;
                }
            }
        }
        changed
    }

    /// Adds the hash of every component to `versioner` (a full recomputation).
    pub(crate) fn add_hashes(&self, versioner: &mut Versioner) {
        if let Some(hlc) = self.presence {
            versioner.add(versioner.simple(Component::Presence, b"", hlc));
        }
        if let Some(hlc) = self.deleted {
            versioner.add(versioner.simple(Component::Deleted, b"", hlc));
        }
        for (name, field) in self.fields.iter() {
            add_field_hashes(name, field, versioner);
        }
        for (encoding, member) in &self.members {
            for tag in &member.adds {
                versioner.add(versioner.simple(Component::MemberAdd, encoding, *tag));
            }
            for tag in &member.removes {
                versioner.add(versioner.simple(Component::MemberRemove, encoding, *tag));
            }
        }
    }

    /// Drops what no replica can need any more, given that every change with a timestamp
    /// below `horizon` has reached every replica (docs/semantics.md, tombstones).
    ///
    /// Dropped: registers and set tags older than a delete that is itself below the
    /// horizon; add/remove tag pairs below the horizon; the whole record when only such a
    /// tombstone is left. Counter totals are kept for the record's lifetime: a node's next
    /// increment carries its running total, which a replica must still compare against.
    pub(crate) fn prune(&mut self, horizon: Hlc, versioner: &mut Versioner) -> Pruned {
        let mut changed = false;
        let deleted = self.deleted.filter(|d| *d < horizon);
        if let Some(deleted) = deleted {
            if let Some(presence) = self.presence.filter(|p| *p < deleted) {
                versioner.remove(versioner.simple(Component::Presence, b"", presence));
                self.presence = None;
                changed = true;
            }
            self.fields.retain(|name, field| {
                if let Some(register) = field.register.as_ref().filter(|r| r.hlc < deleted) {
                    versioner.remove(versioner.simple(Component::Register, name.as_bytes(), register.hlc));
                    field.register = None;
                    changed = true;
                }
                field.register.is_some() || field.counter.is_some()
            });
        }
        self.members.retain(|encoding, member| {
            let dead: Vec<Hlc> = member
                .adds
                .iter()
                .copied()
                .filter(|tag| *tag < horizon && (member.removes.contains(tag) || deleted.is_some_and(|d| *tag < d)))
                .collect();
            for tag in dead {
                member.adds.remove(&tag);
                versioner.remove(versioner.simple(Component::MemberAdd, encoding, tag));
                if member.removes.remove(&tag) {
                    versioner.remove(versioner.simple(Component::MemberRemove, encoding, tag));
                }
                changed = true;
            }
            // A remove whose add never arrived, below the horizon: the add never will.
            let orphans: Vec<Hlc> =
                member.removes.iter().copied().filter(|tag| *tag < horizon && !member.adds.contains(tag)).collect();
            for tag in orphans {
                member.removes.remove(&tag);
                versioner.remove(versioner.simple(Component::MemberRemove, encoding, tag));
                changed = true;
            }
            !member.adds.is_empty() || !member.removes.is_empty()
        });
        if self.presence.is_none() && self.fields.is_empty() && self.members.is_empty() {
            match self.deleted {
                // Only a tombstone older than the horizon is left.
                Some(tombstone) if tombstone < horizon => {
                    versioner.remove(versioner.simple(Component::Deleted, b"", tombstone));
                    self.deleted = None;
                    return Pruned::Gone;
                }
                // Nothing at all is left (a set whose adds and removes were all pruned).
                None => return Pruned::Gone,
                Some(_) => {}
            }
        }
        if changed { Pruned::Compacted } else { Pruned::Unchanged }
    }
}

/// The canonical encoding that identifies a set element.
pub fn encoding_of(value: &Value) -> Vec<u8> {
    value.to_bytes()
}

fn merge_timestamp(ours: &mut Option<Hlc>, theirs: Option<Hlc>, kind: Component, versioner: &mut Versioner) -> bool {
    let Some(theirs) = theirs else { return false };
    if ours.is_some_and(|current| current >= theirs) {
        return false;
    }
    if let Some(current) = *ours {
        versioner.remove(versioner.simple(kind, b"", current));
    }
    versioner.add(versioner.simple(kind, b"", theirs));
    *ours = Some(theirs);
    true
}

fn merge_field(ours: &mut FieldState, name: &str, theirs: FieldState, versioner: &mut Versioner) -> bool {
    let mut changed = false;
    if let Some(register) = theirs.register {
        let replace = ours.register.as_ref().is_none_or(|current| register.wins_over(current));
        if replace {
            if let Some(current) = &ours.register {
                versioner.remove(versioner.simple(Component::Register, name.as_bytes(), current.hlc));
            }
            versioner.add(versioner.simple(Component::Register, name.as_bytes(), register.hlc));
            ours.register = Some(register);
            changed = true;
        }
    }
    if let Some(counter) = theirs.counter.filter(|c| !c.totals.is_empty() || c.base.is_some()) {
        match &mut ours.counter {
            Some(current) => changed |= current.merge(name, *counter, versioner),
            None => {
                counter.add_hashes(name, versioner);
                ours.counter = Some(counter);
                changed = true;
            }
        }
    }
    changed
}

fn add_field_hashes(name: &str, field: &FieldState, versioner: &mut Versioner) {
    if let Some(register) = &field.register {
        versioner.add(versioner.simple(Component::Register, name.as_bytes(), register.hlc));
    }
    if let Some(counter) = &field.counter {
        counter.add_hashes(name, versioner);
    }
}
