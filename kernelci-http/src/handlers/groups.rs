//! User groups (API.md §5): list, get, create, delete — all for administrators
//! (no token 401, not a superuser 403) — and the start-up side effect
//! [`ensure_builtin_groups`].
//!
//! Group JSON is `{"id": "<hex>", "name": "<string>"}`.

use hyper::StatusCode;
use serde_json::{json, Value};

use kernelci_core::auth::{Operation, User, UserGroup, NODE_EDIT_ANY};
use kernelci_core::error::Error as CoreError;
use kernelci_core::exact::ExactFilter;
use kernelci_core::id::ObjectId;

use crate::error::{ApiError, ApiResult};
use crate::request::{require_body, Req};
use crate::response::{self, Resp};
use crate::state::AppState;

use kernelci_core::validation::Fields;

use super::users::MAX_GROUP_NAME_CHARS;
use crate::request::page_window;

/// The users that receive [`NODE_EDIT_ANY`] at start-up (the reference's legacy
/// pipeline accounts).
pub const LEGACY_NODE_EDITORS: &[&str] = &["staging.kernelci.org", "production"];

/// The 409 text of deleting a group that users still have.
pub const GROUP_IN_USE: &str =
    "User group is assigned to users and cannot be deleted. Remove it from users first.";

fn group_json(g: &UserGroup) -> Value {
    json!({"id": g.id, "name": g.name})
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("User group not found with id: {id}"))
}

/// A path id as an ObjectId: 400 with the reference's message otherwise.
fn parse_id(raw: &str) -> ApiResult<ObjectId> {
    ObjectId::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `GET /user-groups`: one page of groups; every parameter but `limit` and `offset`
/// is an exact filter on `{id, name}`.
pub async fn list_groups(state: &AppState, req: &Req) -> ApiResult<Resp> {
    state.require_user(req, Operation::ListGroups).await?;
    let (limit, offset) = page_window(req)?;
    let filter = ExactFilter::from_pairs(&req.query_last_wins(), &["limit", "offset"])?;
    let page = state.store().find_groups(&filter, limit, offset).await?;
    let items: Vec<Value> = page.items.iter().map(group_json).collect();
    Ok(response::ok(&json!({
        "items": items,
        "total": page.total,
        "limit": limit,
        "offset": offset,
    })))
}

/// `GET /user-groups/{group_id}`: 400 for a malformed id, 404 when missing.
pub async fn get_group(state: &AppState, req: &Req) -> ApiResult<Resp> {
    state.require_user(req, Operation::GetGroup).await?;
    let raw = req.param(0);
    let id = parse_id(raw)?;
    let group = state
        .store()
        .get_group(id)
        .await?
        .ok_or_else(|| not_found(raw))?;
    Ok(response::ok(&group_json(&group)))
}

/// `POST /user-groups` `{"name": str}`: 200 with the new group (not 201); 400 when
/// the name exists.
pub async fn create_group(state: &AppState, req: &Req) -> ApiResult<Resp> {
    // The body is decoded before authentication (API.md §1.2), validated after.
    let body = req.json_opt()?;
    state.require_user(req, Operation::CreateGroup).await?;
    let body = require_body(body)?;
    let mut fields = Fields::body(body)?;
    let name = fields.required_str("name", MAX_GROUP_NAME_CHARS);
    fields.finish()?;
    let name = name.unwrap_or_default();
    let exists = || ApiError::bad_request(format!("User group already exists with name: {name}"));
    if state.store().get_group_by_name(&name).await?.is_some() {
        return Err(exists());
    }
    let group = UserGroup {
        id: ObjectId::new(),
        name: name.clone(),
    };
    match state.store().insert_group(&group).await {
        Ok(()) => Ok(response::ok(&group_json(&group))),
        // Created by a concurrent request between the check and the insert.
        Err(CoreError::Conflict(_)) => Err(exists()),
        Err(e) => Err(e.into()),
    }
}

/// `DELETE /user-groups/{group_id}`: 204; 400 malformed id; 404 missing; 409 while
/// any user has a group of that name (checked by name, as the reference does, and
/// by id atomically in the store).
pub async fn delete_group(state: &AppState, req: &Req) -> ApiResult<Resp> {
    state.require_user(req, Operation::DeleteGroup).await?;
    let raw = req.param(0);
    let id = parse_id(raw)?;
    let store = state.store();
    let group = store.get_group(id).await?.ok_or_else(|| not_found(raw))?;
    let by_name = ExactFilter {
        terms: vec![("groups.name".to_owned(), Value::String(group.name.clone()))],
    };
    if store.find_users(&by_name, 1, 0).await?.total > 0 {
        return Err(ApiError::detail(StatusCode::CONFLICT, GROUP_IN_USE));
    }
    match store.delete_group(id).await {
        Ok(true) => Ok(response::empty(StatusCode::NO_CONTENT)),
        Ok(false) => Err(not_found(raw)),
        Err(CoreError::Conflict(_)) => Err(ApiError::detail(StatusCode::CONFLICT, GROUP_IN_USE)),
        Err(e) => Err(e.into()),
    }
}

/// The start-up side effect of API.md §5: creates the group [`NODE_EDIT_ANY`] when
/// it is missing and adds it to the users named in [`LEGACY_NODE_EDITORS`] that
/// exist and lack it. Idempotent.
pub async fn ensure_builtin_groups(state: &AppState) -> Result<(), CoreError> {
    let store = state.store();
    let group = match store.get_group_by_name(NODE_EDIT_ANY).await? {
        Some(g) => g,
        None => {
            let g = UserGroup {
                id: ObjectId::new(),
                name: NODE_EDIT_ANY.to_owned(),
            };
            match store.insert_group(&g).await {
                Ok(()) => {
                    tracing::info!(group = NODE_EDIT_ANY, "created the built-in group");
                    g
                }
                // Another process sharing the store created it meanwhile.
                Err(CoreError::Conflict(_)) => store
                    .get_group_by_name(NODE_EDIT_ANY)
                    .await?
                    .ok_or_else(|| CoreError::Storage(format!("group {NODE_EDIT_ANY} vanished")))?,
                Err(e) => return Err(e),
            }
        }
    };
    for username in LEGACY_NODE_EDITORS {
        let Some(mut user): Option<User> = store.get_user_by_username(username).await? else {
            continue;
        };
        if user.groups.iter().any(|g| g.name == NODE_EDIT_ANY) {
            continue;
        }
        let read = user.clone();
        user.groups.push(group.clone());
        // Over the record read: another server starting at the same time may have
        // granted it already, or an administrator changed the user.
        if store.replace_user(&read, &user).await? {
            tracing::info!(user = %username, group = NODE_EDIT_ANY, "granted the built-in group");
        }
    }
    Ok(())
}
