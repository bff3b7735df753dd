//! Telemetry: the events labs and pipeline services report (MODELS.md §10), the
//! `/telemetry` query, and the `/telemetry/stats` and `/telemetry/anomalies` reports
//! (API.md §8), as pure functions over a slice of events.
//!
//! One module per part: `event` (the model and `POST` bodies), `query`
//! (`GET /telemetry`), `stats`, `anomalies`, and `groups` (the result counts both
//! reports share).
//!
//! - [`TelemetryEvent::from_json`] and [`parse_batch`] validate a `POST /telemetry`
//!   body with the reference's rules and texts;
//! - [`TelemetryQuery`] is the `GET /telemetry` filter a [`crate::store::Store`]
//!   answers;
//! - [`StatsQuery`] and [`stats`] compute the grouped counts of `/telemetry/stats`;
//! - [`AnomalyQuery`] and [`anomalies`] compute the `/telemetry/anomalies` report;
//! - query parameters are read with [`crate::validation::params`] (FastAPI's
//!   validation items).
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

mod anomalies;
mod event;
mod groups;
mod query;
mod stats;

pub use anomalies::{anomalies, round3, AnomalyQuery, Scope, WINDOWS};
pub use event::{parse_batch, TelemetryEvent, MODEL_NAME, OPTIONAL_FIELDS};
pub use query::{in_range, TelemetryQuery, DEFAULT_LIMIT};
pub use stats::{stats, StatsQuery, GROUP_BY_FIELDS, STATS_FILTERS};

#[cfg(test)]
mod tests;
