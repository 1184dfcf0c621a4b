//! The store's error type: what kind of failure it was and whether trying again can help, so the
//! writer knows to keep a batch (database down, busy, locked) or give it up (a row it refuses).

use std::fmt;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The `storage` settings are invalid (bad URL, unknown scheme, bad duration).
    Config,
    /// The database could not be reached, or the connection broke.
    Unavailable,
    /// The database refused a statement (constraint, data too long, invalid value).
    Rejected,
    /// A stored row could not be read back into a record.
    Decode,
    /// A schema migration failed.
    Migration,
    /// A query's parameters are invalid (range too large, unknown bucket).
    InvalidQuery,
    /// The writer has shut down.
    Closed,
}

/// An error from the store.
#[derive(Debug, Clone)]
pub struct StoreError {
    kind: ErrorKind,
    retryable: bool,
    message: String,
}

impl StoreError {
    /// A new error of `kind`; `retryable` says whether the same operation may succeed later.
    pub fn new(kind: ErrorKind, retryable: bool, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            retryable,
            message: message.into(),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, false, message)
    }

    pub(crate) fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidQuery, false, message)
    }

    pub(crate) fn decode(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Decode, false, message)
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the same operation may succeed if tried again later (the database was down, busy
    /// or locked), as opposed to a statement the database will always refuse.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        let (kind, retryable) = match &e {
            E::Configuration(_) => (ErrorKind::Config, false),
            E::ColumnDecode { .. }
            | E::Decode(_)
            | E::ColumnNotFound(_)
            | E::ColumnIndexOutOfBounds { .. }
            | E::TypeNotFound { .. }
            | E::RowNotFound => (ErrorKind::Decode, false),
            E::Database(db) => {
                if denied(db.as_ref()) {
                    (ErrorKind::Unavailable, true)
                } else if rejected(db.code().as_deref()) {
                    (ErrorKind::Rejected, false)
                } else {
                    (ErrorKind::Unavailable, true)
                }
            }
            E::Migrate(_) => (ErrorKind::Migration, false),
            // Io, Tls, Protocol, PoolTimedOut, PoolClosed, WorkerCrashed and the rest: the
            // connection or the server, which may come back.
            _ => (ErrorKind::Unavailable, true),
        };
        StoreError::new(kind, retryable, e.to_string())
    }
}

/// Whether a database error is a missing privilege (PostgreSQL SQLSTATE 42501; MySQL errors
/// 1142, 1143, 1044, 1227; SQLite `SQLITE_PERM` and `SQLITE_READONLY`, a file made read-only).
/// That is the database's configuration, not the statement: an administrator may restore the
/// grant, so the writer keeps the records and retries them (beyond its buffer they are dropped
/// and counted, as during an outage) instead of refusing them one by one.
fn denied(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(my.number(), 1044 | 1142 | 1143 | 1227);
    }
    match db.code().as_deref() {
        Some("42501") => true,
        Some(code) if code.len() < 5 => {
            code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 3 | 8))
        }
        _ => false,
    }
}

/// Whether a database error code means the statement itself is refused (trying again cannot
/// help): SQLSTATE classes 22 (data exception) and 23 (integrity constraint) on PostgreSQL and
/// MySQL (and 42, syntax or missing object), and every SQLite result code but the transient ones.
fn rejected(code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    // SQLSTATEs have five characters; SQLite's (extended) result codes are shorter numbers.
    if code.len() < 5
        && let Ok(n) = code.parse::<u32>()
    {
        // SQLite (primary result code in the low byte): only busy, locked, out of memory, I/O,
        // disk full, cannot open and lock protocol errors can pass; the rest (constraint,
        // overflow, schema) would fail again.
        return !matches!(n & 0xff, 5 | 6 | 7 | 10 | 13 | 14 | 15);
    }
    code.starts_with("22") || code.starts_with("23") || code.starts_with("42")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_database_codes() {
        assert!(rejected(Some("23505"))); // unique violation
        assert!(rejected(Some("22001"))); // string too long
        assert!(rejected(Some("2067"))); // SQLITE_CONSTRAINT_UNIQUE
        assert!(!rejected(Some("5"))); // SQLITE_BUSY
        assert!(!rejected(Some("517"))); // SQLITE_BUSY_SNAPSHOT
        assert!(rejected(Some("1"))); // SQLITE_ERROR (integer overflow, no such table)
        assert!(!rejected(Some("57P01"))); // admin shutdown
        assert!(!rejected(Some("08006"))); // connection failure
        assert!(!rejected(None));
        let e: StoreError = sqlx::Error::PoolTimedOut.into();
        assert!(e.is_retryable());
        assert_eq!(e.kind(), ErrorKind::Unavailable);
    }
}
