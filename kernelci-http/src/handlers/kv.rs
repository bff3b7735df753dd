//! `kv` endpoints (being built).

use crate::error::ApiResult;
use crate::request::Req;
use crate::response::Resp;
use crate::state::AppState;

/// Handler (not landed yet).
pub async fn kv_get(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler (not landed yet).
pub async fn kv_set(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler (not landed yet).
pub async fn kv_delete(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}
