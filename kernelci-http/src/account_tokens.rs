//! The server's other self-issued tokens: invitations (AUTH.md §6) and password
//! resets (AUTH.md §7). Both are JWTs signed with `SECRET_KEY` only (never with
//! `UNIFIED_SECRET`) and both are self-contained: nothing is stored.
//!
//! - **Invite**: `{"sub": <user id>, "email": <user e-mail>, "purpose": "invite",
//!   "iat": <now>, "exp": <now + INVITE_TOKEN_EXPIRE_SECONDS>}` with the configured
//!   `ALGORITHM` and no `aud`, so an invite can never serve as an access token and an
//!   access token (which has `aud`) fails the invite check.
//! - **Reset**: `{"sub": <user id>, "password_fgpt": <fingerprint>, "aud":
//!   "fastapi-users:reset", "exp": <now + 1 h>}`, always HS256. The fingerprint is an
//!   HMAC-SHA256 (keyed with `SECRET_KEY`) of the user's stored password hash, so
//!   any change of the password (a reset, update-password, a PATCH, a login-time
//!   re-hash) invalidates every reset token issued before it, which also makes a
//!   token single-use in effect. The reference fingerprints with an Argon2id hash
//!   of the stored hash; AUTH.md §7 allows another scheme with these properties,
//!   and a keyed HMAC reveals nothing about the stored hash and costs microseconds.
//!
//! Reset tokens are only ever e-mailed. [`reset_token`] is public so that
//! operators' tools and tests can mint one for a user without reading mail.

use jsonwebtoken::{decode, Algorithm, DecodingKey, EncodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use kernelci_core::auth::User;
use kernelci_core::time::Timestamp;

use crate::state::AppState;

/// The `purpose` claim of invite tokens.
pub const INVITE_PURPOSE: &str = "invite";

/// The audience of reset tokens.
pub const RESET_AUDIENCE: &str = "fastapi-users:reset";

/// Lifetime of reset tokens in seconds.
pub const RESET_LIFETIME_SECONDS: i64 = 3600;

/// Domain separation of the password fingerprint's HMAC input.
const FINGERPRINT_CONTEXT: &[u8] = b"kernelci-rs password fingerprint v1\0";

#[derive(Serialize)]
struct InviteClaims<'a> {
    sub: String,
    email: &'a str,
    purpose: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Serialize, Deserialize)]
struct ResetClaims {
    sub: String,
    password_fgpt: String,
    aud: String,
    exp: i64,
}

/// Why an invite token was refused, in the order of API.md §4's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteError {
    /// Bad signature, expired, malformed, or not meant for this check (it has an
    /// `aud`): `Invalid or expired invite token`.
    Undecodable,
    /// It decodes but its `purpose` is not `invite`, or `sub` is missing:
    /// `Invalid invite token`.
    NotAnInvite,
}

/// The claims of a valid invite token that the accept step checks further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The `sub` claim as written (an ObjectId for tokens this server issued).
    pub sub: String,
    /// The `email` claim (`None` when absent or not a string).
    pub email: Option<String>,
}

/// A new invite token for `user`, issued at `now`.
pub fn invite_token(state: &AppState, user: &User, now: Timestamp) -> String {
    let iat = now.to_chrono().timestamp();
    let expire = i64::try_from(state.config().invite_token_expire_seconds).unwrap_or(i64::MAX);
    let claims = InviteClaims {
        sub: user.id.to_string(),
        email: &user.email,
        purpose: INVITE_PURPOSE,
        iat,
        exp: iat.saturating_add(expire),
    };
    let tokens = state.tokens();
    crate::tokens::sign_compact(
        &claims,
        tokens.algorithm(),
        &EncodingKey::from_secret(tokens.secret()),
    )
}

/// Checks an invite token's signature (`SECRET_KEY`, the configured algorithm),
/// expiry (no leeway) and `purpose`.
pub fn verify_invite(state: &AppState, token: &str) -> Result<Invite, InviteError> {
    let tokens = state.tokens();
    let mut v = Validation::new(tokens.algorithm());
    v.set_required_spec_claims::<&str>(&[]);
    v.leeway = 0;
    v.validate_exp = true;
    v.validate_nbf = true;
    // No expected audience: a token that carries one (an access or reset token) is
    // refused, as python-jose does.
    v.validate_aud = true;
    let data = decode::<Map<String, Value>>(token, &DecodingKey::from_secret(tokens.secret()), &v)
        .map_err(|_| InviteError::Undecodable)?;
    let claims = data.claims;
    // python-jose: an `iat` must read as an integer.
    if claims
        .get("iat")
        .is_some_and(|iat| crate::tokens::python_int(iat).is_none())
    {
        return Err(InviteError::Undecodable);
    }
    if claims.get("purpose").and_then(Value::as_str) != Some(INVITE_PURPOSE) {
        return Err(InviteError::NotAnInvite);
    }
    let sub = match claims.get("sub") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(InviteError::NotAnInvite),
    };
    Ok(Invite {
        sub,
        email: claims
            .get("email")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// The fingerprint of a stored password hash (see the module docs).
fn fingerprint(state: &AppState, hashed_password: &str) -> String {
    let mut message = FINGERPRINT_CONTEXT.to_vec();
    message.extend_from_slice(hashed_password.as_bytes());
    let key = EncodingKey::from_secret(state.tokens().secret());
    jsonwebtoken::crypto::sign(&message, &key, Algorithm::HS256).unwrap_or_default()
}

fn fingerprint_matches(state: &AppState, hashed_password: &str, fgpt: &str) -> bool {
    let mut message = FINGERPRINT_CONTEXT.to_vec();
    message.extend_from_slice(hashed_password.as_bytes());
    let key = DecodingKey::from_secret(state.tokens().secret());
    // HMAC verification compares in constant time.
    jsonwebtoken::crypto::verify(fgpt, &message, &key, Algorithm::HS256).unwrap_or(false)
}

/// A password-reset token for `user` (as stored now), valid for one hour from `now`.
pub fn reset_token(state: &AppState, user: &User, now: Timestamp) -> String {
    let claims = ResetClaims {
        sub: user.id.to_string(),
        password_fgpt: fingerprint(state, &user.hashed_password),
        aud: RESET_AUDIENCE.to_owned(),
        exp: now.to_chrono().timestamp() + RESET_LIFETIME_SECONDS,
    };
    crate::tokens::sign_compact(
        &claims,
        Algorithm::HS256,
        &EncodingKey::from_secret(state.tokens().secret()),
    )
}

/// The `sub` and fingerprint of a reset token whose signature, audience and expiry
/// are valid; `None` otherwise.
pub fn decode_reset(state: &AppState, token: &str) -> Option<(String, String)> {
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&[RESET_AUDIENCE]);
    v.set_required_spec_claims(&["sub", "aud", "exp"]);
    v.leeway = 0;
    let data = decode::<ResetClaims>(
        token,
        &DecodingKey::from_secret(state.tokens().secret()),
        &v,
    )
    .ok()?;
    Some((data.claims.sub, data.claims.password_fgpt))
}

/// Whether a reset token's fingerprint still matches `user`'s stored hash.
pub fn reset_still_valid(state: &AppState, user: &User, fgpt: &str) -> bool {
    fingerprint_matches(state, &user.hashed_password, fgpt)
}
