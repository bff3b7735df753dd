//! Telemetry events (MODELS.md §10): the model, its validation, and `POST
//! /telemetry` bodies.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result, ValidationErrors};
use crate::id::ObjectId;
use crate::time::Timestamp;
use crate::validation::{value, FieldError, Loc};

/// The model name in validation messages (`1 validation error for TelemetryEvent`).
pub const MODEL_NAME: &str = "TelemetryEvent";

/// The optional string fields, in the model's order.
pub const OPTIONAL_FIELDS: [&str; 12] = [
    "device_type",
    "device_id",
    "job_name",
    "test_name",
    "job_id",
    "node_id",
    "tree",
    "branch",
    "arch",
    "result",
    "error_type",
    "error_msg",
];

/// One telemetry event (MODELS.md §10), as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TelemetryEvent {
    /// Assigned by the server (never taken from the client).
    pub id: ObjectId,
    /// When it happened (UTC; default: when it was posted).
    pub ts: Timestamp,
    /// `runtime_error`, `job_submission`, `job_skip`, `job_result`, `test_result` by
    /// convention (not enforced).
    pub kind: String,
    /// Lab / runtime name (reported as `lab` by the reports).
    pub runtime: String,
    /// Device type.
    #[serde(default)]
    pub device_type: Option<String>,
    /// Device id.
    #[serde(default)]
    pub device_id: Option<String>,
    /// Job name.
    #[serde(default)]
    pub job_name: Option<String>,
    /// Test name.
    #[serde(default)]
    pub test_name: Option<String>,
    /// Job id in the lab.
    #[serde(default)]
    pub job_id: Option<String>,
    /// KernelCI node id.
    #[serde(default)]
    pub node_id: Option<String>,
    /// Kernel tree.
    #[serde(default)]
    pub tree: Option<String>,
    /// Kernel branch.
    #[serde(default)]
    pub branch: Option<String>,
    /// Architecture.
    #[serde(default)]
    pub arch: Option<String>,
    /// `pass`, `fail`, `incomplete`, `skip` (what the reports count).
    #[serde(default)]
    pub result: Option<String>,
    /// Error class.
    #[serde(default)]
    pub error_type: Option<String>,
    /// Error message.
    #[serde(default)]
    pub error_msg: Option<String>,
    /// The failure is the infrastructure's, not the kernel's.
    #[serde(default)]
    pub is_infra_error: bool,
    /// Retry number.
    #[serde(default)]
    pub retry: i64,
    /// Anything else.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub extra: Map<String, Value>,
}

impl TelemetryEvent {
    /// Validates one event object with the model's rules (pydantic lax mode: booleans
    /// from `"yes"`/`1`..., integers from integral floats and numeric strings, strict
    /// strings) and fills the defaults: `ts` = `now`, `is_infra_error` false, `retry`
    /// 0, `extra` `{}`. The event gets `id`; `ts` is truncated to the millisecond.
    /// Every problem is reported at once, located by field name.
    pub fn from_json(
        v: &Value,
        id: ObjectId,
        now: Timestamp,
    ) -> std::result::Result<Self, ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let Value::Object(obj) = v else {
            errs.push(
                Vec::new(),
                "model_type",
                "Input should be a valid dictionary or instance of TelemetryEvent",
                v.clone(),
            );
            return Err(errs);
        };
        let e = &mut errs;
        let l = |k: &str| -> Loc { vec![Value::from(k)] };
        let ts = match obj.get("ts") {
            Some(v) => value::datetime(e, l("ts"), v),
            None => Some(now),
        };
        let required = |e: &mut ValidationErrors, k: &str| match obj.get(k) {
            Some(v) => value::string(e, l(k), v),
            None => {
                e.add(FieldError::missing(l(k), v.clone()));
                None
            }
        };
        let kind = required(e, "kind");
        let runtime = required(e, "runtime");
        let mut optional: [Option<String>; 12] = Default::default();
        for (slot, name) in optional.iter_mut().zip(OPTIONAL_FIELDS) {
            if let Some(v) = obj.get(name) {
                *slot = value::opt_string(e, l(name), v).flatten();
            }
        }
        let is_infra_error = obj
            .get("is_infra_error")
            .map_or(Some(false), |v| value::lax_bool(e, l("is_infra_error"), v));
        let retry = obj
            .get("retry")
            .map_or(Some(0), |v| value::lax_int(e, l("retry"), v));
        let extra = obj
            .get("extra")
            .map_or(Some(Map::new()), |v| value::object(e, l("extra"), v));
        let (Some(ts), Some(kind), Some(runtime), Some(is_infra_error), Some(retry), Some(extra)) =
            (ts, kind, runtime, is_infra_error, retry, extra)
        else {
            return Err(errs);
        };
        if !errs.is_empty() {
            return Err(errs);
        }
        let [device_type, device_id, job_name, test_name, job_id, node_id, tree, branch, arch, result, error_type, error_msg] =
            optional;
        Ok(Self {
            id,
            ts: ts.truncate_to_millis(),
            kind,
            runtime,
            device_type,
            device_id,
            job_name,
            test_name,
            job_id,
            node_id,
            tree,
            branch,
            arch,
            result,
            error_type,
            error_msg,
            is_infra_error,
            retry,
            extra,
        })
    }

    /// The event's JSON document (what `GET /telemetry` returns and its exact-match
    /// filters look at).
    pub fn document(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The value of a `group_by` field ([`GROUP_BY_FIELDS`](super::GROUP_BY_FIELDS); `lab` is the runtime).
    pub fn group_value(&self, field: &str) -> Option<&str> {
        match field {
            "runtime" | "lab" => Some(&self.runtime),
            "kind" => Some(&self.kind),
            "device_type" => self.device_type.as_deref(),
            "device_id" => self.device_id.as_deref(),
            "job_name" => self.job_name.as_deref(),
            "tree" => self.tree.as_deref(),
            "branch" => self.branch.as_deref(),
            "arch" => self.arch.as_deref(),
            "error_type" => self.error_type.as_deref(),
            _ => None,
        }
    }
}

/// Validates a `POST /telemetry` body and gives each event a new id, in order.
///
/// - not an array: [`Error::Validation`] (`list_type` at `["body"]`);
/// - an element that is not an object: [`Error::Validation`] (`dict_type` at
///   `["body", i]`, every such element listed);
/// - an empty array: [`Error::Invalid`] `Events list cannot be empty`;
/// - an element failing the model: [`Error::Invalid`] `Invalid telemetry event: 1
///   validation error for TelemetryEvent\nkind\n  Field required` (the first such
///   element; nothing is to be stored).
pub fn parse_batch(body: &Value, now: Timestamp) -> Result<Vec<TelemetryEvent>> {
    let mut errs = ValidationErrors::default();
    let Value::Array(items) = body else {
        errs.add(FieldError::list_type(vec!["body".into()], body.clone()));
        return Err(Error::Validation(errs));
    };
    for (i, item) in items.iter().enumerate() {
        if !item.is_object() {
            errs.push(
                vec!["body".into(), i.into()],
                "dict_type",
                "Input should be a valid dictionary",
                item.clone(),
            );
        }
    }
    errs.into_result()?;
    if items.is_empty() {
        return Err(Error::Invalid("Events list cannot be empty".into()));
    }
    items
        .iter()
        .map(|item| {
            TelemetryEvent::from_json(item, ObjectId::new(), now).map_err(|errs| {
                Error::Invalid(format!(
                    "Invalid telemetry event: {}",
                    errs.describe(MODEL_NAME)
                ))
            })
        })
        .collect()
}
