//! How values compare, across types — the rules every query path (full scan, index,
//! live query, SQL) shares.
//!
//! - **Equality** is by value; integers and floats compare numerically (`1 == 1.0`).
//! - **Ordering** (`lt`, `le`, `gt`, `ge`) only holds between values of the same kind:
//!   numbers with numbers, strings with strings (bytewise UTF-8), bytes with bytes, bools
//!   with bools (`false < true`). `5 < "6"` is false, and so is `5 >= "6"`.
//! - **Missing and null**: a missing field matches no comparison and no `eq`/`ne`;
//!   `eq null` matches an explicit null only; `exists` is true for null.
//! - **Sorting** needs a total order across kinds: null < bool < number < string < bytes
//!   < array < object; a missing field sorts as null. NaN sorts above every other number.

use std::cmp::Ordering;

use crate::value::Value;

/// The order of kinds when sorting values of different kinds.
fn kind_rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Int(_) | Value::Float(_) => 2,
        Value::String(_) => 3,
        Value::Bytes(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

fn cmp_numbers(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Int(x), Value::Float(y)) => cmp_int_float(*x, *y),
        (Value::Float(x), Value::Int(y)) => cmp_int_float(*y, *x).reverse(),
        (Value::Float(x), Value::Float(y)) => cmp_floats(*x, *y),
        _ => Ordering::Equal,
    }
}

fn cmp_floats(x: f64, y: f64) -> Ordering {
    // NaN above everything, equal to itself: a total order.
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// An integer against a float without losing precision for large integers.
fn cmp_int_float(x: i64, y: f64) -> Ordering {
    if y.is_nan() {
        return Ordering::Less;
    }
    // Beyond 2^53 an i64 cast to f64 rounds; compare in i128 instead, after checking
    // the float is within the i64 range (2^63 is exactly representable).
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if y >= TWO_POW_63 {
        return Ordering::Less;
    }
    if y < -TWO_POW_63 {
        return Ordering::Greater;
    }
    let truncated = y.trunc();
    match (x as i128).cmp(&(truncated as i128)) {
        Ordering::Equal => 0.0_f64.partial_cmp(&(y - truncated)).unwrap_or(Ordering::Equal),
        other => other,
    }
}

/// The total order used for sorting.
pub fn total_cmp(a: &Value, b: &Value) -> Ordering {
    let (ra, rb) = (kind_rank(a), kind_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let ordering = total_cmp(p, q);
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            for ((kp, vp), (kq, vq)) in x.iter().zip(y) {
                let ordering = kp.as_bytes().cmp(kq.as_bytes()).then_with(|| total_cmp(vp, vq));
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => cmp_numbers(a, b),
    }
}

/// Query equality: by value, numbers numerically.
pub fn equals(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            cmp_numbers(a, b) == Ordering::Equal
                && !matches!((a, b), (Value::Float(x), _) | (_, Value::Float(x)) if x.is_nan())
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equals(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((kp, vp), (kq, vq))| kp == kq && equals(vp, vq))
        }
        _ => a == b,
    }
}

/// The ordering of two values for a range predicate: `None` when they are of different
/// kinds (the predicate is then false), or either is NaN.
pub fn range_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    if kind_rank(a) != kind_rank(b) || matches!(a, Value::Null) {
        return None;
    }
    if matches!(a, Value::Float(x) if x.is_nan()) || matches!(b, Value::Float(x) if x.is_nan()) {
        return None;
    }
    Some(total_cmp(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_across_int_and_float() {
        assert!(equals(&Value::Int(1), &Value::Float(1.0)));
        assert_eq!(range_cmp(&Value::Int(2), &Value::Float(1.5)), Some(Ordering::Greater));
        assert_eq!(range_cmp(&Value::Int(i64::MAX), &Value::Float(9.3e18)), Some(Ordering::Less));
        assert_eq!(range_cmp(&Value::Int(-3), &Value::Float(-2.5)), Some(Ordering::Less));
        assert!(!equals(&Value::Float(f64::NAN), &Value::Float(f64::NAN)));
    }

    #[test]
    fn different_kinds_never_satisfy_a_range_but_sort_by_kind() {
        assert_eq!(range_cmp(&Value::Int(5), &Value::from("6")), None);
        assert_eq!(range_cmp(&Value::Null, &Value::Null), None);
        assert_eq!(total_cmp(&Value::Null, &Value::Bool(false)), Ordering::Less);
        assert_eq!(total_cmp(&Value::Int(100), &Value::from("1")), Ordering::Less);
        assert_eq!(total_cmp(&Value::Float(f64::NAN), &Value::Int(i64::MAX)), Ordering::Greater);
    }
}
