//! Telemetry endpoints (API.md §8): `POST /telemetry` (user), `GET /telemetry`,
//! `GET /telemetry/stats` and `GET /telemetry/anomalies` (public).
//!
//! Validation, filters and the reports are kernelci-core's [`kernelci_core::telemetry`];
//! this module reads the request, calls the store, and writes the answer.
//!
//! Order of the checks, as the reference's framework does them: a malformed JSON body
//! (422) before authentication (401), then the body's shape (422: not an array, an
//! element that is not an object), then the handler's own checks (400). On the GET
//! endpoints the declared query parameters (`limit`, `offset`, `threshold`,
//! `min_total`, `scope`) are checked first, all of them, as FastAPI's 422 list with
//! `loc: ["query", <name>]`; then the handler's checks (400).

use serde_json::{json, Value};

use kernelci_core::auth::Operation;
use kernelci_core::exact::ExactFilter;
use kernelci_core::telemetry::{
    anomalies, parse_batch, stats, AnomalyQuery, StatsQuery, TelemetryEvent, TelemetryQuery,
};
use kernelci_core::time::Timestamp;

use crate::error::ApiResult;
use crate::handlers::nodes::offload;
use crate::request::{body_missing, Req};
use crate::response::{ok, Resp};
use crate::state::AppState;

/// `POST /telemetry`: stores a JSON array of events, all validated before any is
/// written (see `Store::insert_telemetry` for large arrays); `{"inserted": n}`.
///
/// 422 for malformed JSON (even without a token), a missing body, a body that is not
/// an array or an element that is not an object; 401 without a valid token; 400
/// `Events list cannot be empty`; 400 `Invalid telemetry event: <pydantic text>` for
/// the first element failing the model (nothing is stored).
pub async fn post_telemetry(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let body = if req.body.is_empty() {
        None
    } else {
        Some(req.json()?)
    };
    state.require_user(req, Operation::PostTelemetry).await?;
    let body = body.ok_or_else(body_missing)?;
    let events = parse_batch(&body, Timestamp::now())?;
    state.store().insert_telemetry(&events).await?;
    Ok(ok(&json!({ "inserted": events.len() })))
}

/// `GET /telemetry`: one page (`{items, total, limit, offset}`) of the events matching
/// `since`/`until` (inclusive bounds on `ts`), `is_infra_error` and exact matches on
/// every other parameter, by insertion order.
pub async fn get_telemetry(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let (limit, offset) = crate::request::page_window(req)?;
    let query = TelemetryQuery::parse(&req.query, limit, offset)?;
    let page = offload(state, move |s| {
        Box::pin(async move { s.find_telemetry(&query).await })
    })
    .await?;
    Ok(ok(&json!({
        "items": page.items.iter().map(TelemetryEvent::document).collect::<Vec<_>>(),
        "total": page.total,
        "limit": limit,
        "offset": offset,
    })))
}

/// `GET /telemetry/stats`: grouped counts ([`kernelci_core::telemetry::stats`]).
pub async fn telemetry_stats(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let query = StatsQuery::parse(&req.query)?;
    let (since, until, filter) = (query.since, query.until, query.filter.clone());
    let events = offload(state, move |s| {
        Box::pin(async move { s.scan_telemetry(since, until, &filter).await })
    })
    .await?;
    Ok(ok(&Value::Array(stats(&query, &events))))
}

/// `GET /telemetry/anomalies`: the report over the window ending now
/// ([`kernelci_core::telemetry::anomalies`]); only the window's events are read.
pub async fn telemetry_anomalies(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let query = AnomalyQuery::parse(&req.query)?;
    let now = Timestamp::now();
    let since = query.since(now).truncate_to_millis();
    let events = offload(state, move |s| {
        Box::pin(async move {
            s.scan_telemetry(Some(since), None, &ExactFilter::default())
                .await
        })
    })
    .await?;
    Ok(ok(&anomalies(&query, now, &events)))
}
