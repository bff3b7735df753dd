//! Logging in and out: `POST /user/login`, `/user/logout` and the disabled
//! `/user/register`.

use hyper::StatusCode;
use serde_json::{json, Value};

use kernelci_core::auth::Operation;
use kernelci_core::time::Timestamp;
use kernelci_core::validation::{body_loc, params, FieldError, ValidationErrors};

use super::{authenticate, LOGIN_BAD_CREDENTIALS, LOGIN_USER_NOT_VERIFIED};
use crate::error::{ApiError, ApiResult};
use crate::request::Req;
use crate::response::{self, Resp};
use crate::state::AppState;

/// The login-style form (`OAuth2PasswordRequestForm`): an optional `grant_type`
/// that must be `password`, then the `required` fields (`missing` with input
/// `null`: FastAPI reads each form field on its own). One 422 lists every error.
pub(super) fn credentials_form<'a>(
    pairs: &'a [(String, String)],
    required: &[&str],
) -> ApiResult<Vec<&'a str>> {
    let mut errs = ValidationErrors::default();
    if let Some(grant) = params::last(pairs, "grant_type").filter(|g| *g != "password") {
        let e = FieldError::new(
            body_loc("grant_type"),
            "string_pattern_mismatch",
            "String should match pattern '^password$'",
            Value::from(grant),
        );
        errs.add(e.with_ctx(json!({"pattern": "^password$"})));
    }
    let mut found = Vec::new();
    for name in required {
        match params::last(pairs, name) {
            Some(v) => found.push(v),
            None => errs.add(FieldError::missing(body_loc(name), Value::Null)),
        }
    }
    errs.into_result()?;
    Ok(found)
}

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
