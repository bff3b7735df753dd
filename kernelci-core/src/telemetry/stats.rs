//! `GET /telemetry/stats`: grouped result counts.

use serde_json::{Map, Value};

use super::groups::{Counts, Groups};
use super::query::{datetime_param, in_range};
use super::TelemetryEvent;
use crate::error::{Error, Result};
use crate::exact::ExactFilter;
use crate::time::Timestamp;
use crate::validation::params::last;

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
