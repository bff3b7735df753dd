//! Typed extraction of JSON values with pydantic's error types and messages.
//!
//! Every function takes the location of the value and the error list; on failure it
//! records one [`FieldError`](crate::error::FieldError) and returns `None`, so a whole
//! body is checked in one pass and every problem is reported at once.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::ValidationErrors;
use crate::id::ObjectId;
use crate::time::{parse_body_datetime, Timestamp};

/// A location: `["body", "data", "kernel_revision", "url"]`.
pub(crate) type Loc = Vec<Value>;

/// `loc` extended with one key.
pub(crate) fn at(loc: &[Value], key: impl Into<Value>) -> Loc {
    let mut l = loc.to_vec();
    l.push(key.into());
    l
}

pub(crate) fn string(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        _ => {
            errs.push(
                loc,
                "string_type",
                "Input should be a valid string",
                v.clone(),
            );
            None
        }
    }
}

/// `null` → `Some(None)`.
pub(crate) fn opt_string(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
) -> Option<Option<String>> {
    if v.is_null() {
        return Some(None);
    }
    string(errs, loc, v).map(Some)
}

pub(crate) fn string_list(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<Vec<String>> {
    bounded_string_list(errs, loc, v, usize::MAX)
}

/// A list of strings of at most `max` characters each.
pub(crate) fn bounded_string_list(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
    max: usize,
) -> Option<Vec<String>> {
    let Value::Array(items) = v else {
        errs.push(loc, "list_type", "Input should be a valid list", v.clone());
        return None;
    };
    let before = errs.0.len();
    let out: Vec<String> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| bounded_string(errs, at(&loc, i), item, max))
        .collect();
    (errs.0.len() == before).then_some(out)
}

pub(crate) fn opt_string_list(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
) -> Option<Option<Vec<String>>> {
    if v.is_null() {
        return Some(None);
    }
    string_list(errs, loc, v).map(Some)
}

pub(crate) fn object(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m.clone()),
        _ => {
            errs.push(
                loc,
                "dict_type",
                "Input should be a valid dictionary",
                v.clone(),
            );
            None
        }
    }
}

pub(crate) fn opt_object(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
) -> Option<Option<Map<String, Value>>> {
    if v.is_null() {
        return Some(None);
    }
    object(errs, loc, v).map(Some)
}

pub(crate) fn object_id(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<ObjectId> {
    match v.as_str().map(ObjectId::parse) {
        Some(Ok(id)) => Some(id),
        _ => {
            errs.push(
                loc,
                "value_error",
                "Value error, Invalid ObjectId",
                v.clone(),
            );
            None
        }
    }
}

pub(crate) fn opt_object_id(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
) -> Option<Option<ObjectId>> {
    if v.is_null() {
        return Some(None);
    }
    object_id(errs, loc, v).map(Some)
}

pub(crate) fn datetime(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<Timestamp> {
    match parse_body_datetime(v) {
        Ok(t) => Some(t),
        Err(_) => {
            let (kind, msg) = if v.is_string() {
                ("datetime_parsing", "Input should be a valid datetime")
            } else {
                ("datetime_type", "Input should be a valid datetime")
            };
            errs.push(loc, kind, msg, v.clone());
            None
        }
    }
}

pub(crate) fn opt_datetime(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
) -> Option<Option<Timestamp>> {
    if v.is_null() {
        return Some(None);
    }
    datetime(errs, loc, v).map(Some)
}

/// pydantic's lax boolean: JSON booleans, 0/1, and the usual words in any case.
pub(crate) fn lax_bool(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<bool> {
    let parsed = match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Some(false),
            Some(1.0) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
            "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
            _ => {
                errs.push(
                    loc,
                    "bool_parsing",
                    "Input should be a valid boolean, unable to interpret input",
                    v.clone(),
                );
                return None;
            }
        },
        _ => None,
    };
    if parsed.is_none() {
        errs.push(
            loc,
            "bool_type",
            "Input should be a valid boolean",
            v.clone(),
        );
    }
    parsed
}

pub(crate) fn opt_lax_bool(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
) -> Option<Option<bool>> {
    if v.is_null() {
        return Some(None);
    }
    lax_bool(errs, loc, v).map(Some)
}

/// A strict integer: JSON integers only (no strings, floats or booleans).
pub(crate) fn strict_int(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<i64> {
    match v.as_i64() {
        Some(i) => Some(i),
        None => {
            errs.push(
                loc,
                "int_type",
                "Input should be a valid integer",
                v.clone(),
            );
            None
        }
    }
}

/// One of `allowed` (case-sensitive), with pydantic's `enum` message.
pub(crate) fn enum_str<'a>(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
    allowed: &[&'a str],
) -> Option<&'a str> {
    if let Some(found) = v.as_str().and_then(|s| allowed.iter().find(|a| **a == s)) {
        return Some(found);
    }
    let quoted: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
    let expected = match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    };
    errs.push_ctx(
        loc,
        "enum",
        format!("Input should be {expected}"),
        v.clone(),
        serde_json::json!({ "expected": expected }),
    );
    None
}

/// The longest node name, group or path element accepted, in characters.
pub const MAX_NAME_CHARS: usize = 1024;

/// A string of at most `max` characters: pydantic's `string_too_long` otherwise.
pub(crate) fn bounded_string(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
    max: usize,
) -> Option<String> {
    let s = string(errs, loc.clone(), v)?;
    if s.len() > max && s.chars().count() > max {
        errs.push_ctx(
            loc,
            "string_too_long",
            format!("String should have at most {max} characters"),
            v.clone(),
            serde_json::json!({ "max_length": max }),
        );
        return None;
    }
    Some(s)
}

/// A map of artifact names to http(s) URLs, normalised.
pub(crate) fn artifacts(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
) -> Option<Option<BTreeMap<String, String>>> {
    if v.is_null() {
        return Some(None);
    }
    let map = object(errs, loc.clone(), v)?;
    let before = errs.0.len();
    let mut out = BTreeMap::new();
    for (name, url) in &map {
        let loc = at(&loc, name.as_str());
        let Some(s) = string(errs, loc.clone(), url) else {
            continue;
        };
        match super::url::http_url(&s) {
            Ok(norm) => {
                out.insert(name.clone(), norm);
            }
            Err((kind, msg)) => errs.push(loc, kind, msg, url.clone()),
        }
    }
    (errs.0.len() == before).then_some(Some(out))
}

/// Any absolute URL (`git://`, `https://`...), returned as given.
pub(crate) fn any_url(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<String> {
    let s = string(errs, loc.clone(), v)?;
    match super::url::any_url(&s) {
        Ok(_) => Some(s),
        Err((kind, msg)) => {
            errs.push(loc, kind, msg, v.clone());
            None
        }
    }
}
