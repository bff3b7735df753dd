//! Errors of this crate, converted to [`kernelci_core::Error::Storage`] at the trait
//! boundary.

/// What went wrong below the engine.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, or its own corruption checks).
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value does not decode: the data on disk is damaged or was written by
    /// an incompatible version.
    #[error("corrupt {what} at key {key}: {reason}")]
    Corrupt {
        /// Which record kind.
        what: &'static str,
        /// The key, hex-encoded.
        key: String,
        /// The decoding error.
        reason: String,
    },
    /// The store was written by a newer layout this version cannot read.
    #[error("unsupported schema version {found} (this build reads up to {supported})")]
    Schema {
        /// Version on disk.
        found: u64,
        /// Newest version this build reads.
        supported: u64,
    },
    /// A node cannot be stored (its `data` or `debug` nests deeper than
    /// [`crate::codec::MAX_DEPTH`] levels).
    #[error("node cannot be stored: {0}")]
    Unencodable(String),
    /// Syncing the store's files to stable storage failed.
    #[error("sync to disk: {0}")]
    Sync(#[from] std::io::Error),
    /// The settings sled keeps next to its log cannot be read.
    #[error("store settings: {0}")]
    Settings(String),
    /// A lock was poisoned by a panic in another thread.
    #[error("a store lock was poisoned")]
    Poisoned,
    /// A background task failed.
    #[error("background task failed: {0}")]
    Task(String),
    /// PostgreSQL answered with an error, or the connection failed.
    #[cfg(feature = "postgres")]
    #[error("postgres: {}", postgres_detail(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No database connection could be had from the pool (database down, pool
    /// exhausted past its wait timeout).
    #[cfg(feature = "postgres")]
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database settings are unusable (bad URL, unreadable CA file...).
    #[cfg(feature = "postgres")]
    #[error("database configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// A `Corrupt` error for `key`.
    pub(crate) fn corrupt(what: &'static str, key: &[u8], reason: impl ToString) -> Self {
        StoreError::Corrupt {
            what,
            key: key.iter().map(|b| format!("{b:02x}")).collect(),
            reason: reason.to_string(),
        }
    }
}

impl From<StoreError> for kernelci_core::Error {
    fn from(e: StoreError) -> Self {
        match e {
            #[cfg(feature = "postgres")]
            StoreError::Unavailable(m) => kernelci_core::Error::Unavailable(m),
            other => kernelci_core::Error::Storage(other.to_string()),
        }
    }
}

/// The database's own message for an error it answered (the driver's `Display`
/// says only "db error" and keeps the message in its source).
#[cfg(feature = "postgres")]
fn postgres_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.to_string(),
        None => e.to_string(),
    }
}
