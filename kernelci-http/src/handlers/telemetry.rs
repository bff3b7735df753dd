//! `telemetry` endpoints (being built).

use crate::error::ApiResult;
use crate::request::Req;
use crate::response::Resp;
use crate::state::AppState;

/// Handler (not landed yet).
pub async fn post_telemetry(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler (not landed yet).
pub async fn get_telemetry(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler (not landed yet).
pub async fn telemetry_stats(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler (not landed yet).
pub async fn telemetry_anomalies(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}
