//! The caller's own account: `GET /whoami` and `PATCH /user/me`, and the update
//! body both `PATCH` endpoints share.

use serde_json::Value;

use kernelci_core::auth::{Operation, User};
use kernelci_core::error::Error as CoreError;
use kernelci_core::validation::{value, Fields};

use super::*;
use crate::error::{ApiError, ApiResult};
use crate::request::{require_body, Req};
use crate::response::{self, Resp};
use crate::state::AppState;

/// `GET /whoami` (verified): the caller.
pub async fn whoami(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let (_, user) = state.require_user(req, Operation::Whoami).await?;
    Ok(response::ok(&user_json(&user)))
}

/// The body of `PATCH /user/me` and `PATCH /user/{id}` (`UserUpdateRequest`).
#[derive(Debug, Default)]
pub(super) struct UserUpdate {
    pub(super) username: Option<String>,
    pub(super) email: Option<String>,
    pub(super) password: Option<String>,
    pub(super) is_active: Option<bool>,
    pub(super) is_superuser: Option<bool>,
    pub(super) is_verified: Option<bool>,
    pub(super) groups: Vec<String>,
}

pub(super) fn parse_update(body: Value) -> ApiResult<UserUpdate> {
    let mut f = Fields::body(body)?;
    let update = UserUpdate {
        username: f.optional_str("username", MAX_USERNAME_CHARS),
        email: email(&mut f, "email", false),
        password: f.optional_str("password", usize::MAX),
        is_active: f.optional("is_active", value::lax_bool),
        is_superuser: f.optional("is_superuser", value::lax_bool),
        is_verified: f.optional("is_verified", value::lax_bool),
        groups: unique_groups(&mut f, "groups"),
    };
    f.finish()?;
    Ok(update)
}

pub(super) fn username_taken(name: &str) -> ApiError {
    ApiError::bad_request(format!("Username already exists: {name}"))
}

/// A new username for `user`: 400 when another user has it.
pub(super) async fn apply_username(
    state: &AppState,
    user: &mut User,
    update: &UserUpdate,
) -> ApiResult<()> {
    if let Some(name) = &update.username {
        if *name != user.username {
            if let Some(other) = state.store().get_user_by_username(name).await? {
                if other.id != user.id {
                    return Err(username_taken(name));
                }
            }
            user.username = name.clone();
        }
    }
    Ok(())
}

/// A new e-mail (400 when another user has it; a change unverifies the user) and a
/// new password (hashed with Argon2id).
pub(super) async fn apply_email_and_password(
    state: &AppState,
    user: &mut User,
    update: &UserUpdate,
) -> ApiResult<()> {
    if let Some(email) = &update.email {
        if *email != user.email {
            if let Some(other) = state.store().get_user_by_email(email).await? {
                if other.id != user.id {
                    return Err(ApiError::bad_request(UPDATE_USER_EMAIL_ALREADY_EXISTS));
                }
            }
            user.email = email.clone();
            user.is_verified = false;
        }
    }
    if let Some(password) = &update.password {
        user.hashed_password = new_hash(state, password).await?;
    }
    Ok(())
}

/// Saves `user`, turning a uniqueness conflict that raced the checks into the same
/// 400 the checks give.
pub(super) async fn save(state: &AppState, user: &User, update: &UserUpdate) -> ApiResult<()> {
    match state.store().update_user(user).await {
        Ok(()) => Ok(()),
        Err(CoreError::Conflict(_)) => {
            let store = state.store();
            match store.get_user_by_username(&user.username).await? {
                Some(other) if other.id != user.id => Err(username_taken(&user.username)),
                _ if update.email.is_some() => {
                    Err(ApiError::bad_request(UPDATE_USER_EMAIL_ALREADY_EXISTS))
                }
                _ => Err(username_taken(&user.username)),
            }
        }
        Err(CoreError::NotFound(_)) => Err(ApiError::not_found("Not Found")),
        Err(e) => Err(e.into()),
    }
}

/// `PATCH /user/me` (any active user): username, e-mail and password only.
/// `is_active`, `is_verified` and `is_superuser` are ignored (no self-escalation);
/// a non-empty `groups` is 400. Renaming oneself to one of the legacy pipeline
/// accounts of [`LEGACY_NODE_EDITORS`](crate::handlers::groups::LEGACY_NODE_EDITORS) is 400
/// `Username is reserved: <name>` (start-up gives them `node:edit:any`; the
/// reference allows it). Administrators may still use those names.
pub async fn patch_me(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let body = req.json_opt()?;
    let (_, mut user) = state.require_user(req, Operation::PatchMe).await?;
    let body = require_body(body)?;
    let update = parse_update(body)?;
    if !update.groups.is_empty() {
        return Err(ApiError::bad_request(
            "User groups can only be updated by an admin user",
        ));
    }
    if let Some(name) = update.username.as_deref() {
        // Start-up grants `node:edit:any` to these names: taking one would be a way
        // to edit every node after the next restart.
        if name != user.username && crate::handlers::groups::LEGACY_NODE_EDITORS.contains(&name) {
            return Err(ApiError::bad_request(format!(
                "Username is reserved: {name}"
            )));
        }
    }
    apply_username(state, &mut user, &update).await?;
    apply_email_and_password(state, &mut user, &update).await?;
    save(state, &user, &update).await?;
    Ok(response::ok(&user_json(&user)))
}
