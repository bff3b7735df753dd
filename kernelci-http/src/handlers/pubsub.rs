//! `pubsub` endpoints (being built).

use crate::error::ApiResult;
use crate::request::Req;
use crate::response::Resp;
use crate::state::AppState;

/// Handler (not landed yet).
pub async fn subscribe(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler (not landed yet).
pub async fn unsubscribe(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler (not landed yet).
pub async fn listen(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler (not landed yet).
pub async fn publish(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler (not landed yet).
pub async fn push(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler (not landed yet).
pub async fn pop(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler (not landed yet).
pub async fn subscription_stats(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}
