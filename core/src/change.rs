//! [`Change`]: what one write produces, what travels over the wire, and what a replica
//! applies. A change is a record-state delta (see [`crate::crdt`]) addressed to a
//! collection and key and stamped with the writer's HLC; applying it is a CRDT join, so
//! it commutes, associates and can be repeated.
//!
//! Wire form (MessagePack, see docs/protocol.md): `[collection, key, hlc, state]`. Inside
//! `state`, a timestamp equal to the change's own is written as `0`, which makes the
//! common single-write change about 30 bytes smaller.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use crate::codec::{DecodeError, Reader, Writer};
use crate::crdt::{
    CounterBase, CounterState, FieldMap, FieldState, MemberState, NodeTotal, RecordState, Register, encoding_of,
};
use crate::hlc::{Hlc, NodeId};
use crate::key::{CollectionName, RecordKey, validate_field_name};
use crate::value::Value;

/// One write (or a whole record's state, during reconciliation) for one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The collection written.
    pub collection: CollectionName,
    /// The record written.
    pub key: RecordKey,
    /// The writer's timestamp: no timestamp inside `state` is later than this.
    pub hlc: Hlc,
    /// The delta to join into the record.
    pub state: RecordState,
}

impl Change {
    /// Whether this change deletes the record (authorization treats it as a delete). A
    /// `put` carries a delete at its own timestamp followed by its writes; that is a
    /// write, not a delete.
    pub fn is_delete(&self) -> bool {
        self.state.deleted.is_some_and(|deleted| self.state.presence.is_none_or(|present| present < deleted))
    }

    /// Appends the wire form.
    pub fn encode(&self, writer: &mut Writer) {
        encode_change_parts(&self.collection, &self.key, self.hlc, &self.state, writer);
    }

    /// Reads the wire form, validating names, key length, field names and that no
    /// timestamp in the state is later than the change's (so one drift check covers all).
    pub fn decode(reader: &mut Reader<'_>) -> Result<Change, DecodeError> {
        let len = reader.record(4, "change")?;
        let at = reader.position();
        let collection = CollectionName::new(reader.str_max(crate::key::COLLECTION_NAME_BYTES_MAX, "collection")?)
            .map_err(|error| DecodeError::Invalid { at, what: "collection", reason: error.to_string() })?;
        let at = reader.position();
        let key = RecordKey::new(reader.str_max(crate::key::KEY_BYTES_MAX, "change key")?)
            .map_err(|error| DecodeError::Invalid { at, what: "change key", reason: error.to_string() })?;
        let hlc = decode_hlc(reader, "change hlc")?;
        let state = decode_state(reader, hlc)?;
        reader.skip_extra(len - 4)?;
        Ok(Change { collection, key, hlc, state })
    }
}

/// Appends the wire form of a change from borrowed parts: how a whole stored record is
/// written without cloning its state into a [`Change`] first.
pub fn encode_change_parts(
    collection: &CollectionName,
    key: &RecordKey,
    hlc: Hlc,
    state: &RecordState,
    writer: &mut Writer,
) {
    writer.array_len(4);
    writer.str(collection.as_str());
    writer.str(key.as_str());
    encode_hlc(hlc, writer);
    encode_state(state, hlc, writer);
}

/// Appends a timestamp as `[wall_ms, counter, node]`.
pub fn encode_hlc(hlc: Hlc, writer: &mut Writer) {
    writer.array_len(3);
    writer.uint(hlc.wall_ms);
    writer.uint(hlc.counter as u64);
    writer.uint(hlc.node.0);
}

/// Reads a timestamp written by [`encode_hlc`].
pub fn decode_hlc(reader: &mut Reader<'_>, what: &'static str) -> Result<Hlc, DecodeError> {
    let len = reader.record(3, what)?;
    let wall_ms = reader.u64(what)?;
    let counter = reader.u32(what)?;
    let node = NodeId(reader.u64(what)?);
    reader.skip_extra(len - 3)?;
    Ok(Hlc { wall_ms, counter, node })
}

fn encode_hlc_ref(hlc: Hlc, change_hlc: Hlc, writer: &mut Writer) {
    if hlc == change_hlc {
        writer.uint(0);
    } else {
        encode_hlc(hlc, writer);
    }
}

fn encode_optional_hlc(hlc: Option<Hlc>, change_hlc: Hlc, writer: &mut Writer) {
    match hlc {
        None => writer.nil(),
        Some(hlc) => encode_hlc_ref(hlc, change_hlc, writer),
    }
}

fn decode_hlc_ref(reader: &mut Reader<'_>, change_hlc: Hlc, what: &'static str) -> Result<Hlc, DecodeError> {
    let at = reader.position();
    let hlc = if reader.peek_kind(what)? == crate::codec::Kind::Int {
        reader.uint_max(0, what)?;
        change_hlc
    } else {
        decode_hlc(reader, what)?
    };
    if hlc > change_hlc {
        return Err(DecodeError::Invalid {
            at,
            what,
            reason: format!("timestamp {hlc} is later than its change's {change_hlc}"),
        });
    }
    Ok(hlc)
}

fn decode_optional_hlc(
    reader: &mut Reader<'_>,
    change_hlc: Hlc,
    what: &'static str,
) -> Result<Option<Hlc>, DecodeError> {
    if reader.take_nil() { Ok(None) } else { decode_hlc_ref(reader, change_hlc, what).map(Some) }
}

/// Appends a record state; timestamps equal to `change_hlc` are written as `0`.
pub fn encode_state(state: &RecordState, change_hlc: Hlc, writer: &mut Writer) {
    writer.array_len(4);
    encode_optional_hlc(state.presence, change_hlc, writer);
    encode_optional_hlc(state.deleted, change_hlc, writer);
    writer.map_len(state.fields.len());
    for (name, field) in state.fields.iter() {
        writer.str(name);
        writer.array_len(2);
        match &field.register {
            None => writer.nil(),
            Some(register) => {
                writer.array_len(2);
                register.value.encode(writer);
                encode_hlc_ref(register.hlc, change_hlc, writer);
            }
        }
        match &field.counter {
            None => writer.nil(),
            Some(counter) => encode_counter(counter, change_hlc, writer),
        }
    }
    writer.array_len(state.members.len());
    for member in state.members.values() {
        writer.array_len(3);
        member.value.encode(writer);
        for tags in [&member.adds, &member.removes] {
            writer.array_len(tags.len());
            for tag in tags {
                encode_hlc_ref(*tag, change_hlc, writer);
            }
        }
    }
}

fn encode_counter(counter: &CounterState, change_hlc: Hlc, writer: &mut Writer) {
    writer.array_len(2);
    writer.array_len(counter.totals.len());
    for (node, total) in &counter.totals {
        writer.array_len(4);
        writer.uint(node.0);
        writer.uint(total.increments);
        writer.uint(total.decrements);
        encode_hlc_ref(total.hlc, change_hlc, writer);
    }
    match &counter.base {
        None => writer.nil(),
        Some(base) => {
            writer.array_len(2);
            encode_hlc_ref(base.hlc, change_hlc, writer);
            writer.array_len(base.observed.len());
            for (node, (increments, decrements)) in &base.observed {
                writer.array_len(3);
                writer.uint(node.0);
                writer.uint(*increments);
                writer.uint(*decrements);
            }
        }
    }
}

/// Reads a record state written by [`encode_state`].
pub fn decode_state(reader: &mut Reader<'_>, change_hlc: Hlc) -> Result<RecordState, DecodeError> {
    let len = reader.record(4, "record state")?;
    let presence = decode_optional_hlc(reader, change_hlc, "presence")?;
    let deleted = decode_optional_hlc(reader, change_hlc, "deleted")?;
    let n_fields = reader.map("fields")?;
    let batch_max = reader.limits().batch_len_max;
    if n_fields > batch_max {
        return Err(DecodeError::BatchTooLarge {
            at: reader.position(),
            what: "fields",
            len: n_fields,
            max: batch_max,
        });
    }
    let mut fields = FieldMap::new();
    for _ in 0..n_fields {
        let at = reader.position();
        let name = reader.str_max(crate::key::FIELD_NAME_BYTES_MAX, "field name")?;
        validate_field_name(name).map_err(|error| DecodeError::Invalid {
            at,
            what: "field name",
            reason: error.to_string(),
        })?;
        let field = decode_field(reader, change_hlc)?;
        if fields.insert(name.to_owned(), field).is_some() {
            return Err(DecodeError::Invalid { at, what: "field name", reason: format!("duplicate field {name:?}") });
        }
    }
    reader.leave();
    let n_members = reader.array_max(batch_max, "members")?;
    let mut members = BTreeMap::new();
    for _ in 0..n_members {
        let at = reader.position();
        let member_len = reader.record(3, "member")?;
        let value = Value::decode(reader)?;
        let adds = decode_tags(reader, change_hlc, "member adds")?;
        let removes = decode_tags(reader, change_hlc, "member removes")?;
        reader.skip_extra(member_len - 3)?;
        if adds.is_empty() && removes.is_empty() {
            return Err(DecodeError::Invalid {
                at,
                what: "member",
                reason: "a member needs at least one tag".to_owned(),
            });
        }
        match members.entry(encoding_of(&value)) {
            Entry::Occupied(_) => {
                return Err(DecodeError::Invalid { at, what: "member", reason: "duplicate element".to_owned() });
            }
            Entry::Vacant(slot) => {
                slot.insert(MemberState { value, adds, removes });
            }
        }
    }
    reader.leave();
    reader.skip_extra(len - 4)?;
    Ok(RecordState { presence, deleted, fields, members })
}

fn decode_tags(
    reader: &mut Reader<'_>,
    change_hlc: Hlc,
    what: &'static str,
) -> Result<std::collections::BTreeSet<Hlc>, DecodeError> {
    let len = reader.array_max(reader.limits().batch_len_max, what)?;
    let mut tags = std::collections::BTreeSet::new();
    for _ in 0..len {
        tags.insert(decode_hlc_ref(reader, change_hlc, what)?);
    }
    reader.leave();
    Ok(tags)
}

fn decode_field(reader: &mut Reader<'_>, change_hlc: Hlc) -> Result<FieldState, DecodeError> {
    let at = reader.position();
    let len = reader.record(2, "field")?;
    let register = if reader.take_nil() {
        None
    } else {
        let register_len = reader.record(2, "register")?;
        let value = Value::decode(reader)?;
        let hlc = decode_hlc_ref(reader, change_hlc, "register hlc")?;
        reader.skip_extra(register_len - 2)?;
        Some(Register { value, hlc })
    };
    let counter = if reader.take_nil() { None } else { Some(Box::new(decode_counter(reader, change_hlc)?)) };
    reader.skip_extra(len - 2)?;
    if register.is_none() && counter.is_none() {
        return Err(DecodeError::Invalid {
            at,
            what: "field",
            reason: "a field needs a register or a counter".to_owned(),
        });
    }
    Ok(FieldState { register, counter })
}

fn decode_counter(reader: &mut Reader<'_>, change_hlc: Hlc) -> Result<CounterState, DecodeError> {
    let len = reader.record(2, "counter")?;
    let n_totals = reader.array_max(reader.limits().batch_len_max, "counter totals")?;
    let mut totals = BTreeMap::new();
    for _ in 0..n_totals {
        let at = reader.position();
        let total_len = reader.record(4, "counter total")?;
        let node = NodeId(reader.u64("counter node")?);
        let increments = reader.u64("counter increments")?;
        let decrements = reader.u64("counter decrements")?;
        let hlc = decode_hlc_ref(reader, change_hlc, "counter hlc")?;
        reader.skip_extra(total_len - 4)?;
        if totals.insert(node, NodeTotal { increments, decrements, hlc }).is_some() {
            return Err(DecodeError::Invalid { at, what: "counter total", reason: format!("duplicate node {node}") });
        }
    }
    reader.leave();
    let base = if reader.take_nil() {
        None
    } else {
        let base_len = reader.record(2, "counter base")?;
        let hlc = decode_hlc_ref(reader, change_hlc, "counter base hlc")?;
        let n_observed = reader.array_max(reader.limits().batch_len_max, "counter base totals")?;
        let mut observed = BTreeMap::new();
        for _ in 0..n_observed {
            let at = reader.position();
            let entry_len = reader.record(3, "counter base total")?;
            let node = NodeId(reader.u64("counter node")?);
            let increments = reader.u64("counter increments")?;
            let decrements = reader.u64("counter decrements")?;
            reader.skip_extra(entry_len - 3)?;
            if observed.insert(node, (increments, decrements)).is_some() {
                return Err(DecodeError::Invalid {
                    at,
                    what: "counter base total",
                    reason: format!("duplicate node {node}"),
                });
            }
        }
        reader.leave();
        reader.skip_extra(base_len - 2)?;
        Some(CounterBase { hlc, observed })
    };
    reader.skip_extra(len - 2)?;
    if totals.is_empty() && base.is_none() {
        return Err(DecodeError::Invalid {
            at: reader.position(),
            what: "counter",
            reason: "a counter needs totals or a base".to_owned(),
        });
    }
    Ok(CounterState { totals, base })
}
