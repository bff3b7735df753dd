//! `GET /telemetry/anomalies`: groups failing more than a threshold, and repeated
//! errors, over a recent window.

use serde_json::{json, Map, Value};

use super::groups::{Counts, Groups};
use super::TelemetryEvent;
use crate::error::{Error, Result};
use crate::time::Timestamp;
use crate::validation::params::{self, last};

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
    pub fn parse(pairs: &[(String, String)]) -> Result<Self> {
        let threshold = params::float_param(pairs, "threshold", 0.5, 0.0, 1.0);
        let min_total = params::int_param(pairs, "min_total", 3, 1);
        let scope =
            params::literal_param(pairs, "scope", "device_type", &["device_type", "device"]);
        let (threshold, min_total, scope) = match (threshold, min_total, scope) {
            (Ok(t), Ok(m), Ok(s)) => (t, m, s),
            (t, m, s) => {
                let errs = [t.err(), m.err(), s.err()].into_iter().flatten();
                return Err(Error::Validation(errs.flat_map(|e| e.0).collect()));
            }
        };
        let scope = if scope == "device" {
            Scope::Device
        } else {
            Scope::DeviceType
        };
        let w = last(pairs, "window").unwrap_or("6h");
        let Some(&(window, hours)) = WINDOWS.iter().find(|(name, _)| *name == w) else {
            return Err(Error::Invalid(format!(
                "Invalid window '{w}'. Use: 1h, 3h, 6h, 12h, 24h, 48h"
            )));
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
