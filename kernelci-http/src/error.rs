//! Errors as HTTP answers.
//!
//! [`ApiError`] is what a handler returns when it does not succeed: a status and a
//! JSON body, always with a `detail` key (API.md §1.3; clients show `detail`, then
//! `error`, then `message`). Core errors map to statuses in one table,
//! [`ApiError::from_core`]. [`HttpError`] is the crate's error for things that are not
//! answers to a request (binding, configuration).

use hyper::StatusCode;
use serde_json::{json, Value};

use kernelci_core::error::{Denied, Error as CoreError};
use kernelci_core::validation::{text, FieldError, ValidationErrors};

/// A client-visible failure: status, JSON body, and extra headers.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body (an object with `detail`).
    pub body: Value,
    /// Extra response headers (`Allow` on 405, `Location` on 307).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// `{"detail": message}` with `status`.
    pub fn detail(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: json!({ "detail": message.into() }),
            headers: Vec::new(),
        }
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::detail(StatusCode::BAD_REQUEST, message)
    }

    /// 404 with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::detail(StatusCode::NOT_FOUND, message)
    }

    /// 401 `Unauthorized`.
    pub fn unauthorized() -> Self {
        Self::detail(StatusCode::UNAUTHORIZED, "Unauthorized")
    }

    /// 422 with FastAPI's list of validation errors (one [`FieldError`] or a
    /// [`ValidationErrors`]).
    pub fn invalid(errs: impl Into<ValidationErrors>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({ "detail": errs.into().to_json() }),
            headers: Vec::new(),
        }
    }

    /// 500 for a failure that is not the client's fault; the cause is logged, not
    /// sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::detail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error, check the server logs",
        )
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The status and body of a core error (the one mapping table):
    ///
    /// | core error | status |
    /// |---|---|
    /// | `NotFound` | 404 |
    /// | `Validation` | 422 (the list) |
    /// | `Invalid`, `BadQuery`, `InvalidTransition` | 400 |
    /// | `Forbidden(Unauthenticated)`, `Forbidden(NodeEdit)` | 401 |
    /// | `Forbidden(NotVerified)`, `Forbidden(NotSuperuser)` | 403 |
    /// | `Conflict` | 409 |
    /// | `Storage` | 500 (logged, not shown) |
    /// | `Unavailable` | 503 with `Retry-After: 1` (logged; the detail says to retry) |
    pub fn from_core(e: CoreError) -> Self {
        match e {
            CoreError::NotFound(m) => Self::not_found(m),
            CoreError::Validation(errs) => Self::invalid(errs),
            e @ (CoreError::Invalid(_)
            | CoreError::BadQuery(_)
            | CoreError::InvalidTransition { .. }) => Self::bad_request(e.to_string()),
            CoreError::Forbidden(d) => {
                let status = match d {
                    Denied::Unauthenticated | Denied::NodeEdit => StatusCode::UNAUTHORIZED,
                    Denied::NotVerified | Denied::NotSuperuser => StatusCode::FORBIDDEN,
                };
                Self::detail(status, d.to_string())
            }
            CoreError::Conflict(m) => Self::detail(StatusCode::CONFLICT, m),
            e @ CoreError::Storage(_) => Self::internal(e),
            CoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "storage unavailable");
                Self::detail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The database is unavailable, retry later",
                )
                .with_header("retry-after", "1")
            }
        }
    }
}

impl ApiError {
    /// A query-string error: 422 in FastAPI's shape for a bad `limit`/`offset` of a
    /// paginated endpoint (`loc: ["query", name]`), 400 for everything else.
    pub fn from_query(e: kernelci_core::query::QueryError, req: &crate::request::Req) -> Self {
        use kernelci_core::query::QueryErrorKind;
        if e.kind != QueryErrorKind::Pagination {
            return Self::from_core(CoreError::BadQuery(e));
        }
        let input = Value::from(req.query_last(&e.param).unwrap_or_default());
        let loc = vec![Value::from("query"), Value::from(e.param.as_str())];
        let item = match input.as_str().and_then(text::lax_int) {
            Some(_) => {
                let ge = if e.param == "limit" { 1 } else { 0 };
                FieldError::greater_than_equal(loc, input, ge)
            }
            None => FieldError::int_parsing(loc, input),
        };
        Self::invalid(FieldError {
            msg: e.reason,
            ..item
        })
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        Self::from_core(e)
    }
}

impl From<kernelci_core::query::QueryError> for ApiError {
    fn from(e: kernelci_core::query::QueryError) -> Self {
        Self::from_core(CoreError::BadQuery(e))
    }
}

/// Result of a handler.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// Errors of the server itself (not answers to requests).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A configuration value is missing or wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// Socket I/O failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The store failed at start or shutdown.
    #[error("store: {0}")]
    Store(#[from] CoreError),
}

impl From<ValidationErrors> for ApiError {
    fn from(errs: ValidationErrors) -> Self {
        Self::invalid(errs)
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        Self::invalid(e)
    }
}
