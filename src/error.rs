//! The one error type of Stockroom and the contract codes it maps to.
//!
//! Every failure a client can see is a variant here, and each variant maps to exactly one
//! `extensions.code` of the contract (`../shared/CONTRACT.md`, "Errors") in `code()`.
//! Database errors are classified once, in `From<DbErr>`: lock waits that ran out become
//! `LockTimeout`, deadlocks and serialization failures become `Contention` (retried by
//! `db::Database::write`), a lost connection becomes `Unavailable`, anything else is
//! `Internal` and its detail is logged, never sent to the client.

use async_graphql::ErrorExtensions;
use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// Result with Stockroom's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, as clients see it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("a valid API key is required (Authorization: Bearer <key>)")]
    Unauthenticated,
    #[error("this API key's role may not use this field")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    BadUserInput(String),
    #[error("version conflict: expected version {expected}, current version is {current}")]
    VersionConflict { expected: i32, current: i32 },
    #[error("not enough stock for sku {sku}")]
    OutOfStock { sku: String },
    #[error("{0}")]
    LocationUnmapped(String),
    #[error("timed out waiting for a lock held by another request; retry")]
    LockTimeout,
    /// A deadlock or serialization failure: safe to retry the whole transaction.
    #[error("the request collided with a concurrent one; retry")]
    Contention,
    /// The database cannot be reached right now.
    #[error("the database is unavailable; retry later")]
    Unavailable,
    #[error("internal error")]
    Internal(String),
}

impl Error {
    /// The contract's `extensions.code` for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthenticated => "UNAUTHENTICATED",
            Error::Forbidden => "FORBIDDEN",
            Error::NotFound(_) => "NOT_FOUND",
            Error::BadUserInput(_) => "BAD_USER_INPUT",
            Error::VersionConflict { .. } => "VERSION_CONFLICT",
            Error::OutOfStock { .. } => "OUT_OF_STOCK",
            Error::LocationUnmapped(_) => "LOCATION_UNMAPPED",
            // A collision that survived its retries is, for the caller, the same as a
            // lock wait that ran out: try again shortly.
            Error::LockTimeout | Error::Contention => "LOCK_TIMEOUT",
            // For the caller an outage is like a lock wait that ran out: nothing was
            // written, and the same request may succeed shortly. The message tells them apart.
            Error::Unavailable => "LOCK_TIMEOUT",
            Error::Internal(_) => "INTERNAL",
        }
    }

    /// Whether this is a verdict on the request itself (unknown ids, bad input, no stock):
    /// repeating it would fail the same way, so a paid order gets REJECTED.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Error::NotFound(_) | Error::BadUserInput(_) | Error::OutOfStock { .. } | Error::LocationUnmapped(_)
        )
    }

    /// Whether a later retry of the same request may succeed (Stripe gets a 503).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::LockTimeout | Error::Contention | Error::Unavailable)
    }

    /// Shorthand for a `BAD_USER_INPUT` error.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Error::BadUserInput(message.into())
    }

    /// Shorthand for a `NOT_FOUND` error naming what was missing.
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound(what.into())
    }
}

/// Every `extensions.code` a client can see: the contract's list, plus `THROTTLED` on
/// the anonymous rate limit's 429.
pub const CODES: &[&str] = &[
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "BAD_USER_INPUT",
    "VERSION_CONFLICT",
    "OUT_OF_STOCK",
    "LOCATION_UNMAPPED",
    "LOCK_TIMEOUT",
    "INTERNAL",
    "THROTTLED",
];

/// `code` as one of [`CODES`], if it is one.
pub fn known_code(code: &str) -> Option<&'static str> {
    CODES.iter().copied().find(|known| *known == code)
}

/// The SQLSTATE (PostgreSQL) or extended result code (SQLite) of a database error.
fn database_code(err: &DbErr) -> Option<String> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => e
            .as_database_error()
            .and_then(|db| db.code())
            .map(|code| code.into_owned()),
        _ => None,
    }
}

/// Whether the session is gone: the pool could not give one, the connection broke, or the
/// server ended it. By SQLSTATE: class 08 connection_exception (but 08P01
/// protocol_violation, a bug to see in the logs), and 57P01-57P03 and 57P05, the server
/// ending the session (admin_shutdown, as `pg_terminate_backend` or a restart sends before
/// closing; crash_shutdown; cannot_connect_now; idle_session_timeout). A pooled connection
/// in steady use is handed out unpinged (`db::connect`), so an outage meets a statement
/// here rather than the pool's ping.
fn is_connection_failure(err: &DbErr, code: Option<&str>) -> bool {
    if let Some(code) = code
        && ((code.starts_with("08") && code != "08P01") || matches!(code, "57P01" | "57P02" | "57P03" | "57P05"))
    {
        return true;
    }
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => matches!(
            e.as_ref(),
            sea_orm::sqlx::Error::Io(_)
                | sea_orm::sqlx::Error::PoolTimedOut
                | sea_orm::sqlx::Error::PoolClosed
                | sea_orm::sqlx::Error::WorkerCrashed
        ),
        _ => false,
    }
}

/// Whether `err` is a unique-constraint violation (a concurrent or repeated insert).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        let code = database_code(&err);
        match code.as_deref() {
            // 55P03 lock_not_available: `lock_timeout` ran out.
            // 57014 query_canceled: `statement_timeout` ran out.
            // SQLite 5 / 517 / 261: SQLITE_BUSY (and its variants) after `busy_timeout`.
            Some("55P03" | "57014" | "5" | "517" | "261") => Error::LockTimeout,
            // 40P01 deadlock_detected, 40001 serialization_failure.
            Some("40P01" | "40001") => Error::Contention,
            code if is_connection_failure(&err, code) => {
                crate::db::connection_failed();
                Error::Unavailable
            }
            _ => {
                tracing::error!(error = %err, "database error");
                Error::Internal(err.to_string())
            }
        }
    }
}

impl From<Error> for async_graphql::Error {
    fn from(err: Error) -> Self {
        let public = async_graphql::Error::new(err.to_string());
        public.extend_with(|_, ext| {
            ext.set("code", err.code());
            match &err {
                Error::OutOfStock { sku } => ext.set("sku", sku.as_str()),
                Error::VersionConflict { current, .. } => ext.set("currentVersion", *current),
                _ => {}
            }
        })
    }
}
