//! Values of query conditions.

use serde_json::{Map, Value};

use crate::id::ObjectId;
use crate::time::Timestamp;

/// A typed value in a query condition (after the language's conversions).
#[derive(Debug, Clone, PartialEq)]
pub enum QValue {
    /// `null`: matches null or missing fields.
    Null,
    /// A boolean (plain `true`/`false`).
    Bool(bool),
    /// An integer (decimal rule, `__int`, `retry_counter`).
    Int(i64),
    /// A string.
    Str(String),
    /// A datetime (datetime fields).
    Date(Timestamp),
    /// An ObjectId (`parent`).
    Id(ObjectId),
    /// A sub-document (unknown operators: `name__foo=bar` → `{"foo": "bar"}`).
    Doc(Map<String, Value>),
}

impl QValue {
    /// The value as a string, when it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            QValue::Str(s) => Some(s),
            _ => None,
        }
    }
}
