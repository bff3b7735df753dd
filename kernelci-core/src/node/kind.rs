//! The kind layer: node kinds and their `data` models (MODELS.md §3).
//!
//! Each model is a table of fields checked by one interpreter, so the
//! rules live in data rather than in six hand-written validators. Failures are
//! [`Error::Invalid`] with pydantic's text (`1 validation error for Kbuild\ndata.arch\n
//!   Input should be a valid string`). Unknown keys inside `data` are allowed and
//! ignored by the check.

use std::fmt;

use serde_json::{Map, Value};

use super::check;
use super::Node;
use crate::error::{Error, Result, ValidationErrors};
use crate::validation::{at, value, FieldError, Loc};

/// The node kinds the API accepts on writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A kernel source checkout (top of a tree).
    Checkout,
    /// A kernel build.
    Kbuild,
    /// A lab job.
    Job,
    /// A test (case or suite).
    Test,
    /// A pipeline process (no data model).
    Process,
    /// A regression between two nodes.
    Regression,
}

impl Kind {
    /// Every accepted kind.
    pub const ALL: [Kind; 6] = [
        Kind::Checkout,
        Kind::Kbuild,
        Kind::Job,
        Kind::Test,
        Kind::Process,
        Kind::Regression,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Checkout => "checkout",
            Kind::Kbuild => "kbuild",
            Kind::Job => "job",
            Kind::Test => "test",
            Kind::Process => "process",
            Kind::Regression => "regression",
        }
    }

    /// Parses a wire name; `node` and anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The model name used in error texts.
    pub fn model_name(&self) -> &'static str {
        match self {
            Kind::Checkout => "Checkout",
            Kind::Kbuild => "Kbuild",
            Kind::Job => "Job",
            Kind::Test => "Test",
            Kind::Process => "Process",
            Kind::Regression => "Regression",
        }
    }

    fn data_model(&self) -> Option<&'static [Field]> {
        match self {
            Kind::Checkout => Some(CHECKOUT),
            Kind::Kbuild => Some(KBUILD),
            Kind::Job | Kind::Test => Some(TEST),
            Kind::Process => None,
            Kind::Regression => Some(REGRESSION),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `data.error_code` values of kbuild, job, test and regression nodes.
pub const ERROR_CODES: [&str; 15] = [
    "invalid_job_params",
    "submit_error",
    "node_timeout",
    "Infrastructure",
    "Canceled",
    "Job",
    "Bug",
    "Test",
    "Configuration",
    "LAVATimeout",
    "MultinodeTimeout",
    "ObjectNotPersisted",
    "Unexisting permission codename.",
    "job_generation_error",
    "kbuild_internal_error",
];

/// The `data.error_code` values of checkout nodes.
pub const CHECKOUT_ERROR_CODES: [&str; 2] = ["node_timeout", "git_checkout_failure"];

/// The type of one model field.
#[derive(Debug, Clone, Copy)]
enum Ty {
    Str,
    /// Any absolute URL.
    Url,
    StrList,
    ObjectId,
    ObjectIdList,
    ErrorCode,
    CheckoutErrorCode,
    Bool,
    Object,
    StrictInt,
    Revision,
    Version,
}

/// One field of a data model.
#[derive(Debug)]
struct Field {
    name: &'static str,
    ty: Ty,
    /// Must be present.
    required: bool,
    /// The default when absent: `null`, or an empty list/object for the non-nullable
    /// collection fields.
    default: Default,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Default {
    Null,
    EmptyList,
    EmptyObject,
}

const fn opt(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: false,
        default: Default::Null,
    }
}

const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: true,
        default: Default::Null,
    }
}

const fn with_default(name: &'static str, ty: Ty, default: Default) -> Field {
    Field {
        name,
        ty,
        required: false,
        default,
    }
}

const REVISION: &[Field] = &[
    req("tree", Ty::Str),
    req("url", Ty::Url),
    req("branch", Ty::Str),
    req("commit", Ty::Str),
    opt("describe", Ty::Str),
    opt("version", Ty::Version),
    opt("patchset", Ty::Str),
    with_default("commit_tags", Ty::StrList, Default::EmptyList),
    opt("commit_message", Ty::Str),
    opt("tip_of_branch", Ty::Bool),
];

const VERSION: &[Field] = &[
    req("version", Ty::StrictInt),
    req("patchlevel", Ty::StrictInt),
    opt("sublevel", Ty::StrictInt),
    opt("extra", Ty::Str),
    opt("name", Ty::Str),
];

const CHECKOUT: &[Field] = &[
    opt("kernel_revision", Ty::Revision),
    opt("error_code", Ty::CheckoutErrorCode),
    opt("error_msg", Ty::Str),
    opt("architecture_filter", Ty::StrList),
];

const KBUILD: &[Field] = &[
    opt("kernel_revision", Ty::Revision),
    opt("arch", Ty::Str),
    opt("defconfig", Ty::Str),
    opt("compiler", Ty::Str),
    opt("error_code", Ty::ErrorCode),
    opt("error_msg", Ty::Str),
    opt("fragments", Ty::StrList),
    opt("config_full", Ty::Str),
    opt("platform", Ty::Str),
    opt("runtime", Ty::Str),
    opt("job_id", Ty::Str),
    opt("job_context", Ty::Str),
    opt("kernel_type", Ty::Str),
    opt("regression", Ty::ObjectId),
];

const TEST: &[Field] = &[
    opt("error_code", Ty::ErrorCode),
    opt("error_msg", Ty::Str),
    opt("test_source", Ty::Url),
    opt("test_revision", Ty::Revision),
    opt("platform", Ty::Str),
    opt("device", Ty::Str),
    opt("runtime", Ty::Str),
    opt("job_id", Ty::Str),
    opt("job_context", Ty::Str),
    opt("regression", Ty::ObjectId),
    opt("kernel_revision", Ty::Revision),
    opt("arch", Ty::Str),
    opt("defconfig", Ty::Str),
    opt("config_full", Ty::Str),
    opt("compiler", Ty::Str),
    opt("kernel_type", Ty::Str),
    with_default("misc", Ty::Object, Default::EmptyObject),
];

const REGRESSION: &[Field] = &[
    opt("fail_node", Ty::ObjectId),
    opt("pass_node", Ty::ObjectId),
    with_default("node_sequence", Ty::ObjectIdList, Default::EmptyList),
    opt("error_code", Ty::ErrorCode),
    opt("error_msg", Ty::Str),
    opt("failed_kernel_revision", Ty::Revision),
    opt("arch", Ty::Str),
    opt("defconfig", Ty::Str),
    opt("config_full", Ty::Str),
    opt("compiler", Ty::Str),
    opt("platform", Ty::Str),
    opt("device", Ty::Str),
];

#[cfg(feature = "openapi")]
impl Kind {
    /// The JSON Schema of this kind's `data`, built from the table the kind check
    /// interprets; `None` for `process` (no data model). Extra keys are allowed, as
    /// in the check.
    pub fn data_schema(&self) -> Option<Value> {
        self.data_model().map(model_schema)
    }
}

#[cfg(feature = "openapi")]
fn model_schema(model: &[Field]) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in model {
        props.insert(f.name.to_owned(), field_schema(f));
        if f.required {
            required.push(Value::from(f.name));
        }
    }
    let mut schema = serde_json::json!({"type": "object", "properties": props});
    if !required.is_empty() {
        schema["required"] = Value::Array(required);
    }
    schema
}

#[cfg(feature = "openapi")]
fn field_schema(f: &Field) -> Value {
    use crate::openapi::{nullable, object_id_input};
    use serde_json::json;
    let s = match f.ty {
        Ty::Str => json!({"type": "string"}),
        Ty::Url => json!({"type": "string", "format": "uri"}),
        Ty::StrList => json!({"type": "array", "items": {"type": "string"}}),
        Ty::ObjectId => object_id_input(),
        Ty::ObjectIdList => json!({"type": "array", "items": object_id_input()}),
        Ty::ErrorCode => json!({"type": "string", "enum": ERROR_CODES}),
        Ty::CheckoutErrorCode => json!({"type": "string", "enum": CHECKOUT_ERROR_CODES}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Object => json!({"type": "object"}),
        Ty::StrictInt => json!({"type": "integer", "format": "int64"}),
        Ty::Revision => model_schema(REVISION),
        Ty::Version => model_schema(VERSION),
    };
    if !f.required && f.default == Default::Null {
        nullable(s)
    } else {
        s
    }
}

/// The kind of `node`, or `Unsupported node kind: <kind>`.
pub fn kind_of(node: &Node) -> Result<Kind> {
    Kind::parse(&node.kind)
        .ok_or_else(|| Error::Invalid(format!("Unsupported node kind: {}", node.kind)))
}

/// The kind layer: checks the kind and the `data` model of `node`.
pub fn check(node: &Node) -> Result<Kind> {
    let kind = kind_of(node)?;
    let Some(model) = kind.data_model() else {
        return Ok(kind);
    };
    let mut errs = ValidationErrors::default();
    let loc: Loc = vec!["data".into()];
    match &node.data {
        Some(data) => check_object(&mut errs, &loc, data, model),
        None => errs.push(
            loc,
            "dict_type",
            "Input should be a valid dictionary",
            Value::Null,
        ),
    }
    if errs.is_empty() {
        Ok(kind)
    } else {
        Err(Error::Invalid(errs.describe(kind.model_name())))
    }
}

fn check_object(
    errs: &mut ValidationErrors,
    loc: &[Value],
    obj: &Map<String, Value>,
    model: &[Field],
) {
    for f in model {
        match obj.get(f.name) {
            None if f.required => errs.push(
                at(loc, f.name),
                "missing",
                "Field required",
                Value::Object(obj.clone()),
            ),
            None => {}
            Some(v) => check_value(errs, at(loc, f.name), v, f),
        }
    }
}

fn check_value(errs: &mut ValidationErrors, loc: Loc, v: &Value, f: &Field) {
    let nullable = !f.required && f.default == Default::Null;
    if v.is_null() && nullable {
        return;
    }
    match f.ty {
        Ty::Str => {
            value::string(errs, loc, v);
        }
        Ty::Url => {
            check::any_url(errs, loc, v);
        }
        Ty::StrList => {
            value::string_list(errs, loc, v);
        }
        Ty::ObjectId => {
            value::object_id(errs, loc, v);
        }
        Ty::ObjectIdList => {
            if let Value::Array(items) = v {
                for (i, item) in items.iter().enumerate() {
                    value::object_id(errs, at(&loc, i), item);
                }
            } else {
                errs.add(FieldError::list_type(loc, v.clone()));
            }
        }
        Ty::ErrorCode => {
            value::enum_str(errs, loc, v, &ERROR_CODES);
        }
        Ty::CheckoutErrorCode => {
            value::enum_str(errs, loc, v, &CHECKOUT_ERROR_CODES);
        }
        Ty::Bool => {
            value::lax_bool(errs, loc, v);
        }
        Ty::Object => {
            value::object(errs, loc, v);
        }
        Ty::StrictInt => {
            value::strict_int(errs, loc, v);
        }
        Ty::Revision | Ty::Version => {
            let model = if matches!(f.ty, Ty::Revision) {
                REVISION
            } else {
                VERSION
            };
            match v {
                Value::Object(obj) => check_object(errs, &loc, obj, model),
                _ => errs.push(
                    loc,
                    "model_type",
                    format!(
                        "Input should be a valid dictionary or instance of {}",
                        if matches!(f.ty, Ty::Revision) {
                            "Revision"
                        } else {
                            "KernelVersion"
                        }
                    ),
                    v.clone(),
                ),
            }
        }
    }
}

/// The kind-normalised `data` that hierarchy submissions store: every field of the
/// kind's model present (absent ones as their default), unknown keys dropped, nested
/// revisions normalised the same way, URLs in normalised form, lax booleans as
/// booleans, ObjectIds as lowercase hex strings. Call after [`check`].
/// Kinds without a data model keep `data` as it is.
pub fn normalise(kind: Kind, data: Option<&Map<String, Value>>) -> Option<Map<String, Value>> {
    match kind.data_model() {
        None => data.cloned(),
        Some(model) => Some(normalise_object(data.unwrap_or(&Map::new()), model)),
    }
}

fn normalise_object(obj: &Map<String, Value>, model: &[Field]) -> Map<String, Value> {
    model
        .iter()
        .map(|f| {
            let v = match (obj.get(f.name), f.ty) {
                (Some(Value::Object(o)), Ty::Revision) => {
                    Value::Object(normalise_object(o, REVISION))
                }
                (Some(Value::Object(o)), Ty::Version) => {
                    Value::Object(normalise_object(o, VERSION))
                }
                (Some(Value::String(s)), Ty::Url) => {
                    Value::String(super::url::any_url(s).unwrap_or_else(|_| s.clone()))
                }
                (Some(v @ (Value::String(_) | Value::Number(_))), Ty::Bool) => {
                    let mut ignored = ValidationErrors::default();
                    value::lax_bool(&mut ignored, Vec::new(), v)
                        .map_or_else(|| v.clone(), Value::Bool)
                }
                (Some(Value::String(s)), Ty::ObjectId) => Value::String(s.to_ascii_lowercase()),
                (Some(Value::Array(ids)), Ty::ObjectIdList) => Value::Array(
                    ids.iter()
                        .map(|i| {
                            i.as_str()
                                .map_or_else(|| i.clone(), |s| Value::from(s.to_ascii_lowercase()))
                        })
                        .collect(),
                ),
                (Some(v), _) => v.clone(),
                (None, _) => match f.default {
                    Default::Null => Value::Null,
                    Default::EmptyList => Value::Array(Vec::new()),
                    Default::EmptyObject => Value::Object(Map::new()),
                },
            };
            (f.name.to_owned(), v)
        })
        .collect()
}

/// The integer coercion POST and PUT apply before the kind check (MODELS.md §2.2): when
/// `data.kernel_revision.version` is a non-empty object, each of its `version`,
/// `patchlevel` and `sublevel` values that is truthy is converted with Python's
/// `int()` rules (`"6"` → 6, `6.0` → 6, `"x"` → an error).
pub fn coerce_kernel_version(data: &mut Map<String, Value>) -> Result<()> {
    let Some(Value::Object(version)) = data
        .get_mut("kernel_revision")
        .and_then(|r| r.as_object_mut())
        .and_then(|r| r.get_mut("version"))
    else {
        return Ok(());
    };
    if version.is_empty() {
        return Ok(());
    }
    for key in ["version", "patchlevel", "sublevel"] {
        if let Some(v) = version.get_mut(key) {
            if truthy(v) {
                *v = Value::from(crate::validation::text::python_int(v)?);
            }
        }
    }
    Ok(())
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(kind: &str, data: Value) -> Node {
        let mut n = Node::new(kind, "n", crate::time::Timestamp::now());
        n.data = data.as_object().cloned();
        n
    }

    fn revision() -> Value {
        json!({"tree": "mainline", "url": "https://git.kernel.org/torvalds/linux.git",
               "branch": "master", "commit": "abc"})
    }

    #[test]
    fn unsupported_kinds_are_refused() {
        for k in ["node", "Checkout", "", "build"] {
            assert_eq!(
                check(&node(k, json!({}))),
                Err(Error::Invalid(format!("Unsupported node kind: {k}")))
            );
        }
    }

    #[test]
    fn every_kind_accepts_empty_data_and_unknown_keys() {
        for k in Kind::ALL {
            assert_eq!(check(&node(k.as_str(), json!({"whatever": [1, 2]}))), Ok(k));
        }
    }

    #[test]
    fn data_must_be_an_object_except_for_process() {
        let mut n = node("kbuild", json!({}));
        n.data = None;
        let err = check(&n).unwrap_err().to_string();
        assert_eq!(
            err,
            "1 validation error for Kbuild\ndata\n  Input should be a valid dictionary"
        );
        n.kind = "process".into();
        assert_eq!(check(&n), Ok(Kind::Process));
    }

    #[test]
    fn revision_fields_are_checked() {
        let mut rev = revision();
        rev["url"] = json!("git@github.com:torvalds/linux");
        let err = check(&node("checkout", json!({"kernel_revision": rev}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "1 validation error for Checkout\ndata.kernel_revision.url\n  \
             Input should be a valid URL, relative URL without a base"
        );
        let err = check(&node("kbuild", json!({"kernel_revision": {"tree": "x"}}))).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "3 validation errors for Kbuild\ndata.kernel_revision.url\n  Field required"
            ),
            "{err}"
        );
        assert!(check(&node("checkout", json!({"kernel_revision": revision()}))).is_ok());
        let mut rev = revision();
        rev["version"] = json!({"version": "6", "patchlevel": 1});
        let err = check(&node("test", json!({"kernel_revision": rev}))).unwrap_err();
        assert!(
            err.to_string().contains(
                "data.kernel_revision.version.version\n  Input should be a valid integer"
            ),
            "{err}"
        );
    }

    #[test]
    fn error_codes_are_per_kind() {
        assert!(check(&node("kbuild", json!({"error_code": "Infrastructure"}))).is_ok());
        assert!(check(&node(
            "test",
            json!({"error_code": "Unexisting permission codename."})
        ))
        .is_ok());
        assert!(check(&node("checkout", json!({"error_code": "Infrastructure"}))).is_err());
        assert!(check(&node(
            "checkout",
            json!({"error_code": "git_checkout_failure"})
        ))
        .is_ok());
        assert!(check(&node("job", json!({"error_code": "infrastructure"}))).is_err());
        assert!(check(&node("job", json!({"error_code": null}))).is_ok());
    }

    #[test]
    fn typed_fields() {
        assert!(check(&node("kbuild", json!({"arch": 1}))).is_err());
        assert!(check(&node("kbuild", json!({"regression": "zz"}))).is_err());
        assert!(check(&node(
            "kbuild",
            json!({"regression": "65a1355ee98651d0fe81e412"})
        ))
        .is_ok());
        assert!(check(&node("test", json!({"misc": null}))).is_err());
        assert!(check(&node("test", json!({"test_source": "not a url"}))).is_err());
        assert!(check(&node(
            "regression",
            json!({"node_sequence": ["65a1355ee98651d0fe81e412", "x"]})
        ))
        .is_err());
        assert!(check(&node("regression", json!({"node_sequence": null}))).is_err());
        assert!(check(&node(
            "checkout",
            json!({"architecture_filter": ["x86_64"]})
        ))
        .is_ok());
    }

    #[test]
    fn normalised_data_has_every_model_field_and_drops_unknown_keys() {
        let data = json!({"kernel_revision": revision(), "arch": "x86_64", "extra": 1});
        let n = normalise(Kind::Kbuild, data.as_object()).unwrap();
        assert_eq!(n.len(), KBUILD.len());
        assert!(!n.contains_key("extra"));
        assert_eq!(n["defconfig"], Value::Null);
        assert_eq!(n["kernel_revision"]["commit_tags"], json!([]));
        assert_eq!(
            n["kernel_revision"]["url"],
            "https://git.kernel.org/torvalds/linux.git"
        );
        let mut rev = revision();
        rev["tip_of_branch"] = json!("yes");
        let data = json!({"kernel_revision": rev, "regression": "65A1355EE98651D0FE81E412"});
        let n = normalise(Kind::Kbuild, data.as_object()).unwrap();
        assert_eq!(n["kernel_revision"]["tip_of_branch"], json!(true));
        assert_eq!(n["regression"], "65a1355ee98651d0fe81e412");
        let t = normalise(Kind::Test, None).unwrap();
        assert_eq!(t["misc"], json!({}));
        assert_eq!(
            normalise(Kind::Process, data.as_object()),
            data.as_object().cloned()
        );
    }

    #[test]
    fn kernel_version_coercion() {
        let mut data = json!({"kernel_revision": {"version": {"version": "6", "patchlevel": 6.0, "sublevel": 0, "extra": "-rc1"}}});
        coerce_kernel_version(data.as_object_mut().unwrap()).unwrap();
        assert_eq!(
            data["kernel_revision"]["version"],
            json!({"version": 6, "patchlevel": 6, "sublevel": 0, "extra": "-rc1"})
        );
        let mut data = json!({"kernel_revision": {"version": {"version": "x"}}});
        assert_eq!(
            coerce_kernel_version(data.as_object_mut().unwrap()),
            Err(Error::Invalid(
                "invalid literal for int() with base 10: 'x'".into()
            ))
        );
        let mut data = json!({"kernel_revision": {"version": {"version": [1]}}});
        assert!(coerce_kernel_version(data.as_object_mut().unwrap()).is_err());
        let mut untouched = json!({"kernel_revision": {"version": {}}, "x": "6"});
        coerce_kernel_version(untouched.as_object_mut().unwrap()).unwrap();
        assert_eq!(
            untouched,
            json!({"kernel_revision": {"version": {}}, "x": "6"})
        );
    }
}
