//! Skipping a test whose server is absent (PostgreSQL, Redis, RabbitMQ), or
//! failing it when the run requires every service, and where the tests find
//! their servers.

/// The variable that, set to `1`, turns every skip into a failure: a run
/// with the services up must not pass by skipping.
pub const REQUIRE_SERVICES_VAR: &str = "REQUIRE_SERVICES";

/// Whether `REQUIRE_SERVICES=1`, so that an absent server fails the test.
pub fn required() -> bool {
    std::env::var(REQUIRE_SERVICES_VAR).as_deref() == Ok("1")
}

/// Prints `skipped: <reason>` to stderr, so that the test can return and
/// pass; fails the test instead when [`required`].
///
/// # Panics
/// With `REQUIRE_SERVICES=1 but <reason>` when `REQUIRE_SERVICES=1`.
pub fn skip(reason: &str) {
    assert!(!required(), "{REQUIRE_SERVICES_VAR}=1 but {reason}");
    eprintln!("skipped: {reason}");
}

/// [`skip`], then `None`: for a helper that returns the service it found.
///
/// # Panics
/// As [`skip`].
pub fn skipped<T>(reason: &str) -> Option<T> {
    skip(reason);
    None
}

/// The value of the first of `vars` that is set, else `default`: a
/// test-only variable first (`TEST_REDIS_URL`), then the one the servers
/// read (`REDIS_URL`).
pub fn url_from_env(vars: &[&str], default: &str) -> String {
    vars.iter()
        .find_map(|var| std::env::var(var).ok())
        .unwrap_or_else(|| default.to_owned())
}
