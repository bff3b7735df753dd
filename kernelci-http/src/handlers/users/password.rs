//! Passwords: `POST /user/forgot-password`, `/user/reset-password` and
//! `/user/update-password`.

use hyper::StatusCode;
use serde_json::Value;

use kernelci_core::auth::User;
use kernelci_core::id::ObjectId;
use kernelci_core::time::Timestamp;
use kernelci_core::validation::Fields;

use super::login::credentials_form;
use super::*;
use crate::account_tokens;
use crate::error::{ApiError, ApiResult};
use crate::mail::Email;
use crate::request::Req;
use crate::response::{self, Resp};
use crate::state::AppState;

/// `POST /user/forgot-password` `{"email"}` (public): always 202 `null` (422 for an
/// invalid address). For an active user a reset token (valid 1 h) is e-mailed when
/// SMTP is configured; otherwise nothing is sent and an info line is logged.
pub async fn forgot_password(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let mut f = Fields::body(req.json()?)?;
    let email = email(&mut f, "email", true);
    f.finish()?;
    let email = email.unwrap_or_default();
    if let Some(user) = state.store().get_user_by_email(&email).await? {
        if user.is_active {
            if state.mailer().configured() {
                let token = account_tokens::reset_token(state, &user, Timestamp::now());
                let body = format!(
                    "Hello {name},\n\n\
                     Someone asked to reset the password of your KernelCI API account \
                     \"{name}\". If it was you, use this token within one hour:\n\n\
                     {token}\n\n\
                     for example: kci user reset-password, or POST /user/reset-password \
                     with the JSON body {{\"token\": \"<token>\", \"password\": \"<new password>\"}}.\n\n\
                     If it was not you, ignore this message: your password stays as it is.\n",
                    name = user.username
                );
                let email = Email {
                    to: user.email.clone(),
                    subject: RESET_SUBJECT.to_owned(),
                    body,
                };
                try_send(state, email, "password reset").await;
            } else {
                tracing::info!(
                    user = %user.username,
                    "password reset requested but no SMTP server is configured: nothing sent"
                );
            }
        }
    }
    Ok(response::json(StatusCode::ACCEPTED, &Value::Null))
}

/// `POST /user/reset-password` `{token, password}` (public): 200 `null`; 400
/// `RESET_PASSWORD_BAD_TOKEN` for a bad or expired token, an unknown user, a
/// password changed since the token was issued, or an inactive user.
pub async fn reset_password(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let mut f = Fields::body(req.json()?)?;
    let token = f.required_str("token", usize::MAX);
    let password = f.required_str("password", usize::MAX);
    f.finish()?;
    let (token, password) = (token.unwrap_or_default(), password.unwrap_or_default());
    let bad = || ApiError::bad_request(RESET_PASSWORD_BAD_TOKEN);
    let (sub, fgpt) = account_tokens::decode_reset(state, &token).ok_or_else(bad)?;
    let id = ObjectId::parse(&sub).map_err(|_| bad())?;
    let valid = |user: &User| {
        if account_tokens::reset_still_valid(state, user, &fgpt) && user.is_active {
            Ok(())
        } else {
            Err(bad())
        }
    };
    valid(&state.store().get_user(id).await?.ok_or_else(bad)?)?;
    let hash = new_hash(state, &password).await?;
    // Checked again over the record written: the token is single-use (a password
    // changed by a concurrent reset invalidates it) and an inactive user is refused.
    let user = modify_user(state, id, |u| {
        valid(u)?;
        u.hashed_password = hash.clone();
        Ok(())
    })
    .await?
    .ok_or_else(bad)?;
    tracing::info!(user = %user.username, "password reset");
    if state.mailer().configured() {
        let email = Email {
            to: user.email.clone(),
            subject: "Password reset successful for KernelCI API account".to_owned(),
            body: format!(
                "Hello {name},\n\nThe password of your KernelCI API account \"{name}\" has \
                 been reset.\n",
                name = user.username
            ),
        };
        try_send(state, email, "password reset done").await;
    }
    Ok(response::ok(&Value::Null))
}

/// `POST /user/update-password` (form `username`, `password`, `new_password`;
/// public, the credentials are in the form): 200 `null`; 400
/// `LOGIN_BAD_CREDENTIALS` for wrong credentials or an inactive user. Unverified
/// users may change their password.
pub async fn update_password(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let pairs = req.form();
    let found = credentials_form(&pairs, &["username", "password", "new_password"])?;
    let (username, password, new_password) = (found[0], found[1], found[2]);
    let bad = || ApiError::bad_request(LOGIN_BAD_CREDENTIALS);
    let checked = match authenticate(state, username, password).await? {
        Some(u) if u.is_active => u,
        _ => return Err(bad()),
    };
    let hash = new_hash(state, new_password).await?;
    // Written over the record whose password was checked: a user deactivated, or
    // whose password changed, meanwhile is refused.
    let user = modify_user(state, checked.id, |u| {
        if !u.is_active || u.hashed_password != checked.hashed_password {
            return Err(bad());
        }
        u.hashed_password = hash.clone();
        Ok(())
    })
    .await?
    .ok_or_else(bad)?;
    tracing::info!(user = %user.username, "password changed");
    Ok(response::ok(&Value::Null))
}
