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

    /// 422 with a pydantic-style list of one error.
    pub fn unprocessable(kind: &str, loc: Value, msg: &str, input: Value) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({"detail": [{"type": kind, "loc": loc, "msg": msg, "input": input}]}),
            headers: Vec::new(),
        }
    }

    /// 422 with a pydantic-style list of one error that has a `ctx`.
    pub fn unprocessable_ctx(kind: &str, loc: Value, msg: &str, input: Value, ctx: Value) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({"detail": [{"type": kind, "loc": loc, "msg": msg, "input": input, "ctx": ctx}]}),
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
            CoreError::Validation(errs) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                body: json!({ "detail": errs.0.iter().map(|f| {
                {
                    let mut item =
                        json!({"type": f.kind, "loc": f.loc, "msg": f.msg, "input": f.input});
                    if let (Some(ctx), Some(m)) = (&f.ctx, item.as_object_mut()) {
                        m.insert("ctx".into(), ctx.clone());
                    }
                    item
                }
                }).collect::<Vec<_>>() }),
                headers: Vec::new(),
            },
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
        let input = req.query_last(&e.param).unwrap_or_default().to_owned();
        let (kind, ctx) = if input.trim().parse::<i64>().is_ok() {
            let ge = if e.param == "limit" { 1 } else { 0 };
            ("greater_than_equal", json!({ "ge": ge }))
        } else {
            ("int_parsing", Value::Null)
        };
        let mut item =
            json!({"type": kind, "loc": ["query", e.param], "msg": e.reason, "input": input});
        if let (false, Some(obj)) = (ctx.is_null(), item.as_object_mut()) {
            obj.insert("ctx".into(), ctx);
        }
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({ "detail": [item] }),
            headers: Vec::new(),
        }
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
