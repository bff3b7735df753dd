//! The reference's validation shapes, in one place.
//!
//! The reference server validates with pydantic and FastAPI: a refused request body or
//! parameter is a 422 whose `detail` is a list of items
//! `{"type", "loc", "msg", "input", "ctx"?}`, and scalar values are read in pydantic's
//! *lax* mode (`"yes"` is a boolean, `" 1_000 "` an integer). Clients and the
//! reference's own tests look at these items, so every endpoint builds them here and
//! nowhere else:
//!
//! - [`FieldError`] and [`ValidationErrors`]: one item and the list, with a
//!   constructor per error type and the JSON form ([`ValidationErrors::to_json`]);
//! - [`value`]: typed extraction of JSON values (strings, lists, objects, ids,
//!   datetimes, lax booleans and integers, enums), each recording its error and
//!   going on, so that one answer lists every problem;
//! - [`Fields`]: a JSON object body read field by field with those extractors;
//! - [`params`]: query and path parameters (`loc: ["query", name]`);
//! - [`text`]: the lax parsers of text (pydantic's booleans and integers, Python's
//!   `int()`), shared by the above and by the query language.
//!
//! The HTTP layer turns a [`ValidationErrors`] (or
//! [`Error::Validation`]) into the 422 answer; it builds no
//! item itself.

mod fields;
pub mod params;
pub mod text;
pub mod value;

use std::fmt;

use serde_json::{json, Map, Value};

pub use fields::Fields;

use crate::error::Error;

/// A location: `["body", "data", "kernel_revision", "url"]`.
pub type Loc = Vec<Value>;

/// `loc` extended with one key or index.
pub fn at(loc: &[Value], key: impl Into<Value>) -> Loc {
    let mut l = loc.to_vec();
    l.push(key.into());
    l
}

/// `["body", key]`.
pub fn body_loc(key: &str) -> Loc {
    vec!["body".into(), key.into()]
}

/// One schema violation: where (`loc`), what kind (`kind`, pydantic's error type
/// names such as `missing`, `string_type`, `enum`), a sentence, and the input.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Path to the offending value, e.g. `["body", "state"]` or `["body", "path", 2]`.
    pub loc: Loc,
    /// Machine-readable error type (pydantic's names).
    pub kind: &'static str,
    /// Human-readable message.
    pub msg: String,
    /// The offending input value (`null` when missing).
    pub input: Value,
    /// pydantic's `ctx`: the rule's parameters (`{"expected": ...}` for an enum,
    /// `{"max_length": n}` for a string too long); `None` when the type has none.
    pub ctx: Option<Value>,
}

impl FieldError {
    /// An item without `ctx`.
    pub fn new(loc: Loc, kind: &'static str, msg: impl Into<String>, input: Value) -> Self {
        FieldError {
            loc,
            kind,
            msg: msg.into(),
            input,
            ctx: None,
        }
    }

    /// The same item with pydantic's `ctx`.
    pub fn with_ctx(mut self, ctx: Value) -> Self {
        self.ctx = Some(ctx);
        self
    }

    /// `missing`: a required value is absent; `input` is the object it was looked
    /// for in (`null` for a whole body, a form field or a parameter).
    pub fn missing(loc: Loc, input: Value) -> Self {
        Self::new(loc, "missing", "Field required", input)
    }

    /// `string_type`.
    pub fn string_type(loc: Loc, input: Value) -> Self {
        Self::new(loc, "string_type", "Input should be a valid string", input)
    }

    /// `string_too_long`, with `ctx.max_length`.
    pub fn string_too_long(loc: Loc, input: Value, max: usize) -> Self {
        Self::new(
            loc,
            "string_too_long",
            format!("String should have at most {max} characters"),
            input,
        )
        .with_ctx(json!({ "max_length": max }))
    }

    /// `list_type`.
    pub fn list_type(loc: Loc, input: Value) -> Self {
        Self::new(loc, "list_type", "Input should be a valid list", input)
    }

    /// `dict_type` (a field that must be an object).
    pub fn dict_type(loc: Loc, input: Value) -> Self {
        Self::new(
            loc,
            "dict_type",
            "Input should be a valid dictionary",
            input,
        )
    }

    /// `model_attributes_type` (a body that must be an object).
    pub fn model_attributes_type(loc: Loc, input: Value) -> Self {
        Self::new(
            loc,
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
            input,
        )
    }

    /// `value_error`: a validator refused the value; `msg` is pydantic's
    /// `Value error, <reason>`.
    pub fn value_error(loc: Loc, reason: &str, input: Value) -> Self {
        Self::new(loc, "value_error", format!("Value error, {reason}"), input)
    }

    /// `int_parsing`: text that is not an integer.
    pub fn int_parsing(loc: Loc, input: Value) -> Self {
        Self::new(
            loc,
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            input,
        )
    }

    /// `bool_parsing`: a value that is not one of pydantic's boolean words.
    pub fn bool_parsing(loc: Loc, input: Value) -> Self {
        Self::new(
            loc,
            "bool_parsing",
            "Input should be a valid boolean, unable to interpret input",
            input,
        )
    }

    /// `greater_than_equal`, with `ctx.ge`.
    pub fn greater_than_equal(loc: Loc, input: Value, ge: impl Into<Value> + fmt::Display) -> Self {
        let msg = format!("Input should be greater than or equal to {ge}");
        Self::new(loc, "greater_than_equal", msg, input).with_ctx(json!({ "ge": ge.into() }))
    }

    /// `less_than_equal`, with `ctx.le`.
    pub fn less_than_equal(loc: Loc, input: Value, le: impl Into<Value> + fmt::Display) -> Self {
        let msg = format!("Input should be less than or equal to {le}");
        Self::new(loc, "less_than_equal", msg, input).with_ctx(json!({ "le": le.into() }))
    }

    /// `json_invalid` at byte `pos` of the body, with the parser's text in
    /// `ctx.error`.
    pub fn json_invalid(pos: usize, error: String) -> Self {
        Self::new(
            vec!["body".into(), pos.into()],
            "json_invalid",
            "JSON decode error",
            Value::Object(Map::new()),
        )
        .with_ctx(json!({ "error": error }))
    }

    /// The item as FastAPI writes it: `{"type", "loc", "msg", "input", "ctx"?}`, in
    /// that order.
    pub fn to_json(&self) -> Value {
        let mut item = Map::new();
        item.insert("type".into(), Value::from(self.kind));
        item.insert("loc".into(), Value::Array(self.loc.clone()));
        item.insert("msg".into(), Value::from(self.msg.as_str()));
        item.insert("input".into(), self.input.clone());
        if let Some(ctx) = &self.ctx {
            item.insert("ctx".into(), ctx.clone());
        }
        Value::Object(item)
    }
}

/// A list of [`FieldError`]s (a refusal when not empty).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl From<FieldError> for ValidationErrors {
    fn from(e: FieldError) -> Self {
        ValidationErrors(vec![e])
    }
}

impl FromIterator<FieldError> for ValidationErrors {
    fn from_iter<I: IntoIterator<Item = FieldError>>(iter: I) -> Self {
        ValidationErrors(iter.into_iter().collect())
    }
}

impl From<ValidationErrors> for Error {
    fn from(errs: ValidationErrors) -> Self {
        Error::Validation(errs)
    }
}

impl From<FieldError> for Error {
    fn from(e: FieldError) -> Self {
        Error::Validation(e.into())
    }
}

impl ValidationErrors {
    /// Adds one error.
    pub fn add(&mut self, e: FieldError) {
        self.0.push(e);
    }

    /// Adds one error without `ctx`.
    pub fn push(&mut self, loc: Loc, kind: &'static str, msg: impl Into<String>, input: Value) {
        self.add(FieldError::new(loc, kind, msg, input));
    }

    /// Adds one error with pydantic's `ctx`.
    pub fn push_ctx(
        &mut self,
        loc: Loc,
        kind: &'static str,
        msg: impl Into<String>,
        input: Value,
        ctx: Value,
    ) {
        self.add(FieldError::new(loc, kind, msg, input).with_ctx(ctx));
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many errors were recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `Ok(())` when empty, else the errors as [`Error::Validation`].
    pub fn into_result(self) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self))
        }
    }

    /// The list as FastAPI's 422 `detail`.
    pub fn to_json(&self) -> Value {
        Value::Array(self.0.iter().map(FieldError::to_json).collect())
    }

    /// The pydantic-style text naming the model:
    /// `1 validation error for Checkout\ndata.kernel_revision.url\n  Input should be...`.
    pub fn describe(&self, model: &str) -> String {
        let mut out = self.header();
        out.push_str(" for ");
        out.push_str(model);
        self.append_items(&mut out);
        out
    }

    fn header(&self) -> String {
        let n = self.0.len();
        format!("{n} validation error{}", if n == 1 { "" } else { "s" })
    }

    fn append_items(&self, out: &mut String) {
        for e in &self.0 {
            let loc: Vec<String> = e
                .loc
                .iter()
                .map(|p| match p {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.push('\n');
            out.push_str(&loc.join("."));
            out.push_str("\n  ");
            out.push_str(&e.msg);
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.header();
        self.append_items(&mut out);
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_in_fastapi_order() {
        let e = FieldError::string_too_long(body_loc("name"), json!("xx"), 1);
        let text = serde_json::to_string(&e.to_json()).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"type":"string_too_long","loc":["body","name"],"msg":"String should have at most 1 characters","input":"xx","ctx":{"max_length":1}}"#
        );
        let e = FieldError::missing(vec!["body".into()], Value::Null);
        assert_eq!(
            e.to_json(),
            json!({"type": "missing", "loc": ["body"], "msg": "Field required", "input": null})
        );
    }

    #[test]
    fn described_like_pydantic() {
        let mut errs = ValidationErrors::default();
        errs.add(FieldError::missing(
            vec!["data".into(), "arch".into()],
            json!({}),
        ));
        errs.add(FieldError::string_type(
            vec!["path".into(), 2.into()],
            json!(1),
        ));
        assert_eq!(
            errs.describe("Kbuild"),
            "2 validation errors for Kbuild\ndata.arch\n  Field required\npath.2\n  Input should be a valid string"
        );
    }
}
