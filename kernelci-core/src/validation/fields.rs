//! A JSON object body read field by field, collecting every error.

use serde_json::{Map, Value};

use super::{at, value, FieldError, Loc, ValidationErrors};

/// The fields of a JSON object body (a pydantic model's input), read one by one
/// with the extractors of [`value`](super::value); every error is kept, so that one
/// 422 lists them all. A missing required field is `missing` with the whole object
/// as `input`, as pydantic reports it.
///
/// ```
/// use kernelci_core::validation::{value, Fields};
/// use serde_json::json;
///
/// let mut f = Fields::body(json!({"name": 7})).unwrap();
/// let name = f.required_str("name", 256);
/// let active = f.or("active", true, value::lax_bool);
/// assert_eq!((name, active), (None, true));
/// let errs = f.finish().unwrap_err();
/// assert_eq!(errs.0[0].kind, "string_type");
/// ```
#[derive(Debug)]
pub struct Fields {
    obj: Map<String, Value>,
    loc: Loc,
    errs: ValidationErrors,
}

impl Fields {
    /// The fields of `body`, found at `loc`; `model_attributes_type` when it is not
    /// an object.
    pub fn new(body: Value, loc: Loc) -> Result<Self, ValidationErrors> {
        match body {
            Value::Object(obj) => Ok(Fields {
                obj,
                loc,
                errs: ValidationErrors::default(),
            }),
            other => Err(FieldError::model_attributes_type(loc, other).into()),
        }
    }

    /// The fields of a request body (`loc: ["body"]`).
    pub fn body(body: Value) -> Result<Self, ValidationErrors> {
        Self::new(body, vec!["body".into()])
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key)
    }

    /// The whole object.
    pub fn object(&self) -> &Map<String, Value> {
        &self.obj
    }

    /// The location of `key`.
    pub fn loc(&self, key: &str) -> Loc {
        at(&self.loc, key)
    }

    /// Records an error found by the caller.
    pub fn error(&mut self, e: FieldError) {
        self.errs.add(e);
    }

    /// How many errors are recorded so far.
    pub fn error_count(&self) -> usize {
        self.errs.len()
    }

    /// Records `missing` for `key`.
    pub fn missing(&mut self, key: &str) {
        let e = FieldError::missing(self.loc(key), Value::Object(self.obj.clone()));
        self.errs.add(e);
    }

    /// A required field read with `read`: `missing` when absent.
    pub fn required<T>(
        &mut self,
        key: &str,
        read: impl FnOnce(&mut ValidationErrors, Loc, &Value) -> Option<T>,
    ) -> Option<T> {
        let loc = self.loc(key);
        match self.obj.get(key) {
            Some(v) => read(&mut self.errs, loc, v),
            None => {
                self.missing(key);
                None
            }
        }
    }

    /// An optional field read with `read`: `None` when absent or `null`.
    pub fn optional<T>(
        &mut self,
        key: &str,
        read: impl FnOnce(&mut ValidationErrors, Loc, &Value) -> Option<T>,
    ) -> Option<T> {
        let loc = self.loc(key);
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => read(&mut self.errs, loc, v),
        }
    }

    /// A field with a default: `default` when absent (or refused); `null` is read
    /// like any value (refused by a non-nullable reader).
    pub fn or<T>(
        &mut self,
        key: &str,
        default: T,
        read: impl FnOnce(&mut ValidationErrors, Loc, &Value) -> Option<T>,
    ) -> T {
        let loc = self.loc(key);
        match self.obj.get(key) {
            None => default,
            Some(v) => read(&mut self.errs, loc, v).unwrap_or(default),
        }
    }

    /// A required string of at most `max` characters.
    pub fn required_str(&mut self, key: &str, max: usize) -> Option<String> {
        self.required(key, |e, l, v| value::bounded_string(e, l, v, max))
    }

    /// An optional string of at most `max` characters.
    pub fn optional_str(&mut self, key: &str, max: usize) -> Option<String> {
        self.optional(key, |e, l, v| value::bounded_string(e, l, v, max))
    }

    /// `Ok(())` when no error was recorded, else every error.
    pub fn finish(self) -> Result<(), ValidationErrors> {
        if self.errs.is_empty() {
            Ok(())
        } else {
            Err(self.errs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_error_listed_with_the_object_as_missing_input() {
        let mut f = Fields::body(json!({"a": 1, "b": null})).unwrap_or_else(|_| unreachable!());
        assert_eq!(f.required_str("a", 10), None);
        assert_eq!(f.optional_str("b", 10), None);
        assert_eq!(f.required_str("c", 10), None);
        let errs = f.finish().err().unwrap_or_default();
        let kinds: Vec<_> = errs.0.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["string_type", "missing"]);
        assert_eq!(errs.0[1].input, json!({"a": 1, "b": null}));
        assert_eq!(errs.0[1].loc, vec![json!("body"), json!("c")]);
    }

    #[test]
    fn a_body_that_is_not_an_object() {
        let e = Fields::body(json!([1])).err();
        assert_eq!(e.map(|e| e.0[0].kind), Some("model_attributes_type"));
    }
}
