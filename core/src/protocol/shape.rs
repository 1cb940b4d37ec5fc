//! Subscription shapes: the subset of a collection a subscription syncs — any query
//! predicate ([`crate::query::Predicate`]), evaluated on each record the server would
//! send.
//!
//! Wire form: a predicate is `[op, ...]` (see [`encode_predicate`]); the earlier form, a
//! map of field to value meaning "all these fields equal these values", is still read
//! and is written whenever the predicate is such a conjunction of equalities.

use crate::codec::{DecodeError, Kind, Reader, Writer};
use crate::key::validate_field_name;
use crate::query::{FieldPath, Predicate};
use crate::value::{Document, Value, decode_document, encode_document};

/// Most conditions in one shape.
pub const SHAPE_CONDITIONS_MAX: usize = 64;

/// Records matching a predicate (`Predicate::True`: every record).
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// The condition a record must meet to be synced.
    pub predicate: Predicate,
}

const TRUE: u64 = 0;
const EQ: u64 = 1;
const NE: u64 = 2;
const LT: u64 = 3;
const LE: u64 = 4;
const GT: u64 = 5;
const GE: u64 = 6;
const IN: u64 = 7;
const PREFIX: u64 = 8;
const CONTAINS: u64 = 9;
const EXISTS: u64 = 10;
const AND: u64 = 11;
const OR: u64 = 12;
const NOT: u64 = 13;

impl Shape {
    /// Records whose fields equal all of `equals`.
    pub fn equals(equals: Document) -> Shape {
        let conditions =
            equals.into_iter().map(|(field, value)| Predicate::Eq(FieldPath::field(&field), value)).collect();
        Shape { predicate: Predicate::And(conditions) }
    }

    /// Whether a record's document is inside the shape.
    pub fn matches(&self, document: &Document) -> bool {
        self.predicate.matches(document)
    }

    /// The equalities, when the predicate is a conjunction of top-level `eq`s (the map
    /// wire form).
    fn as_equalities(&self) -> Option<Document> {
        let Predicate::And(items) = &self.predicate else { return None };
        let mut equals = Document::new();
        for item in items {
            let Predicate::Eq(path, value) = item else { return None };
            let [field] = path.segments() else { return None };
            // Only fields in increasing order: the map form reads back as exactly this
            // predicate.
            if equals.last_key_value().is_some_and(|(last, _)| last >= field) {
                return None;
            }
            equals.insert(field.clone(), value.clone());
        }
        Some(equals)
    }

    /// Appends the wire form.
    pub fn encode(&self, writer: &mut Writer) {
        match self.as_equalities() {
            Some(equals) => encode_document(&equals, writer),
            None => encode_predicate(&self.predicate, writer),
        }
    }

    /// Reads the wire form (either form); refuses more than [`SHAPE_CONDITIONS_MAX`]
    /// conditions and invalid field names.
    pub fn decode(reader: &mut Reader<'_>) -> Result<Shape, DecodeError> {
        let at = reader.position();
        if reader.peek_kind("shape")? == Kind::Map {
            let equals = decode_document(reader)?;
            if equals.len() > SHAPE_CONDITIONS_MAX {
                return Err(invalid(
                    at,
                    format!("{} conditions, at most {SHAPE_CONDITIONS_MAX} allowed", equals.len()),
                ));
            }
            if let Some((field, error)) =
                equals.keys().find_map(|field| validate_field_name(field).err().map(|error| (field, error)))
            {
                return Err(invalid(at, format!("field {field:?}: {error}")));
            }
            return Ok(Shape::equals(equals));
        }
        let mut budget = SHAPE_CONDITIONS_MAX;
        Ok(Shape { predicate: decode_predicate(reader, &mut budget)? })
    }
}

fn invalid(at: usize, reason: String) -> DecodeError {
    DecodeError::Invalid { at, what: "shape", reason }
}

impl<const N: usize> From<[(&str, Value); N]> for Shape {
    fn from(conditions: [(&str, Value); N]) -> Shape {
        Shape::equals(conditions.into_iter().map(|(field, value)| (field.to_owned(), value)).collect())
    }
}

impl From<Predicate> for Shape {
    fn from(predicate: Predicate) -> Shape {
        Shape { predicate }
    }
}

/// Appends a predicate: `[op]`, `[op, path, value]`, `[op, path, [values]]`,
/// `[op, path, text]`, `[op, path]`, `[op, [predicates]]` or `[op, predicate]` — ops
/// 0 true, 1 eq, 2 ne, 3 lt, 4 le, 5 gt, 6 ge, 7 in, 8 prefix, 9 contains, 10 exists,
/// 11 and, 12 or, 13 not; paths as dotted strings.
pub fn encode_predicate(predicate: &Predicate, writer: &mut Writer) {
    let compare = |writer: &mut Writer, op: u64, path: &FieldPath, value: &Value| {
        writer.array_len(3);
        writer.uint(op);
        writer.str(&path.to_string());
        value.encode(writer);
    };
    match predicate {
        Predicate::True => {
            writer.array_len(1);
            writer.uint(TRUE);
        }
        Predicate::Eq(p, v) => compare(writer, EQ, p, v),
        Predicate::Ne(p, v) => compare(writer, NE, p, v),
        Predicate::Lt(p, v) => compare(writer, LT, p, v),
        Predicate::Le(p, v) => compare(writer, LE, p, v),
        Predicate::Gt(p, v) => compare(writer, GT, p, v),
        Predicate::Ge(p, v) => compare(writer, GE, p, v),
        Predicate::Contains(p, v) => compare(writer, CONTAINS, p, v),
        Predicate::In(p, values) => {
            writer.array_len(3);
            writer.uint(IN);
            writer.str(&p.to_string());
            writer.array_len(values.len());
            for value in values {
                value.encode(writer);
            }
        }
        Predicate::Prefix(p, text) => {
            writer.array_len(3);
            writer.uint(PREFIX);
            writer.str(&p.to_string());
            writer.str(text);
        }
        Predicate::Exists(p) => {
            writer.array_len(2);
            writer.uint(EXISTS);
            writer.str(&p.to_string());
        }
        Predicate::And(items) | Predicate::Or(items) => {
            writer.array_len(2);
            writer.uint(if matches!(predicate, Predicate::And(_)) { AND } else { OR });
            writer.array_len(items.len());
            for item in items {
                encode_predicate(item, writer);
            }
        }
        Predicate::Not(inner) => {
            writer.array_len(2);
            writer.uint(NOT);
            encode_predicate(inner, writer);
        }
    }
}

fn decode_path(reader: &mut Reader<'_>) -> Result<FieldPath, DecodeError> {
    let at = reader.position();
    let text = reader.str_max(crate::key::FIELD_NAME_BYTES_MAX * 4, "shape field")?;
    FieldPath::parse(text).map_err(|reason| invalid(at, reason))
}

/// Reads a predicate written by [`encode_predicate`], spending one unit of `budget` per
/// condition.
pub fn decode_predicate(reader: &mut Reader<'_>, budget: &mut usize) -> Result<Predicate, DecodeError> {
    let at = reader.position();
    if *budget == 0 {
        return Err(invalid(at, format!("more than {SHAPE_CONDITIONS_MAX} conditions")));
    }
    *budget -= 1;
    let len = reader.record(1, "shape condition")?;
    let op = reader.u64("shape operator")?;
    let need = match op {
        TRUE => 1,
        EXISTS | AND | OR | NOT => 2,
        EQ..=CONTAINS => 3,
        other => return Err(invalid(at, format!("unknown shape operator {other}"))),
    };
    if len < need {
        return Err(invalid(at, format!("operator {op} needs {} fields, found {}", need - 1, len - 1)));
    }
    let predicate = match op {
        TRUE => Predicate::True,
        EQ | NE | LT | LE | GT | GE | CONTAINS => {
            let path = decode_path(reader)?;
            let value = Value::decode(reader)?;
            match op {
                EQ => Predicate::Eq(path, value),
                NE => Predicate::Ne(path, value),
                LT => Predicate::Lt(path, value),
                LE => Predicate::Le(path, value),
                GT => Predicate::Gt(path, value),
                GE => Predicate::Ge(path, value),
                _ => Predicate::Contains(path, value),
            }
        }
        IN => {
            let path = decode_path(reader)?;
            let count = reader.array_max(SHAPE_CONDITIONS_MAX * 4, "shape values")?;
            let mut values = Vec::with_capacity(count);
            for _ in 0..count {
                values.push(Value::decode(reader)?);
            }
            reader.leave();
            Predicate::In(path, values)
        }
        PREFIX => {
            let path = decode_path(reader)?;
            Predicate::Prefix(path, reader.str("shape prefix")?.to_owned())
        }
        EXISTS => Predicate::Exists(decode_path(reader)?),
        AND | OR => {
            let count = reader.array_max(SHAPE_CONDITIONS_MAX, "shape conditions")?;
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(decode_predicate(reader, budget)?);
            }
            reader.leave();
            if op == AND { Predicate::And(items) } else { Predicate::Or(items) }
        }
        _ => Predicate::Not(Box::new(decode_predicate(reader, budget)?)),
    };
    reader.skip_extra(len - need)?;
    Ok(predicate)
}
