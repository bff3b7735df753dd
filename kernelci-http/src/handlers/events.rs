//! `GET /events` (API.md §7).
use crate::error::ApiResult;
use crate::request::Req;
use crate::response::Resp;
use crate::state::AppState;

/// `GET /events`.
pub async fn list_events(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}
