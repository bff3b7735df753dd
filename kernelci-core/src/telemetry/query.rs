//! `GET /telemetry`: the filter a store answers, and the time bounds the reports
//! share.

use serde_json::Value;

use super::TelemetryEvent;
use crate::error::{Error, Result};
use crate::exact::ExactFilter;
use crate::time::{parse_query_datetime, Timestamp};
use crate::validation::params::last;

/// A query datetime (`since`, `until`): Python `fromisoformat`, truncated to the
/// millisecond; refused as `Invalid isoformat string: '<v>'`. Empty = absent.
pub(super) fn datetime_param(pairs: &[(String, String)], name: &str) -> Result<Option<Timestamp>> {
    match last(pairs, name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => Ok(Some(parse_query_datetime(v)?.truncate_to_millis())),
    }
}

/// Whether `ts` is within `[since, until]` (each bound optional, both inclusive).
pub fn in_range(ts: Timestamp, since: Option<Timestamp>, until: Option<Timestamp>) -> bool {
    since.is_none_or(|s| ts >= s) && until.is_none_or(|u| ts <= u)
}

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
