//! The node query language of `/nodes`, `/nodes/fast` and `/count` (QUERY.md).
//!
//! # Grammar
//!
//! A query is a URL query string of `key=value` pairs, all ANDed:
//!
//! ```text
//! query    := pair ("&" pair)*
//! pair     := key "=" value                    (form-encoded; "+" is a space)
//! key      := field | field "__" op            (exactly one "__": see below)
//! field    := segment ("." segment)*           (dotted path into the node)
//! op       := "lt" | "lte" | "gt" | "gte" | "ne" | "re" | "in" | "nin" | "int"
//! reserved := "limit" | "offset" | "sort"      (see [`Mode`])
//! ```
//!
//! A key with two or more `__` is a literal field name (`data__arch` is not
//! `data.arch`). A repeated key keeps its last value. The value `null` is JSON null.
//!
//! # Value conversions (as the reference server)
//!
//! - plain values are strings, except `true`/`false` in any case (booleans) and `null`;
//! - operator values made only of decimal digits are integers (`name__ne=123` compares
//!   with the integer 123), except for `in`/`nin`, whose comma-separated items are
//!   strings;
//! - `field__int=N` is equality with the integer N;
//! - `created`, `updated`, `timeout`, `holdoff` take datetimes (Python
//!   `fromisoformat`, see [`crate::time::parse_query_datetime`]); `parent` takes
//!   ObjectIds; `retry_counter` takes integers;
//! - an unknown operator on a field without known operators is an equality with the
//!   sub-document `{op: value}`; next to known operators it is dropped;
//! - a plain key after an operator key on the same field replaces the operators.
//!
//! # Where we differ from the reference (documented choices)
//!
//! The reference answers several malformed inputs with HTTP 500; we return a typed
//! [`QueryError`] (400 at the edge) naming the parameter, or give the input its
//! evident meaning:
//!
//! - `parent=null` matches **root nodes** (the published documentation's meaning; the
//!   reference matches nothing);
//! - operators on `parent` and `retry_counter` work (`parent__in=a,b`,
//!   `retry_counter__gt=1`) instead of failing; `__in`/`__nin` on datetime fields
//!   split their items;
//! - `name__re=2024` is the regex `2024` (the reference sends an integer regex and
//!   fails);
//! - `field__in=null` is the list `[null]` (matches null or missing, like
//!   `field=null`) and `field__nin=null` its negation; the reference fails on it;
//! - regexes use the `regex` crate, not PCRE: look-around and backreferences are
//!   refused with an error, and `\d`, `\w`, `\b` are Unicode-aware (MongoDB's are
//!   ASCII); the syntax KernelCI clients use (anchors, classes, `(?i)`) is the same;
//! - errors instead of 500: invalid regex, `null` on a datetime field (`holdoff=null`),
//!   `null` with `re`, a plain key before an operator key on the same field, an empty
//!   path segment, integers beyond 64 bits;
//! - `sort=field` / `sort=-field` orders results (upstream kernelci-api issue 582
//!   asked for newest-first); without it the order is ascending node id, which is
//!   creation order. In the reference `sort=...` was an equality filter.
//!
//! # Limits
//!
//! [`MAX_QUERY_LEN`] bytes, [`MAX_TERMS`] pairs, [`MAX_PATH_SEGMENTS`] segments per
//! field, [`MAX_IN_ITEMS`] items per `in`/`nin` list, regexes of at most
//! [`MAX_REGEX_LEN`] bytes compiled with a size limit (the `regex` crate matches in
//! linear time, so no pattern can stall the server).

mod eval;
mod field;
mod render;
mod value;

use std::fmt;

use regex::Regex;

pub use eval::{compare_values, matches, resolve, sort_nodes, Val};
pub use field::{FieldPath, Root};
pub use value::QValue;

use crate::id::ObjectId;
use crate::time::parse_query_datetime;
use crate::validation::text::python_int_text;

/// Longest accepted query, in bytes of keys and values.
pub const MAX_QUERY_LEN: usize = 16 * 1024;
/// Most key=value pairs in one query.
pub const MAX_TERMS: usize = 64;
/// Most dotted segments in one field path.
pub const MAX_PATH_SEGMENTS: usize = 16;
/// Most items in one `in`/`nin` list.
pub const MAX_IN_ITEMS: usize = 1024;
/// Longest regex pattern, in bytes.
pub const MAX_REGEX_LEN: usize = 1024;
/// Compiled size limit of one regex, in bytes.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Default page size of `/nodes`.
pub const DEFAULT_LIMIT: u64 = 50;

/// Which endpoint a query is parsed for: they treat `limit` and `offset` differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `/nodes`: `limit` (≥ 1, default 50) and `offset` (≥ 0, default 0) drive the
    /// page; violations are [`QueryErrorKind::Pagination`] (422 at the edge).
    Page,
    /// `/nodes/fast`: optional integer `limit`/`offset`, no default limit; as MongoDB's
    /// limit/skip, `limit=0` means no limit and a negative limit its absolute value.
    Fast,
    /// `/count`: `limit` and `offset` are ordinary field filters (as in the reference,
    /// where they normally make the count 0).
    Count,
}

/// What kind of problem a [`QueryError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryErrorKind {
    /// A bad `limit`/`offset` on `/nodes` (422 at the edge, like FastAPI).
    Pagination,
    /// A malformed value or key (400).
    Malformed,
    /// A limit of this module was exceeded (400).
    TooLarge,
}

/// A query that cannot be parsed: which parameter, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct QueryError {
    /// What kind of problem.
    pub kind: QueryErrorKind,
    /// The offending parameter (key as given).
    pub param: String,
    /// A sentence saying what is wrong (the reference's wording where one exists).
    pub reason: String,
}

impl QueryError {
    pub(crate) fn malformed(param: &str, reason: impl Into<String>) -> Self {
        Self {
            kind: QueryErrorKind::Malformed,
            param: param.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn too_large(param: &str, reason: impl Into<String>) -> Self {
        Self {
            kind: QueryErrorKind::TooLarge,
            param: param.to_owned(),
            reason: reason.into(),
        }
    }

    fn pagination(param: &str, reason: impl Into<String>) -> Self {
        Self {
            kind: QueryErrorKind::Pagination,
            param: param.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A compiled regex that compares equal by its source text.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// Compiles `source` under the module's limits.
    pub fn new(param: &str, source: &str) -> Result<Self, QueryError> {
        if source.len() > MAX_REGEX_LEN {
            return Err(QueryError::too_large(
                param,
                format!("Regular expression in '{param}' is longer than {MAX_REGEX_LEN} bytes"),
            ));
        }
        let regex = regex::RegexBuilder::new(source)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| {
                let detail = match e {
                    regex::Error::CompiledTooBig(_) => {
                        "the compiled pattern is too large".to_owned()
                    }
                    other => {
                        let text = other.to_string();
                        let last = text.lines().last().unwrap_or("").trim();
                        last.strip_prefix("error: ").unwrap_or(last).to_owned()
                    }
                };
                QueryError::malformed(
                    param,
                    format!("Invalid regular expression in '{param}': {detail}"),
                )
            })?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Unanchored, case-sensitive unless the pattern sets flags (MongoDB `$regex`).
    pub fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// One condition on a field.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// Equality (arrays: any element; `Null`: null or missing).
    Eq(QValue),
    /// Not equal (arrays: no element).
    Ne(QValue),
    /// Less than (same type class only).
    Lt(QValue),
    /// Less than or equal.
    Lte(QValue),
    /// Greater than.
    Gt(QValue),
    /// Greater than or equal.
    Gte(QValue),
    /// Equal to any of the values.
    In(Vec<QValue>),
    /// Equal to none of the values.
    Nin(Vec<QValue>),
    /// Regex match on strings.
    Regex(Pattern),
}

impl Cond {
    /// Canonical order of conditions within a field (so that parameter order does not
    /// matter for equality of queries).
    fn rank(&self) -> u8 {
        match self {
            Cond::Eq(_) => 0,
            Cond::Ne(_) => 1,
            Cond::Lt(_) => 2,
            Cond::Lte(_) => 3,
            Cond::Gt(_) => 4,
            Cond::Gte(_) => 5,
            Cond::In(_) => 6,
            Cond::Nin(_) => 7,
            Cond::Regex(_) => 8,
        }
    }
}

/// All conditions on one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldFilter {
    /// The field.
    pub field: FieldPath,
    /// Its conditions, ANDed, in canonical order, at most one of each operator.
    pub conds: Vec<Cond>,
}

/// An inclusive or exclusive bound of a [`Range`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound<'a> {
    /// The bound value.
    pub value: &'a QValue,
    /// Whether the bound itself matches.
    pub inclusive: bool,
}

/// The range predicates on one field, for index range scans.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Range<'a> {
    /// From `gt` / `gte`.
    pub lower: Option<Bound<'a>>,
    /// From `lt` / `lte`.
    pub upper: Option<Bound<'a>>,
}

impl FieldFilter {
    /// The values an equality predicate allows (`Eq` → one, `In` → several), for an
    /// index lookup: every matching node has one of them in this field (or, for
    /// `Null`, lacks the field). `None` when the field has no equality predicate.
    /// A planner must still check the other conditions (use [`matches()`]).
    pub fn equality_values(&self) -> Option<Vec<&QValue>> {
        self.conds.iter().find_map(|c| match c {
            Cond::Eq(v) => Some(vec![v]),
            Cond::In(vs) => Some(vs.iter().collect()),
            _ => None,
        })
    }

    /// The range predicates, if any (`Null` bounds never come from a parsed range of
    /// datetime fields).
    pub fn range(&self) -> Option<Range<'_>> {
        let mut r = Range::default();
        for c in &self.conds {
            match c {
                Cond::Gt(v) => {
                    r.lower = Some(Bound {
                        value: v,
                        inclusive: false,
                    })
                }
                Cond::Gte(v) => {
                    r.lower = Some(Bound {
                        value: v,
                        inclusive: true,
                    })
                }
                Cond::Lt(v) => {
                    r.upper = Some(Bound {
                        value: v,
                        inclusive: false,
                    })
                }
                Cond::Lte(v) => {
                    r.upper = Some(Bound {
                        value: v,
                        inclusive: true,
                    })
                }
                _ => {}
            }
        }
        (r.lower.is_some() || r.upper.is_some()).then_some(r)
    }
}

/// Result order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    /// The field to order by.
    pub field: FieldPath,
    /// Largest first (`sort=-field`).
    pub descending: bool,
}

/// A parsed node query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Per-field conditions, ANDed, in order of first appearance.
    pub filters: Vec<FieldFilter>,
    /// Explicit order; `None` = ascending id (creation order).
    pub sort: Option<Sort>,
    /// Most items to return (`None`: all).
    pub limit: Option<u64>,
    /// Items to skip.
    pub offset: u64,
    mode: Mode,
}

impl Query {
    /// A query matching every node, for `mode` (with its default limit).
    pub fn all(mode: Mode) -> Self {
        Self {
            filters: Vec::new(),
            sort: None,
            limit: (mode == Mode::Page).then_some(DEFAULT_LIMIT),
            offset: 0,
            mode,
        }
    }

    /// Parses a raw (form-encoded) query string.
    pub fn parse_str(query: &str, mode: Mode) -> Result<Self, QueryError> {
        if query.len() > MAX_QUERY_LEN * 3 {
            return Err(QueryError::too_large(
                "",
                format!("Query longer than {MAX_QUERY_LEN} bytes"),
            ));
        }
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        Self::parse(&pairs, mode)
    }

    /// Parses decoded `(key, value)` pairs.
    pub fn parse(pairs: &[(String, String)], mode: Mode) -> Result<Self, QueryError> {
        let total: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        if total > MAX_QUERY_LEN {
            return Err(QueryError::too_large(
                "",
                format!("Query longer than {MAX_QUERY_LEN} bytes"),
            ));
        }
        if pairs.len() > MAX_TERMS {
            return Err(QueryError::too_large(
                "",
                format!("Query has more than {MAX_TERMS} parameters"),
            ));
        }
        // Last value wins; position of first appearance is kept.
        let mut ordered: Vec<(&str, &str)> = Vec::new();
        for (k, v) in pairs {
            match ordered.iter_mut().find(|(key, _)| *key == k.as_str()) {
                Some(slot) => slot.1 = v.as_str(),
                None => ordered.push((k.as_str(), v.as_str())),
            }
        }
        let mut q = Self::all(mode);
        let mut builders: Vec<FieldBuilder> = Vec::new();
        for (key, value) in ordered {
            match (key, mode) {
                ("limit", Mode::Page) => q.limit = Some(page_int(key, value, 1)?),
                ("offset", Mode::Page) => q.offset = page_int(key, value, 0)?,
                ("limit", Mode::Fast) => q.limit = fast_limit(key, value)?,
                ("offset", Mode::Fast) => q.offset = fast_offset(key, value)?,
                ("sort", _) => q.sort = Some(parse_sort(value)?),
                _ => add_term(&mut builders, key, value)?,
            }
        }
        q.filters = builders
            .into_iter()
            .map(FieldBuilder::build)
            .collect::<Result<_, _>>()?;
        Ok(q)
    }

    /// The mode this query was parsed for.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The conditions on `field` (as written, e.g. `data.arch`), if any.
    pub fn filter(&self, field: &str) -> Option<&FieldFilter> {
        self.filters.iter().find(|f| f.field.as_str() == field)
    }

    /// The same filters with another page window.
    pub fn with_window(mut self, limit: Option<u64>, offset: u64) -> Self {
        self.limit = limit;
        self.offset = offset;
        self
    }
}

fn page_int(key: &str, value: &str, min: u64) -> Result<u64, QueryError> {
    // pydantic's integer text; values beyond u64 saturate, as FastAPI's unbounded
    // integers would be cut by any store.
    match crate::validation::text::lax_int(value) {
        Some(n) if n >= i128::from(min) => Ok(u64::try_from(n).unwrap_or(u64::MAX)),
        Some(_) => Err(QueryError::pagination(
            key,
            format!("Input should be greater than or equal to {min}"),
        )),
        None => Err(QueryError::pagination(
            key,
            "Input should be a valid integer, unable to parse string as an integer",
        )),
    }
}

fn fast_int(key: &str, value: &str) -> Result<i64, QueryError> {
    python_int_text(value).map_err(|e| QueryError::malformed(key, e.to_string()))
}

/// A `/nodes/fast` limit with MongoDB's meaning: 0 is no limit, a negative `n` is `n`.
fn fast_limit(key: &str, value: &str) -> Result<Option<u64>, QueryError> {
    let n = fast_int(key, value)?;
    Ok((n != 0).then_some(n.unsigned_abs()))
}

/// A `/nodes/fast` offset: MongoDB refuses a negative skip (the reference fails with a
/// 500); we say so.
fn fast_offset(key: &str, value: &str) -> Result<u64, QueryError> {
    let n = fast_int(key, value)?;
    u64::try_from(n)
        .map_err(|_| QueryError::malformed(key, format!("'{key}' must not be negative")))
}

fn parse_sort(value: &str) -> Result<Sort, QueryError> {
    let (descending, name) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    Ok(Sort {
        field: FieldPath::parse(name).map_err(|mut e| {
            e.param = "sort".into();
            e
        })?,
        descending,
    })
}

/// Operators of the language (`int` is handled apart).
const KNOWN_OPS: [&str; 8] = ["lt", "lte", "gt", "gte", "ne", "re", "in", "nin"];

/// The raw terms of one field before conversion.
struct FieldBuilder {
    field: FieldPath,
    /// `Some` when a plain key was seen after (or without) operator keys.
    plain: Option<(String, Option<String>)>,
    /// `(key, op, value)`; `None` value = `null`.
    ops: Vec<(String, String, Option<String>)>,
}

fn add_term(builders: &mut Vec<FieldBuilder>, key: &str, value: &str) -> Result<(), QueryError> {
    let parts: Vec<&str> = key.split("__").collect();
    let (field_text, op) = if parts.len() == 2 {
        (parts[0], Some(parts[1]))
    } else {
        (key, None)
    };
    let value = (value != "null").then(|| value.to_owned());
    let idx = match builders.iter().position(|b| b.field.as_str() == field_text) {
        Some(i) => i,
        None => {
            builders.push(FieldBuilder {
                field: FieldPath::parse(field_text).map_err(|mut e| {
                    e.param = key.to_owned();
                    e
                })?,
                plain: None,
                ops: Vec::new(),
            });
            builders.len() - 1
        }
    };
    let b = &mut builders[idx];
    match op {
        None => {
            // A later plain key replaces the operators (reference behaviour).
            b.ops.clear();
            b.plain = Some((key.to_owned(), value));
        }
        Some(op) => {
            if b.plain.is_some() {
                return Err(QueryError::malformed(
                    key,
                    format!("'{key}' cannot follow '{field_text}': give either the plain field or operators"),
                ));
            }
            b.ops.push((key.to_owned(), op.to_owned(), value));
        }
    }
    Ok(())
}

impl FieldBuilder {
    fn build(self) -> Result<FieldFilter, QueryError> {
        let root = self.field.root();
        let top = self.field.is_top_level();
        if top && root.is_timestamp() {
            // Every operator value of a datetime field is a datetime, whatever the
            // operator (the reference converts before looking at operators).
            for (key, op, value) in &self.ops {
                let v = value.as_deref().ok_or_else(|| null_timestamp(key))?;
                if op == "in" || op == "nin" {
                    continue;
                }
                datetime(key, v)?;
                if op == "int" {
                    return Err(QueryError::malformed(
                        key,
                        format!(
                            "'{key}': __int does not apply to the datetime field '{}'",
                            self.field
                        ),
                    ));
                }
            }
        }
        let mut conds = Vec::new();
        if let Some((key, value)) = &self.plain {
            conds.push(Cond::Eq(plain_value(
                &key[..],
                root,
                top,
                value.as_deref(),
            )?));
        } else {
            let has_known = self
                .ops
                .iter()
                .any(|(_, op, _)| KNOWN_OPS.contains(&op.as_str()));
            let int = self.ops.iter().find(|(_, op, _)| op == "int");
            if !has_known {
                if let Some((key, _, value)) = int {
                    let v = value.as_deref().ok_or_else(|| {
                        QueryError::malformed(key, format!("'{key}' needs an integer, not null"))
                    })?;
                    let n = python_int_text(v)
                        .map_err(|e| QueryError::malformed(key, e.to_string()))?;
                    conds.push(Cond::Eq(QValue::Int(n)));
                } else {
                    // Unknown operators only: equality with the sub-document {op: value}.
                    let mut doc = serde_json::Map::new();
                    for (key, op, value) in &self.ops {
                        let v = match value.as_deref() {
                            None => serde_json::Value::Null,
                            Some(s) => match decimal(key, s)? {
                                QValue::Int(n) => n.into(),
                                _ => s.into(),
                            },
                        };
                        doc.insert(op.clone(), v);
                    }
                    conds.push(Cond::Eq(QValue::Doc(doc)));
                }
            } else {
                for (key, op, value) in &self.ops {
                    if let Some(c) = op_cond(key, op, root, top, value.as_deref())? {
                        conds.push(c);
                    }
                }
            }
        }
        conds.sort_by_key(Cond::rank);
        Ok(FieldFilter {
            field: self.field,
            conds,
        })
    }
}

/// The value of a plain `field=value` term.
fn plain_value(
    key: &str,
    root: Root,
    top: bool,
    value: Option<&str>,
) -> Result<QValue, QueryError> {
    let Some(v) = value else {
        if top && root.is_timestamp() {
            return Err(null_timestamp(key));
        }
        return Ok(QValue::Null);
    };
    if top {
        match root {
            Root::Parent => return object_id(key, v).map(QValue::Id),
            r if r.is_timestamp() => return datetime(key, v),
            Root::RetryCounter => return int(key, v),
            _ => {}
        }
    }
    if v.eq_ignore_ascii_case("true") {
        return Ok(QValue::Bool(true));
    }
    if v.eq_ignore_ascii_case("false") {
        return Ok(QValue::Bool(false));
    }
    Ok(QValue::Str(v.to_owned()))
}

/// The condition of an operator term; `None` for an unknown operator next to known
/// ones (dropped, as in the reference) and for `int` next to known ones.
fn op_cond(
    key: &str,
    op: &str,
    root: Root,
    top: bool,
    value: Option<&str>,
) -> Result<Option<Cond>, QueryError> {
    let special =
        top && (root == Root::Parent || root.is_timestamp() || root == Root::RetryCounter);
    if top && root.is_timestamp() && value.is_none() {
        return Err(null_timestamp(key));
    }
    let scalar = |v: Option<&str>| -> Result<QValue, QueryError> {
        match v {
            None => Ok(QValue::Null),
            Some(s) if special => typed(key, root, s),
            Some(s) => decimal(key, s),
        }
    };
    let list = |v: Option<&str>| -> Result<Vec<QValue>, QueryError> {
        let Some(s) = v else {
            return Ok(vec![QValue::Null]);
        };
        let items: Vec<&str> = s.split(',').collect();
        if items.len() > MAX_IN_ITEMS {
            return Err(QueryError::too_large(
                key,
                format!("'{key}' has more than {MAX_IN_ITEMS} items"),
            ));
        }
        items
            .into_iter()
            .map(|item| {
                if special {
                    typed(key, root, item)
                } else {
                    Ok(QValue::Str(item.to_owned()))
                }
            })
            .collect()
    };
    Ok(Some(match op {
        "lt" => Cond::Lt(scalar(value)?),
        "lte" => Cond::Lte(scalar(value)?),
        "gt" => Cond::Gt(scalar(value)?),
        "gte" => Cond::Gte(scalar(value)?),
        "ne" => Cond::Ne(scalar(value)?),
        "in" => Cond::In(list(value)?),
        "nin" => Cond::Nin(list(value)?),
        "re" => {
            let Some(pattern) = value else {
                return Err(QueryError::malformed(
                    key,
                    format!("'{key}' needs a regular expression, not null"),
                ));
            };
            Cond::Regex(Pattern::new(key, pattern)?)
        }
        _ => return Ok(None),
    }))
}

fn typed(key: &str, root: Root, s: &str) -> Result<QValue, QueryError> {
    match root {
        Root::Parent => object_id(key, s).map(QValue::Id),
        Root::RetryCounter => int(key, s),
        _ => datetime(key, s),
    }
}

/// The decimal rule: a non-empty string of ASCII digits is an integer.
fn decimal(key: &str, s: &str) -> Result<QValue, QueryError> {
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
        return s.parse::<i64>().map(QValue::Int).map_err(|_| {
            QueryError::malformed(
                key,
                format!("Integer in '{key}' does not fit in 64 bits: '{s}'"),
            )
        });
    }
    Ok(QValue::Str(s.to_owned()))
}

fn object_id(key: &str, s: &str) -> Result<ObjectId, QueryError> {
    ObjectId::parse(s).map_err(|e| QueryError::malformed(key, e.to_string()))
}

fn datetime(key: &str, s: &str) -> Result<QValue, QueryError> {
    parse_query_datetime(s)
        .map(|t| QValue::Date(t.truncate_to_millis()))
        .map_err(|e| QueryError::malformed(key, e.to_string()))
}

fn int(key: &str, s: &str) -> Result<QValue, QueryError> {
    python_int_text(s)
        .map(QValue::Int)
        .map_err(|e| QueryError::malformed(key, e.to_string()))
}

fn null_timestamp(key: &str) -> QueryError {
    QueryError::malformed(
        key,
        format!("'{key}' compares a datetime field with null, which is not supported"),
    )
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_query_string())
    }
}

#[cfg(test)]
mod tests;
