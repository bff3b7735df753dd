//! Lax parsers of text: what pydantic (and Python's `int()`) accept where a boolean
//! or an integer is expected. They return plain values; the callers record the
//! [`FieldError`](super::FieldError) their location calls for.

use serde_json::Value;

use crate::error::Error;

/// pydantic's boolean words, in any case: `1 on t true y yes` and
/// `0 off f false n no`. No surrounding blanks.
pub fn bool_word(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
        "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// Splits surrounding blanks and a sign off `s`: `(negative, rest)`.
fn sign(s: &str) -> (bool, &str) {
    let t = s.trim();
    match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    }
}

/// Decimal digits with single underscores between them (Python's literal rule),
/// with the underscores removed; `None` otherwise.
fn digits(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.split('_')
            .all(|group| !group.is_empty() && group.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| s.replace('_', ""))
}

/// `digits` (already checked) with `negative`, saturated to the `i128` range.
fn saturating(negative: bool, digits: &str) -> i128 {
    match digits.parse::<i128>() {
        Ok(m) if negative => -m,
        Ok(m) => m,
        Err(_) if negative => i128::MIN,
        Err(_) => i128::MAX,
    }
}

/// pydantic's integer text (lax mode): surrounding blanks, a sign, digits with
/// single underscores between them, and an all-zero fraction (`"5.00"`). Values
/// beyond `i128` saturate (pydantic's integers are unbounded; every caller bounds
/// them further). `None` when the text is not an integer.
pub fn lax_int(s: &str) -> Option<i128> {
    let (negative, rest) = sign(s);
    let int = match rest.split_once('.') {
        Some((int, frac)) if frac.bytes().all(|b| b == b'0') => int,
        Some(_) => return None,
        None => rest,
    };
    digits(int).map(|d| saturating(negative, &d))
}

/// `i` saturated to the `i64` range.
pub fn clamp_i64(i: i128) -> i64 {
    i64::try_from(i).unwrap_or(if i < 0 { i64::MIN } else { i64::MAX })
}

/// Python's `int(str)`: surrounding blanks, a sign, decimal digits with single
/// underscores between them (no fraction), in the `i64` range; refused with
/// Python's message otherwise.
pub fn python_int_text(s: &str) -> Result<i64, Error> {
    let (negative, rest) = sign(s);
    let Some(d) = digits(rest) else {
        return Err(Error::Invalid(format!(
            "invalid literal for int() with base 10: '{s}'"
        )));
    };
    i64::try_from(saturating(negative, &d))
        .map_err(|_| Error::Invalid(format!("integer out of range: '{s}'")))
}

/// Python's `int(v)` for a JSON value: integers, booleans, finite floats
/// (truncated) and integer text ([`python_int_text`]); refused with Python's
/// message otherwise.
pub fn python_int(v: &Value) -> Result<i64, Error> {
    let type_name = match v {
        Value::Bool(b) => return Ok(i64::from(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(i);
            }
            return match n.as_f64() {
                Some(f) if f.is_finite() && f.abs() < 9.2e18 => Ok(f.trunc() as i64),
                _ => Err(Error::Invalid(format!(
                    "cannot convert float {n} to integer"
                ))),
            };
        }
        Value::String(s) => return python_int_text(s),
        Value::Null => "NoneType",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    };
    Err(Error::Invalid(format!(
        "int() argument must be a string, a bytes-like object or a real number, not '{type_name}'"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pydantic_integers() {
        assert_eq!(lax_int(" -1_000 "), Some(-1000));
        assert_eq!(lax_int("+7"), Some(7));
        assert_eq!(lax_int("5.00"), Some(5));
        assert_eq!(lax_int("-0"), Some(0));
        assert_eq!(lax_int("1".repeat(60).as_str()), Some(i128::MAX));
        for bad in ["", "-", "1.5", "_1", "1_", "1__0", "0x10", "1e3", "½"] {
            assert_eq!(lax_int(bad), None, "{bad}");
        }
        assert_eq!(clamp_i64(i128::MIN), i64::MIN);
    }

    #[test]
    fn python_int_rules() {
        assert_eq!(python_int_text(" -1_000 ").ok(), Some(-1000));
        assert_eq!(python_int_text("+7").ok(), Some(7));
        for bad in ["", "-", "1.0", "_1", "1_", "1__0", "0x10", "1e3"] {
            assert!(python_int_text(bad).is_err(), "{bad}");
        }
        assert!(python_int_text("99999999999999999999").is_err());
        assert_eq!(python_int(&json!(2.9)).ok(), Some(2));
        assert_eq!(python_int(&json!(true)).ok(), Some(1));
        assert!(python_int(&json!(null)).is_err());
        assert!(python_int(&json!(1e300)).is_err());
    }

    #[test]
    fn boolean_words() {
        assert_eq!(bool_word("YES"), Some(true));
        assert_eq!(bool_word("off"), Some(false));
        assert_eq!(bool_word(" true"), None);
    }
}
