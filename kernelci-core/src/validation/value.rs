//! Typed extraction of JSON values with pydantic's error types and messages.
//!
//! Every function takes the location of the value and the error list; on failure it
//! records one [`FieldError`] and returns `None`, so a whole body is checked in one
//! pass and every problem is reported at once. `opt_*` variants read `null` as
//! `Some(None)`.

use serde_json::{Map, Value};

use super::{at, text, FieldError, Loc, ValidationErrors};
use crate::id::ObjectId;
use crate::time::{parse_body_datetime, Timestamp};

/// Wraps an extractor so that `null` is `Some(None)`.
fn nullable<T>(v: &Value, read: impl FnOnce(&Value) -> Option<T>) -> Option<Option<T>> {
    if v.is_null() {
        Some(None)
    } else {
        read(v).map(Some)
    }
}

/// A string (strict: no numbers or booleans), `string_type` otherwise.
pub fn string(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        _ => {
            errs.add(FieldError::string_type(loc, v.clone()));
            None
        }
    }
}

/// [`string`] or `null`.
pub fn opt_string(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<Option<String>> {
    nullable(v, |v| string(errs, loc, v))
}

/// Whether `s` has more than `max` characters (the byte length first: cheap).
pub fn too_long(s: &str, max: usize) -> bool {
    s.len() > max && s.chars().count() > max
}

/// A string of at most `max` characters: `string_too_long` otherwise.
pub fn bounded_string(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
    max: usize,
) -> Option<String> {
    let s = string(errs, loc.clone(), v)?;
    if too_long(&s, max) {
        errs.add(FieldError::string_too_long(loc, v.clone(), max));
        return None;
    }
    Some(s)
}

/// [`bounded_string`] or `null`.
pub fn opt_bounded_string(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
    max: usize,
) -> Option<Option<String>> {
    nullable(v, |v| bounded_string(errs, loc, v, max))
}

/// A list of strings (`list_type`, then `string_type` per element).
pub fn string_list(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<Vec<String>> {
    bounded_string_list(errs, loc, v, usize::MAX)
}

/// A list of strings of at most `max` characters each.
pub fn bounded_string_list(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
    max: usize,
) -> Option<Vec<String>> {
    let Value::Array(items) = v else {
        errs.add(FieldError::list_type(loc, v.clone()));
        return None;
    };
    let before = errs.len();
    let out: Vec<String> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| bounded_string(errs, at(&loc, i), item, max))
        .collect();
    (errs.len() == before).then_some(out)
}

/// [`string_list`] or `null`.
pub fn opt_string_list(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
) -> Option<Option<Vec<String>>> {
    nullable(v, |v| string_list(errs, loc, v))
}

/// An object (`dict_type` otherwise).
pub fn object(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m.clone()),
        _ => {
            errs.add(FieldError::dict_type(loc, v.clone()));
            None
        }
    }
}

/// [`object`] or `null`.
pub fn opt_object(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
) -> Option<Option<Map<String, Value>>> {
    nullable(v, |v| object(errs, loc, v))
}

/// An ObjectId in its 24-hex-digit text (`value_error`, `Invalid ObjectId`).
pub fn object_id(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<ObjectId> {
    match v.as_str().map(ObjectId::parse) {
        Some(Ok(id)) => Some(id),
        _ => {
            errs.add(FieldError::value_error(loc, "Invalid ObjectId", v.clone()));
            None
        }
    }
}

/// [`object_id`] or `null`.
pub fn opt_object_id(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<Option<ObjectId>> {
    nullable(v, |v| object_id(errs, loc, v))
}

/// A datetime as pydantic reads one in a body (ISO 8601 text or a Unix time):
/// `datetime_parsing` for text that is not one, `datetime_type` for other values.
pub fn datetime(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<Timestamp> {
    match parse_body_datetime(v) {
        Ok(t) => Some(t),
        Err(_) => {
            let kind = if v.is_string() {
                "datetime_parsing"
            } else {
                "datetime_type"
            };
            errs.push(loc, kind, "Input should be a valid datetime", v.clone());
            None
        }
    }
}

/// [`datetime`] or `null`.
pub fn opt_datetime(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<Option<Timestamp>> {
    nullable(v, |v| datetime(errs, loc, v))
}

/// pydantic's lax boolean: JSON booleans, the numbers 0 and 1, and the words of
/// [`text::bool_word`]; `bool_parsing` for other numbers and text, `bool_type` for
/// other values.
pub fn lax_bool(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<bool> {
    let parsed = match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Some(false),
            Some(1.0) => Some(true),
            _ => None,
        },
        Value::String(s) => text::bool_word(s),
        _ => {
            errs.push(
                loc,
                "bool_type",
                "Input should be a valid boolean",
                v.clone(),
            );
            return None;
        }
    };
    if parsed.is_none() {
        errs.add(FieldError::bool_parsing(loc, v.clone()));
    }
    parsed
}

/// [`lax_bool`] or `null`.
pub fn opt_lax_bool(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<Option<bool>> {
    nullable(v, |v| lax_bool(errs, loc, v))
}

/// A strict integer: JSON integers only (no strings, floats or booleans).
pub fn strict_int(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<i64> {
    let i = v.as_i64();
    if i.is_none() {
        errs.push(
            loc,
            "int_type",
            "Input should be a valid integer",
            v.clone(),
        );
    }
    i
}

/// pydantic's lax integer: integers, booleans, integral floats, and integer text
/// ([`text::lax_int`]) in the `i64` range.
pub fn lax_int(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<i64> {
    let parsed = match v {
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(i),
            (None, Some(f)) if f.is_finite() && f.fract() != 0.0 => Err((
                "int_from_float",
                "Input should be a valid integer, got a number with a fractional part",
            )),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(f as i64),
            _ => Err(("int_type", "Input should be a valid integer")),
        },
        Value::String(s) => match text::lax_int(s).map(i64::try_from) {
            Some(Ok(i)) => Ok(i),
            _ => Err((
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            )),
        },
        _ => Err(("int_type", "Input should be a valid integer")),
    };
    match parsed {
        Ok(i) => Some(i),
        Err((kind, msg)) => {
            errs.push(loc, kind, msg, v.clone());
            None
        }
    }
}

/// pydantic's `expected` text for a choice: `'a', 'b' or 'c'`.
pub fn expected_text(allowed: &[&str]) -> String {
    let quoted: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

/// One of `allowed` (case-sensitive): `kind` (`enum` for an Enum field,
/// `literal_error` for a Literal) with `ctx.expected` otherwise.
pub fn choice<'a>(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
    allowed: &[&'a str],
    kind: &'static str,
) -> Option<&'a str> {
    if let Some(found) = v.as_str().and_then(|s| allowed.iter().find(|a| **a == s)) {
        return Some(found);
    }
    let expected = expected_text(allowed);
    errs.push_ctx(
        loc,
        kind,
        format!("Input should be {expected}"),
        v.clone(),
        serde_json::json!({ "expected": expected }),
    );
    None
}

/// One of `allowed` (case-sensitive), with pydantic's `enum` error.
pub fn enum_str<'a>(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
    allowed: &[&'a str],
) -> Option<&'a str> {
    choice(errs, loc, v, allowed, "enum")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one<T>(
        f: impl FnOnce(&mut ValidationErrors) -> Option<T>,
    ) -> (Option<T>, Vec<&'static str>) {
        let mut errs = ValidationErrors::default();
        let out = f(&mut errs);
        (out, errs.0.iter().map(|e| e.kind).collect())
    }

    #[test]
    fn lax_booleans_as_pydantic() {
        let loc = || vec![Value::from("b")];
        assert_eq!(one(|e| lax_bool(e, loc(), &json!("Yes"))).0, Some(true));
        assert_eq!(one(|e| lax_bool(e, loc(), &json!(0.0))).0, Some(false));
        assert_eq!(one(|e| lax_bool(e, loc(), &json!(2))).1, ["bool_parsing"]);
        assert_eq!(
            one(|e| lax_bool(e, loc(), &json!("maybe"))).1,
            ["bool_parsing"]
        );
        assert_eq!(one(|e| lax_bool(e, loc(), &json!([]))).1, ["bool_type"]);
    }

    #[test]
    fn lax_integers_as_pydantic() {
        let loc = || vec![Value::from("i")];
        assert_eq!(one(|e| lax_int(e, loc(), &json!(" 1_000 "))).0, Some(1000));
        assert_eq!(one(|e| lax_int(e, loc(), &json!(3.0))).0, Some(3));
        assert_eq!(one(|e| lax_int(e, loc(), &json!(true))).0, Some(1));
        assert_eq!(
            one(|e| lax_int(e, loc(), &json!(1.5))).1,
            ["int_from_float"]
        );
        assert_eq!(one(|e| lax_int(e, loc(), &json!("x"))).1, ["int_parsing"]);
        assert_eq!(
            one(|e| lax_int(e, loc(), &json!("99999999999999999999"))).1,
            ["int_parsing"]
        );
        assert_eq!(one(|e| lax_int(e, loc(), &json!(null))).1, ["int_type"]);
    }

    #[test]
    fn choices_name_what_is_expected() {
        let mut errs = ValidationErrors::default();
        assert_eq!(
            enum_str(&mut errs, vec![], &json!("x"), &["a", "b", "c"]),
            None
        );
        assert_eq!(errs.0[0].msg, "Input should be 'a', 'b' or 'c'");
        assert_eq!(errs.0[0].ctx, Some(json!({"expected": "'a', 'b' or 'c'"})));
        assert_eq!(expected_text(&["only"]), "'only'");
    }
}
