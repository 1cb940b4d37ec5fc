//! Subscription shapes: the subset of a collection a subscription syncs.
//!
//! A shape is a conjunction of top-level field equalities (`owner == "alice" AND
//! list == "groceries"`): enough for the per-user and per-list partial replication most
//! apps need. The query issue's full predicates will extend it; the wire form (a map of
//! field to value) stays readable by this revision as the equality subset.

use crate::codec::{DecodeError, Reader, Writer};
use crate::key::validate_field_name;
use crate::value::{Document, Value, decode_document, encode_document};

/// Most conditions in one shape.
pub const SHAPE_CONDITIONS_MAX: usize = 32;

/// Records whose fields equal all of `equals` (an empty shape matches every record).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shape {
    /// Field name → the value it must equal. A record lacking the field does not match.
    pub equals: Document,
}

impl Shape {
    /// Whether a record's document is inside the shape.
    pub fn matches(&self, document: &Document) -> bool {
        self.equals.iter().all(|(field, value)| document.get(field) == Some(value))
    }

    /// Appends the wire form: a map of field to value.
    pub fn encode(&self, writer: &mut Writer) {
        encode_document(&self.equals, writer);
    }

    /// Reads the wire form; refuses more than [`SHAPE_CONDITIONS_MAX`] conditions and
    /// invalid field names.
    pub fn decode(reader: &mut Reader<'_>) -> Result<Shape, DecodeError> {
        let at = reader.position();
        let equals = decode_document(reader)?;
        if equals.len() > SHAPE_CONDITIONS_MAX {
            return Err(DecodeError::Invalid {
                at,
                what: "shape",
                reason: format!("{} conditions, at most {SHAPE_CONDITIONS_MAX} allowed", equals.len()),
            });
        }
        if let Some((field, error)) =
            equals.keys().find_map(|field| validate_field_name(field).err().map(|error| (field, error)))
        {
            return Err(DecodeError::Invalid { at, what: "shape", reason: format!("field {field:?}: {error}") });
        }
        Ok(Shape { equals })
    }
}

impl<const N: usize> From<[(&str, Value); N]> for Shape {
    fn from(conditions: [(&str, Value); N]) -> Shape {
        Shape { equals: conditions.into_iter().map(|(field, value)| (field.to_owned(), value)).collect() }
    }
}
