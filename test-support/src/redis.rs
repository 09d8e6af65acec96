//! The Redis server of the tests: `TEST_REDIS_URL`, else `REDIS_URL`, else
//! the local one, when it answers `PING`. Without it the test is skipped
//! (see [`crate::services`]).

use std::time::Duration;

use crate::services::{skipped, url_from_env};

/// The Redis server used when neither `TEST_REDIS_URL` nor `REDIS_URL` is
/// set.
pub const REDIS_URL_DEFAULT: &str = "redis://127.0.0.1:6379";

/// How long connecting and `PING` may take together: a server that does not
/// answer in this time is absent.
const PING_TIMEOUT_MS: u64 = 3_000;

/// The test Redis URL if it answers `PING`, else `None` (after printing
/// why).
///
/// # Panics
/// When Redis is unreachable and `REQUIRE_SERVICES=1`.
pub async fn redis_url() -> Option<String> {
    let url = url_from_env(&["TEST_REDIS_URL", "REDIS_URL"], REDIS_URL_DEFAULT);
    let ping = async {
        let client = ::redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        ::redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_millis(PING_TIMEOUT_MS), ping).await {
        Ok(Ok(_)) => Some(url),
        Ok(Err(e)) => skipped(&format!("Redis at {url} is unreachable: {e}")),
        Err(_) => skipped(&format!("Redis at {url} did not answer in time")),
    }
}
