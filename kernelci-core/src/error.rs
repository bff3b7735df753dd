//! The one error type of kernelci-core.
//!
//! Each variant says *what* went wrong, never which HTTP status it becomes: that
//! mapping is one table in kernelci-http. The `Display` text of each variant is the
//! message clients are shown (the reference server's wording where clients may
//! match on it).

use std::fmt;

use crate::node::State;
use crate::query::QueryError;
pub use crate::validation::{FieldError, ValidationErrors};

/// Everything that can go wrong in kernelci-core and in a [`crate::store::Store`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The thing asked for does not exist. The text is the whole message, e.g.
    /// `Node not found with id: 65a1…`.
    #[error("{0}")]
    NotFound(String),
    /// The request body does not fit the base schema (shape, types, enums); the edge
    /// answers 422 with the list.
    #[error("{0}")]
    Validation(ValidationErrors),
    /// The request is well-formed but its content is refused (kind or `data` model
    /// checks, unknown kind, missing user group...); the edge answers 400.
    #[error("{0}")]
    Invalid(String),
    /// A query string could not be parsed.
    #[error("{0}")]
    BadQuery(#[from] QueryError),
    /// A state change the state machine does not allow.
    #[error("Transition not allowed with state: {to}")]
    InvalidTransition {
        /// The stored state.
        from: State,
        /// The requested state.
        to: State,
    },
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(Denied),
    /// The write conflicts with the stored data (duplicate key, stale version, a group
    /// still in use).
    #[error("{0}")]
    Conflict(String),
    /// The storage backend failed (I/O, corrupt data). Not the client's fault.
    #[error("storage error: {0}")]
    Storage(String),
    /// The storage backend cannot be reached right now (a database server that is
    /// down or restarting); the same call may succeed later. Nothing was written.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// Why an operation was refused (see [`crate::auth`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No valid credentials, or an inactive user.
    Unauthenticated,
    /// Authenticated, but the operation needs a verified user.
    NotVerified,
    /// Authenticated, but the operation needs a superuser.
    NotSuperuser,
    /// The node edit rules (AUTH.md §5) do not grant this edit.
    NodeEdit,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Denied::Unauthenticated => "Unauthorized",
            Denied::NotVerified | Denied::NotSuperuser => "Forbidden",
            Denied::NodeEdit => "Unauthorized to complete the operation",
        })
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::time::DateTimeError> for Error {
    /// A datetime that does not parse is refused content (400 at the edge).
    fn from(e: crate::time::DateTimeError) -> Self {
        Error::Invalid(e.to_string())
    }
}

impl From<crate::id::ObjectIdError> for Error {
    /// A malformed id is refused content (400 at the edge, with the reference's text).
    fn from(e: crate::id::ObjectIdError) -> Self {
        Error::Invalid(e.to_string())
    }
}
