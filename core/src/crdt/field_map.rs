//! [`FieldMap`]: a record's fields, as two parallel vectors sorted by name.
//!
//! Records have a handful of fields and a change usually touches one, so sorted vectors
//! beat a `BTreeMap` here: a one-field change allocates nothing (one field is stored
//! inline) instead of a 1 KiB tree node.
//!
//! The merge hot path is bound by cache misses, not instructions, so names (inline
//! strings, no pointer to chase) are kept apart from the states: finding a field scans a
//! few contiguous cache lines of names, then reads one state.

use compact_str::CompactString;
use smallvec::SmallVec;

use super::record::FieldState;

/// A field name: inline up to 24 bytes.
pub type FieldName = CompactString;

/// Capacity reserved when a map first outgrows its inline slot.
const SPILL_CAPACITY: usize = 8;

/// Up to this many fields, lookups scan linearly (faster than bisecting short arrays).
const LINEAR_SCAN_MAX: usize = 16;

/// Field name → state, sorted by name, names unique.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldMap {
    // One field inline: the delta of a typical write (one field) allocates nothing.
    names: SmallVec<[FieldName; 1]>,
    states: SmallVec<[FieldState; 1]>,
}

impl FieldMap {
    /// An empty map.
    pub fn new() -> FieldMap {
        FieldMap { names: SmallVec::new(), states: SmallVec::new() }
    }

    /// Prefetches the names and states, ahead of a merge into this map (see
    /// `Collection::apply_batch`).
    pub(crate) fn prefetch(&self) {
        crate::prefetch::slice(&self.names);
        crate::prefetch::slice(&self.states);
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        if self.names.len() <= LINEAR_SCAN_MAX {
            for (i, candidate) in self.names.iter().enumerate() {
                match candidate.as_str().cmp(name) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => return Ok(i),
                    std::cmp::Ordering::Greater => return Err(i),
                }
            }
            return Err(self.names.len());
        }
        self.names.binary_search_by(|n| n.as_str().cmp(name))
    }

    fn insert_at(&mut self, i: usize, name: FieldName, field: FieldState) {
        if self.names.len() == 1 {
            // Leaving the inline slot: records usually have several fields, so skip the
            // 2- and 4-slot steps of doubling (each a reallocation and a copy).
            self.names.reserve(SPILL_CAPACITY - 1);
            self.states.reserve(SPILL_CAPACITY - 1);
        }
        self.names.insert(i, name);
        self.states.insert(i, field);
    }

    /// The field named `name`.
    pub fn get(&self, name: &str) -> Option<&FieldState> {
        self.find(name).ok().map(|i| &self.states[i])
    }

    /// The field named `name`, mutably.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut FieldState> {
        self.find(name).ok().map(|i| &mut self.states[i])
    }

    /// Sets a field; returns the previous state.
    pub fn insert(&mut self, name: impl Into<FieldName>, field: FieldState) -> Option<FieldState> {
        let name = name.into();
        match self.find(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.states[i], field)),
            Err(i) => {
                self.insert_at(i, name, field);
                None
            }
        }
    }

    /// The field named `name`, inserted empty if absent.
    pub fn get_or_default(&mut self, name: impl Into<FieldName>) -> &mut FieldState {
        let name = name.into();
        let i = match self.find(&name) {
            Ok(i) => i,
            Err(i) => {
                self.insert_at(i, name, FieldState::default());
                i
            }
        };
        &mut self.states[i]
    }

    /// Fields in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldState)> {
        self.names.iter().map(CompactString::as_str).zip(&self.states)
    }

    /// Field states in name order.
    pub fn values(&self) -> impl Iterator<Item = &FieldState> {
        self.states.iter()
    }

    /// Keeps the fields for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &mut FieldState) -> bool) {
        let mut i = 0;
        while i < self.names.len() {
            if keep(&self.names[i], &mut self.states[i]) {
                i += 1;
            } else {
                self.names.remove(i);
                self.states.remove(i);
            }
        }
    }
}

impl IntoIterator for FieldMap {
    type Item = (FieldName, FieldState);
    type IntoIter = std::iter::Zip<smallvec::IntoIter<[FieldName; 1]>, smallvec::IntoIter<[FieldState; 1]>>;

    fn into_iter(self) -> Self::IntoIter {
        self.names.into_iter().zip(self.states)
    }
}

impl<N: Into<FieldName>> Extend<(N, FieldState)> for FieldMap {
    fn extend<I: IntoIterator<Item = (N, FieldState)>>(&mut self, iter: I) {
        for (name, field) in iter {
            self.insert(name, field);
        }
    }
}

impl<N: Into<FieldName>> FromIterator<(N, FieldState)> for FieldMap {
    fn from_iter<I: IntoIterator<Item = (N, FieldState)>>(iter: I) -> FieldMap {
        let mut map = FieldMap::new();
        map.extend(iter);
        map
    }
}
