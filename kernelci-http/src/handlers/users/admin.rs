//! Administration of users: `GET /user/{id}`, `GET /users`, `PATCH /user/{id}` and
//! `DELETE /user/{id}`, with the rule that keeps one active superuser.

use serde_json::{json, Value};

use kernelci_core::auth::Operation;
use kernelci_core::exact::ExactFilter;
use kernelci_core::id::ObjectId;

use super::profile::{apply_profile, check_unique, hashed_password, parse_update};
use super::*;
use crate::error::{ApiError, ApiResult};
use crate::request::{require_body, Req};
use crate::response::{self, Resp};
use crate::state::AppState;

/// A user id of `GET`/`DELETE /user/{id}`: malformed and unknown ids are both 404
/// `Not Found`, as fastapi-users answers.
fn user_id_or_404(raw: &str) -> ApiResult<ObjectId> {
    ObjectId::parse(raw).map_err(|_| ApiError::not_found("Not Found"))
}

/// `GET /user/{id}` (any active user): 200 UserRead; 404 `Not Found`.
pub async fn get_user(state: &AppState, req: &Req) -> ApiResult<Resp> {
    state.require_user(req, Operation::GetUser).await?;
    let id = user_id_or_404(req.param(0))?;
    let user = state
        .store()
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found("Not Found"))?;
    Ok(response::ok(&user_json(&user)))
}

/// `DELETE /user/{id}` (admin): 200 `null` (not 204); 404 `Not Found`; 409 for the
/// last active superuser.
pub async fn delete_user(state: &AppState, req: &Req) -> ApiResult<Resp> {
    state.require_user(req, Operation::DeleteUser).await?;
    let id = user_id_or_404(req.param(0))?;
    let _serialised = SUPERUSER_CHANGES.lock().await;
    if let Some(user) = state.store().get_user(id).await? {
        keep_an_administrator(state, &user, "delete").await?;
    }
    if !state.store().delete_user(id).await? {
        return Err(ApiError::not_found("Not Found"));
    }
    tracing::info!(user = %id, "user deleted");
    Ok(response::ok(&Value::Null))
}

/// `PATCH /user/{user_id}` (admin): every field. 400 for a malformed id, 404 `User
/// not found with id: <id>`; a non-empty `groups` replaces the user's groups (each
/// must exist), an empty one changes nothing; `is_verified: true` in the same
/// request keeps a user whose e-mail changes verified.
pub async fn patch_user(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let body = req.json_opt()?;
    state.require_user(req, Operation::PatchUser).await?;
    let body = require_body(body)?;
    let update = parse_update(body)?;
    let raw = req.param(0);
    let id = ObjectId::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let not_found = || ApiError::not_found(format!("User not found with id: {raw}"));
    let read = state.store().get_user(id).await?.ok_or_else(not_found)?;
    check_unique(state, &read, &update).await?;
    let groups = if update.groups.is_empty() {
        None
    } else {
        Some(resolve_groups(state, &update.groups).await?)
    };
    let hash = hashed_password(state, &update).await?;
    let user = modify_user(state, id, |u| {
        apply_profile(u, &update, hash.as_deref());
        if let Some(groups) = &groups {
            u.groups = groups.clone();
        }
        if let Some(v) = update.is_active {
            u.is_active = v;
        }
        if let Some(v) = update.is_superuser {
            u.is_superuser = v;
        }
        if let Some(v) = update.is_verified {
            u.is_verified = v;
        }
        Ok(())
    })
    .await?
    .ok_or_else(not_found)?;
    Ok(response::ok(&user_json(&user)))
}

/// `GET /users` (any active user): one page of users; every parameter but `limit`
/// and `offset` is an exact filter on the user's public JSON (`true`/`false` are
/// booleans). Items carry `revision_id: null`.
pub async fn list_users(state: &AppState, req: &Req) -> ApiResult<Resp> {
    state.require_user(req, Operation::ListUsers).await?;
    let (limit, offset) = crate::request::page_window(req)?;
    let filter = ExactFilter::from_pairs(&req.query, &["limit", "offset"])?;
    let page = state.store().find_users(&filter, limit, offset).await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|u| {
            let mut v = user_json(u);
            if let Some(o) = v.as_object_mut() {
                o.insert("revision_id".into(), Value::Null);
            }
            v
        })
        .collect();
    Ok(response::ok(&json!({
        "items": items,
        "total": page.total,
        "limit": limit,
        "offset": offset,
    })))
}
