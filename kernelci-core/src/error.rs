//! The one error type of kernelci-core.
//!
//! Each variant says *what* went wrong, never which HTTP status it becomes: that
//! mapping is one table in kernelci-http. The `Display` text of each variant is the
//! message clients are shown (the reference server's wording where clients may
//! match on it).

use std::fmt;

use crate::node::State;
use crate::query::QueryError;

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

/// One schema violation: where (`loc`), what kind (`kind`, pydantic's error type
/// names such as `missing`, `string_type`, `enum`), a sentence, and the input.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Path to the offending value, e.g. `["body", "state"]` or `["body", "path", 2]`.
    pub loc: Vec<serde_json::Value>,
    /// Machine-readable error type (pydantic's names).
    pub kind: &'static str,
    /// Human-readable message.
    pub msg: String,
    /// The offending input value (`null` when missing).
    pub input: serde_json::Value,
    /// pydantic's `ctx`: the rule's parameters (`{"expected": ...}` for an enum,
    /// `{"max_length": n}` for a string too long); `None` when the type has none.
    pub ctx: Option<serde_json::Value>,
}

/// A non-empty list of [`FieldError`]s.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// Adds one error.
    pub fn push(
        &mut self,
        loc: Vec<serde_json::Value>,
        kind: &'static str,
        msg: impl Into<String>,
        input: serde_json::Value,
    ) {
        self.0.push(FieldError {
            loc,
            kind,
            msg: msg.into(),
            input,
            ctx: None,
        });
    }

    /// Adds one error with pydantic's `ctx`.
    pub fn push_ctx(
        &mut self,
        loc: Vec<serde_json::Value>,
        kind: &'static str,
        msg: impl Into<String>,
        input: serde_json::Value,
        ctx: serde_json::Value,
    ) {
        self.0.push(FieldError {
            loc,
            kind,
            msg: msg.into(),
            input,
            ctx: Some(ctx),
        });
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when empty, else the errors as [`Error::Validation`].
    pub fn into_result(self) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self))
        }
    }
}

impl ValidationErrors {
    /// The pydantic-style text naming the model:
    /// `1 validation error for Checkout\ndata.kernel_revision.url\n  Input should be...`.
    pub fn describe(&self, model: &str) -> String {
        let mut out = self.header();
        out.push_str(" for ");
        out.push_str(model);
        self.append_items(&mut out);
        out
    }

    fn header(&self) -> String {
        let n = self.0.len();
        format!("{n} validation error{}", if n == 1 { "" } else { "s" })
    }

    fn append_items(&self, out: &mut String) {
        for e in &self.0 {
            let loc: Vec<String> = e
                .loc
                .iter()
                .map(|p| match p {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.push('\n');
            out.push_str(&loc.join("."));
            out.push_str("\n  ");
            out.push_str(&e.msg);
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.header();
        self.append_items(&mut out);
        f.write_str(&out)
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
