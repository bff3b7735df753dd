//! Users and authentication (API.md §4, AUTH.md): login, logout, the invitation
//! flow, password reset and change, reading, listing, updating and deleting users,
//! and the two HTML pages of the invitation flow.
//!
//! User JSON is [`User::to_public_json`] (`UserRead`; never the password hash).
//! Access classes come from [`Operation::access`]: the check runs after a JSON body
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

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use kernelci_core::auth::{Operation, User, UserGroup};
use kernelci_core::error::Error as CoreError;
use kernelci_core::exact::ExactFilter;
use kernelci_core::id::ObjectId;
use kernelci_core::time::Timestamp;

use crate::account_tokens::{self, InviteError};
use crate::error::{ApiError, ApiResult};
use crate::mail::{Email, MailError};
use crate::passwords::{self, Checked};
use crate::request::{require_body, Req};
use crate::response::{self, Resp};
use crate::state::AppState;

use super::pages::page;

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

// ---- request validation (pydantic's 422 answers) -----------------------------------

/// The longest username accepted, in characters.
pub const MAX_USERNAME_CHARS: usize = 128;
/// The longest group name accepted, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 256;
/// The longest e-mail address accepted (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// The length limit of a string field of a user or group body (422
/// `string_too_long` beyond); passwords are not limited here.
fn max_chars(key: &str) -> usize {
    match key {
        "username" => MAX_USERNAME_CHARS,
        "name" => MAX_GROUP_NAME_CHARS,
        "email" => MAX_EMAIL_CHARS,
        _ => usize::MAX,
    }
}

/// A JSON object body validated field by field, collecting pydantic-style errors
/// (`loc: ["body", field, ...]`) so that one 422 lists them all.
#[derive(Debug)]
pub(crate) struct Fields {
    obj: Map<String, Value>,
    errors: Vec<Value>,
}

impl Fields {
    /// Fields of `body`, which must be an object (422 `model_attributes_type`).
    pub(crate) fn new(body: Value) -> ApiResult<Self> {
        match body {
            Value::Object(obj) => Ok(Fields {
                obj,
                errors: Vec::new(),
            }),
            other => Err(ApiError::unprocessable(
                "model_attributes_type",
                json!(["body"]),
                "Input should be a valid dictionary or object to extract fields from",
                other,
            )),
        }
    }

    fn push(&mut self, kind: &str, loc: Value, msg: &str, input: Value, ctx: Option<Value>) {
        let mut e = json!({"type": kind, "loc": loc, "msg": msg, "input": input});
        if let (Some(ctx), Some(o)) = (ctx, e.as_object_mut()) {
            o.insert("ctx".into(), ctx);
        }
        self.errors.push(e);
    }

    fn missing(&mut self, key: &str) {
        let input = Value::Object(self.obj.clone());
        self.push(
            "missing",
            json!(["body", key]),
            "Field required",
            input,
            None,
        );
    }

    fn string(&mut self, key: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => {
                let max = max_chars(key);
                if s.len() > max && s.chars().count() > max {
                    self.push(
                        "string_too_long",
                        json!(["body", key]),
                        &format!("String should have at most {max} characters"),
                        v.clone(),
                        Some(json!({ "max_length": max })),
                    );
                    return None;
                }
                Some(s.clone())
            }
            other => {
                self.push(
                    "string_type",
                    json!(["body", key]),
                    "Input should be a valid string",
                    other.clone(),
                    None,
                );
                None
            }
        }
    }

    /// A required string.
    pub(crate) fn required_str(&mut self, key: &str) -> Option<String> {
        match self.obj.get(key).cloned() {
            None => {
                self.missing(key);
                None
            }
            Some(v) => self.string(key, &v),
        }
    }

    /// An optional string (absent or `null`: `None`).
    fn optional_str(&mut self, key: &str) -> Option<String> {
        match self.obj.get(key).cloned() {
            None | Some(Value::Null) => None,
            Some(v) => self.string(key, &v),
        }
    }

    fn email(&mut self, key: &str, raw: String) -> Option<String> {
        match crate::mail::normalize_address(&raw) {
            Ok(e) => Some(e),
            Err(reason) => {
                self.push(
                    "value_error",
                    json!(["body", key]),
                    &format!("value is not a valid email address: {reason}"),
                    Value::String(raw),
                    Some(json!({ "reason": reason })),
                );
                None
            }
        }
    }

    /// A required e-mail address, normalised.
    fn required_email(&mut self, key: &str) -> Option<String> {
        let raw = self.required_str(key)?;
        self.email(key, raw)
    }

    /// An optional e-mail address, normalised.
    fn optional_email(&mut self, key: &str) -> Option<String> {
        let raw = self.optional_str(key)?;
        self.email(key, raw)
    }

    /// pydantic's lax booleans: JSON booleans, 0/1, and the usual words.
    fn boolean(&mut self, key: &str, v: &Value) -> Option<bool> {
        let parsed = match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => {
                let x = n.as_f64();
                if x == Some(0.0) {
                    Some(false)
                } else if x == Some(1.0) {
                    Some(true)
                } else {
                    None
                }
            }
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
                "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
                _ => None,
            },
            other => {
                self.push(
                    "bool_type",
                    json!(["body", key]),
                    "Input should be a valid boolean",
                    other.clone(),
                    None,
                );
                return None;
            }
        };
        if parsed.is_none() {
            self.push(
                "bool_parsing",
                json!(["body", key]),
                "Input should be a valid boolean, unable to interpret input",
                v.clone(),
                None,
            );
        }
        parsed
    }

    /// A boolean with a default (`null` is refused, as for a non-optional field).
    fn bool_or(&mut self, key: &str, default: bool) -> bool {
        match self.obj.get(key).cloned() {
            None => default,
            Some(v) => self.boolean(key, &v).unwrap_or(default),
        }
    }

    /// An optional boolean (absent or `null`: `None`).
    fn optional_bool(&mut self, key: &str) -> Option<bool> {
        match self.obj.get(key).cloned() {
            None | Some(Value::Null) => None,
            Some(v) => self.boolean(key, &v),
        }
    }

    /// A list of unique strings, `[]` when absent (the `groups` of the invite and
    /// update models).
    fn unique_str_list(&mut self, key: &str) -> Vec<String> {
        let items = match self.obj.get(key).cloned() {
            None => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.push(
                    "list_type",
                    json!(["body", key]),
                    "Input should be a valid list",
                    other,
                    None,
                );
                return Vec::new();
            }
        };
        let before = self.errors.len();
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                other => self.push(
                    "string_type",
                    json!(["body", key, i]),
                    "Input should be a valid string",
                    other.clone(),
                    None,
                ),
            }
        }
        if self.errors.len() == before {
            let mut seen = std::collections::HashSet::new();
            if !out.iter().all(|g| seen.insert(g.as_str())) {
                self.push(
                    "value_error",
                    json!(["body", key]),
                    "Value error, Groups must have unique names.",
                    Value::Array(items),
                    Some(json!({"error": {}})),
                );
            }
        }
        out
    }

    /// 422 with every error found, if any.
    pub(crate) fn finish(self) -> ApiResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                body: json!({ "detail": self.errors }),
                headers: Vec::new(),
            })
        }
    }
}

/// The login-style form (`OAuth2PasswordRequestForm`): an optional `grant_type`
/// that must be `password`, then the `required` fields. One 422 lists every error.
fn credentials_form<'a>(
    pairs: &'a [(String, String)],
    required: &[&str],
) -> ApiResult<Vec<&'a str>> {
    let last = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let mut errors = Vec::new();
    if let Some(grant) = last("grant_type") {
        if grant != "password" {
            errors.push(json!({
                "type": "string_pattern_mismatch", "loc": ["body", "grant_type"],
                "msg": "String should match pattern '^password$'", "input": grant,
                "ctx": {"pattern": "^password$"},
            }));
        }
    }
    let mut found = Vec::new();
    for name in required {
        match last(name) {
            Some(v) => found.push(v),
            None => errors.push(json!({
                "type": "missing", "loc": ["body", name], "msg": "Field required", "input": null,
            })),
        }
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({ "detail": errors }),
            headers: Vec::new(),
        })
    }
}

// ---- shared helpers ------------------------------------------------------------------

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
            // Re-read so that a concurrent change of the user is not undone, and
            // skip the upgrade if the password itself changed meanwhile.
            if let Some(mut fresh) = store.get_user(user.id).await? {
                if fresh.hashed_password == user.hashed_password {
                    fresh.hashed_password = new;
                    match store.update_user(&fresh).await {
                        Ok(()) => {
                            tracing::info!(user = %fresh.username, "password hash upgraded to Argon2id");
                            user = fresh;
                        }
                        Err(e) => {
                            tracing::warn!(user = %user.username, error = %e, "could not save an upgraded password hash");
                        }
                    }
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
            true
        }
        Err(MailError::NotConfigured) => {
            tracing::info!(to = %email.to, what, "no SMTP server is configured: e-mail not sent");
            false
        }
        Err(e) => {
            tracing::warn!(to = %email.to, what, error = %e, "e-mail not sent");
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

// ---- authentication ------------------------------------------------------------------

/// `POST /user/login` (form `username`, `password`, optional `grant_type`):
/// `{"access_token", "token_type": "bearer"}`; 400 `LOGIN_BAD_CREDENTIALS` for an
/// unknown user, a wrong password or an inactive user; 400
/// `LOGIN_USER_NOT_VERIFIED` for a right password of an unverified user.
pub async fn login(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let pairs = req.form();
    let found = credentials_form(&pairs, &["username", "password"])?;
    let (username, password) = (found[0], found[1]);
    let user = authenticate(state, username, password).await?;
    let user = match user {
        Some(u) if u.is_active => u,
        _ => return Err(ApiError::bad_request(LOGIN_BAD_CREDENTIALS)),
    };
    if !user.is_verified {
        return Err(ApiError::bad_request(LOGIN_USER_NOT_VERIFIED));
    }
    let token = state.tokens().issue_access(user.id, Timestamp::now());
    Ok(response::ok(
        &json!({"access_token": token, "token_type": "bearer"}),
    ))
}

/// `POST /user/logout` (verified): 204; tokens cannot be revoked, so it does
/// nothing else.
pub async fn logout(state: &AppState, req: &Req) -> ApiResult<Resp> {
    state.require_user(req, Operation::Logout).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

/// `POST /user/register` (admin): always 404, registration is by invitation.
pub async fn register(state: &AppState, req: &Req) -> ApiResult<Resp> {
    if !req.body.is_empty() {
        req.json()?;
    }
    state.require_user(req, Operation::Register).await?;
    Err(ApiError::not_found(
        "User registration is disabled; use /user/invite instead.",
    ))
}

// ---- invitations ---------------------------------------------------------------------

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
    let mut f = Fields::new(body)?;
    let username = f.required_str("username");
    let email = f.required_email("email");
    let groups = f.unique_str_list("groups");
    let is_superuser = f.bool_or("is_superuser", false);
    let send_email = f.bool_or("send_email", true);
    let return_token = f.bool_or("return_token", false);
    let resend_if_exists = f.bool_or("resend_if_exists", false);
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
    let mut f = Fields::new(req.json()?)?;
    let token = f.required_str("token");
    let password = f.required_str("password");
    f.finish()?;
    let (token, password) = (token.unwrap_or_default(), password.unwrap_or_default());
    let invite = account_tokens::verify_invite(state, &token).map_err(|e| match e {
        InviteError::Undecodable => ApiError::bad_request("Invalid or expired invite token"),
        InviteError::NotAnInvite => ApiError::bad_request("Invalid invite token"),
    })?;
    let id = ObjectId::parse(&invite.sub).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let store = state.store();
    let mut user = store
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found("User not found"))?;
    if !user.is_active {
        return Err(ApiError::bad_request("User is inactive"));
    }
    if invite.email.as_deref() != Some(user.email.as_str()) {
        return Err(ApiError::bad_request("Invalid invite token"));
    }
    if user.is_verified {
        return Err(ApiError::bad_request("Invite already accepted"));
    }
    user.hashed_password = new_hash(state, &password).await?;
    user.is_verified = true;
    store.update_user(&user).await?;
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

// ---- passwords -----------------------------------------------------------------------

/// `POST /user/forgot-password` `{"email"}` (public): always 202 `null` (422 for an
/// invalid address). For an active user a reset token (valid 1 h) is e-mailed when
/// SMTP is configured; otherwise nothing is sent and an info line is logged.
pub async fn forgot_password(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let mut f = Fields::new(req.json()?)?;
    let email = f.required_email("email");
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
    let mut f = Fields::new(req.json()?)?;
    let token = f.required_str("token");
    let password = f.required_str("password");
    f.finish()?;
    let (token, password) = (token.unwrap_or_default(), password.unwrap_or_default());
    let bad = || ApiError::bad_request(RESET_PASSWORD_BAD_TOKEN);
    let (sub, fgpt) = account_tokens::decode_reset(state, &token).ok_or_else(bad)?;
    let id = ObjectId::parse(&sub).map_err(|_| bad())?;
    let store = state.store();
    let mut user = store.get_user(id).await?.ok_or_else(bad)?;
    if !account_tokens::reset_still_valid(state, &user, &fgpt) || !user.is_active {
        return Err(bad());
    }
    user.hashed_password = new_hash(state, &password).await?;
    store.update_user(&user).await?;
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
    let mut user = match authenticate(state, username, password).await? {
        Some(u) if u.is_active => u,
        _ => return Err(ApiError::bad_request(LOGIN_BAD_CREDENTIALS)),
    };
    user.hashed_password = new_hash(state, new_password).await?;
    state.store().update_user(&user).await?;
    tracing::info!(user = %user.username, "password changed");
    Ok(response::ok(&Value::Null))
}

// ---- reading, listing, updating, deleting --------------------------------------------

/// `GET /whoami` (verified): the caller.
pub async fn whoami(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let (_, user) = state.require_user(req, Operation::Whoami).await?;
    Ok(response::ok(&user_json(&user)))
}

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

/// The body of `PATCH /user/me` and `PATCH /user/{id}` (`UserUpdateRequest`).
#[derive(Debug, Default)]
struct UserUpdate {
    username: Option<String>,
    email: Option<String>,
    password: Option<String>,
    is_active: Option<bool>,
    is_superuser: Option<bool>,
    is_verified: Option<bool>,
    groups: Vec<String>,
}

fn parse_update(body: Value) -> ApiResult<UserUpdate> {
    let mut f = Fields::new(body)?;
    let update = UserUpdate {
        username: f.optional_str("username"),
        email: f.optional_email("email"),
        password: f.optional_str("password"),
        is_active: f.optional_bool("is_active"),
        is_superuser: f.optional_bool("is_superuser"),
        is_verified: f.optional_bool("is_verified"),
        groups: f.unique_str_list("groups"),
    };
    f.finish()?;
    Ok(update)
}

fn username_taken(name: &str) -> ApiError {
    ApiError::bad_request(format!("Username already exists: {name}"))
}

/// A new username for `user`: 400 when another user has it.
async fn apply_username(state: &AppState, user: &mut User, update: &UserUpdate) -> ApiResult<()> {
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
async fn apply_email_and_password(
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
async fn save(state: &AppState, user: &User, update: &UserUpdate) -> ApiResult<()> {
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
/// accounts of [`LEGACY_NODE_EDITORS`](super::groups::LEGACY_NODE_EDITORS) is 400
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
        if name != user.username && super::groups::LEGACY_NODE_EDITORS.contains(&name) {
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
    let mut user = state
        .store()
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("User not found with id: {raw}")))?;
    apply_username(state, &mut user, &update).await?;
    if !update.groups.is_empty() {
        user.groups = resolve_groups(state, &update.groups).await?;
    }
    apply_email_and_password(state, &mut user, &update).await?;
    let _serialised = SUPERUSER_CHANGES.lock().await;
    if update.is_active == Some(false) {
        keep_an_administrator(state, &user, "deactivate").await?;
    }
    if update.is_superuser == Some(false) {
        keep_an_administrator(state, &user, "demote").await?;
    }
    if let Some(v) = update.is_active {
        user.is_active = v;
    }
    if let Some(v) = update.is_superuser {
        user.is_superuser = v;
    }
    if let Some(v) = update.is_verified {
        user.is_verified = v;
    }
    save(state, &user, &update).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_form_errors() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
        };
        let p = pairs(&[("grant_type", "client"), ("password", "x")]);
        let e = credentials_form(&p, &["username", "password"]).err();
        let body = e.map(|e| e.body).unwrap_or_default();
        assert_eq!(body["detail"][0]["type"], "string_pattern_mismatch");
        assert_eq!(body["detail"][1]["loc"], json!(["body", "username"]));
        assert_eq!(body["detail"].as_array().map(Vec::len), Some(2));
        let p = pairs(&[
            ("grant_type", "password"),
            ("username", "a"),
            ("password", "b"),
        ]);
        assert_eq!(
            credentials_form(&p, &["username", "password"]).ok(),
            Some(vec!["a", "b"])
        );
    }
}
