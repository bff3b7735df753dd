//! Telemetry: the events labs and pipeline services report (MODELS.md §10), the
//! `/telemetry` query, and the `/telemetry/stats` and `/telemetry/anomalies` reports
//! (API.md §8), as pure functions over a slice of events.
//!
//! - [`TelemetryEvent::from_json`] and [`parse_batch`] validate a `POST /telemetry`
//!   body with the reference's rules and texts;
//! - [`TelemetryQuery`] is the `GET /telemetry` filter a [`crate::store::Store`]
//!   answers;
//! - [`StatsQuery`] and [`stats`] compute the grouped counts of `/telemetry/stats`;
//! - [`AnomalyQuery`] and [`anomalies`] compute the `/telemetry/anomalies` report;
//! - [`ParamError`]: typed query parameters with FastAPI's
//!   validation items (`int_parsing`, `greater_than_equal`...).
//!
//! Stored events keep millisecond precision (as the reference's MongoDB does), so
//! `ts` values read back always end in `000` microseconds; query datetimes are
//! truncated the same way before comparing.
//!
//! Choices where the reference is silent or unspecified:
//!
//! - a client-supplied `id` (or `_id`) in a posted event is ignored; the server
//!   assigns ids in posting order;
//! - the exact-match filters of `GET /telemetry` compare against the event's JSON
//!   form, so `id=<hex>` finds that event and `ts` compares with its text form;
//! - an empty `since=`/`until=` (and the stats filters, `kind=` ...) counts as absent;
//! - groups of equal size (stats), equal rates (result anomalies) or equal counts
//!   (error anomalies) keep the order in which their first event was stored;
//! - the anomaly thresholds are compared with the exact rates; the rates reported
//!   and the sort use the values rounded to 3 decimals (Python's `round`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result, ValidationErrors};
use crate::exact::ExactFilter;
use crate::id::ObjectId;
use crate::node::check::{self, Loc};
use crate::time::{parse_query_datetime, Timestamp};

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
            Some(v) => check::datetime(e, l("ts"), v),
            None => Some(now),
        };
        let required = |e: &mut ValidationErrors, k: &str| match obj.get(k) {
            Some(v) => check::string(e, l(k), v),
            None => {
                e.push(l(k), "missing", "Field required", v.clone());
                None
            }
        };
        let kind = required(e, "kind");
        let runtime = required(e, "runtime");
        let mut optional: [Option<String>; 12] = Default::default();
        for (slot, name) in optional.iter_mut().zip(OPTIONAL_FIELDS) {
            if let Some(v) = obj.get(name) {
                *slot = check::opt_string(e, l(name), v).flatten();
            }
        }
        let is_infra_error = obj
            .get("is_infra_error")
            .map_or(Some(false), |v| check::lax_bool(e, l("is_infra_error"), v));
        let retry = obj
            .get("retry")
            .map_or(Some(0), |v| lax_int(e, l("retry"), v));
        let extra = obj
            .get("extra")
            .map_or(Some(Map::new()), |v| check::object(e, l("extra"), v));
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

    /// The value of a `group_by` field ([`GROUP_BY_FIELDS`]; `lab` is the runtime).
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

/// pydantic's lax integer (Python mode): integers, booleans, integral floats, and
/// strings holding a decimal integer.
fn lax_int(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<i64> {
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
        Value::String(s) => parse_int(s).ok_or((
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
        )),
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

/// A decimal integer with optional surrounding whitespace and sign.
fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    t.strip_prefix('+').unwrap_or(t).parse().ok()
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
        errs.push(
            vec!["body".into()],
            "list_type",
            "Input should be a valid list",
            body.clone(),
        );
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

// ---- query parameters ----------------------------------------------------------------

/// A query parameter refused by its declared type or bounds: one item of FastAPI's
/// 422 list (`{"type", "loc": ["query", name], "msg", "input", "ctx"?}`).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    /// The parameter.
    pub name: &'static str,
    /// pydantic's error type (`int_parsing`, `greater_than_equal`...).
    pub kind: &'static str,
    /// The message.
    pub msg: String,
    /// The value as received.
    pub input: String,
    /// The constraint (`{"ge": 1}`...), when the error type has one (boxed: it is
    /// rare, and keeps the error small).
    pub ctx: Option<Box<Value>>,
}

impl ParamError {
    /// The pydantic item.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "type": self.kind,
            "loc": ["query", self.name],
            "msg": self.msg,
            "input": self.input,
        });
        if let (Some(ctx), Value::Object(m)) = (self.ctx.as_deref(), &mut v) {
            m.insert("ctx".into(), ctx.clone());
        }
        v
    }
}

fn last<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}

/// An integer query parameter `name` ≥ `ge` (FastAPI `Query(default, ge=...)`).
/// Values too large for `i64` saturate.
pub fn int_param(
    pairs: &[(String, String)],
    name: &'static str,
    default: i64,
    ge: i64,
) -> std::result::Result<i64, ParamError> {
    let Some(raw) = last(pairs, name) else {
        return Ok(default);
    };
    let t = raw.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    let value = if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
        parse_int(raw).unwrap_or(if t.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        })
    } else {
        return Err(ParamError {
            name,
            kind: "int_parsing",
            msg: "Input should be a valid integer, unable to parse string as an integer".into(),
            input: raw.to_owned(),
            ctx: None,
        });
    };
    if value < ge {
        return Err(ParamError {
            name,
            kind: "greater_than_equal",
            msg: format!("Input should be greater than or equal to {ge}"),
            input: raw.to_owned(),
            ctx: Some(Box::new(json!({ "ge": ge }))),
        });
    }
    Ok(value)
}

/// A float query parameter `name` in `[ge, le]` (FastAPI `Query(default, ge=..., le=...)`).
pub fn float_param(
    pairs: &[(String, String)],
    name: &'static str,
    default: f64,
    ge: f64,
    le: f64,
) -> std::result::Result<f64, ParamError> {
    let Some(raw) = last(pairs, name) else {
        return Ok(default);
    };
    let err = |kind, msg: String, ctx| ParamError {
        name,
        kind,
        msg,
        input: raw.to_owned(),
        ctx,
    };
    let value: f64 = raw.trim().parse().map_err(|_| {
        err(
            "float_parsing",
            "Input should be a valid number, unable to parse string as a number".into(),
            None,
        )
    })?;
    // NaN is in no range: it fails the first check.
    if value.is_nan() || value < ge {
        return Err(err(
            "greater_than_equal",
            format!("Input should be greater than or equal to {ge}"),
            Some(Box::new(json!({ "ge": ge }))),
        ));
    }
    if value > le {
        return Err(err(
            "less_than_equal",
            format!("Input should be less than or equal to {le}"),
            Some(Box::new(json!({ "le": le }))),
        ));
    }
    Ok(value)
}

/// A query datetime (`since`, `until`): Python `fromisoformat`, truncated to the
/// millisecond; refused as `Invalid isoformat string: '<v>'`. Empty = absent.
fn datetime_param(pairs: &[(String, String)], name: &str) -> Result<Option<Timestamp>> {
    match last(pairs, name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => Ok(Some(parse_query_datetime(v)?.truncate_to_millis())),
    }
}

/// Whether `ts` is within `[since, until]` (each bound optional, both inclusive).
pub fn in_range(ts: Timestamp, since: Option<Timestamp>, until: Option<Timestamp>) -> bool {
    since.is_none_or(|s| ts >= s) && until.is_none_or(|u| ts <= u)
}

// ---- GET /telemetry ------------------------------------------------------------------

/// The default page size.
pub const DEFAULT_LIMIT: u64 = 50;

/// A `GET /telemetry` query: `ts` bounds, exact-match terms, one page.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryQuery {
    /// `ts >= since`.
    pub since: Option<Timestamp>,
    /// `ts <= until`.
    pub until: Option<Timestamp>,
    /// Exact-match terms on the event's JSON document ([`TelemetryEvent::document`]).
    pub filter: ExactFilter,
    /// Page size.
    pub limit: u64,
    /// Items skipped.
    pub offset: u64,
}

impl Default for TelemetryQuery {
    fn default() -> Self {
        Self {
            since: None,
            until: None,
            filter: ExactFilter::default(),
            limit: DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

impl TelemetryQuery {
    /// Parses the query pairs (`limit`/`offset` excluded: the HTTP layer reads them):
    /// `since`/`until` (ISO, `Invalid isoformat string: '<v>'`), `is_infra_error`
    /// (`true`/`false` in any case, else `Bad is_infra_error value, use 'true' or
    /// 'false'`), every other parameter an exact match (`true`/`false` as booleans).
    pub fn parse(pairs: &[(String, String)], limit: u64, offset: u64) -> Result<Self> {
        let since = datetime_param(pairs, "since")?;
        let until = datetime_param(pairs, "until")?;
        let infra = match last(pairs, "is_infra_error") {
            None => None,
            Some(v) if v.eq_ignore_ascii_case("true") => Some(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Some(false),
            Some(_) => {
                return Err(Error::Invalid(
                    "Bad is_infra_error value, use 'true' or 'false'".into(),
                ))
            }
        };
        let mut filter = ExactFilter::from_pairs(
            pairs,
            &["limit", "offset", "since", "until", "is_infra_error"],
        )?;
        if let Some(b) = infra {
            filter.terms.push(("is_infra_error".into(), Value::Bool(b)));
        }
        Ok(Self {
            since,
            until,
            filter,
            limit,
            offset,
        })
    }

    /// Whether `e` satisfies the bounds and terms (limit and offset not looked at).
    pub fn matches(&self, e: &TelemetryEvent) -> bool {
        in_range(e.ts, self.since, self.until)
            && (self.filter.terms.is_empty() || self.filter.matches(&e.document()))
    }
}

// ---- GET /telemetry/stats ------------------------------------------------------------

/// The fields `group_by` may name (`lab` is the runtime under another name).
pub const GROUP_BY_FIELDS: [&str; 10] = [
    "runtime",
    "lab",
    "device_type",
    "device_id",
    "job_name",
    "tree",
    "branch",
    "arch",
    "kind",
    "error_type",
];

/// The exact-match filters of `/telemetry/stats` (plus `lab`, an alias of `runtime`).
pub const STATS_FILTERS: [&str; 8] = [
    "kind",
    "runtime",
    "device_type",
    "device_id",
    "job_name",
    "tree",
    "branch",
    "arch",
];

/// A parsed `/telemetry/stats` query.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsQuery {
    /// The grouping fields, in the order given, without repeats.
    pub group_by: Vec<&'static str>,
    /// Exact string matches on [`STATS_FILTERS`] (`lab` folded into `runtime`).
    pub filter: ExactFilter,
    /// `ts >= since`.
    pub since: Option<Timestamp>,
    /// `ts <= until`.
    pub until: Option<Timestamp>,
}

impl StatsQuery {
    /// Parses the query pairs, checking in this order: `group_by` present (`'group_by'
    /// parameter is required`), every name known (`Invalid group_by fields: {'x'}`),
    /// `lab` and `runtime` agree (`'lab' and 'runtime' must match when both are
    /// provided`), `since`/`until` parse. Other parameters are ignored.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self> {
        let required = || Error::Invalid("'group_by' parameter is required".into());
        let raw = last(pairs, "group_by").ok_or_else(required)?;
        let mut names: Vec<&str> = Vec::new();
        for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if names.is_empty() {
            return Err(required());
        }
        let unknown: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !GROUP_BY_FIELDS.contains(n))
            .collect();
        if !unknown.is_empty() {
            return Err(Error::Invalid(format!(
                "Invalid group_by fields: {}",
                python_set(&unknown)
            )));
        }
        let group_by = names
            .iter()
            .filter_map(|n| GROUP_BY_FIELDS.iter().find(|f| *f == n).copied())
            .collect();
        let value = |k: &str| last(pairs, k).filter(|v| !v.is_empty());
        let runtime = match (value("runtime"), value("lab")) {
            (Some(r), Some(l)) if r != l => {
                return Err(Error::Invalid(
                    "'lab' and 'runtime' must match when both are provided".into(),
                ))
            }
            (r, l) => r.or(l),
        };
        let mut filter = ExactFilter::default();
        for field in STATS_FILTERS {
            let v = if field == "runtime" {
                runtime
            } else {
                value(field)
            };
            if let Some(v) = v {
                filter.terms.push((field.into(), Value::String(v.into())));
            }
        }
        Ok(Self {
            group_by,
            filter,
            since: datetime_param(pairs, "since")?,
            until: datetime_param(pairs, "until")?,
        })
    }

    /// Whether `e` is counted.
    pub fn matches(&self, e: &TelemetryEvent) -> bool {
        in_range(e.ts, self.since, self.until)
            && self
                .filter
                .terms
                .iter()
                .all(|(k, v)| e.group_value(k) == v.as_str())
    }
}

/// Python's `repr` of a set of strings, in the given order: `{'a', 'b'}`.
fn python_set(items: &[&str]) -> String {
    let reprs: Vec<String> = items.iter().map(|s| python_repr(s)).collect();
    format!("{{{}}}", reprs.join(", "))
}

/// Python's `repr` of a string.
fn python_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Result counts of a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    total: u64,
    pass: u64,
    fail: u64,
    incomplete: u64,
    skip: u64,
    infra_error: u64,
}

impl Counts {
    fn add(&mut self, e: &TelemetryEvent) {
        self.total += 1;
        match e.result.as_deref() {
            Some("pass") => self.pass += 1,
            Some("fail") => self.fail += 1,
            Some("incomplete") => self.incomplete += 1,
            Some("skip") => self.skip += 1,
            _ => {}
        }
        self.infra_error += u64::from(e.is_infra_error);
    }

    fn put(&self, row: &mut Map<String, Value>) {
        for (k, v) in [
            ("total", self.total),
            ("pass", self.pass),
            ("fail", self.fail),
            ("incomplete", self.incomplete),
            ("skip", self.skip),
            ("infra_error", self.infra_error),
        ] {
            row.insert(k.into(), v.into());
        }
    }
}

/// Groups in order of first appearance.
struct Groups<K, G> {
    index: HashMap<K, usize>,
    items: Vec<(K, G)>,
}

impl<K: std::hash::Hash + Eq + Clone, G: Default> Groups<K, G> {
    fn new() -> Self {
        Self {
            index: HashMap::new(),
            items: Vec::new(),
        }
    }

    fn entry(&mut self, key: K) -> &mut G {
        let i = *self.index.entry(key.clone()).or_insert_with(|| {
            self.items.push((key, G::default()));
            self.items.len() - 1
        });
        &mut self.items[i].1
    }
}

/// The `/telemetry/stats` rows: one per distinct tuple of the `group_by` values among
/// the events `q` matches, `{<field>: value, total, pass, fail, incomplete, skip,
/// infra_error}` (counts by `result`; `infra_error` counts `is_infra_error`; a missing
/// value is `null`), sorted by `total` descending.
pub fn stats(q: &StatsQuery, events: &[TelemetryEvent]) -> Vec<Value> {
    let mut groups: Groups<Vec<Option<String>>, Counts> = Groups::new();
    for e in events.iter().filter(|e| q.matches(e)) {
        let key = q
            .group_by
            .iter()
            .map(|f| e.group_value(f).map(str::to_owned))
            .collect();
        groups.entry(key).add(e);
    }
    let mut items = groups.items;
    items.sort_by_key(|(_, c)| std::cmp::Reverse(c.total));
    items
        .into_iter()
        .map(|(key, counts)| {
            let mut row = Map::new();
            for (field, value) in q.group_by.iter().zip(key) {
                row.insert((*field).into(), value.map_or(Value::Null, Value::String));
            }
            counts.put(&mut row);
            Value::Object(row)
        })
        .collect()
}

// ---- GET /telemetry/anomalies --------------------------------------------------------

/// The windows `/telemetry/anomalies` accepts, with their length in hours.
pub const WINDOWS: [(&str, i64); 6] = [
    ("1h", 1),
    ("3h", 3),
    ("6h", 6),
    ("12h", 12),
    ("24h", 24),
    ("48h", 48),
];

/// How result anomalies are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// By runtime and device type (job and test results).
    DeviceType,
    /// By runtime, device type and device id (job results that name a device).
    Device,
}

impl Scope {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::DeviceType => "device_type",
            Scope::Device => "device",
        }
    }
}

/// Why a query was refused: parameters failing their declared type or bounds (a
/// FastAPI 422 list), or a refused value checked by the handler.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// Type or bound failures, in parameter order.
    Params(Vec<ParamError>),
    /// A refused value (`Error::Invalid`).
    Invalid(Error),
}

/// A parsed `/telemetry/anomalies` query.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyQuery {
    /// One of [`WINDOWS`].
    pub window: &'static str,
    /// Its length in hours.
    pub hours: i64,
    /// Rate at or above which a group is reported, in `[0, 1]` (default 0.5).
    pub threshold: f64,
    /// Smallest group size (or error count) reported, ≥ 1 (default 3).
    pub min_total: u64,
    /// Grouping of result anomalies.
    pub scope: Scope,
}

impl AnomalyQuery {
    /// Parses the query pairs: first the declared parameters (`threshold` float in
    /// `[0, 1]`, `min_total` int ≥ 1, `scope` `device_type` | `device`; every failure
    /// listed), then `window` (`Invalid window '<w>'. Use: 1h, 3h, 6h, 12h, 24h, 48h`).
    pub fn parse(pairs: &[(String, String)]) -> std::result::Result<Self, Rejection> {
        let threshold = float_param(pairs, "threshold", 0.5, 0.0, 1.0);
        let min_total = int_param(pairs, "min_total", 3, 1);
        let scope = match last(pairs, "scope") {
            None | Some("device_type") => Ok(Scope::DeviceType),
            Some("device") => Ok(Scope::Device),
            Some(other) => Err(ParamError {
                name: "scope",
                kind: "literal_error",
                msg: "Input should be 'device_type' or 'device'".into(),
                input: other.to_owned(),
                ctx: Some(Box::new(json!({"expected": "'device_type' or 'device'"}))),
            }),
        };
        let (threshold, min_total, scope) = match (threshold, min_total, scope) {
            (Ok(t), Ok(m), Ok(s)) => (t, m, s),
            (t, m, s) => {
                return Err(Rejection::Params(
                    [t.err(), m.err(), s.err()].into_iter().flatten().collect(),
                ))
            }
        };
        let w = last(pairs, "window").unwrap_or("6h");
        let Some(&(window, hours)) = WINDOWS.iter().find(|(name, _)| *name == w) else {
            return Err(Rejection::Invalid(Error::Invalid(format!(
                "Invalid window '{w}'. Use: 1h, 3h, 6h, 12h, 24h, 48h"
            ))));
        };
        Ok(Self {
            window,
            hours,
            threshold,
            min_total: min_total.unsigned_abs(),
            scope,
        })
    }

    /// The start of the window ending at `now`.
    pub fn since(&self, now: Timestamp) -> Timestamp {
        now.plus_seconds(-self.hours * 3600)
    }
}

/// Python's `round(x, 3)`: correctly rounded, ties to even on the exact binary value.
pub fn round3(x: f64) -> f64 {
    format!("{x:.3}").parse().unwrap_or(x)
}

#[derive(Default)]
struct ResultGroup {
    counts: Counts,
    newest: Option<(Timestamp, Option<String>, Option<String>)>,
}

/// The `/telemetry/anomalies` report over `events` at `now` (events before the window
/// are ignored, so the caller may pass more than the window):
///
/// `{window, threshold, min_total, scope, since, result_anomalies, error_anomalies}`
/// where `since` is `now - window` as ISO with `+00:00`;
///
/// - `result_anomalies`: `job_result` and `test_result` events (scope `device`: only
///   `job_result` with a non-empty `device_id`) grouped by runtime, device type (and
///   device id); groups with `total >= min_total` and an infrastructure rate
///   (`infra_error/total`) or failure rate (`(fail+incomplete)/total`) at or above the
///   threshold; each row has the group keys (`runtime`, `lab`, `device_type`,
///   `device_id` with scope `device`), the counts, both rates rounded to 3 decimals,
///   `constant_failure` (no pass, every event failed or incomplete),
///   `constant_infra_failure` (every event an infrastructure error), `last_seen`, and
///   `latest_error_type`/`latest_error_msg` of the newest event; sorted by
///   infrastructure rate then failure rate, descending;
/// - `error_anomalies`: `runtime_error` and `job_skip` events grouped by runtime and
///   error type, `{runtime, error_type, count}` with `count >= min_total`, by count
///   descending.
pub fn anomalies(q: &AnomalyQuery, now: Timestamp, events: &[TelemetryEvent]) -> Value {
    let since = q.since(now);
    let cutoff = since.truncate_to_millis();
    let recent = || events.iter().filter(move |e| e.ts >= cutoff);

    type ResultKey = (String, Option<String>, Option<String>);
    let mut results: Groups<ResultKey, ResultGroup> = Groups::new();
    for e in recent() {
        let wanted = match q.scope {
            Scope::DeviceType => matches!(e.kind.as_str(), "job_result" | "test_result"),
            Scope::Device => {
                e.kind == "job_result" && e.device_id.as_deref().is_some_and(|d| !d.is_empty())
            }
        };
        if !wanted {
            continue;
        }
        let device_id = match q.scope {
            Scope::DeviceType => None,
            Scope::Device => e.device_id.clone(),
        };
        let g = results.entry((e.runtime.clone(), e.device_type.clone(), device_id));
        g.counts.add(e);
        if g.newest.as_ref().is_none_or(|(ts, _, _)| e.ts >= *ts) {
            g.newest = Some((e.ts, e.error_type.clone(), e.error_msg.clone()));
        }
    }
    let mut rows: Vec<(f64, f64, Value)> = Vec::new();
    for ((runtime, device_type, device_id), g) in results.items {
        let c = g.counts;
        if c.total < q.min_total {
            continue;
        }
        let total = c.total as f64;
        let infra_rate = c.infra_error as f64 / total;
        let fail_rate = (c.fail + c.incomplete) as f64 / total;
        if infra_rate < q.threshold && fail_rate < q.threshold {
            continue;
        }
        let (infra_rate, fail_rate) = (round3(infra_rate), round3(fail_rate));
        let mut row = Map::new();
        row.insert("runtime".into(), Value::String(runtime.clone()));
        row.insert("lab".into(), Value::String(runtime));
        row.insert("device_type".into(), json!(device_type));
        if q.scope == Scope::Device {
            row.insert("device_id".into(), json!(device_id));
        }
        c.put(&mut row);
        row.insert("infra_rate".into(), json!(infra_rate));
        row.insert("fail_rate".into(), json!(fail_rate));
        row.insert(
            "constant_failure".into(),
            json!(c.pass == 0 && c.fail + c.incomplete == c.total),
        );
        row.insert(
            "constant_infra_failure".into(),
            json!(c.infra_error == c.total),
        );
        let (last_seen, error_type, error_msg) = g.newest.unwrap_or((cutoff, None, None));
        row.insert("last_seen".into(), json!(last_seen.to_string()));
        row.insert("latest_error_type".into(), json!(error_type));
        row.insert("latest_error_msg".into(), json!(error_msg));
        rows.push((infra_rate, fail_rate, Value::Object(row)));
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1)));

    let mut errors: Groups<(String, Option<String>), u64> = Groups::new();
    for e in recent().filter(|e| matches!(e.kind.as_str(), "runtime_error" | "job_skip")) {
        *errors.entry((e.runtime.clone(), e.error_type.clone())) += 1;
    }
    let mut error_rows: Vec<((String, Option<String>), u64)> = errors
        .items
        .into_iter()
        .filter(|(_, n)| *n >= q.min_total)
        .collect();
    error_rows.sort_by_key(|(_, n)| std::cmp::Reverse(*n));

    json!({
        "window": q.window,
        "threshold": q.threshold,
        "min_total": q.min_total,
        "scope": q.scope.as_str(),
        "since": format!("{since}+00:00"),
        "result_anomalies": rows.into_iter().map(|(_, _, r)| r).collect::<Vec<_>>(),
        "error_anomalies": error_rows
            .into_iter()
            .map(|((runtime, error_type), count)| {
                json!({"runtime": runtime, "error_type": error_type, "count": count})
            })
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(qs: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(qs.as_bytes()).into_owned().collect()
    }

    fn t(s: &str) -> Timestamp {
        parse_query_datetime(s).unwrap()
    }

    fn event(v: Value) -> TelemetryEvent {
        TelemetryEvent::from_json(&v, ObjectId::new(), t("2024-05-01T12:00:00")).unwrap()
    }

    fn invalid(v: Value) -> String {
        TelemetryEvent::from_json(&v, ObjectId::new(), Timestamp::now())
            .unwrap_err()
            .describe(MODEL_NAME)
    }

    #[test]
    fn defaults_and_coercions() {
        let now = t("2024-05-01T12:00:00.123456");
        let e = TelemetryEvent::from_json(
            &json!({"kind": "job_result", "runtime": "lava-collabora", "id": "ignored"}),
            ObjectId::from_bytes([1; 12]),
            now,
        )
        .unwrap();
        assert_eq!(e.id, ObjectId::from_bytes([1; 12]));
        assert_eq!(e.ts.to_string(), "2024-05-01T12:00:00.123000");
        assert!(!e.is_infra_error && e.retry == 0 && e.extra.is_empty());
        assert_eq!(e.device_type, None);
        let doc = e.document();
        assert_eq!(doc.as_object().unwrap().len(), 19);
        assert_eq!(doc["id"], "010101010101010101010101");
        assert_eq!(doc["device_type"], Value::Null);
        assert_eq!(serde_json::from_value::<TelemetryEvent>(doc).unwrap(), e);

        let e = event(json!({
            "kind": "k", "runtime": "r", "ts": "2024-01-01T10:00:00+02:00",
            "is_infra_error": "yes", "retry": "2", "extra": {"a": [1]}, "arch": null,
            "device_type": "qemu"
        }));
        assert_eq!(e.ts, t("2024-01-01T08:00:00"));
        assert!(e.is_infra_error);
        assert_eq!(e.retry, 2);
        assert_eq!(e.extra["a"], json!([1]));
        assert_eq!(e.device_type.as_deref(), Some("qemu"));
        assert_eq!(
            event(json!({"kind": "k", "runtime": "r", "retry": 3.0})).retry,
            3
        );
        assert_eq!(
            event(json!({"kind": "k", "runtime": "r", "retry": true})).retry,
            1
        );
    }

    #[test]
    fn validation_texts() {
        assert_eq!(
            invalid(json!({"runtime": "r"})),
            "1 validation error for TelemetryEvent\nkind\n  Field required"
        );
        assert_eq!(
            invalid(json!({})),
            "2 validation errors for TelemetryEvent\nkind\n  Field required\nruntime\n  Field required"
        );
        assert_eq!(
            invalid(json!({"kind": 1, "runtime": "r", "device_id": 5})),
            "2 validation errors for TelemetryEvent\nkind\n  Input should be a valid string\n\
             device_id\n  Input should be a valid string"
        );
        assert_eq!(
            invalid(json!({"kind": "k", "runtime": "r", "ts": "yesterday"})),
            "1 validation error for TelemetryEvent\nts\n  Input should be a valid datetime"
        );
        assert_eq!(
            invalid(json!({"kind": "k", "runtime": "r", "is_infra_error": "maybe"})),
            "1 validation error for TelemetryEvent\nis_infra_error\n  \
             Input should be a valid boolean, unable to interpret input"
        );
        assert_eq!(
            invalid(json!({"kind": "k", "runtime": "r", "retry": 1.5})),
            "1 validation error for TelemetryEvent\nretry\n  \
             Input should be a valid integer, got a number with a fractional part"
        );
        assert_eq!(
            invalid(json!({"kind": "k", "runtime": "r", "retry": "x"})),
            "1 validation error for TelemetryEvent\nretry\n  \
             Input should be a valid integer, unable to parse string as an integer"
        );
        assert_eq!(
            invalid(json!({"kind": "k", "runtime": "r", "extra": []})),
            "1 validation error for TelemetryEvent\nextra\n  Input should be a valid dictionary"
        );
        assert_eq!(
            invalid(json!({"kind": "k", "runtime": null})),
            "1 validation error for TelemetryEvent\nruntime\n  Input should be a valid string"
        );
    }

    #[test]
    fn batches() {
        let now = Timestamp::now();
        let err = |v: Value| parse_batch(&v, now).unwrap_err();
        match err(json!({"kind": "k"})) {
            Error::Validation(e) => {
                assert_eq!(
                    (e.0[0].kind, e.0[0].loc.clone()),
                    ("list_type", vec![json!("body")])
                )
            }
            other => panic!("{other:?}"),
        }
        match err(json!([{"kind": "k", "runtime": "r"}, 1, "x"])) {
            Error::Validation(e) => {
                assert_eq!(e.0.len(), 2);
                assert_eq!(e.0[1].loc, vec![json!("body"), json!(2)]);
                assert_eq!(e.0[1].kind, "dict_type");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err(json!([])),
            Error::Invalid("Events list cannot be empty".into())
        );
        assert_eq!(
            err(json!([{"kind": "k", "runtime": "r"}, {"kind": "k"}])).to_string(),
            "Invalid telemetry event: 1 validation error for TelemetryEvent\nruntime\n  Field required"
        );
        let ok = parse_batch(
            &json!([{"kind": "a", "runtime": "r"}, {"kind": "b", "runtime": "r"}]),
            now,
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert!(ok[0].id < ok[1].id, "ids in posting order");
    }

    #[test]
    fn params_and_pages() {
        assert_eq!(int_param(&pairs(""), "min_total", 3, 1), Ok(3));
        assert_eq!(
            int_param(&pairs("min_total=5&min_total=4"), "min_total", 3, 1),
            Ok(4)
        );
        let e = int_param(&pairs("min_total=0"), "min_total", 3, 1).unwrap_err();
        assert_eq!(
            e.to_json(),
            json!({"type": "greater_than_equal", "loc": ["query", "min_total"],
                   "msg": "Input should be greater than or equal to 1", "input": "0",
                   "ctx": {"ge": 1}})
        );
        let e = int_param(&pairs("min_total=abc"), "min_total", 3, 1).unwrap_err();
        assert_eq!(
            e.to_json(),
            json!({"type": "int_parsing", "loc": ["query", "min_total"],
                   "msg": "Input should be a valid integer, unable to parse string as an integer",
                   "input": "abc"})
        );
        assert_eq!(
            float_param(&pairs("x=nan"), "x", 0.5, 0.0, 1.0)
                .unwrap_err()
                .kind,
            "greater_than_equal"
        );
        let e = float_param(&pairs("x=1.5"), "x", 0.5, 0.0, 1.0).unwrap_err();
        assert_eq!(e.msg, "Input should be less than or equal to 1");
        assert_eq!(e.ctx.as_deref(), Some(&json!({"le": 1.0})));
    }

    #[test]
    fn telemetry_query() {
        let q = |qs: &str| TelemetryQuery::parse(&pairs(qs), 50, 0);
        assert_eq!(
            q("is_infra_error=maybe").unwrap_err().to_string(),
            "Bad is_infra_error value, use 'true' or 'false'"
        );
        assert_eq!(
            q("since=yesterday").unwrap_err().to_string(),
            "Invalid isoformat string: 'yesterday'"
        );
        let e = event(
            json!({"kind": "job_result", "runtime": "lab-a", "is_infra_error": true,
                             "ts": "2024-05-01T10:00:00"}),
        );
        let m = |qs: &str| q(qs).unwrap().matches(&e);
        assert!(m("is_infra_error=TRUE&kind=job_result&limit=5&offset=1"));
        assert!(!m("is_infra_error=False"));
        assert!(
            m("since=2024-05-01T10:00:00&until=2024-05-01T10:00:00"),
            "inclusive"
        );
        assert!(!m("since=2024-05-01T10:00:00.001"));
        assert!(!m("until=2024-05-01T09:59:59"));
        assert!(m("since=&runtime=lab-a"));
        assert!(!m("runtime=lab-b"));
        assert!(!m("retry=0"), "no conversion of numbers");
        assert!(m(&format!("id={}", e.id)));
    }

    #[test]
    fn stats_query_rules() {
        let e = |qs: &str| StatsQuery::parse(&pairs(qs)).unwrap_err().to_string();
        assert_eq!(e("kind=x"), "'group_by' parameter is required");
        assert_eq!(e("group_by="), "'group_by' parameter is required");
        assert_eq!(e("group_by=,"), "'group_by' parameter is required");
        assert_eq!(
            e("group_by=runtime,foo"),
            "Invalid group_by fields: {'foo'}"
        );
        assert_eq!(
            e("group_by=foo,bar,foo,it's"),
            "Invalid group_by fields: {'foo', 'bar', \"it's\"}"
        );
        assert_eq!(
            e("group_by=lab&lab=a&runtime=b"),
            "'lab' and 'runtime' must match when both are provided"
        );
        assert_eq!(e("group_by=lab&until=x"), "Invalid isoformat string: 'x'");
        let q = StatsQuery::parse(&pairs("group_by= lab , runtime,lab&lab=a&runtime=a")).unwrap();
        assert_eq!(q.group_by, vec!["lab", "runtime"]);
        assert_eq!(q.filter.terms, vec![("runtime".into(), json!("a"))]);
        let q = StatsQuery::parse(&pairs("group_by=kind&lab=a&result=fail&kind=")).unwrap();
        assert_eq!(
            q.filter.terms,
            vec![("runtime".into(), json!("a"))],
            "lab is runtime; result is not a stats filter; empty values are ignored"
        );
    }

    fn sample() -> Vec<TelemetryEvent> {
        let mk = |runtime: &str, dt: &str, result: &str, infra: bool| {
            event(
                json!({"kind": "job_result", "runtime": runtime, "device_type": dt,
                         "result": result, "is_infra_error": infra}),
            )
        };
        vec![
            mk("lab-a", "qemu", "pass", false),
            mk("lab-b", "rpi", "fail", true),
            mk("lab-b", "rpi", "incomplete", false),
            mk("lab-b", "bbb", "skip", false),
            mk("lab-a", "qemu", "pass", false),
            event(json!({"kind": "runtime_error", "runtime": "lab-b", "error_type": "Timeout"})),
        ]
    }

    #[test]
    fn stats_rows() {
        let events = sample();
        let rows = |qs: &str| stats(&StatsQuery::parse(&pairs(qs)).unwrap(), &events);
        assert_eq!(
            rows("group_by=lab,runtime"),
            vec![
                json!({"lab": "lab-b", "runtime": "lab-b", "total": 4, "pass": 0, "fail": 1,
                       "incomplete": 1, "skip": 1, "infra_error": 1}),
                json!({"lab": "lab-a", "runtime": "lab-a", "total": 2, "pass": 2, "fail": 0,
                       "incomplete": 0, "skip": 0, "infra_error": 0}),
            ]
        );
        let r = rows("group_by=device_type,error_type&lab=lab-b");
        assert_eq!(r.len(), 3);
        assert_eq!(
            (&r[0]["device_type"], &r[0]["total"]),
            (&json!("rpi"), &json!(2))
        );
        assert_eq!(
            r[1]["device_type"],
            json!("bbb"),
            "ties keep first-seen order"
        );
        assert_eq!(
            (&r[2]["device_type"], &r[2]["error_type"]),
            (&Value::Null, &json!("Timeout"))
        );
        assert!(rows("group_by=kind&kind=test_result").is_empty());
        assert_eq!(rows("group_by=kind&since=2030-01-01").len(), 0);
    }

    fn aq(qs: &str) -> AnomalyQuery {
        AnomalyQuery::parse(&pairs(qs)).unwrap()
    }

    #[test]
    fn anomaly_query_rules() {
        let q = aq("");
        assert_eq!(
            (q.window, q.hours, q.threshold, q.min_total, q.scope),
            ("6h", 6, 0.5, 3, Scope::DeviceType)
        );
        assert_eq!(aq("window=48h&scope=device").scope, Scope::Device);
        match AnomalyQuery::parse(&pairs("window=2h")) {
            Err(Rejection::Invalid(e)) => assert_eq!(
                e.to_string(),
                "Invalid window '2h'. Use: 1h, 3h, 6h, 12h, 24h, 48h"
            ),
            other => panic!("{other:?}"),
        }
        match AnomalyQuery::parse(&pairs("window=2h&threshold=2&min_total=0&scope=lab")) {
            Err(Rejection::Params(errs)) => {
                let kinds: Vec<_> = errs.iter().map(|e| (e.name, e.kind)).collect();
                assert_eq!(
                    kinds,
                    vec![
                        ("threshold", "less_than_equal"),
                        ("min_total", "greater_than_equal"),
                        ("scope", "literal_error"),
                    ],
                    "422 before the window check"
                );
                assert_eq!(
                    errs[2].to_json(),
                    json!({"type": "literal_error", "loc": ["query", "scope"],
                           "msg": "Input should be 'device_type' or 'device'", "input": "lab",
                           "ctx": {"expected": "'device_type' or 'device'"}})
                );
            }
            other => panic!("{other:?}"),
        }
        match AnomalyQuery::parse(&pairs("threshold=-0.1&min_total=x")) {
            Err(Rejection::Params(errs)) => {
                assert_eq!(errs[0].msg, "Input should be greater than or equal to 0");
                assert_eq!(errs[0].ctx.as_deref(), Some(&json!({"ge": 0.0})));
                assert_eq!(errs[1].kind, "int_parsing");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(aq("threshold=0&threshold=1").threshold, 1.0);
    }

    #[test]
    fn python_rounding() {
        assert_eq!(round3(2.0 / 3.0), 0.667);
        assert_eq!(round3(1.0 / 16.0), 0.062, "exact tie: half to even");
        assert_eq!(round3(3.0 / 16.0), 0.188);
        assert_eq!(
            round3(9.0 / 2000.0),
            0.004,
            "0.0045 is stored below the tie"
        );
        assert_eq!(round3(1.0), 1.0);
    }

    fn at(ts: &str, v: Value) -> TelemetryEvent {
        let mut v = v;
        v["ts"] = json!(ts);
        event(v)
    }

    #[test]
    fn anomaly_rows() {
        let now = t("2024-05-01T12:00:00.5");
        let r = |runtime: &str, dt: &str, dev: &str, result: &str, infra: bool, ts: &str| {
            at(
                ts,
                json!({"kind": "job_result", "runtime": runtime, "device_type": dt,
                       "device_id": dev, "result": result, "is_infra_error": infra,
                       "error_type": if infra { Some("Infra") } else { None::<&str> },
                       "error_msg": format!("{result} at {ts}")}),
            )
        };
        let events = vec![
            // Before the 6 h window: ignored.
            r("lab-a", "rpi", "rpi-1", "fail", true, "2024-05-01T05:00:00"),
            // lab-a/rpi: 3 of 4 infra failures -> infra_rate 0.75.
            r("lab-a", "rpi", "rpi-1", "fail", true, "2024-05-01T07:00:00"),
            r(
                "lab-a",
                "rpi",
                "rpi-2",
                "incomplete",
                true,
                "2024-05-01T09:00:00",
            ),
            r(
                "lab-a",
                "rpi",
                "rpi-1",
                "pass",
                false,
                "2024-05-01T11:00:00",
            ),
            r("lab-a", "rpi", "rpi-2", "fail", true, "2024-05-01T10:00:00"),
            // lab-b/qemu: every one failed (no infra) -> constant failure.
            r("lab-b", "qemu", "q-1", "fail", false, "2024-05-01T08:00:00"),
            r(
                "lab-b",
                "qemu",
                "q-1",
                "incomplete",
                false,
                "2024-05-01T09:00:00",
            ),
            r("lab-b", "qemu", "", "fail", false, "2024-05-01T10:00:00"),
            // lab-c/bbb: healthy.
            r("lab-c", "bbb", "b-1", "pass", false, "2024-05-01T08:00:00"),
            r("lab-c", "bbb", "b-1", "pass", false, "2024-05-01T09:00:00"),
            r("lab-c", "bbb", "b-1", "fail", false, "2024-05-01T10:00:00"),
            // lab-d: too few.
            r("lab-d", "x", "x-1", "fail", true, "2024-05-01T10:00:00"),
            // Errors.
            at(
                "2024-05-01T10:00:00",
                json!({"kind": "runtime_error", "runtime": "lab-a", "error_type": "Timeout"}),
            ),
            at(
                "2024-05-01T10:00:01",
                json!({"kind": "job_skip", "runtime": "lab-a", "error_type": "Timeout"}),
            ),
            at(
                "2024-05-01T10:00:02",
                json!({"kind": "runtime_error", "runtime": "lab-a", "error_type": "Timeout"}),
            ),
            at(
                "2024-05-01T10:00:03",
                json!({"kind": "runtime_error", "runtime": "lab-b"}),
            ),
            at(
                "2024-05-01T02:00:03",
                json!({"kind": "runtime_error", "runtime": "lab-b"}),
            ),
        ];
        let report = anomalies(&aq(""), now, &events);
        assert_eq!(report["since"], "2024-05-01T06:00:00.500000+00:00");
        assert_eq!(
            (
                &report["window"],
                &report["threshold"],
                &report["min_total"],
                &report["scope"]
            ),
            (&json!("6h"), &json!(0.5), &json!(3), &json!("device_type"))
        );
        let rows = report["result_anomalies"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{rows:#?}");
        assert_eq!(
            rows[0],
            json!({"runtime": "lab-a", "lab": "lab-a", "device_type": "rpi", "total": 4,
                   "pass": 1, "fail": 2, "incomplete": 1, "skip": 0, "infra_error": 3,
                   "infra_rate": 0.75, "fail_rate": 0.75, "constant_failure": false,
                   "constant_infra_failure": false, "last_seen": "2024-05-01T11:00:00",
                   "latest_error_type": null, "latest_error_msg": "pass at 2024-05-01T11:00:00"})
        );
        assert_eq!(rows[1]["runtime"], "lab-b");
        assert_eq!(
            (&rows[1]["infra_rate"], &rows[1]["fail_rate"]),
            (&json!(0.0), &json!(1.0))
        );
        assert_eq!(rows[1]["constant_failure"], true);
        assert_eq!(rows[1]["last_seen"], "2024-05-01T10:00:00");
        assert_eq!(
            report["error_anomalies"],
            json!([{"runtime": "lab-a", "error_type": "Timeout", "count": 3}])
        );

        // A higher threshold keeps only the constant failure; a lower min_total
        // brings lab-d and the lab-b runtime errors in.
        let rows = anomalies(&aq("threshold=0.8"), now, &events)["result_anomalies"].clone();
        assert_eq!(rows.as_array().unwrap().len(), 1);
        assert_eq!(rows[0]["runtime"], "lab-b");
        let report = anomalies(&aq("min_total=1&threshold=1"), now, &events);
        let rows = report["result_anomalies"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (&rows[0]["runtime"], &rows[0]["constant_infra_failure"]),
            (&json!("lab-d"), &json!(true))
        );
        assert_eq!(
            report["error_anomalies"][1],
            json!({"runtime": "lab-b", "error_type": null, "count": 1})
        );

        // Device scope: job results naming a device only, one row per device.
        let report = anomalies(&aq("scope=device&min_total=2"), now, &events);
        let rows = report["result_anomalies"].as_array().unwrap();
        let keys: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r["runtime"].as_str().unwrap(),
                    r["device_id"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            vec![("lab-a", "rpi-2"), ("lab-a", "rpi-1"), ("lab-b", "q-1")]
        );
        assert_eq!(
            rows[1]["total"], 2,
            "the event before the window is not counted"
        );

        // Test results count in device_type scope, not in device scope.
        let tests: Vec<_> = (0..3)
            .map(|i| {
                at(
                    &format!("2024-05-01T11:00:0{i}"),
                    json!({"kind": "test_result", "runtime": "l",
                "device_id": "d", "result": "fail"}),
                )
            })
            .collect();
        assert_eq!(
            anomalies(&aq(""), now, &tests)["result_anomalies"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(
            anomalies(&aq("scope=device"), now, &tests)["result_anomalies"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }
}
