//! JSON text exactly as the reference writes it, and objects whose key order is
//! kept.
//!
//! Two styles exist on the wire:
//!
//! - [`Style::Python`]: Python's `json.dumps` defaults, used for the CloudEvent text
//!   inside listen responses and for queued items: `", "` and `": "` separators,
//!   every non-ASCII character escaped as `\uXXXX` (lower-case hex, a surrogate pair
//!   outside the Basic Multilingual Plane), DEL and control characters escaped too,
//!   floats in Python's `repr` form (`1.0`, `1e+16`, `1.5e-05`).
//! - [`Style::Compact`]: FastAPI's JSON responses: `,` and `:` separators, non-ASCII
//!   characters as they are, only `"`, `\` and control characters escaped.
//!
//! serde_json's `Map` sorts its keys, so objects whose key order is part of the
//! format (the CloudEvent envelope, listen responses) are [`Fields`]: a list of
//! pairs, parsed with [`parse_fields`] when read back.

use std::fmt::Write as _;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Number, Value};

/// How JSON text is written (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Python's `json.dumps` with its defaults.
    Python,
    /// FastAPI's response encoding.
    Compact,
}

impl Style {
    fn item_separator(self) -> &'static str {
        match self {
            Style::Python => ", ",
            Style::Compact => ",",
        }
    }

    fn key_separator(self) -> &'static str {
        match self {
            Style::Python => ": ",
            Style::Compact => ":",
        }
    }
}

/// A JSON object as an ordered list of keys and values (keys are unique).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(pub Vec<(String, Value)>);

impl Fields {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key`: replaces the value in place when the key exists (as assigning
    /// to a Python dict does), appends it otherwise.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key, value)),
        }
    }

    /// Removes `key` and returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    /// The object's text in `style`.
    pub fn to_text(&self, style: Style) -> String {
        let mut out = String::new();
        write_object(&mut out, self.0.iter().map(|(k, v)| (k.as_str(), v)), style);
        out
    }

    /// The object as a serde_json value (keys in their order).
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.iter().cloned().collect())
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = Fields::default();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    fields.set(k, v);
                }
                Ok(fields)
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

/// Parses a JSON object keeping its key order (a repeated key keeps its first
/// position and its last value, as Python's `json.loads`).
pub fn parse_fields(text: &[u8]) -> Result<Fields, serde_json::Error> {
    serde_json::from_slice(text)
}

/// The text of `v` in `style`.
pub fn to_text(v: &Value, style: Style) -> String {
    let mut out = String::new();
    write_value(&mut out, v, style);
    out
}

/// Writes an object from ordered pairs.
pub fn write_object<'a>(
    out: &mut String,
    pairs: impl IntoIterator<Item = (&'a str, &'a Value)>,
    style: Style,
) {
    out.push('{');
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push_str(style.item_separator());
        }
        write_str(out, k, style);
        out.push_str(style.key_separator());
        write_value(out, v, style);
    }
    out.push('}');
}

/// Writes any value.
pub fn write_value(out: &mut String, v: &Value, style: Style) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s, style),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(style.item_separator());
                }
                write_value(out, item, style);
            }
            out.push(']');
        }
        Value::Object(m) => write_object(out, m.iter().map(|(k, v)| (k.as_str(), v)), style),
    }
}

/// Writes a string literal with the escapes of `style`.
pub fn write_str(out: &mut String, s: &str, style: Style) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => push_unicode_escape(out, c as u32),
            c if style == Style::Python && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_unicode_escape(out, u32::from(*unit));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_unicode_escape(out: &mut String, unit: u32) {
    let _ = write!(out, "\\u{unit:04x}");
}

/// Integers as they are; floats in Python's `repr` form.
fn write_number(out: &mut String, n: &Number) {
    if n.is_i64() || n.is_u64() {
        out.push_str(&n.to_string());
    } else if let Some(f) = n.as_f64() {
        out.push_str(&python_float(f));
    } else {
        out.push_str(&n.to_string());
    }
}

/// Python's `repr(float)`: the shortest digits that read back to the same value,
/// in fixed notation when the decimal exponent is in `-4..16`, else in scientific
/// notation with a signed, at least two-digit exponent.
pub fn python_float(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    if !f.is_finite() {
        // Not representable in serde_json values; Python would write these names.
        return if f.is_nan() {
            "NaN".to_owned()
        } else if f > 0.0 {
            "Infinity".to_owned()
        } else {
            "-Infinity".to_owned()
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `-1.2345e-7`, `1e16`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::from(sign);
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let n = digits.len() as i32;
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-point) as usize));
            out.push_str(&digits);
        } else if point >= n {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (point - n) as usize));
            out.push_str(".0");
        } else {
            let (int, frac) = digits.split_at(point as usize);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value, python: &str, compact: &str) {
        assert_eq!(to_text(&v, Style::Python), python, "python");
        assert_eq!(to_text(&v, Style::Compact), compact, "compact");
        // Both read back to the same value.
        for text in [python, compact] {
            assert_eq!(serde_json::from_str::<Value>(text).unwrap(), v, "{text}");
        }
    }

    #[test]
    fn separators_and_nesting() {
        check(
            json!({"a": [1, 2, {"b": null}], "c": true, "d": {}, "e": []}),
            r#"{"a": [1, 2, {"b": null}], "c": true, "d": {}, "e": []}"#,
            r#"{"a":[1,2,{"b":null}],"c":true,"d":{},"e":[]}"#,
        );
    }

    #[test]
    fn strings_are_escaped_as_python_does() {
        check(
            json!("é and 🦀"),
            r#""\u00e9 and \ud83e\udd80""#,
            "\"é and 🦀\"",
        );
        check(
            json!("q\"b\\s/\n\r\t\u{8}\u{c}\u{1}\u{7f}"),
            r#""q\"b\\s/\n\r\t\b\f\u0001\u007f""#,
            "\"q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0001\u{7f}\"",
        );
        check(json!("\u{2028}€"), r#""\u2028\u20ac""#, "\"\u{2028}€\"");
    }

    #[test]
    fn numbers_as_python_repr() {
        for (f, want) in [
            (1.0, "1.0"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (1e-4, "0.0001"),
            (1.5e-5, "1.5e-05"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e100, "1.2345e+100"),
            (-0.0, "-0.0"),
            (123.456, "123.456"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(python_float(f), want, "{f}");
        }
        check(
            json!([0, -7, u64::MAX, 2.0]),
            "[0, -7, 18446744073709551615, 2.0]",
            "[0,-7,18446744073709551615,2.0]",
        );
    }

    #[test]
    fn fields_keep_their_order() {
        let f = parse_fields(br#"{"z": 1, "a": 2, "m": {"y": 1, "b": 2}, "z": 3}"#).unwrap();
        let keys: Vec<&str> = f.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(f.get("z"), Some(&json!(3)), "the last value wins");
        assert_eq!(
            f.to_text(Style::Python),
            r#"{"z": 3, "a": 2, "m": {"y": 1, "b": 2}}"#
        );
        assert!(parse_fields(b"[1]").is_err());
    }
}
