//! Driver errors as the `Store` trait reports them.

use super::*;

/// A driver error as the trait reports it: text PostgreSQL cannot store is the
/// client's fault (400); a lost connection, a server shutting down or starting, and a
/// statement cancelled by the timeout are `Unavailable` (503: retry later); anything
/// else a storage error.
pub(super) fn conv(e: tokio_postgres::Error) -> Error {
    let transient = [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::QUERY_CANCELED,
        SqlState::CONNECTION_FAILURE,
        SqlState::TOO_MANY_CONNECTIONS,
    ];
    if e.is_closed() || (e.code().is_none() && io_cause(&e)) {
        return Error::Unavailable(e.to_string());
    }
    match e.code() {
        Some(c) if transient.contains(c) => Error::Unavailable(e.to_string()),
        Some(c)
            if *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE
                || *c == SqlState::UNTRANSLATABLE_CHARACTER =>
        {
            Error::Invalid(
                "A text value contains a NUL character (\\u0000), which the PostgreSQL \
                 backend cannot store"
                    .into(),
            )
        }
        _ => StoreError::Postgres(e).into(),
    }
}

/// Whether an I/O error is among the causes of `e` (a broken connection).
pub(super) fn io_cause(e: &tokio_postgres::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        cause = c.source();
    }
    false
}

pub(super) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

pub(super) fn corrupt(what: &'static str, reason: impl ToString) -> Error {
    StoreError::Corrupt {
        what,
        key: String::new(),
        reason: reason.to_string(),
    }
    .into()
}
