//! Query and path parameters with FastAPI's declared types and bounds
//! (`Query(default, ge=..., le=...)`): a refused value is one [`FieldError`] at
//! `["query", name]` (or `["path", name]`) whose `input` is the text received,
//! returned as a one-item [`ValidationErrors`] ready to be merged with others.
//! Repeated query keys: the last value wins (API.md §1.7).

use serde_json::Value;

use super::{text, value, FieldError, Loc, ValidationErrors};

/// The last value of query key `k`.
pub fn last<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}

fn query_loc(name: &str) -> Loc {
    vec!["query".into(), name.into()]
}

/// The integer text of query parameter `name` (`None` when absent), ≥ `ge`.
fn bounded_int(
    pairs: &[(String, String)],
    name: &str,
    ge: i128,
) -> Result<Option<i128>, ValidationErrors> {
    let Some(raw) = last(pairs, name) else {
        return Ok(None);
    };
    let input = || Value::from(raw);
    let value =
        text::lax_int(raw).ok_or_else(|| FieldError::int_parsing(query_loc(name), input()))?;
    if value < ge {
        let ge = i64::try_from(ge).unwrap_or(i64::MIN);
        return Err(FieldError::greater_than_equal(query_loc(name), input(), ge).into());
    }
    Ok(Some(value))
}

/// An integer query parameter `name` ≥ `ge`, `default` when absent; pydantic's
/// integer text ([`text::lax_int`]); values beyond `i64` saturate.
pub fn int_param(
    pairs: &[(String, String)],
    name: &str,
    default: i64,
    ge: i64,
) -> Result<i64, ValidationErrors> {
    Ok(bounded_int(pairs, name, i128::from(ge))?.map_or(default, text::clamp_i64))
}

/// An unsigned integer query parameter `name` ≥ `ge` (a page's `limit` and
/// `offset`), `default` when absent; values beyond `u64` saturate.
pub fn uint_param(
    pairs: &[(String, String)],
    name: &str,
    default: u64,
    ge: u64,
) -> Result<u64, ValidationErrors> {
    Ok(bounded_int(pairs, name, i128::from(ge))?
        .map_or(default, |i| u64::try_from(i).unwrap_or(u64::MAX)))
}

/// A float query parameter `name` in `[ge, le]`, `default` when absent.
pub fn float_param(
    pairs: &[(String, String)],
    name: &str,
    default: f64,
    ge: f64,
    le: f64,
) -> Result<f64, ValidationErrors> {
    let Some(raw) = last(pairs, name) else {
        return Ok(default);
    };
    let input = || Value::from(raw);
    let value: f64 = raw.trim().parse().map_err(|_| {
        FieldError::new(
            query_loc(name),
            "float_parsing",
            "Input should be a valid number, unable to parse string as a number",
            input(),
        )
    })?;
    // NaN is in no range: it fails the first check.
    if value.is_nan() || value < ge {
        return Err(FieldError::greater_than_equal(query_loc(name), input(), ge).into());
    }
    if value > le {
        return Err(FieldError::less_than_equal(query_loc(name), input(), le).into());
    }
    Ok(value)
}

/// A boolean query parameter (pydantic's words, surrounding blanks ignored).
pub fn bool_param(name: &str, raw: &str) -> Result<bool, ValidationErrors> {
    text::bool_word(raw.trim())
        .ok_or_else(|| FieldError::bool_parsing(query_loc(name), Value::from(raw)).into())
}

/// A `Literal[...]` query parameter: one of `allowed`, `default` when absent,
/// `literal_error` with `ctx.expected` otherwise.
pub fn literal_param<'a>(
    pairs: &[(String, String)],
    name: &str,
    default: &'a str,
    allowed: &[&'a str],
) -> Result<&'a str, ValidationErrors> {
    let Some(raw) = last(pairs, name) else {
        return Ok(default);
    };
    let mut errs = ValidationErrors::default();
    let loc = query_loc(name);
    match value::choice(&mut errs, loc, &Value::from(raw), allowed, "literal_error") {
        Some(found) => Ok(found),
        None => Err(errs),
    }
}

/// An integer path parameter (pydantic's integer text, saturated to `i128`):
/// `int_parsing` at `["path", name]` otherwise.
pub fn path_int(name: &str, raw: &str) -> Result<i128, ValidationErrors> {
    text::lax_int(raw).ok_or_else(|| {
        FieldError::int_parsing(vec!["path".into(), name.into()], Value::from(raw)).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn integers_with_bounds() {
        assert_eq!(int_param(&q(&[]), "limit", 50, 1), Ok(50));
        assert_eq!(
            int_param(&q(&[("limit", "2"), ("limit", " 7 ")]), "limit", 50, 1),
            Ok(7)
        );
        assert_eq!(
            int_param(&q(&[("n", "99999999999999999999")]), "n", 0, 0),
            Ok(i64::MAX)
        );
        let e = int_param(&q(&[("limit", "0")]), "limit", 50, 1).err();
        assert_eq!(
            e.map(|e| e.0[0].to_json()),
            Some(
                json!({"type": "greater_than_equal", "loc": ["query", "limit"],
                "msg": "Input should be greater than or equal to 1", "input": "0", "ctx": {"ge": 1}})
            )
        );
        let e = int_param(&q(&[("limit", "x")]), "limit", 50, 1).err();
        assert_eq!(e.map(|e| e.0[0].kind), Some("int_parsing"));
    }

    #[test]
    fn floats_literals_booleans_paths() {
        let e = float_param(&q(&[("t", "2")]), "t", 0.5, 0.0, 1.0).err();
        assert_eq!(e.map(|e| e.0[0].kind), Some("less_than_equal"));
        let e = float_param(&q(&[("t", "nan")]), "t", 0.5, 0.0, 1.0).err();
        assert_eq!(e.map(|e| e.0[0].kind), Some("greater_than_equal"));
        let e = literal_param(&q(&[("s", "x")]), "s", "a", &["a", "b"]).err();
        assert_eq!(
            e.and_then(|e| e.0[0].ctx.clone()),
            Some(json!({"expected": "'a' or 'b'"}))
        );
        assert_eq!(bool_param("p", " Yes "), Ok(true));
        assert_eq!(path_int("sub_id", "1_0.0"), Ok(10));
    }
}
