//! Start-up work done before the server accepts connections ([`bootstrap`], called
//! by [`crate::serve`]):
//!
//! 1. the built-in group `node:edit:any` and its legacy members (API.md §5,
//!    [`crate::handlers::groups::ensure_builtin_groups`]);
//! 2. the first administrator, when [`HttpConfig::initial_admin`] is set and no user
//!    has its username (AUTH.md §8; the reference has this hook but never runs it,
//!    so its deployments create administrators with a CLI tool instead).
//!
//! Both steps are idempotent: running them at every start is safe.
//!
//! [`HttpConfig::initial_admin`]: crate::HttpConfig::initial_admin

use kernelci_core::auth::User;
use kernelci_core::error::Error as CoreError;
use kernelci_core::id::ObjectId;

use crate::config::InitialAdmin;
use crate::error::HttpError;
use crate::handlers::groups;
use crate::state::AppState;

/// Runs the start-up steps of the module docs. A failure stops the server from
/// starting (a store error, or an initial administrator that cannot be created).
pub async fn bootstrap(state: &AppState) -> Result<(), HttpError> {
    groups::ensure_builtin_groups(state).await?;
    if let Some(admin) = &state.config().initial_admin {
        ensure_initial_admin(state, admin).await?;
    }
    Ok(())
}

/// Creates the administrator described by `admin` unless a user with its username
/// exists. Returns whether it was created.
pub async fn ensure_initial_admin(
    state: &AppState,
    admin: &InitialAdmin,
) -> Result<bool, HttpError> {
    let store = state.store();
    if store.get_user_by_username(&admin.username).await?.is_some() {
        return Ok(false);
    }
    if admin.username.is_empty() {
        return Err(HttpError::Config(
            "the initial administrator's username is empty".into(),
        ));
    }
    if admin.password.is_empty() {
        return Err(HttpError::Config(
            "KCI_INITIAL_PASSWORD is empty: set a password for the initial administrator".into(),
        ));
    }
    let user = new_superuser(
        &admin.username,
        &admin.email,
        &admin.password,
        state.config().password_cost,
    )
    .await?;
    match store.insert_user(&user).await {
        Ok(()) => {
            tracing::info!(username = %user.username, "created the initial administrator");
            Ok(true)
        }
        // Created meanwhile by another process sharing the store.
        Err(CoreError::Conflict(_))
            if store.get_user_by_username(&user.username).await?.is_some() =>
        {
            Ok(false)
        }
        Err(CoreError::Conflict(_)) => Err(HttpError::Config(format!(
            "cannot create the initial administrator {:?}: its e-mail {:?} belongs to \
             another user",
            user.username, user.email
        ))),
        Err(e) => Err(e.into()),
    }
}

/// A new active, verified superuser (not stored): the e-mail checked and normalised,
/// the password hashed with Argon2id at `cost`. Used by the start-up hook and by the
/// server's offline `admin create`.
pub async fn new_superuser(
    username: &str,
    email: &str,
    password: &str,
    cost: crate::config::PasswordCost,
) -> Result<User, HttpError> {
    let email = crate::mail::normalize_address(email).map_err(|reason| {
        HttpError::Config(format!(
            "the administrator's e-mail {email:?} is not valid: {reason}"
        ))
    })?;
    let hashed_password = crate::passwords::hash(password, cost)
        .await
        .map_err(|e| HttpError::Config(e.to_string()))?;
    Ok(User {
        id: ObjectId::new(),
        username: username.to_owned(),
        email,
        hashed_password,
        is_active: true,
        is_superuser: true,
        is_verified: true,
        groups: Vec::new(),
    })
}
