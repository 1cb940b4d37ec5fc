//! The query model as JSON — what `POST /v1/query` and the JavaScript client send.
//!
//! ```json
//! {"collection": "todos",
//!  "where": {"and": [{"eq": {"done": false}}, {"gt": {"priority": 2}}]},
//!  "order_by": [{"field": "created", "desc": true, "nulls": "last"}, "title"],
//!  "limit": 20, "offset": 0,
//!  "after": {"values": [1700000000000], "key": "t9"},
//!  "select": ["title", "address.city"]}
//! ```
//!
//! Operators: `eq`, `ne`, `lt`, `le`, `gt`, `ge` (`{"op": {"field": value}}`), `in`
//! (`{"in": {"field": [values]}}`), `prefix` and `contains` (`{"prefix": {"field":
//! "text"}}`), `exists` (`{"exists": "field"}`), `and`/`or` (lists), `not` (one
//! predicate). A sort key is a field name (`"-created"` for descending) or an object.

use super::model::{Keyset, Nulls, OrderBy, Query};
use super::path::FieldPath;
use super::predicate::Predicate;
use crate::key::{CollectionName, RecordKey};
use crate::value::Value;

/// Most nodes in one predicate.
pub const PREDICATE_NODES_MAX: usize = 256;
/// Deepest nesting of `and`/`or`/`not`.
pub const PREDICATE_DEPTH_MAX: usize = 32;

/// A query that cannot be read, naming where in the JSON the problem is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("query {at}: {message}")]
pub struct QueryJsonError {
    /// Where: a path like `where.and[1].gt`.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

fn error(at: &str, message: impl Into<String>) -> QueryJsonError {
    QueryJsonError { at: at.to_owned(), message: message.into() }
}

fn value(json: &serde_json::Value, at: &str) -> Result<Value, QueryJsonError> {
    Value::from_json(json).map_err(|e| error(at, e.to_string()))
}

fn path(text: &str, at: &str) -> Result<FieldPath, QueryJsonError> {
    FieldPath::parse(text).map_err(|e| error(at, e))
}

/// The single `{"field": operand}` entry of a comparison.
fn single<'a>(json: &'a serde_json::Value, at: &str) -> Result<(FieldPath, &'a serde_json::Value), QueryJsonError> {
    match json.as_object() {
        Some(object) if object.len() == 1 => {
            let (field, operand) = object.iter().next().ok_or_else(|| error(at, "empty"))?;
            Ok((path(field, at)?, operand))
        }
        _ => Err(error(at, "expected an object with exactly one field, e.g. {\"priority\": 3}")),
    }
}

struct Budget {
    nodes: usize,
}

fn predicate(
    json: &serde_json::Value,
    at: &str,
    depth: usize,
    budget: &mut Budget,
) -> Result<Predicate, QueryJsonError> {
    budget.nodes += 1;
    if budget.nodes > PREDICATE_NODES_MAX {
        return Err(error(at, format!("more than {PREDICATE_NODES_MAX} conditions")));
    }
    if depth > PREDICATE_DEPTH_MAX {
        return Err(error(at, format!("nested deeper than {PREDICATE_DEPTH_MAX}")));
    }
    let object = json
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| error(at, "expected one operator, e.g. {\"eq\": {\"done\": false}}"))?;
    let (op, operand) = object.iter().next().ok_or_else(|| error(at, "empty"))?;
    let here = format!("{at}.{op}");
    let comparison = |make: fn(FieldPath, Value) -> Predicate| -> Result<Predicate, QueryJsonError> {
        let (field, operand) = single(operand, &here)?;
        Ok(make(field, value(operand, &here)?))
    };
    let list = |budget: &mut Budget| -> Result<Vec<Predicate>, QueryJsonError> {
        let items = operand.as_array().ok_or_else(|| error(&here, "expected a list of predicates"))?;
        items.iter().enumerate().map(|(i, item)| predicate(item, &format!("{here}[{i}]"), depth + 1, budget)).collect()
    };
    Ok(match op.as_str() {
        "eq" => comparison(Predicate::Eq)?,
        "ne" => comparison(Predicate::Ne)?,
        "lt" => comparison(Predicate::Lt)?,
        "le" => comparison(Predicate::Le)?,
        "gt" => comparison(Predicate::Gt)?,
        "ge" => comparison(Predicate::Ge)?,
        "contains" => comparison(Predicate::Contains)?,
        "in" => {
            let (field, operand) = single(operand, &here)?;
            let items = operand.as_array().ok_or_else(|| error(&here, "expected a list of values"))?;
            Predicate::In(field, items.iter().map(|item| value(item, &here)).collect::<Result<_, _>>()?)
        }
        "prefix" => {
            let (field, operand) = single(operand, &here)?;
            let text = operand.as_str().ok_or_else(|| error(&here, "the prefix must be a string"))?;
            Predicate::Prefix(field, text.to_owned())
        }
        "exists" => {
            Predicate::Exists(path(operand.as_str().ok_or_else(|| error(&here, "expected a field name"))?, &here)?)
        }
        "and" => Predicate::And(list(budget)?),
        "or" => Predicate::Or(list(budget)?),
        "not" => Predicate::Not(Box::new(predicate(operand, &here, depth + 1, budget)?)),
        other => {
            return Err(error(
                at,
                format!(
                    "unknown operator {other:?} (eq, ne, lt, le, gt, ge, in, prefix, contains, exists, and, or, not)"
                ),
            ));
        }
    })
}

/// Reads a predicate alone (a subscription shape, a `where`).
pub fn predicate_from_json(json: &serde_json::Value) -> Result<Predicate, QueryJsonError> {
    predicate(json, "where", 0, &mut Budget { nodes: 0 })
}

fn order_by(json: &serde_json::Value, at: &str) -> Result<OrderBy, QueryJsonError> {
    if let Some(text) = json.as_str() {
        return Ok(match text.strip_prefix('-') {
            Some(field) => OrderBy::desc(path(field, at)?),
            None => OrderBy::asc(path(text, at)?),
        });
    }
    let object =
        json.as_object().ok_or_else(|| error(at, "expected a field name or {\"field\", \"desc\", \"nulls\"}"))?;
    if let Some(unknown) = object.keys().find(|k| !["field", "desc", "nulls"].contains(&k.as_str())) {
        return Err(error(at, format!("unknown key {unknown:?}")));
    }
    let field = object.get("field").and_then(|f| f.as_str()).ok_or_else(|| error(at, "`field` missing"))?;
    let descending = match object.get("desc") {
        None => false,
        Some(flag) => flag.as_bool().ok_or_else(|| error(at, "`desc` must be true or false"))?,
    };
    let nulls = match object.get("nulls").map(|n| n.as_str()) {
        None => None,
        Some(Some("first")) => Some(Nulls::First),
        Some(Some("last")) => Some(Nulls::Last),
        Some(_) => return Err(error(at, "`nulls` must be \"first\" or \"last\"")),
    };
    Ok(OrderBy { path: path(field, at)?, descending, nulls })
}

fn count(json: Option<&serde_json::Value>, at: &str) -> Result<Option<usize>, QueryJsonError> {
    match json {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(n) => n.as_u64().map(|n| Some(n as usize)).ok_or_else(|| error(at, "expected a whole number ≥ 0")),
    }
}

impl Query {
    /// Reads the JSON form.
    pub fn from_json(json: &serde_json::Value) -> Result<Query, QueryJsonError> {
        let object = json.as_object().ok_or_else(|| error("", "expected a JSON object"))?;
        const KEYS: [&str; 7] = ["collection", "where", "order_by", "limit", "offset", "after", "select"];
        if let Some(unknown) = object.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(error(unknown, format!("unknown key (expected one of {})", KEYS.join(", "))));
        }
        let name = object.get("collection").and_then(|c| c.as_str()).ok_or_else(|| error("collection", "missing"))?;
        let collection = CollectionName::new(name).map_err(|e| error("collection", e.to_string()))?;
        let filter = match object.get("where") {
            None | Some(serde_json::Value::Null) => Predicate::True,
            Some(json) => predicate_from_json(json)?,
        };
        let order_by = match object.get("order_by") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| order_by(item, &format!("order_by[{i}]")))
                .collect::<Result<_, _>>()?,
            Some(single) => vec![order_by(single, "order_by")?],
        };
        let after = match object.get("after") {
            None | Some(serde_json::Value::Null) => None,
            Some(after) => {
                let values =
                    after.get("values").and_then(|v| v.as_array()).ok_or_else(|| error("after.values", "missing"))?;
                let key = after.get("key").and_then(|k| k.as_str()).ok_or_else(|| error("after.key", "missing"))?;
                Some(Keyset {
                    values: values.iter().map(|v| value(v, "after.values")).collect::<Result<_, _>>()?,
                    key: RecordKey::new(key).map_err(|e| error("after.key", e.to_string()))?,
                })
            }
        };
        let select = match object.get("select") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Array(items)) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let at = format!("select[{i}]");
                        path(item.as_str().ok_or_else(|| error(&at, "expected a field name"))?, &at)
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err(error("select", "expected a list of field names")),
        };
        Ok(Query {
            collection,
            filter,
            order_by,
            limit: count(object.get("limit"), "limit")?,
            offset: count(object.get("offset"), "offset")?.unwrap_or(0),
            after,
            select,
        })
    }
}

/// A keyset cursor as JSON (`{"values": [...], "key": "..."}`), for the next request.
pub fn keyset_to_json(keyset: &Keyset) -> serde_json::Value {
    serde_json::json!({
        "values": keyset.values.iter().map(Value::to_json).collect::<Vec<_>>(),
        "key": keyset.key.as_str(),
    })
}

/// A predicate as JSON, the inverse of [`predicate_from_json`].
pub fn predicate_to_json(predicate: &Predicate) -> serde_json::Value {
    use serde_json::json;
    let field = |op: &str, path: &FieldPath, value: serde_json::Value| json!({ op: { path.to_string(): value } });
    match predicate {
        // An empty `and` holds for every record.
        Predicate::True => json!({ "and": [] }),
        Predicate::Eq(path, value) => field("eq", path, value.to_json()),
        Predicate::Ne(path, value) => field("ne", path, value.to_json()),
        Predicate::Lt(path, value) => field("lt", path, value.to_json()),
        Predicate::Le(path, value) => field("le", path, value.to_json()),
        Predicate::Gt(path, value) => field("gt", path, value.to_json()),
        Predicate::Ge(path, value) => field("ge", path, value.to_json()),
        Predicate::Contains(path, value) => field("contains", path, value.to_json()),
        Predicate::In(path, values) => field("in", path, values.iter().map(Value::to_json).collect()),
        Predicate::Prefix(path, text) => field("prefix", path, json!(text)),
        Predicate::Exists(path) => json!({ "exists": path.to_string() }),
        Predicate::And(items) => json!({ "and": items.iter().map(predicate_to_json).collect::<Vec<_>>() }),
        Predicate::Or(items) => json!({ "or": items.iter().map(predicate_to_json).collect::<Vec<_>>() }),
        Predicate::Not(inner) => json!({ "not": predicate_to_json(inner) }),
    }
}

impl Query {
    /// Writes the JSON form, the inverse of [`Query::from_json`] (how a query parsed
    /// from SQL in one place is handed to another, e.g. between two WASM modules).
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("collection".to_owned(), self.collection.as_str().into());
        if self.filter != Predicate::True {
            object.insert("where".to_owned(), predicate_to_json(&self.filter));
        }
        if !self.order_by.is_empty() {
            let keys = self
                .order_by
                .iter()
                .map(|key| {
                    let mut entry = serde_json::Map::new();
                    entry.insert("field".to_owned(), key.path.to_string().into());
                    entry.insert("desc".to_owned(), key.descending.into());
                    if let Some(nulls) = key.nulls {
                        let place = if nulls == Nulls::First { "first" } else { "last" };
                        entry.insert("nulls".to_owned(), place.into());
                    }
                    serde_json::Value::Object(entry)
                })
                .collect();
            object.insert("order_by".to_owned(), serde_json::Value::Array(keys));
        }
        if let Some(limit) = self.limit {
            object.insert("limit".to_owned(), limit.into());
        }
        if self.offset > 0 {
            object.insert("offset".to_owned(), self.offset.into());
        }
        if let Some(after) = &self.after {
            object.insert("after".to_owned(), keyset_to_json(after));
        }
        if let Some(select) = &self.select {
            object.insert("select".to_owned(), select.iter().map(|p| p.to_string()).collect());
        }
        serde_json::Value::Object(object)
    }
}
