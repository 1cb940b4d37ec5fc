//! Field paths: `title`, or `address.city` for a field inside an object field.

use std::fmt;

use crate::value::{Document, Value};

/// Most segments in one path.
pub const PATH_SEGMENTS_MAX: usize = 16;

/// A top-level field, or a field nested inside object values (`a.b.c`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    /// Parses `a.b.c`; segments must be non-empty.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!("field path {text:?} has an empty segment"));
        }
        if segments.len() > PATH_SEGMENTS_MAX {
            return Err(format!("field path {text:?} is deeper than {PATH_SEGMENTS_MAX} segments"));
        }
        Ok(FieldPath(segments))
    }

    /// A top-level field.
    pub fn field(name: &str) -> FieldPath {
        FieldPath(vec![name.to_owned()])
    }

    /// The segments.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The value at this path in `document`, if every segment exists (a segment through
    /// a non-object value does not exist).
    pub fn lookup<'a>(&self, document: &'a Document) -> Option<&'a Value> {
        let (first, rest) = self.0.split_first()?;
        let mut value = document.get(first)?;
        for segment in rest {
            match value {
                Value::Object(fields) => value = fields.get(segment)?,
                _ => return None,
            }
        }
        Some(value)
    }

    /// Copies the value at this path from `from` into `into`, creating the objects on the
    /// way (used by projections).
    pub fn copy(&self, from: &Document, into: &mut Document) {
        let Some(value) = self.lookup(from) else { return };
        let (last, parents) = match self.0.split_last() {
            Some(split) => split,
            None => return,
        };
        let mut target = into;
        for segment in parents {
            let slot = target.entry(segment.clone()).or_insert_with(|| Value::Object(Document::new()));
            if !matches!(slot, Value::Object(_)) {
                *slot = Value::Object(Document::new());
            }
            let Value::Object(inner) = slot else { return };
            target = inner;
        }
        target.insert(last.clone(), value.clone());
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}
