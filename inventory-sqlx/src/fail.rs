//! Database errors to the domain's [`Error`]: connection trouble becomes
//! [`Error::Unavailable`], conflicts become a retry, the rest
//! [`Error::Storage`] with what the store was doing.

use inventory_core::Error;

/// Why one attempt at a transaction stopped.
#[derive(Debug)]
pub(crate) enum Fail {
    /// A conflict with a concurrent transaction: roll back and run again.
    Retry(&'static str),
    /// Give up with this error (nothing was committed).
    Give(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Give(e)
    }
}

/// SQLSTATE of a unique violation.
pub(crate) const UNIQUE_VIOLATION: &str = "23505";

/// Maps a database error met while doing `what`.
pub(crate) fn classify(what: &'static str, e: sqlx::Error) -> Fail {
    if let sqlx::Error::Database(db) = &e {
        match db.code().as_deref() {
            // serialization_failure, deadlock_detected, lock_not_available
            Some("40001") => return Fail::Retry("serialization failure"),
            Some("40P01") => return Fail::Retry("deadlock detected"),
            Some("55P03") => return Fail::Retry("lock not available"),
            _ => {}
        }
    }
    Fail::Give(to_error(what, e))
}

/// Maps a database error met while doing `what` to the domain's error.
pub(crate) fn to_error(what: &'static str, e: sqlx::Error) -> Error {
    if is_unavailable(&e) {
        return Error::Unavailable {
            reason: format!("{what}: {e}"),
        };
    }
    Error::Storage {
        reason: format!("{what}: {e}"),
    }
}

/// Whether a database error means PostgreSQL cannot serve now (connection
/// lost or refused, server shutting down or starting, too many connections,
/// pool exhausted): worth retrying later, unlike a failure of the statement.
///
/// ```
/// assert!(inventory_sqlx::is_unavailable(&sqlx::Error::PoolTimedOut));
/// assert!(!inventory_sqlx::is_unavailable(&sqlx::Error::RowNotFound));
/// ```
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // connection_exception (08xxx), admin/crash shutdown, cannot
            // connect now, too many connections
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// The constraint a unique violation broke, if `e` is one.
pub(crate) fn unique_violation(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some(UNIQUE_VIOLATION) => {
            Some(db.constraint().unwrap_or_default().to_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeout_and_io_are_unavailable() {
        assert!(matches!(
            to_error("acquire", sqlx::Error::PoolTimedOut),
            Error::Unavailable { .. }
        ));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = to_error("connect", sqlx::Error::Io(io));
        assert!(matches!(e, Error::Unavailable { ref reason } if reason.starts_with("connect: ")));
    }

    #[test]
    fn other_errors_are_storage_with_context() {
        let e = to_error("load items", sqlx::Error::RowNotFound);
        assert!(matches!(e, Error::Storage { ref reason } if reason.starts_with("load items: ")));
        assert!(matches!(
            classify("x", sqlx::Error::RowNotFound),
            Fail::Give(_)
        ));
    }
}
