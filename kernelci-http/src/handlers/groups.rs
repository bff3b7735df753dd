//! `groups` endpoints (being built).

use crate::error::ApiResult;
use crate::request::Req;
use crate::response::Resp;
use crate::state::AppState;

/// Handler (not landed yet).
pub async fn list_groups(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler (not landed yet).
pub async fn get_group(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler (not landed yet).
pub async fn create_group(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler (not landed yet).
pub async fn delete_group(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}
