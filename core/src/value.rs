//! JSON-like values stored in records, with their canonical MessagePack encoding.
//!
//! Canonical means one value has exactly one encoding: integers in their shortest form,
//! floats always as float64, object keys sorted by their UTF-8 bytes. Equal values
//! therefore encode to equal bytes, which the set CRDT relies on (an element's identity is
//! its encoding) and the LWW tie rule uses (greater encoding wins an exact HLC tie).

use std::collections::BTreeMap;

use base64::Engine;

use crate::codec::{DecodeError, Kind, Reader, Writer};

/// A record value: null, bool, 64-bit integer, 64-bit float, string, bytes, array, object.
#[derive(Clone, Debug)]
pub enum Value {
    /// JSON null.
    Null,
    /// true / false.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float. Compared bit for bit: `NaN == NaN`, `0.0 != -0.0`.
    Float(f64),
    /// A UTF-8 string.
    String(String),
    /// Raw bytes (JSON form: `{"$bytes": "<base64>"}`).
    Bytes(Vec<u8>),
    /// An ordered list.
    Array(Vec<Value>),
    /// String keys to values, kept sorted.
    Object(BTreeMap<String, Value>),
}

/// An object's fields: what `put` and `update` take and what a record reads as.
pub type Document = BTreeMap<String, Value>;

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => a == b,
            (Value::Object(a), Value::Object(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl From<&str> for Value {
    fn from(value: &str) -> Value {
        Value::String(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Value {
        Value::String(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Value {
        Value::Int(value)
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Value {
        Value::Float(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Value {
        Value::Bool(value)
    }
}

/// Key that marks the JSON form of a byte string.
pub const JSON_BYTES_KEY: &str = "$bytes";

/// A JSON value that has no Weft equivalent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// A number that is neither an `i64` nor a finite `f64` (e.g. `u64::MAX`).
    #[error("number {0} does not fit a 64-bit integer or float")]
    NumberOutOfRange(String),
    /// A `{"$bytes": ...}` object whose payload is not base64.
    #[error("\"$bytes\" value is not valid base64: {0}")]
    InvalidBytes(String),
}

impl Value {
    /// The name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// Appends the canonical encoding of this value.
    pub fn encode(&self, writer: &mut Writer) {
        match self {
            Value::Null => writer.nil(),
            Value::Bool(value) => writer.bool(*value),
            Value::Int(value) => writer.int(*value),
            Value::Float(value) => writer.f64(*value),
            Value::String(value) => writer.str(value),
            Value::Bytes(value) => writer.bin(value),
            Value::Array(items) => {
                writer.array_len(items.len());
                for item in items {
                    item.encode(writer);
                }
            }
            Value::Object(fields) => encode_document(fields, writer),
        }
    }

    /// The canonical encoding as a byte vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut writer = Writer::new();
        self.encode(&mut writer);
        writer.into_bytes()
    }

    /// Reads one value. Accepts any integer width and float32, refuses ext types,
    /// non-string map keys, duplicate keys and anything beyond the reader's limits.
    pub fn decode(reader: &mut Reader<'_>) -> Result<Value, DecodeError> {
        const WHAT: &str = "value";
        let at = reader.position();
        Ok(match reader.peek_kind(WHAT)? {
            Kind::Nil => {
                reader.take_nil();
                Value::Null
            }
            Kind::Bool => Value::Bool(reader.bool(WHAT)?),
            Kind::Int => Value::Int(reader.i64(WHAT)?),
            Kind::Float => Value::Float(reader.f64(WHAT)?),
            Kind::Str => Value::String(reader.str(WHAT)?.to_owned()),
            Kind::Bin => Value::Bytes(reader.bin(WHAT)?.to_vec()),
            Kind::Array => {
                let len = reader.array_max(reader.limits().batch_len_max, "array value")?;
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(Value::decode(reader)?);
                }
                reader.leave();
                Value::Array(items)
            }
            Kind::Map => Value::Object(decode_document(reader)?),
            Kind::Unsupported => {
                return Err(DecodeError::Invalid {
                    at,
                    what: WHAT,
                    reason: "MessagePack ext types are not Weft values".to_owned(),
                });
            }
        })
    }

    /// Converts a JSON value. Numbers become `Int` when they are integers that fit `i64`,
    /// otherwise `Float`; `{"$bytes": "<base64>"}` becomes `Bytes`.
    pub fn from_json(json: &serde_json::Value) -> Result<Value, JsonError> {
        Ok(match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(value) => Value::Bool(*value),
            serde_json::Value::Number(number) => {
                if let Some(int) = number.as_i64() {
                    Value::Int(int)
                } else if let Some(float) = number.as_f64().filter(|f| f.is_finite()) {
                    if number.is_u64() {
                        return Err(JsonError::NumberOutOfRange(number.to_string()));
                    }
                    Value::Float(float)
                } else {
                    return Err(JsonError::NumberOutOfRange(number.to_string()));
                }
            }
            serde_json::Value::String(value) => Value::String(value.clone()),
            serde_json::Value::Array(items) => {
                Value::Array(items.iter().map(Value::from_json).collect::<Result<_, _>>()?)
            }
            serde_json::Value::Object(fields) => {
                if fields.len() == 1
                    && let Some(serde_json::Value::String(encoded)) = fields.get(JSON_BYTES_KEY)
                {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .map_err(|error| JsonError::InvalidBytes(error.to_string()))?;
                    return Ok(Value::Bytes(bytes));
                }
                let mut document = Document::new();
                for (name, value) in fields {
                    document.insert(name.clone(), Value::from_json(value)?);
                }
                Value::Object(document)
            }
        })
    }

    /// Converts to JSON. Non-finite floats become `null` (JSON has no NaN or infinity);
    /// bytes become `{"$bytes": "<base64>"}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(value) => serde_json::Value::Bool(*value),
            Value::Int(value) => serde_json::Value::from(*value),
            Value::Float(value) => {
                serde_json::Number::from_f64(*value).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
            Value::String(value) => serde_json::Value::String(value.clone()),
            Value::Bytes(value) => {
                let mut object = serde_json::Map::new();
                let encoded = base64::engine::general_purpose::STANDARD.encode(value);
                object.insert(JSON_BYTES_KEY.to_owned(), serde_json::Value::String(encoded));
                serde_json::Value::Object(object)
            }
            Value::Array(items) => serde_json::Value::Array(items.iter().map(Value::to_json).collect()),
            Value::Object(fields) => document_to_json(fields),
        }
    }
}

/// Appends the canonical encoding of an object.
pub fn encode_document(fields: &Document, writer: &mut Writer) {
    writer.map_len(fields.len());
    for (name, value) in fields {
        writer.str(name);
        value.encode(writer);
    }
}

/// Reads an object (string keys, no duplicates).
pub fn decode_document(reader: &mut Reader<'_>) -> Result<Document, DecodeError> {
    let len = reader.map("object value")?;
    if len > reader.limits().batch_len_max {
        return Err(DecodeError::BatchTooLarge {
            at: reader.position(),
            what: "object value",
            len,
            max: reader.limits().batch_len_max,
        });
    }
    let mut fields = Document::new();
    for _ in 0..len {
        let at = reader.position();
        let name = reader.str("object key")?;
        let value = Value::decode(reader)?;
        if fields.insert(name.to_owned(), value).is_some() {
            return Err(DecodeError::Invalid { at, what: "object key", reason: format!("duplicate key {name:?}") });
        }
    }
    reader.leave();
    Ok(fields)
}

/// Converts a document to a JSON object.
pub fn document_to_json(fields: &Document) -> serde_json::Value {
    serde_json::Value::Object(fields.iter().map(|(name, value)| (name.clone(), value.to_json())).collect())
}
