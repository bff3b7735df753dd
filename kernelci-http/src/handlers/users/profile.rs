//! The caller's own account: `GET /whoami` and `PATCH /user/me`, and the update
//! body both `PATCH` endpoints share.

use serde_json::Value;

use kernelci_core::auth::{Operation, User};
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

/// The uniqueness checks of an update, in the reference's order, against the
/// user as read: 400 when another user has the new username, then the new e-mail.
/// (The store enforces both again when writing; see [`modify_user`].)
pub(super) async fn check_unique(
    state: &AppState,
    user: &User,
    update: &UserUpdate,
) -> ApiResult<()> {
    if let Some(name) = update.username.as_ref().filter(|n| **n != user.username) {
        if let Some(other) = state.store().get_user_by_username(name).await? {
            if other.id != user.id {
                return Err(username_taken(name));
            }
        }
    }
    if let Some(email) = update.email.as_ref().filter(|e| **e != user.email) {
        if let Some(other) = state.store().get_user_by_email(email).await? {
            if other.id != user.id {
                return Err(ApiError::bad_request(UPDATE_USER_EMAIL_ALREADY_EXISTS));
            }
        }
    }
    Ok(())
}

/// The password of an update hashed (Argon2id), before any record is read for
/// writing: hashing is slow, and must not sit between a read and its write.
pub(super) async fn hashed_password(
    state: &AppState,
    update: &UserUpdate,
) -> ApiResult<Option<String>> {
    match &update.password {
        Some(p) => Ok(Some(new_hash(state, p).await?)),
        None => Ok(None),
    }
}

/// The fields every update may change: the username, the e-mail (a new one
/// unverifies the user) and the password (already hashed).
pub(super) fn apply_profile(user: &mut User, update: &UserUpdate, hash: Option<&str>) {
    if let Some(name) = &update.username {
        user.username = name.clone();
    }
    if let Some(email) = update.email.as_ref().filter(|e| **e != user.email) {
        user.email = email.clone();
        user.is_verified = false;
    }
    if let Some(hash) = hash {
        user.hashed_password = hash.to_owned();
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
    let (_, user) = state.require_user(req, Operation::PatchMe).await?;
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
    check_unique(state, &user, &update).await?;
    let hash = hashed_password(state, &update).await?;
    let user = modify_user(state, user.id, |u| {
        apply_profile(u, &update, hash.as_deref());
        Ok(())
    })
    .await?
    .ok_or_else(|| ApiError::not_found("Not Found"))?;
    Ok(response::ok(&user_json(&user)))
}
