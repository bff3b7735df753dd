//! Invitations (AUTH.md §6): `POST /user/invite`, `GET /user/invite/url`,
//! `POST /user/accept-invite`, and the two HTML forms of the flow.

use serde_json::{json, Value};

use kernelci_core::auth::{Operation, User};
use kernelci_core::error::Error as CoreError;
use kernelci_core::id::ObjectId;
use kernelci_core::time::Timestamp;
use kernelci_core::validation::{value, Fields};

use super::*;
use crate::account_tokens::{self, InviteError};
use crate::error::{ApiError, ApiResult};
use crate::mail::Email;
use crate::request::{require_body, Req};
use crate::response::{self, Resp};
use crate::state::AppState;

use crate::handlers::pages::page;

fn invite_email(user: &User, base: &str, invite_url: &str, expires: Timestamp) -> Email {
    let body = format!(
        "Hello {name},\n\n\
         You have been invited to the KernelCI API at {base}.\n\n\
         To accept the invitation, open this link and choose a password:\n\n\
         {invite_url}\n\n\
         The link is valid until {expires} UTC. Then log in with the username \"{name}\" \
         and your password (for example with `kci user login`).\n\n\
         If you did not expect this invitation, you can ignore this message.\n",
        name = user.username,
        expires = expires.to_chrono().format("%Y-%m-%d %H:%M"),
    );
    Email {
        to: user.email.clone(),
        subject: INVITE_SUBJECT.to_owned(),
        body,
    }
}

/// `POST /user/invite` (admin): creates an unverified user with an unusable
/// password (or re-uses an unverified one with `resend_if_exists`), issues an
/// invite token and optionally e-mails the link (API.md §4).
pub async fn invite(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let body = req.json_opt()?;
    state.require_user(req, Operation::Invite).await?;
    let body = require_body(body)?;
    let mut f = Fields::body(body)?;
    let username = f.required_str("username", MAX_USERNAME_CHARS);
    let email = email(&mut f, "email", true);
    let groups = unique_groups(&mut f, "groups");
    let is_superuser = f.or("is_superuser", false, value::lax_bool);
    let send_email = f.or("send_email", true, value::lax_bool);
    let return_token = f.or("return_token", false, value::lax_bool);
    let resend_if_exists = f.or("resend_if_exists", false, value::lax_bool);
    f.finish()?;
    let (username, email) = (username.unwrap_or_default(), email.unwrap_or_default());

    let store = state.store();
    let existing = match store.get_user_by_username(&username).await? {
        Some(u) => Some(u),
        None => store.get_user_by_email(&email).await?,
    };
    let user = match existing {
        Some(u) => {
            if !resend_if_exists {
                return Err(ApiError::bad_request("User already exists"));
            }
            if u.is_verified {
                return Err(ApiError::bad_request("User already verified"));
            }
            if u.username != username {
                return Err(ApiError::bad_request(
                    "Existing user has a different username",
                ));
            }
            if u.email != email {
                return Err(ApiError::bad_request("Existing user has a different email"));
            }
            u
        }
        None => {
            let groups = resolve_groups(state, &groups).await?;
            let hashed_password = passwords::unusable(state.config().password_cost)
                .await
                .map_err(ApiError::internal)?;
            let user = User {
                id: ObjectId::new(),
                username,
                email,
                hashed_password,
                is_active: true,
                is_superuser,
                is_verified: false,
                groups,
            };
            match store.insert_user(&user).await {
                Ok(()) => {}
                // Created concurrently between the lookups and the insert.
                Err(CoreError::Conflict(_)) => {
                    return Err(ApiError::bad_request("User already exists"))
                }
                Err(e) => return Err(e.into()),
            }
            tracing::info!(user = %user.username, "user invited");
            user
        }
    };

    let base = public_base_url(state, req);
    let accept_url = accept_invite_url(&base);
    let now = Timestamp::now();
    let token = account_tokens::invite_token(state, &user, now);
    let invite_url = format!("{accept_url}?token={token}");
    let expire = i64::try_from(state.config().invite_token_expire_seconds).unwrap_or(i64::MAX);
    let email_sent = send_email
        && try_send(
            state,
            invite_email(&user, &base, &invite_url, now.plus_seconds(expire)),
            "invite",
        )
        .await;
    Ok(response::ok(&json!({
        "user": user_json(&user),
        "email_sent": email_sent,
        "public_base_url": base,
        "accept_invite_url": accept_url,
        "invite_url": if return_token { Value::String(invite_url) } else { Value::Null },
        "token": if return_token { Value::String(token) } else { Value::Null },
    })))
}

/// `GET /user/invite/url` (admin): the resolved public base URL and accept URL.
pub async fn invite_url(state: &AppState, req: &Req) -> ApiResult<Resp> {
    state.require_user(req, Operation::InviteUrl).await?;
    let base = public_base_url(state, req);
    Ok(response::ok(&json!({
        "public_base_url": base,
        "accept_invite_url": accept_invite_url(&base),
    })))
}

/// `POST /user/accept-invite` `{token, password}` (public): sets the password and
/// verifies the user. Errors in API.md §4's order: undecodable token, wrong
/// purpose, malformed `sub`, unknown user (404), inactive, e-mail mismatch, already
/// verified.
pub async fn accept_invite(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let mut f = Fields::body(req.json()?)?;
    let token = f.required_str("token", usize::MAX);
    let password = f.required_str("password", usize::MAX);
    f.finish()?;
    let (token, password) = (token.unwrap_or_default(), password.unwrap_or_default());
    let invite = account_tokens::verify_invite(state, &token).map_err(|e| match e {
        InviteError::Undecodable => ApiError::bad_request("Invalid or expired invite token"),
        InviteError::NotAnInvite => ApiError::bad_request("Invalid invite token"),
    })?;
    let id = ObjectId::parse(&invite.sub).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let not_found = || ApiError::not_found("User not found");
    let acceptable = |user: &User| {
        if !user.is_active {
            return Err(ApiError::bad_request("User is inactive"));
        }
        if invite.email.as_deref() != Some(user.email.as_str()) {
            return Err(ApiError::bad_request("Invalid invite token"));
        }
        if user.is_verified {
            return Err(ApiError::bad_request("Invite already accepted"));
        }
        Ok(())
    };
    let read = state.store().get_user(id).await?.ok_or_else(not_found)?;
    acceptable(&read)?;
    let hash = new_hash(state, &password).await?;
    // Checked again over the record written: an invitation accepted twice at once,
    // or a user deactivated meanwhile, is refused.
    let user = modify_user(state, id, |u| {
        acceptable(u)?;
        u.hashed_password = hash.clone();
        u.is_verified = true;
        Ok(())
    })
    .await?
    .ok_or_else(not_found)?;
    tracing::info!(user = %user.username, "invite accepted");
    if state.mailer().configured() {
        let email = Email {
            to: user.email.clone(),
            subject: "Welcome to KernelCI API".to_owned(),
            body: format!(
                "Hello {name},\n\nYour KernelCI API account \"{name}\" is ready: log in with \
                 your username and the password you chose.\n",
                name = user.username
            ),
        };
        try_send(state, email, "invite accepted").await;
    }
    Ok(response::ok(&user_json(&user)))
}

// ---- HTML pages ----------------------------------------------------------------------

const INVITE_PAGE: &str = r#"<h1>Invite a user</h1>
<p class="muted">For administrators: creates the account (not yet verified) and
sends the invitation link. The invited person chooses a password on the
<a href="accept-invite">accept page</a>.</p>
<form id="invite">
  <label>Administrator token<br><input name="admin_token" type="password" autocomplete="off" required></label>
  <label>Username<br><input name="username" autocomplete="off" required></label>
  <label>E-mail<br><input name="email" type="email" autocomplete="off" required></label>
  <label>Groups (comma-separated)<br><input name="groups" autocomplete="off"></label>
  <label><input type="checkbox" name="is_superuser"> Administrator</label>
  <label><input type="checkbox" name="send_email" checked> Send the link by e-mail</label>
  <label><input type="checkbox" name="return_token" checked> Show the link here</label>
  <label><input type="checkbox" name="resend_if_exists"> Send again to an existing user who has not accepted yet</label>
  <button type="submit">Invite</button>
</form>
<pre id="invite-result" class="result"></pre>
<script src="/static/js/forms.js"></script>
<script>
kciForm("invite", "invite", function (d) {
  return {
    username: d.username,
    email: d.email,
    groups: (d.groups || "").split(",").map(function (g) { return g.trim(); })
      .filter(function (g) { return g.length > 0; }),
    is_superuser: "is_superuser" in d,
    send_email: "send_email" in d,
    return_token: "return_token" in d,
    resend_if_exists: "resend_if_exists" in d
  };
}, true);
</script>"#;

const ACCEPT_PAGE: &str = r#"<h1>Accept an invitation</h1>
<p class="muted">Choose the password of your KernelCI API account. The token comes
from the invitation link.</p>
<form id="accept">
  <label>Invitation token<br><textarea id="accept-token" name="token" rows="4" cols="40" required></textarea></label>
  <label>New password<br><input name="password" type="password" autocomplete="new-password" required></label>
  <label>New password again<br><input name="password_again" type="password" autocomplete="new-password" required></label>
  <button type="submit">Set the password</button>
</form>
<pre id="accept-result" class="result"></pre>
<p class="muted">Then log in with your username and this password, for example
with <code>kci user login</code>.</p>
<script src="/static/js/forms.js"></script>
<script>
(function () {
  var token = new URLSearchParams(window.location.search).get("token");
  if (token) { document.getElementById("accept-token").value = token; }
  var form = document.getElementById("accept");
  form.addEventListener("submit", function (ev) {
    if (form.elements.password.value !== form.elements.password_again.value) {
      ev.preventDefault();
      ev.stopImmediatePropagation();
      document.getElementById("accept-result").textContent = "The two passwords differ.";
    }
  });
  kciForm("accept", "accept-invite", function (d) {
    return { token: (d.token || "").trim(), password: d.password };
  }, false);
})();
</script>"#;

/// `GET /user/invite`: the invitation form (it calls `POST /user/invite` with the
/// administrator token typed into it).
pub async fn invite_page(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    Ok(response::html(page(
        "Invite a user - KernelCI API",
        INVITE_PAGE,
    )))
}

/// `GET /user/accept-invite`: the form that sets the password (it reads `?token=`
/// from its own URL and calls `POST /user/accept-invite`).
pub async fn accept_invite_page(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    Ok(response::html(page(
        "Accept an invitation - KernelCI API",
        ACCEPT_PAGE,
    )))
}
