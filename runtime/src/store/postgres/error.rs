//! Database errors as [`StoreError`]s.
//!
//! Every failure of the database itself (connection refused or lost, a
//! commit whose outcome is unknown, a pool timeout, a deadlock the server
//! broke, a server shutting down) is [`StoreError::Unavailable`]: 503 with
//! Retry-After, never an acknowledgement. A producer retrying with the same
//! idempotency key gets the original id if the commit did land.

use crate::store::StoreError;

/// A `tokio_postgres` error as a store error (by value: it is `map_err`'s).
#[allow(clippy::needless_pass_by_value)]
pub(super) fn db(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(d) => StoreError::Unavailable(format!(
            "database error {}: {}",
            d.code().code(),
            d.message()
        )),
        None => StoreError::Unavailable(format!("database connection: {e}")),
    }
}

/// A pool error (no connection within the wait, or connecting failed).
#[allow(clippy::needless_pass_by_value)]
pub(super) fn pool(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("database pool: {e}"))
}

/// A value the database holds that this build cannot read.
pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}
