//! Users and authentication (API.md §4, AUTH.md): login, logout, the invitation
//! flow, password reset and change, reading, listing, updating and deleting users,
//! and the two HTML pages of the invitation flow, one module per flow: `login`
//! (login, logout, register), `invite` (invitations and their pages), `password`
//! (forgotten, reset and changed passwords), `profile` (`/whoami`, `/user/me`) and
//! `admin` (reading, listing, updating and deleting users).
//!
//! User JSON is [`User::to_public_json`] (`UserRead`; never the password hash).
//! Access classes come from [`Operation::access`](kernelci_core::auth::Operation::access): the check runs after a JSON body
//! has been decoded (malformed JSON is 422 even without a token, API.md §1.2) and
//! before the body's fields are validated, as the reference does.
//!
//! Choices where API.md is silent or where we deliberately differ:
//!
//! - `POST /user/update-password` without `new_password` answers 422 (the
//!   reference silently keeps the old password and answers 200).
//! - `POST /user/forgot-password` always answers 202 `null`, also when SMTP is not
//!   configured or sending fails (the reference answers 400/500 there by accident;
//!   API.md allows 202). Without SMTP the reset token is not sent anywhere: an
//!   operator can mint one with [`crate::account_tokens::reset_token`].
//! - E-mail addresses are compared exactly after normalisation (the domain in lower
//!   case), as [`crate::mail::normalize_address`] returns them.
//! - Public base URLs: see [`crate::public_url`] (forwarding headers believed from
//!   the configured trusted proxies only).

mod admin;
mod invite;
mod login;
mod password;
mod profile;

pub use admin::{delete_user, get_user, list_users, patch_user};
pub use invite::{accept_invite, accept_invite_page, invite, invite_page, invite_url};
pub use login::{login, logout, register};
pub use password::{forgot_password, reset_password, update_password};
pub use profile::{patch_me, whoami};

use hyper::StatusCode;
use serde_json::{json, Value};

use kernelci_core::auth::{User, UserGroup};
use kernelci_core::error::Error as CoreError;
use kernelci_core::exact::ExactFilter;
use kernelci_core::id::ObjectId;
use kernelci_core::validation::{value, FieldError, Fields};

use crate::error::{ApiError, ApiResult};
use crate::mail::{Email, MailError};
use crate::passwords::{self, Checked};
use crate::request::Req;
use crate::state::AppState;

/// `detail` of a failed login or credential check.
pub const LOGIN_BAD_CREDENTIALS: &str = "LOGIN_BAD_CREDENTIALS";
/// `detail` of a login with the right password by an unverified user.
pub const LOGIN_USER_NOT_VERIFIED: &str = "LOGIN_USER_NOT_VERIFIED";
/// `detail` of every refused reset token.
pub const RESET_PASSWORD_BAD_TOKEN: &str = "RESET_PASSWORD_BAD_TOKEN";
/// `detail` of an e-mail change to an address another user has.
pub const UPDATE_USER_EMAIL_ALREADY_EXISTS: &str = "UPDATE_USER_EMAIL_ALREADY_EXISTS";

/// Subject of invitation e-mails (AUTH.md §6).
pub const INVITE_SUBJECT: &str = "You have been invited to KernelCI API";
/// Subject of password-reset e-mails.
pub const RESET_SUBJECT: &str = "Reset Password Token for KernelCI API account";

// ---- user bodies (pydantic's 422 answers, built by kernelci_core::validation) -------

/// The longest username accepted, in characters.
pub const MAX_USERNAME_CHARS: usize = 128;
/// The longest group name accepted, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 256;
/// The longest e-mail address accepted (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// An e-mail field of at most [`MAX_EMAIL_CHARS`], normalised
/// ([`crate::mail::normalize_address`]); `value_error` with the reason otherwise.
/// Required or optional (absent or `null`: `None`).
pub(super) fn email(f: &mut Fields, key: &str, required: bool) -> Option<String> {
    let raw = if required {
        f.required_str(key, MAX_EMAIL_CHARS)?
    } else {
        f.optional_str(key, MAX_EMAIL_CHARS)?
    };
    match crate::mail::normalize_address(&raw) {
        Ok(e) => Some(e),
        Err(reason) => {
            let msg = format!("value is not a valid email address: {reason}");
            let e = FieldError::new(f.loc(key), "value_error", msg, Value::String(raw))
                .with_ctx(json!({ "reason": reason }));
            f.error(e);
            None
        }
    }
}

/// A list of unique group names, `[]` when absent (the `groups` of the invite and
/// update models): `value_error` `Groups must have unique names.` for a repeat.
pub(super) fn unique_groups(f: &mut Fields, key: &str) -> Vec<String> {
    let before = f.error_count();
    let groups = f.or(key, Vec::new(), value::string_list);
    let mut seen = std::collections::HashSet::new();
    if f.error_count() == before && !groups.iter().all(|g| seen.insert(g.as_str())) {
        let input = f.get(key).cloned().unwrap_or_default();
        let e = FieldError::value_error(f.loc(key), "Groups must have unique names.", input)
            .with_ctx(json!({"error": {}}));
        f.error(e);
    }
    groups
}

// ---- shared helpers ------------------------------------------------------------------

/// 400 `Username already exists: <name>`.
fn username_taken(name: &str) -> ApiError {
    ApiError::bad_request(format!("Username already exists: {name}"))
}

/// Serialises, within this server, the changes that can take away an active
/// superuser (delete, deactivate, demote), so that two administrators demoting each
/// other at once cannot both pass [`keep_an_administrator`]. Servers sharing a
/// store do not share it: across servers the check is the best effort of a read.
static SUPERUSER_CHANGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// 409 when `user` is the last active superuser and the change would leave none:
/// nobody could administer the instance any more (invite, reset, groups).
async fn keep_an_administrator(state: &AppState, user: &User, action: &str) -> ApiResult<()> {
    if !(user.is_active && user.is_superuser) {
        return Ok(());
    }
    let pairs = [
        ("is_superuser".to_owned(), "true".to_owned()),
        ("is_active".to_owned(), "true".to_owned()),
    ];
    let filter = ExactFilter::from_pairs(&pairs, &[])?;
    let admins = state.store().find_users(&filter, 2, 0).await?;
    if admins.total <= 1 {
        return Err(ApiError::detail(
            StatusCode::CONFLICT,
            format!("Cannot {action} the last active superuser"),
        ));
    }
    Ok(())
}

/// How many times [`modify_user`] re-reads a user that other requests keep changing
/// before it gives up (409).
const MODIFY_ATTEMPTS: usize = 8;

/// Applies `change` to the stored user `id` and writes the result only over the
/// record it was applied to ([`Store::replace_user`](kernelci_core::store::Store::replace_user),
/// a compare-and-swap): when another request changed the user meanwhile (an
/// administrator deactivating it while its password is being hashed...), the user
/// is read again and `change` applied again, so that no concurrent change is
/// undone. Slow work (hashing) belongs before the call. `change` may refuse the
/// fresh record (its error is the answer). A result that takes away an active
/// superuser is checked, serialised, by [`keep_an_administrator`] (409 for the
/// last one). `Ok(None)` when the user does not exist (or was deleted meanwhile);
/// a username or e-mail taken meanwhile is the same 400 as the checks before.
pub(super) async fn modify_user(
    state: &AppState,
    id: ObjectId,
    mut change: impl FnMut(&mut User) -> ApiResult<()>,
) -> ApiResult<Option<User>> {
    let store = state.store();
    for _ in 0..MODIFY_ATTEMPTS {
        let Some(stored) = store.get_user(id).await? else {
            return Ok(None);
        };
        let mut user = stored.clone();
        change(&mut user)?;
        if user == stored {
            return Ok(Some(user));
        }
        let takes_admin =
            stored.is_active && stored.is_superuser && !(user.is_active && user.is_superuser);
        let _serialised = if takes_admin {
            let guard = SUPERUSER_CHANGES.lock().await;
            let action = if user.is_active {
                "demote"
            } else {
                "deactivate"
            };
            keep_an_administrator(state, &stored, action).await?;
            Some(guard)
        } else {
            None
        };
        match store.replace_user(&stored, &user).await {
            Ok(true) => return Ok(Some(user)),
            Ok(false) => continue,
            Err(CoreError::NotFound(_)) => return Ok(None),
            Err(CoreError::Conflict(_)) => {
                return Err(match store.get_user_by_username(&user.username).await? {
                    Some(other) if other.id != user.id => username_taken(&user.username),
                    _ => ApiError::bad_request(UPDATE_USER_EMAIL_ALREADY_EXISTS),
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::detail(
        StatusCode::CONFLICT,
        "The user was changed by other requests meanwhile, try again",
    ))
}

fn user_json(user: &User) -> Value {
    user.to_public_json()
}

/// Hashes a new password, as a 500 on failure (a server problem: bad cost, no
/// randomness).
async fn new_hash(state: &AppState, password: &str) -> ApiResult<String> {
    passwords::hash(password, state.config().password_cost)
        .await
        .map_err(ApiError::internal)
}

/// The user of `username` if `password` is theirs (inactive users included: the
/// callers decide). On success an outdated hash (bcrypt, another Argon2 cost) is
/// replaced by Argon2id with the current cost and saved; an unknown username costs
/// the time of a hash (AUTH.md §3).
async fn authenticate(state: &AppState, username: &str, password: &str) -> ApiResult<Option<User>> {
    let cost = state.config().password_cost;
    let store = state.store();
    let Some(mut user) = store.get_user_by_username(username).await? else {
        passwords::dummy_verify(password, cost).await;
        return Ok(None);
    };
    match passwords::verify_and_update(password, &user.hashed_password, cost).await {
        Checked::Mismatch => Ok(None),
        Checked::Match => Ok(Some(user)),
        Checked::MatchRehashed(new) => {
            // Over the fresh record, so that a concurrent change of the user is not
            // undone; skipped if the password itself changed meanwhile.
            let old = user.hashed_password.clone();
            let upgraded = modify_user(state, user.id, |u| {
                if u.hashed_password == old {
                    u.hashed_password = new.clone();
                }
                Ok(())
            })
            .await;
            match upgraded {
                Ok(Some(fresh)) => {
                    if fresh.hashed_password != old {
                        tracing::info!(user = %fresh.username, "password hash upgraded to Argon2id");
                    }
                    user = fresh;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(user = %user.username, detail = %e.body, "could not save an upgraded password hash");
                }
            }
            Ok(Some(user))
        }
    }
}

/// Sends `email` when SMTP is configured; whether it was sent. Failures are logged
/// and swallowed (API.md §4).
async fn try_send(state: &AppState, email: Email, what: &str) -> bool {
    match state.mailer().send(&email).await {
        Ok(()) => {
            tracing::info!(to = %email.to, what, "e-mail sent");
            state.metrics().email(true);
            true
        }
        Err(MailError::NotConfigured) => {
            tracing::info!(to = %email.to, what, "no SMTP server is configured: e-mail not sent");
            false
        }
        Err(e) => {
            tracing::warn!(to = %email.to, what, error = %e, "e-mail not sent");
            state.metrics().email(false);
            false
        }
    }
}

/// The user groups named `names`, in order: 400 `User group does not exist with
/// name: <g>` for the first missing one.
async fn resolve_groups(state: &AppState, names: &[String]) -> ApiResult<Vec<UserGroup>> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        match state.store().get_group_by_name(name).await? {
            Some(g) => out.push(g),
            None => {
                return Err(ApiError::bad_request(format!(
                    "User group does not exist with name: {name}"
                )))
            }
        }
    }
    Ok(out)
}

/// The public base URL of invite links (AUTH.md §6 step 3), without a trailing `/`
/// (see [`crate::public_url`]).
pub fn public_base_url(state: &AppState, req: &Req) -> String {
    crate::public_url::base_url(state.config(), &req.headers, req.peer)
}

fn accept_invite_url(base: &str) -> String {
    format!("{base}/user/accept-invite")
}
