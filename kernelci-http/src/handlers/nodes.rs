//! Node endpoints.
use crate::error::ApiResult;
use crate::request::Req;
use crate::response::Resp;
use crate::state::AppState;

/// Handler.
pub async fn get_node(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler.
pub async fn list_nodes(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler.
pub async fn list_nodes_fast(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler.
pub async fn count_nodes(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler.
pub async fn create_node(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler.
pub async fn replace_node(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler.
pub async fn patch_node(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler.
pub async fn batch_nodeset(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}

/// Handler.
pub async fn submit_hierarchy(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    super::not_yet()
}
