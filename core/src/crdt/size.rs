//! How large a record is: its entries (fields, set members, counter totals, set tags —
//! every element of a list or map in its encoding) and an estimate of its encoded bytes.
//!
//! Decoders refuse lists longer than their limit and frames larger than theirs, so a
//! record past those sizes could be stored but never sent to a client. Writers check
//! the merged record against [`RecordLimits`] before a write is accepted.

use super::record::RecordState;
use crate::value::Value;

/// Bytes an HLC takes in the encoding (wall, counter, node), rounded up.
const HLC_BYTES: usize = 24;

/// The size of a record state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordSize {
    /// Fields, set members, counter totals and set tags.
    pub entries: usize,
    /// An upper estimate of the encoded size in bytes.
    pub bytes: usize,
}

impl RecordSize {
    /// The sum of two sizes: an upper bound of the size of the two states merged (a
    /// merge keeps a subset of the components of both).
    pub fn plus(self, other: RecordSize) -> RecordSize {
        RecordSize { entries: self.entries + other.entries, bytes: self.bytes + other.bytes }
    }
}

/// How large one record may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLimits {
    /// Most entries (see [`RecordSize::entries`]).
    pub entries_max: usize,
    /// Most estimated encoded bytes.
    pub bytes_max: usize,
}

/// Default [`RecordLimits::entries_max`]: half the default list limit of a decoder.
pub const RECORD_ENTRIES_MAX_DEFAULT: usize = 5_000;
/// Default [`RecordLimits::bytes_max`]: a quarter of the default frame limit, so a
/// record always fits a page of changes.
pub const RECORD_BYTES_MAX_DEFAULT: usize = 1 << 20;

impl Default for RecordLimits {
    fn default() -> RecordLimits {
        RecordLimits { entries_max: RECORD_ENTRIES_MAX_DEFAULT, bytes_max: RECORD_BYTES_MAX_DEFAULT }
    }
}

impl RecordLimits {
    /// Why `size` is past these limits, if it is.
    pub fn exceeded_by(&self, size: RecordSize) -> Option<String> {
        if size.entries > self.entries_max {
            return Some(format!(
                "{} entries (fields, set members and tags, counter totals), at most {}",
                size.entries, self.entries_max
            ));
        }
        if size.bytes > self.bytes_max {
            return Some(format!("about {} bytes, at most {}", size.bytes, self.bytes_max));
        }
        None
    }
}

/// An upper estimate of a value's encoded bytes, walked with an explicit stack.
pub fn value_bytes(value: &Value) -> usize {
    let mut bytes = 0;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        bytes += match value {
            Value::Null | Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) => 9,
            Value::String(text) => 5 + text.len(),
            Value::Bytes(data) => 5 + data.len(),
            Value::Array(items) => {
                stack.extend(items);
                5
            }
            Value::Object(fields) => {
                stack.extend(fields.values());
                5 + fields.keys().map(|key| 5 + key.len()).sum::<usize>()
            }
        };
    }
    bytes
}

impl RecordState {
    /// How large this state is (see [`RecordSize`]).
    pub fn size(&self) -> RecordSize {
        let mut size = RecordSize { entries: 0, bytes: 2 * HLC_BYTES };
        for (name, field) in self.fields.iter() {
            size.entries += 1;
            size.bytes += 5 + name.len();
            if let Some(register) = &field.register {
                size.bytes += HLC_BYTES + value_bytes(&register.value);
            }
            if let Some(counter) = &field.counter {
                size.entries += counter.totals.len();
                size.bytes += (counter.totals.len() + 1) * (HLC_BYTES + 27);
            }
        }
        for member in self.members.values() {
            let tags = member.adds.len() + member.removes.len();
            size.entries += 1 + tags;
            size.bytes += 2 * value_bytes(&member.value) + tags * HLC_BYTES;
        }
        size
    }
}
